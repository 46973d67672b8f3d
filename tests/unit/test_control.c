/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for daemon/control.c: the control socket on a real loop (both
 * backends) with a fake struct daemon around a real (sync) io engine.  This
 * file stands in for main.c (the state names and daemon_request_stop) and
 * for admin.c (no replication commands).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <CUnit/Basic.h>
#include <json-c/json.h>

#include "ctl_proto.h"
#include "internal.h"
#include "util.h"
#include "cu_run.h"

/* Bytes of events emitted in one loop turn by run_burst: above control.c's
 * queue bound (1 MiB), below that plus what a socket takes at once. */
#define CTL_BURST_BYTES	(1024 * 1024 + 32 * 1024)

/* ---- the fake daemon ---------------------------------------------------- */

static struct daemon D;			/* the daemon under test */
static struct conf_node self_node;	/* its [node] section */
static struct listener nbd_lst[1];	/* one NBD listener, for status */
static char tmpdir[64];			/* per-test directory */
static char sock_path[200];		/* control socket path */
static char disk_path[200];		/* the engine's backing file */
static int stop_calls;			/* daemon_request_stop() calls */
static char stop_why[64];		/* its last reason */

void
daemon_request_stop(struct daemon *d, const char *why)
{
	stop_calls++;
	snprintf(stop_why, sizeof(stop_why), "%s", why);
}

/* admin.c stands in too: no replication commands in this harness. */
int
admin_exec(struct daemon *d, const char *cmd, struct json_object *args, char *err,
    size_t errlen)
{
	return -ENOENT;
}

void
admin_status(struct daemon *d, struct json_object *o)
{
}

const char *
role_name(enum role r)
{
	return r == ROLE_PRIMARY ? "primary" : "secondary";
}

const char *
disk_state_name(enum disk_state s)
{
	static const char *const names[] = { "diskless", "inconsistent",
	    "outdated", "consistent", "uptodate", "failed" };

	return names[s];
}

const char *
conn_state_name(enum conn_state s)
{
	static const char *const names[] = { "standalone", "connecting", "connected" };

	return names[s];
}

