/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/util.c and lib/loop.c (both backends). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <CUnit/Basic.h>

#include <liburing.h>

#include "loop.h"
#include "util.h"
#include "cu_run.h"

static void
test_parse_size(void)
{
	uint64_t v;

	CU_ASSERT_EQUAL(parse_size("4096", &v), 0);
	CU_ASSERT_EQUAL(v, 4096);
	CU_ASSERT_EQUAL(parse_size("4K", &v), 0);
	CU_ASSERT_EQUAL(v, 4096);
	CU_ASSERT_EQUAL(parse_size("64M", &v), 0);
	CU_ASSERT_EQUAL(v, 64ull << 20);
	CU_ASSERT_EQUAL(parse_size("2GiB", &v), 0);
	CU_ASSERT_EQUAL(v, 2ull << 30);
	CU_ASSERT_EQUAL(parse_size("1t", &v), 0);
	CU_ASSERT_EQUAL(v, 1ull << 40);
	CU_ASSERT_EQUAL(parse_size("", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_size("-1", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_size("4X", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_size("4K5", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_size("99999999999999999999", &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_size("99999999999T", &v), -ERANGE);
}

static void
test_parse_duration(void)
{
	uint64_t v;

	CU_ASSERT_EQUAL(parse_duration_ms("6s", &v), 0);
	CU_ASSERT_EQUAL(v, 6000);
	CU_ASSERT_EQUAL(parse_duration_ms("500ms", &v), 0);
	CU_ASSERT_EQUAL(v, 500);
	CU_ASSERT_EQUAL(parse_duration_ms("3", &v), 0);
	CU_ASSERT_EQUAL(v, 3000);
	CU_ASSERT_EQUAL(parse_duration_ms("3m", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_ms("s", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_ms("0", &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(parse_duration_ms("18446744073709552", &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_duration_ms("18446744073709552s", &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_duration_ms("18446744073709551615ms", &v), 0);
	CU_ASSERT_EQUAL(v, UINT64_MAX);

	CU_ASSERT_EQUAL(parse_duration_us("50us", &v), 0);
	CU_ASSERT_EQUAL(v, 50);
	CU_ASSERT_EQUAL(parse_duration_us("2ms", &v), 0);
	CU_ASSERT_EQUAL(v, 2000);
	CU_ASSERT_EQUAL(parse_duration_us("1s", &v), 0);
	CU_ASSERT_EQUAL(v, 1000000);
	CU_ASSERT_EQUAL(parse_duration_us("0", &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(parse_duration_us("0us", &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	/* A bare number other than 0 has no obvious unit: refused. */
	CU_ASSERT_EQUAL(parse_duration_us("50", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_us("50ns", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_us("us", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_us("-1us", &v), -EINVAL);
	CU_ASSERT_EQUAL(parse_duration_us("99999999999999999999us", &v), -ERANGE);
	CU_ASSERT_EQUAL(parse_duration_us("99999999999999999s", &v), -ERANGE);
}

static void
test_parse_sockaddr(void)
{
	struct sockaddr_storage ss;
	unsigned len;
	char buf[200];

	CU_ASSERT_EQUAL(parse_sockaddr("192.0.2.1:7789", &ss, &len), 0);
	CU_ASSERT_EQUAL(ss.ss_family, AF_INET);
	CU_ASSERT_STRING_EQUAL(sockaddr_str(&ss, buf, sizeof(buf)), "192.0.2.1:7789");
	CU_ASSERT_EQUAL(parse_sockaddr("0.0.0.0:10809", &ss, &len), 0);
	CU_ASSERT_EQUAL(parse_sockaddr("*:10809", &ss, &len), 0);
	CU_ASSERT_EQUAL(parse_sockaddr("[::1]:10809", &ss, &len), 0);
	CU_ASSERT_EQUAL(ss.ss_family, AF_INET6);
	CU_ASSERT_STRING_EQUAL(sockaddr_str(&ss, buf, sizeof(buf)), "[::1]:10809");
	CU_ASSERT_EQUAL(parse_sockaddr("unix:/run/x.sock", &ss, &len), 0);
	CU_ASSERT_EQUAL(ss.ss_family, AF_UNIX);
	CU_ASSERT_EQUAL(parse_sockaddr("192.0.2.1", &ss, &len), -EINVAL);
	CU_ASSERT_EQUAL(parse_sockaddr("192.0.2.1:70000", &ss, &len), -EINVAL);
	CU_ASSERT_EQUAL(parse_sockaddr("192.0.2.1:", &ss, &len), -EINVAL);
	CU_ASSERT_EQUAL(parse_sockaddr("host.example:80", &ss, &len), -EINVAL);
	CU_ASSERT_EQUAL(parse_sockaddr("[::1:80", &ss, &len), -EINVAL);
	CU_ASSERT_EQUAL(parse_sockaddr("unix:", &ss, &len), -ENAMETOOLONG);
}

/* ---- loop ---- */

struct ctx {
	struct loop *l;
	int results[8];
	int n;
};

static void
record_cb(struct loop_op *op, int res)
{
	struct ctx *c = op->data;

	c->results[c->n++] = res;
}

static void
timer_cb(struct loop_timer *t)
{
	struct ctx *c = t->data;

	c->results[c->n++] = 1000;
	loop_stop(c->l);
}

/* Send 1 MiB through a socketpair with one SEND op, receive it with RECVs. */
static void
loop_roundtrip(bool uring)
{
	struct loop *l;
	struct ctx c = { 0 };
	struct loop_op sop = { .cb = record_cb, .data = &c };
	struct loop_op rop = { .cb = record_cb, .data = &c };
	struct loop_timer t = { .cb = timer_cb, .data = &c };
	int sv[2], err;
	size_t len = 1 << 20, got = 0;
	char *out = malloc(len), *in = malloc(len);

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 64, uring, &err), 0);
	CU_ASSERT_EQUAL(loop_ring(l) != NULL, uring);
	c.l = l;
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	loop_set_nonblock(sv[0]);
	loop_set_nonblock(sv[1]);
	for (size_t i = 0; i < len; i++)
		out[i] = (char)(i * 7 + 3);
	loop_send(l, &sop, sv[0], out, len);
	/* Receive until everything arrived; the send completes once all left. */
	while (got < len) {
		int before = c.n;

		loop_recv(l, &rop, sv[1], in + got, len - got);
		while (c.n == before)
			CU_ASSERT_EQUAL_FATAL(loop_run_once(l, 1000), 0);
		for (int i = before; i < c.n; i++) {
			if (c.results[i] != (int)len) {
				CU_ASSERT_FATAL(c.results[i] > 0);
				got += (size_t)c.results[i];
			}
		}
		c.n = 0;
		if (got == len)
			break;
	}
	CU_ASSERT_EQUAL(memcmp(in, out, len), 0);
	/* Drain the send completion if it has not been seen. */
	for (int i = 0; i < 20 && sop.in_flight; i++)
		loop_run_once(l, 100);
	CU_ASSERT_FALSE(sop.in_flight);

	/* EOF: closing the writer completes a pending recv with 0. */
	c.n = 0;
	loop_recv(l, &rop, sv[1], in, 16);
	close(sv[0]);
	while (c.n == 0)
		CU_ASSERT_EQUAL_FATAL(loop_run_once(l, 1000), 0);
	CU_ASSERT_EQUAL(c.results[0], 0);

	/* Timer fires and stops the loop. */
	c.n = 0;
	loop_timer_arm(l, &t, 20);
	CU_ASSERT_EQUAL(loop_run(l), 0);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(c.results[0], 1000);

	close(sv[1]);
	loop_free(l);
	free(out);
	free(in);
}

/*
 * RECVMSG scatters one receive over several buffers in order, completes
 * with what was there (not waiting to fill them all), and with 0 at EOF.
 */
static void
loop_scatter(bool uring)
{
	struct loop *l;
	struct ctx c = { 0 };
	struct loop_op rop = { .cb = record_cb, .data = &c };
	char a[3], b[5], tail[64];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { tail, sizeof(tail) } };
	int sv[2];

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, uring, NULL), 0);
	CU_ASSERT_EQUAL(loop_ring(l) != NULL, uring);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	loop_set_nonblock(sv[0]);
	loop_set_nonblock(sv[1]);
	/* Posted before the data exists: the epoll backend parks it. */
	loop_recvmsg(l, &rop, sv[1], iov, 3);
	CU_ASSERT_EQUAL(loop_run_once(l, 10), 0);
	CU_ASSERT_EQUAL(c.n, 0);
	CU_ASSERT_EQUAL(write(sv[0], "0123456789", 10), 10);
	while (c.n == 0)
		CU_ASSERT_EQUAL_FATAL(loop_run_once(l, 1000), 0);
	CU_ASSERT_EQUAL(c.results[0], 10);
	CU_ASSERT_EQUAL(memcmp(a, "012", 3), 0);
	CU_ASSERT_EQUAL(memcmp(b, "34567", 5), 0);
	CU_ASSERT_EQUAL(memcmp(tail, "89", 2), 0);
	/* Less than the first buffer: a short completion. */
	c.n = 0;
	CU_ASSERT_EQUAL(write(sv[0], "xy", 2), 2);
	loop_recvmsg(l, &rop, sv[1], iov, 3);
	while (c.n == 0)
		CU_ASSERT_EQUAL_FATAL(loop_run_once(l, 1000), 0);
	CU_ASSERT_EQUAL(c.results[0], 2);
	CU_ASSERT_EQUAL(memcmp(a, "xy", 2), 0);
	c.n = 0;
	loop_recvmsg(l, &rop, sv[1], iov, 3);
	close(sv[0]);
	while (c.n == 0)
		CU_ASSERT_EQUAL_FATAL(loop_run_once(l, 1000), 0);
	CU_ASSERT_EQUAL(c.results[0], 0);
	close(sv[1]);
	loop_free(l);
}

static void test_loop_uring(void) { loop_roundtrip(true); }
static void test_loop_scatter_uring(void) { loop_scatter(true); }
static void test_loop_scatter_epoll(void) { loop_scatter(false); }
static void test_loop_epoll(void) { loop_roundtrip(false); }

static void
test_loop_no_uring_env(void)
{
	struct loop *l;
	int err = 0;

	setenv("BLKMIRROR_NO_IO_URING", "1", 1);
	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 8, true, &err), 0);
	unsetenv("BLKMIRROR_NO_IO_URING");
	CU_ASSERT_EQUAL(err, -EPERM);
	CU_ASSERT_PTR_NULL(loop_ring(l));
	loop_free(l);
}

static unsigned poll_class_now;	/* what test_poll_class() answers */

static unsigned
test_poll_class(void *arg)
{
	(void)arg;
	return poll_class_now;
}

/*
 * Post a receive on sv[0], send data on sv[1], run one turn: the receive
 * completes in it with data's length, recorded in c's next slot.
 */
static void
recv_one_turn(struct loop *l, struct loop_op *op, const int sv[2], struct ctx *c,
    const char *data)
{
	static char buf[16];
	ssize_t n = (ssize_t)strlen(data);
	int slot = c->n;

	loop_recv(l, op, sv[0], buf, sizeof(buf));
	CU_ASSERT_EQUAL(write(sv[1], data, (size_t)n), n);
	CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
	CU_ASSERT_EQUAL(c->n, slot + 1);
	CU_ASSERT_EQUAL(c->results[slot], n);
}

/*
 * Busy polling: off by default; when on, a turn that would sleep first
 * looks for work, and data that arrives meanwhile is received without
 * sleeping (a hit).  After a turn that waited long the next one sleeps at
 * once, and polling resumes after a short wait.
 */
static void
loop_busy_poll_case(bool uring)
{
	struct loop *l;
	struct ctx c = { 0 };
	struct loop_op op = { .cb = record_cb, .data = &c };
	const struct loop_stats *st;
	char buf[16];
	int sv[2];

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, uring, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	c.l = l;
	st = loop_get_stats(l);
	loop_recv(l, &op, sv[0], buf, sizeof(buf));
	CU_ASSERT_EQUAL(loop_run_once(l, 5), 0);
	CU_ASSERT_EQUAL(c.n, 0);
	CU_ASSERT_EQUAL(st->busy_polls, 0);

	/*
	 * On: the data is there before the turn; found by polling.  A 20 ms
	 * window, so "short" waits (up to 40 ms) stay short on a loaded
	 * machine that preempts the test for a few milliseconds.
	 */
	loop_set_busy_poll(l, 20000000);
	CU_ASSERT_EQUAL(write(sv[1], "a", 1), 1);
	CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(c.results[0], 1);
	CU_ASSERT_EQUAL(st->busy_polls, 1);
	CU_ASSERT_EQUAL(st->busy_poll_hits, 1);

	/* Nothing comes: polls 20 ms in vain, then sleeps out the rest of
	 * the 200 ms (the miss makes the next eligible turn sleep at once). */
	loop_recv(l, &op, sv[0], buf, sizeof(buf));
	CU_ASSERT_EQUAL(loop_run_once(l, 200), 0);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(st->busy_polls, 2);
	CU_ASSERT_EQUAL(st->busy_poll_hits, 1);
	/* After that long wait: no polling; the data wakes the sleep. */
	CU_ASSERT_EQUAL(write(sv[1], "bc", 2), 2);
	CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
	CU_ASSERT_EQUAL(c.n, 2);
	CU_ASSERT_EQUAL(c.results[1], 2);
	CU_ASSERT_EQUAL(st->busy_polls, 2);
	/* That wait was short, but the miss before skips one poll... */
	recv_one_turn(l, &op, sv, &c, "xyz");
	CU_ASSERT_EQUAL(st->busy_polls, 2);
	/* ...and the turn after it polls again. */
	c.n = 2;			/* reuse the result slot */
	recv_one_turn(l, &op, sv, &c, "def");
	CU_ASSERT_EQUAL(st->busy_polls, 3);
	CU_ASSERT_EQUAL(st->busy_poll_hits, 2);

	/* Disk work held outside the ring (an offload thread's discard):
	 * no polling until it is released. */
	loop_disk_hold(l, 1);
	recv_one_turn(l, &op, sv, &c, "ij");
	CU_ASSERT_EQUAL(st->busy_polls, 3);
	loop_disk_hold(l, -1);
	c.n = 3;

	if (uring) {
		/*
		 * No polling while a disk op (LOOP_OP_RAW; here a 30 ms
		 * io_uring timeout stands in for a disk write) is in the
		 * ring, and such a long wait does not stop the polling for
		 * the socket afterwards.
		 */
		struct loop_op raw = { .cb = record_cb, .data = &c };
		struct __kernel_timespec ts = { .tv_nsec = 30000000 };
		struct io_uring_sqe *sqe;

		for (int i = 0; i < 2; i++) {
			sqe = loop_sqe(l);
			io_uring_prep_timeout(sqe, &ts, 0, 0);
			raw.kind = LOOP_OP_RAW;
			loop_sqe_set_op(l, sqe, &raw);
			while (c.n < 4 + i)
				CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
			CU_ASSERT_EQUAL(c.results[3 + i], -ETIME);
			CU_ASSERT_EQUAL(st->busy_polls, 3);
			CU_ASSERT_EQUAL(st->busy_poll_hits, 2);
		}
		loop_recv(l, &op, sv[0], buf, sizeof(buf));
		CU_ASSERT_EQUAL(write(sv[1], "g", 1), 1);
		CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
		CU_ASSERT_EQUAL(c.n, 6);
		CU_ASSERT_EQUAL(st->busy_polls, 4);
		CU_ASSERT_EQUAL(st->busy_poll_hits, 3);
		c.n = 3;
	}

	/*
	 * Misses in a row space the polls out: eight turns, each woken
	 * by a 20 ms timer (the 1 s window is cut to the timer, and misses),
	 * poll on turns 1, 3 and 7 (after 1, then 3 skipped turns).
	 */
	{
		struct loop_timer t = { .cb = timer_cb, .data = &c };
		uint64_t polls = st->busy_polls, hits = st->busy_poll_hits;

		loop_set_busy_poll(l, 1000000000);	/* 1 s */
		for (int i = 0; i < 8; i++) {
			c.n = 3;
			loop_timer_arm(l, &t, 20);
			while (c.n == 3)
				CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
			CU_ASSERT_EQUAL(c.results[3], 1000);
		}
		CU_ASSERT_EQUAL(st->busy_polls, polls + 3);
		CU_ASSERT_EQUAL(st->busy_poll_hits, hits);
		c.n = 3;
	}

	/*
	 * Classes are judged apart: a miss while waiting in class 1 (here
	 * for a 20 ms timer) skips the next class-1 poll but not a class-0
	 * one.
	 */
	{
		struct loop_timer t = { .cb = timer_cb, .data = &c };
		uint64_t polls, hits;

		loop_set_busy_poll(l, 1000000000);
		loop_set_poll_class(l, test_poll_class, NULL);
		polls = st->busy_polls;
		hits = st->busy_poll_hits;
		poll_class_now = 1;
		loop_timer_arm(l, &t, 20);
		while (c.n == 3)
			CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
		CU_ASSERT_EQUAL(st->busy_polls, polls + 1);
		CU_ASSERT_EQUAL(st->busy_poll_hits, hits);
		c.n = 3;
		poll_class_now = 0;
		loop_recv(l, &op, sv[0], buf, sizeof(buf));
		CU_ASSERT_EQUAL(write(sv[1], "h", 1), 1);
		CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
		CU_ASSERT_EQUAL(c.n, 4);
		CU_ASSERT_EQUAL(st->busy_polls, polls + 2);
		CU_ASSERT_EQUAL(st->busy_poll_hits, hits + 1);
		c.n = 3;
		poll_class_now = 1;
		loop_timer_arm(l, &t, 20);
		while (c.n == 3)
			CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
		CU_ASSERT_EQUAL(st->busy_polls, polls + 2);
		c.n = 3;
		poll_class_now = 0;
		loop_set_poll_class(l, NULL, NULL);
	}

	/* A timer due before the window ends cuts the polling short. */
	loop_recv(l, &op, sv[0], buf, sizeof(buf));
	loop_set_busy_poll(l, 1000000000);	/* 1 s */
	{
		struct loop_timer t = { .cb = timer_cb, .data = &c };
		uint64_t t0 = now_ns();

		loop_timer_arm(l, &t, 20);
		while (c.n < 4 && now_ns() - t0 < 5000000000ull)
			CU_ASSERT_EQUAL(loop_run_once(l, -1), 0);
		CU_ASSERT_EQUAL(c.n, 4);
		CU_ASSERT_TRUE(now_ns() - t0 < 900000000ull);
	}
	shutdown(sv[0], SHUT_RDWR);
	while (c.n < 5)
		CU_ASSERT_EQUAL(loop_run_once(l, 10), 0);
	close(sv[0]);
	close(sv[1]);
	loop_free(l);
}

static void
test_loop_busy_poll_uring(void)
{
	loop_busy_poll_case(true);
}

static void
test_loop_busy_poll_epoll(void)
{
	loop_busy_poll_case(false);
}

/* Deferred callbacks run on the next turn, in order, never re-entrantly. */
static void
test_loop_defer(void)
{
	struct loop *l;
	struct ctx c = { 0 };
	struct loop_op a = { .cb = record_cb, .data = &c };
	struct loop_op b = { .cb = record_cb, .data = &c };

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 8, true, NULL), 0);
	loop_defer(l, &a, 7);
	loop_defer(l, &b, 9);
	CU_ASSERT_EQUAL(c.n, 0);
	CU_ASSERT_EQUAL(loop_run_once(l, 0), 0);
	CU_ASSERT_EQUAL(c.n, 2);
	CU_ASSERT_EQUAL(c.results[0], 7);
	CU_ASSERT_EQUAL(c.results[1], 9);
	loop_free(l);
}

/* CONNECT: succeeds against a listener, fails with ECONNREFUSED without. */
static void
loop_connect_case(bool uring)
{
	struct loop *l;
	struct ctx c = { 0 };
	struct loop_op op = { .cb = record_cb, .data = &c };
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	socklen_t sl = sizeof(*sin);
	int lfd, fd;

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, uring, NULL), 0);
	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_EQUAL_FATAL(bind(lfd, (struct sockaddr *)sin, sl), 0);
	CU_ASSERT_EQUAL_FATAL(listen(lfd, 4), 0);
	CU_ASSERT_EQUAL_FATAL(getsockname(lfd, (struct sockaddr *)sin, &sl), 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	loop_connect(l, &op, fd, &ss, sizeof(*sin));
	for (int i = 0; i < 50 && c.n == 0; i++)
		loop_run_once(l, 100);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(c.results[0], 0);
	close(fd);
	close(lfd);		/* the port is now closed: refused */
	c.n = 0;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	loop_connect(l, &op, fd, &ss, sizeof(*sin));
	for (int i = 0; i < 50 && c.n == 0; i++)
		loop_run_once(l, 100);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(c.results[0], -ECONNREFUSED);
	close(fd);
	loop_free(l);
}

static void test_loop_connect_uring(void) { loop_connect_case(true); }
static void test_loop_connect_epoll(void) { loop_connect_case(false); }

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("util", NULL, NULL);
	CU_add_test(s, "parse_size", test_parse_size);
	CU_add_test(s, "parse_duration", test_parse_duration);
	CU_add_test(s, "parse_sockaddr", test_parse_sockaddr);
	CU_add_test(s, "loop_uring", test_loop_uring);
	CU_add_test(s, "loop_epoll", test_loop_epoll);
	CU_add_test(s, "loop_scatter_uring", test_loop_scatter_uring);
	CU_add_test(s, "loop_scatter_epoll", test_loop_scatter_epoll);
	CU_add_test(s, "loop_no_uring_env", test_loop_no_uring_env);
	CU_add_test(s, "loop_defer", test_loop_defer);
	CU_add_test(s, "loop_busy_poll_uring", test_loop_busy_poll_uring);
	CU_add_test(s, "loop_busy_poll_epoll", test_loop_busy_poll_epoll);
	CU_add_test(s, "loop_connect_uring", test_loop_connect_uring);
	CU_add_test(s, "loop_connect_epoll", test_loop_connect_epoll);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