/* Fresh daemon state and a fresh directory for the socket. */
static void
setup(bool uring)
{
	struct ioeng_opts eo = { .kind = IOENG_SYNC, .io_align = 4096, .threads = 1 };
	int fd;

	memset(&D, 0, sizeof(D));
	stop_calls = 0;
	stop_why[0] = '\0';
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/blkmirror-ctl-XXXXXX");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/run/blkmirror/r0.sock", tmpdir);
	CU_ASSERT_EQUAL_FATAL(loop_new(&D.loop, 64, uring, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(loop_ring(D.loop) != NULL, uring);
	snprintf(D.conf.name, sizeof(D.conf.name), "r0");
	D.conf.block_size = 4096;
	D.block_size = 512;
	D.conf.protocol = PROTO_MEMSYNC;
	memset(&self_node, 0, sizeof(self_node));
	snprintf(self_node.name, sizeof(self_node.name), "alpha");
	snprintf(self_node.control, sizeof(self_node.control), "%s", sock_path);
	D.self = &self_node;
	snprintf(disk_path, sizeof(disk_path), "%s/disk.img", tmpdir);
	fd = open(disk_path, O_CREAT | O_RDWR, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(ftruncate(fd, 1 << 20), 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(ioeng_open(D.loop, disk_path, &eo, &D.eng), 0);
	D.size = 64ull << 20;
	D.role = ROLE_PRIMARY;
	D.disk = DISK_UPTODATE;
	D.conn = CONN_STANDALONE;
	D.started_ns = now_ns() - 3000000000ull;
	D.n_conns = 2;
	D.conns_total = 7;
	D.inflight = 1;
	D.ops = (struct op_counters){ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	memset(nbd_lst, 0, sizeof(nbd_lst));
	snprintf(nbd_lst[0].name, sizeof(nbd_lst[0].name), "127.0.0.1:10809");
	D.listeners = nbd_lst;
	D.n_listeners = 1;
}

/* Remove what setup() made (the control socket must already be gone). */
static void
teardown(void)
{
	char p[300];

	ioeng_close(D.eng);
	D.eng = NULL;
	CU_ASSERT_EQUAL(unlink(disk_path), 0);
	snprintf(p, sizeof(p), "%s/run/blkmirror", tmpdir);
	CU_ASSERT_EQUAL(rmdir(p), 0);
	snprintf(p, sizeof(p), "%s/run", tmpdir);
	CU_ASSERT_EQUAL(rmdir(p), 0);
	CU_ASSERT_EQUAL(rmdir(tmpdir), 0);
	loop_free(D.loop);
	D.loop = NULL;
}

/* ---- client helpers ----------------------------------------------------- */

/* Connect, running the loop once so the daemon accepts. */
static void
conn_open(struct ctl_conn *c)
{
	CU_ASSERT_EQUAL_FATAL(ctl_connect(c, sock_path, 1000), 0);
	loop_run_once(D.loop, 0);
}

/* Run the loop until c has a line (or EOF/error), at most ms. */
static long
pump_line(struct ctl_conn *c, char **line, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;

	for (;;) {
		long n = ctl_recv_line(c, line, 0);

		if (n != -ETIMEDOUT || now_ns() > end)
			return n;
		CU_ASSERT_EQUAL_FATAL(loop_run_once(D.loop, 5), 0);
	}
}

/* Run the loop for ms milliseconds. */
static void
pump_ms(int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;

	while (now_ns() < end)
		loop_run_once(D.loop, 5);
}

/* Send raw bytes and read one reply into *rep; 0 or a negative errno. */
static int
raw_call(struct ctl_conn *c, const char *req, size_t len, struct ctl_reply *rep)
{
	char *line;
	long n;

	if (len > 0 && ctl_send_line(c, req, len) < 0)
		return -EPIPE;
	n = pump_line(c, &line, 3000);
	if (n < 0)
		return (int)n;
	return ctl_reply_decode(line, (size_t)n, rep) < 0 ? -EBADMSG : 0;
}

static int
call(struct ctl_conn *c, const char *req, struct ctl_reply *rep)
{
	return raw_call(c, req, strlen(req), rep);
}

/* Make c an event subscriber (the reply must be ok). */
static void
subscribe(struct ctl_conn *c)
{
	struct ctl_reply rep;

	CU_ASSERT_EQUAL_FATAL(call(c, "{\"cmd\":\"events\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
}

/* Assert an error reply with exactly msg. */
static void
expect_error(struct ctl_conn *c, const char *req, size_t len, const char *msg)
{
	struct ctl_reply rep;

	CU_ASSERT_EQUAL_FATAL(raw_call(c, req, len, &rep), 0);
	CU_ASSERT_FALSE(rep.ok);
	if (strcmp(rep.error, msg) != 0)
		fprintf(stderr, "got error '%s', expected '%s'\n", rep.error, msg);
	CU_ASSERT_STRING_EQUAL(rep.error, msg);
	ctl_reply_free(&rep);
}

/* The daemon closed c: EOF comes within a bounded time. */
static void
expect_eof(struct ctl_conn *c)
{
	char *line;

	CU_ASSERT_EQUAL(pump_line(c, &line, 3000), -ECONNRESET);
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "(missing)";
}

static int64_t
jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

/* ---- tests ----------------------------------------------------------------- */

static void
check_status_result(struct json_object *r)
{
	static const char *const ops[] = { "reads", "writes", "flushes", "trims",
	    "zeroes", "caches", "block_status", "read_bytes", "write_bytes",
	    "trim_bytes", "zero_bytes", "errors", "rejected" };
	struct json_object *o, *l;
	char addr[300];

	CU_ASSERT_STRING_EQUAL(jstr(r, "resource"), "r0");
	CU_ASSERT_STRING_EQUAL(jstr(r, "node"), "alpha");
	CU_ASSERT_STRING_EQUAL(jstr(r, "role"), "primary");
	CU_ASSERT_STRING_EQUAL(jstr(r, "disk"), "uptodate");
	CU_ASSERT_STRING_EQUAL(jstr(r, "connection"), "standalone");
	CU_ASSERT_STRING_EQUAL(jstr(r, "io_engine"), "sync");
	CU_ASSERT_STRING_EQUAL(jstr(r, "protocol"), "memsync");
	CU_ASSERT_EQUAL(jint(r, "size_bytes"), 64 << 20);
	CU_ASSERT_EQUAL(jint(r, "block_size"), 512);
	CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(r, "stopping", &o));
	CU_ASSERT_FALSE(json_object_get_boolean(o));
	CU_ASSERT_EQUAL(jint(r, "clients"), 2);
	CU_ASSERT_EQUAL(jint(r, "clients_total"), 7);
	CU_ASSERT_EQUAL(jint(r, "in_flight"), 1);
	CU_ASSERT(jint(r, "uptime_s") >= 3 && jint(r, "uptime_s") < 60);
	CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(r, "ops", &o));
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		CU_ASSERT_EQUAL(jint(o, ops[i]), (int64_t)i + 1);
	CU_ASSERT_TRUE_FATAL(json_object_object_get_ex(r, "listeners", &l));
	CU_ASSERT_EQUAL_FATAL(json_object_array_length(l), 2);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(l, 0), "address"), "127.0.0.1:10809");
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(l, 0), "kind"), "nbd");
	snprintf(addr, sizeof(addr), "unix:%s", sock_path);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(l, 1), "address"), addr);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_array_get_idx(l, 1), "kind"), "control");
}

/* status, pipelining, unknown commands, arguments, CRLF and blank lines. */
static void
run_status(bool uring)
{
	const char *batch = "{\"cmd\":\"status\"}\n\n{\"cmd\":\"frob\"}\r\n"
	    "{\"cmd\":\"status\",\"args\":{\"x\":1}}\n{\"cmd\":\"status\",\"args\":{}}\n";
	struct ctl_conn c;
	struct ctl_reply rep;
	struct stat st;
	char dir[300];

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	CU_ASSERT_EQUAL(lstat(sock_path, &st), 0);
	CU_ASSERT_TRUE(S_ISSOCK(st.st_mode));
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
	snprintf(dir, sizeof(dir), "%s/run/blkmirror", tmpdir);
	CU_ASSERT_EQUAL(stat(dir, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0755);

	conn_open(&c);
	CU_ASSERT_EQUAL_FATAL(call(&c, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	check_status_result(rep.result);
	ctl_reply_free(&rep);

	/* Four requests in one write: four replies, in order. */
	CU_ASSERT_EQUAL_FATAL(call(&c, batch, &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	expect_error(&c, "", 0, "unknown command 'frob'");
	expect_error(&c, "", 0, "command 'status' takes no arguments");
	CU_ASSERT_EQUAL_FATAL(call(&c, "", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	/* The connection is still usable after errors. */
	CU_ASSERT_EQUAL_FATAL(call(&c, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);

	control_stop(&D);
	CU_ASSERT_PTR_NULL(D.ctl);
	CU_ASSERT_EQUAL(lstat(sock_path, &st), -1);
	expect_eof(&c);
	ctl_close(&c);
	teardown();
}

/* Garbage, oversize lines, the exact bound, a last line without newline. */
static void
run_bad_input(bool uring)
{
	struct ctl_conn good, c;
	struct ctl_reply rep;
	char *big = malloc(CTL_MAX_LINE + 16);
	const char *req = "{\"cmd\":\"status\"}";

	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&good);

	conn_open(&c);
	expect_error(&c, "hello\n", 6, "bad request: invalid JSON");
	expect_eof(&c);
	ctl_close(&c);

	conn_open(&c);
	expect_error(&c, "{\"cmd\":\"x\",\"y\":1}\n", 18, "bad request: unknown key in request");
	expect_eof(&c);
	ctl_close(&c);

	/* No newline in 70000 bytes. */
	memset(big, 'x', CTL_MAX_LINE + 16);
	conn_open(&c);
	CU_ASSERT_EQUAL(ctl_send_line(&c, big, CTL_MAX_LINE + 16), 0);
	expect_error(&c, "", 0, "request line too long (max 65536 bytes)");
	expect_eof(&c);
	ctl_close(&c);

	/* Exactly CTL_MAX_LINE bytes before the newline: accepted. */
	memset(big, ' ', CTL_MAX_LINE + 16);
	memcpy(big, req, strlen(req));
	big[CTL_MAX_LINE] = '\n';
	conn_open(&c);
	CU_ASSERT_EQUAL_FATAL(raw_call(&c, big, CTL_MAX_LINE + 1, &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	/* One more byte: refused, connection closed. */
	big[CTL_MAX_LINE] = ' ';
	big[CTL_MAX_LINE + 1] = '\n';
	expect_error(&c, big, CTL_MAX_LINE + 2, "request line too long (max 65536 bytes)");
	expect_eof(&c);
	ctl_close(&c);

	/* A last request without newline, then end of file: still answered. */
	conn_open(&c);
	CU_ASSERT_EQUAL(ctl_send_line(&c, req, strlen(req)), 0);
	shutdown(c.fd, SHUT_WR);
	CU_ASSERT_EQUAL_FATAL(raw_call(&c, "", 0, &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	expect_eof(&c);
	ctl_close(&c);

	/* The first client never noticed. */
	CU_ASSERT_EQUAL_FATAL(call(&good, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	ctl_close(&good);
	pump_ms(20);
	control_stop(&D);
	teardown();
	free(big);
}

/* Many clients at once; beyond the limit one gets an error and a close. */
static void
run_many_clients(bool uring)
{
	enum { N = 128 };
	struct ctl_conn *c = calloc(N + 1, sizeof(*c));
	struct ctl_reply rep;
	const char *req = "{\"cmd\":\"status\"}\n";

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	for (int i = 0; i < N; i++) {
		conn_open(&c[i]);
		CU_ASSERT_EQUAL(ctl_send_line(&c[i], req, strlen(req)), 0);
	}
	conn_open(&c[N]);
	expect_error(&c[N], "", 0, "too many control clients (max 128)");
	expect_eof(&c[N]);
	ctl_close(&c[N]);
	for (int i = 0; i < N; i++) {
		CU_ASSERT_EQUAL(raw_call(&c[i], "", 0, &rep), 0);
		CU_ASSERT_TRUE(rep.ok);
		ctl_reply_free(&rep);
	}
	/* Once one leaves, a new client is welcome again. */
	ctl_close(&c[0]);
	pump_ms(20);
	conn_open(&c[0]);
	CU_ASSERT_EQUAL(call(&c[0], req, &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	control_stop(&D);
	for (int i = 0; i < N; i++) {
		expect_eof(&c[i]);
		ctl_close(&c[i]);
	}
	free(c);
	teardown();
}

/* Emit one event "name" with a string field "k". */
static void
emit(const char *name, const char *k)
{
	struct json_object *ev = ctl_event_new(name);

	json_object_object_add(ev, "k", json_object_new_string(k));
	control_emit(&D, ev);
}

/* Read one event line from c and check its name and field. */
static void
expect_event(struct ctl_conn *c, const char *name, const char *k)
{
	struct ctl_event ev;
	char *line;
	long n = pump_line(c, &line, 3000);

	CU_ASSERT_FATAL(n > 0);
	CU_ASSERT_EQUAL_FATAL(ctl_event_decode(line, (size_t)n, &ev), 0);
	CU_ASSERT_STRING_EQUAL(ev.name, name);
	CU_ASSERT_STRING_EQUAL(jstr(ev.root, "k"), k);
	CU_ASSERT(ev.time > 1.6e9);
	ctl_event_free(&ev);
}

static void
run_events(bool uring)
{
	struct ctl_conn a, b, s;
	struct ctl_reply rep;
	char *line;

	setup(uring);
	/* No control socket yet: emitting is a no-op that frees the event. */
	emit("early", "x");
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&a);
	conn_open(&b);
	conn_open(&s);
	subscribe(&a);
	subscribe(&b);

	emit("role-changed", "primary");
	expect_event(&a, "role-changed", "primary");
	expect_event(&b, "role-changed", "primary");
	/* A plain client gets no events and keeps getting replies. */
	pump_ms(20);
	CU_ASSERT_EQUAL(ctl_recv_line(&s, &line, 0), -ETIMEDOUT);
	CU_ASSERT_EQUAL_FATAL(call(&s, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);

	/* A subscriber's input is ignored; events keep flowing. */
	CU_ASSERT_EQUAL(ctl_send_line(&a, "junk\n{\"cmd\":\"down\"}\n", 20), 0);
	pump_ms(20);
	CU_ASSERT_EQUAL(stop_calls, 0);
	emit("disk-changed", "failed");
	expect_event(&a, "disk-changed", "failed");
	expect_event(&b, "disk-changed", "failed");

	/* A subscriber leaving does not disturb the others. */
	ctl_close(&a);
	pump_ms(20);
	emit("third", "3");
	expect_event(&b, "third", "3");
	control_stop(&D);
	expect_eof(&b);
	expect_eof(&s);
	ctl_close(&b);
	ctl_close(&s);
	/* After stop, emitting is a no-op again. */
	emit("late", "x");
	teardown();
}

/*
 * A subscriber that never reads ends with an "overflow" event after what
 * was queued, then end of file; a reading one gets everything.
 */
static void
run_slow_subscriber(bool uring)
{
	enum { EVENTS = 4000 };
	struct ctl_conn fast, slow;
	char payload[1024], *line, last[2048];
	int got_fast = 0, got_slow = 0;
	struct ctl_event ev;
	long n;

	memset(payload, 'p', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&fast);
	conn_open(&slow);
	subscribe(&fast);
	subscribe(&slow);
	for (int i = 0; i < EVENTS; i++) {
		emit("bulk", payload);
		loop_run_once(D.loop, 0);
		while ((n = ctl_recv_line(&fast, &line, 0)) > 0)
			got_fast++;
	}
	while (got_fast < EVENTS && pump_line(&fast, &line, 3000) > 0)
		got_fast++;
	CU_ASSERT_EQUAL(got_fast, EVENTS);
	/*
	 * The slow one reads what was queued before the overflow, then the
	 * overflow event, then EOF.
	 */
	last[0] = '\0';
	while ((n = pump_line(&slow, &line, 3000)) > 0) {
		got_slow++;
		snprintf(last, sizeof(last), "%s", line);
	}
	CU_ASSERT_EQUAL(n, -ECONNRESET);
	got_slow--;	/* the overflow line */
	if (!(got_slow > 10 && got_slow < EVENTS))
		fprintf(stderr, "slow subscriber read %d events\n", got_slow);
	CU_ASSERT(got_slow > 10 && got_slow < EVENTS);
	CU_ASSERT_EQUAL_FATAL(ctl_event_decode(last, strlen(last), &ev), 0);
	CU_ASSERT_STRING_EQUAL(ev.name, "overflow");
	CU_ASSERT_STRING_EQUAL(jstr(ev.root, "message"), "events lost from here on: this "
	    "subscriber fell more than 1048576 bytes behind");
	ctl_event_free(&ev);
	control_stop(&D);
	expect_eof(&fast);
	ctl_close(&fast);
	ctl_close(&slow);
	teardown();
}

/*
 * A burst of events in one loop turn, a little more than the queue bound:
 * the socket takes part of it at once, so only the rest counts against the
 * bound and a subscriber that reads afterwards loses nothing.
 */
static void
run_burst(bool uring)
{
	enum { EVENTS = (CTL_BURST_BYTES) / 1024 };
	struct ctl_conn sub;
	struct ctl_event ev;
	char payload[1000], *line;
	int got = 0, overflow = 0;
	long n;

	memset(payload, 'b', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&sub);
	subscribe(&sub);
	/* No loop turn in between: nothing but the socket drains the queue. */
	for (int i = 0; i < EVENTS; i++)
		emit("burst", payload);
	while (got + overflow < EVENTS && (n = pump_line(&sub, &line, 3000)) > 0) {
		CU_ASSERT_EQUAL_FATAL(ctl_event_decode(line, (size_t)n, &ev), 0);
		if (strcmp(ev.name, "overflow") == 0)
			overflow++;
		else
			got++;
		ctl_event_free(&ev);
	}
	if (got != EVENTS)
		fprintf(stderr, "burst: %d of %d events, %d overflow\n", got, EVENTS, overflow);
	CU_ASSERT_EQUAL(got, EVENTS);
	CU_ASSERT_EQUAL(overflow, 0);
	control_stop(&D);
	expect_eof(&sub);
	ctl_close(&sub);
	teardown();
}

/*
 * Idle clients: one without traffic is closed after CTL_IDLE_MS, one that
 * keeps asking stays, a live subscriber stays, and an overflowed
 * subscriber that never reads is closed without waiting for it to drain.
 */
static void
run_idle(bool uring)
{
	struct ctl_conn idle, busy, sub, stuck;
	struct ctl_reply rep;
	char payload[1024], *line, last[2048];
	uint64_t t0 = now_ns(), closed_ms = 0;
	long n;

	memset(payload, 'i', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&idle);
	conn_open(&busy);
	conn_open(&sub);
	conn_open(&stuck);
	subscribe(&sub);
	subscribe(&stuck);
	/* stuck overflows and then never reads; sub reads everything. */
	for (int round = 0; round < 4; round++) {
		int got = 0;

		for (int i = 0; i < 400; i++)
			emit("fill", payload);
		while (got < 400 && pump_line(&sub, &line, 3000) > 0)
			got++;
		CU_ASSERT_EQUAL_FATAL(got, 400);
	}
	/* Well past the idle time; busy asks every CTL_IDLE_MS / 4. */
	while (now_ns() - t0 < (uint64_t)CTL_IDLE_MS * 2500000) {
		CU_ASSERT_EQUAL_FATAL(call(&busy, "{\"cmd\":\"status\"}\n", &rep), 0);
		CU_ASSERT_TRUE(rep.ok);
		ctl_reply_free(&rep);
		if (closed_ms == 0 && ctl_recv_line(&idle, &line, 0) == -ECONNRESET)
			closed_ms = (now_ns() - t0) / 1000000;
		pump_ms(CTL_IDLE_MS / 4);
	}
	if (closed_ms == 0 && ctl_recv_line(&idle, &line, 0) == -ECONNRESET)
		closed_ms = (now_ns() - t0) / 1000000;
	if (!(closed_ms >= CTL_IDLE_MS && closed_ms < CTL_IDLE_MS * 2))
		fprintf(stderr, "idle client closed after %llu ms\n",
		    (unsigned long long)closed_ms);
	CU_ASSERT(closed_ms >= CTL_IDLE_MS && closed_ms < CTL_IDLE_MS * 2);
	/* The subscriber that reads is still subscribed. */
	emit("still-here", "yes");
	expect_event(&sub, "still-here", "yes");
	/* The stuck one was shut down before it drained: no overflow line. */
	last[0] = '\0';
	while ((n = pump_line(&stuck, &line, 3000)) > 0)
		snprintf(last, sizeof(last), "%s", line);
	CU_ASSERT_EQUAL(n, -ECONNRESET);
	CU_ASSERT_PTR_NOT_NULL(strstr(last, "\"event\":\"fill\""));
	control_stop(&D);
	expect_eof(&busy);
	expect_eof(&sub);
	ctl_close(&idle);
	ctl_close(&busy);
	ctl_close(&sub);
	ctl_close(&stuck);
	teardown();
}

/*
 * control_stop() gives up on an accept it cannot wake (the socket file was
 * moved away); the accept completes later, during the rest of the daemon's
 * shutdown, and must neither touch d->ctl (NULL by then) nor leak.
 */
static void
run_stop_gives_up(bool uring)
{
	struct ctl_conn c;
	char moved[300];
	uint64_t t0;

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	snprintf(moved, sizeof(moved), "%s/moved.sock", tmpdir);
	CU_ASSERT_EQUAL_FATAL(rename(sock_path, moved), 0);
	t0 = now_ns();
	control_stop(&D);
	CU_ASSERT(now_ns() - t0 >= 1500000000ull);
	CU_ASSERT_PTR_NULL(D.ctl);
	CU_ASSERT_EQUAL_FATAL(ctl_connect(&c, moved, 1000), 0);
	pump_ms(50);
	expect_eof(&c);
	ctl_close(&c);
	CU_ASSERT_EQUAL(unlink(moved), 0);
	teardown();
}

/* down: the reply arrives, then the daemon is asked to stop, once. */
static void
run_down(bool uring)
{
	struct ctl_conn c;
	struct ctl_reply rep;

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&c);
	CU_ASSERT_EQUAL_FATAL(call(&c, "{\"cmd\":\"down\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	pump_ms(20);
	CU_ASSERT_EQUAL(stop_calls, 1);
	CU_ASSERT_STRING_EQUAL(stop_why, "blkmirrorctl down");
	control_stop(&D);
	expect_eof(&c);
	ctl_close(&c);
	CU_ASSERT_EQUAL(stop_calls, 1);
	teardown();
}

/* Another daemon on the path, a stale socket, a non-socket, a long path. */
static void
run_socket_file(bool uring)
{
	struct daemon d2;
	struct ctl_conn c;
	struct ctl_reply rep;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st1, st2;
	int fd;

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	CU_ASSERT_EQUAL(lstat(sock_path, &st1), 0);
	d2 = D;
	d2.ctl = NULL;
	CU_ASSERT_EQUAL(control_start(&d2), -EADDRINUSE);
	CU_ASSERT_PTR_NULL(d2.ctl);
	/* The running daemon's socket is untouched and still answers. */
	CU_ASSERT_EQUAL(lstat(sock_path, &st2), 0);
	CU_ASSERT_EQUAL(st1.st_ino, st2.st_ino);
	conn_open(&c);
	CU_ASSERT_EQUAL_FATAL(call(&c, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	ctl_close(&c);
	pump_ms(10);
	control_stop(&D);

	/* A stale socket file (nobody listening) is replaced. */
	strcpy(sun.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	CU_ASSERT_EQUAL(lstat(sock_path, &st1), 0);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&c);
	CU_ASSERT_EQUAL_FATAL(call(&c, "{\"cmd\":\"status\"}\n", &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	ctl_reply_free(&rep);
	ctl_close(&c);
	pump_ms(10);
	control_stop(&D);

	/* A regular file is never removed. */
	fd = open(sock_path, O_CREAT | O_WRONLY, 0644);
	CU_ASSERT_EQUAL(write(fd, "keep", 4), 4);
	close(fd);
	CU_ASSERT_EQUAL(control_start(&D), -ENOTSOCK);
	CU_ASSERT_PTR_NULL(D.ctl);
	CU_ASSERT_EQUAL(stat(sock_path, &st1), 0);
	CU_ASSERT_EQUAL(st1.st_size, 4);
	CU_ASSERT_EQUAL(unlink(sock_path), 0);

	/* A path that does not fit in sun_path. */
	memset(self_node.control, 'a', 150);
	self_node.control[0] = '/';
	self_node.control[150] = '\0';
	CU_ASSERT_EQUAL(control_start(&D), -ENAMETOOLONG);
	teardown();
}

/* Stop with a subscriber, a half-sent request and an idle client. */
static void
run_stop_busy(bool uring)
{
	struct ctl_conn sub, half, idle;
	uint64_t t0;

	setup(uring);
	CU_ASSERT_EQUAL_FATAL(control_start(&D), 0);
	conn_open(&sub);
	conn_open(&half);
	conn_open(&idle);
	subscribe(&sub);
	CU_ASSERT_EQUAL(ctl_send_line(&half, "{\"cmd\":\"sta", 11), 0);
	pump_ms(20);
	t0 = now_ns();
	control_stop(&D);
	CU_ASSERT(now_ns() - t0 < 1000000000ull);
	CU_ASSERT_PTR_NULL(D.ctl);
	expect_eof(&sub);
	expect_eof(&half);
	expect_eof(&idle);
	ctl_close(&sub);
	ctl_close(&half);
	ctl_close(&idle);
	CU_ASSERT_EQUAL(ctl_connect(&idle, sock_path, 1000), -ENOENT);
	/* control_stop without control_start is harmless. */
	control_stop(&D);
	teardown();
}

#define BOTH(fn) \
	static void fn##_uring(void) { fn(true); } \
	static void fn##_epoll(void) { fn(false); }
BOTH(run_status)
BOTH(run_bad_input)
BOTH(run_many_clients)
BOTH(run_events)
BOTH(run_slow_subscriber)
BOTH(run_burst)
BOTH(run_idle)
BOTH(run_stop_gives_up)
BOTH(run_down)
BOTH(run_socket_file)
BOTH(run_stop_busy)

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("control", NULL, NULL);
#define ADD(fn) \
	CU_add_test(s, #fn " io_uring", fn##_uring); \
	CU_add_test(s, #fn " epoll", fn##_epoll)
	ADD(run_status);
	ADD(run_bad_input);
	ADD(run_many_clients);
	ADD(run_events);
	ADD(run_slow_subscriber);
	ADD(run_burst);
	ADD(run_idle);
	ADD(run_stop_gives_up);
	ADD(run_down);
	ADD(run_socket_file);
	ADD(run_stop_busy);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	{
		int failed = cu_run();

		CU_cleanup_registry();
		return failed == 0 ? 0 : 1;
	}
}
