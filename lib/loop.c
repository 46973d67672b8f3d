/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Event loop: io_uring backend, with an epoll backend for machines where
 * io_uring is unavailable.  See loop.h for the contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <liburing.h>

#include "log.h"
#include "loop.h"
#include "util.h"

/* Per-fd waiters of the epoll backend: one receive-side and one send-side op. */
struct ep_fd {
	struct loop_op *rd;		/* RECV, ACCEPT or POLLIN waiter */
	struct loop_op *wr;		/* SEND, SENDMSG or POLLOUT waiter */
	uint32_t events;		/* interest registered with epoll */
	bool added;			/* fd known to the epoll instance */
};

struct loop {
	struct io_uring ring;		/* io_uring backend */
	bool uring;			/* which backend */
	int epfd;			/* epoll backend */
	struct ep_fd *fds;		/* epoll backend, indexed by fd */
	size_t nfds;			/* entries in fds[] */
	struct loop_op *ready_head;	/* ops whose callback runs next turn */
	struct loop_op *ready_tail;
	struct loop_timer *timers;	/* armed timers, earliest first */
	struct loop_flush *flushes;	/* end-of-turn work, in queue order */
	struct loop_flush **flush_tail;	/* where the next one goes */
	bool stop;			/* loop_stop() was called */
	unsigned raw_in_flight;		/* LOOP_OP_RAW (disk) ops in the ring,
					 * and loop_disk_hold()'s */
	uint64_t busy_poll_ns;		/* loop_set_busy_poll(); 0: off */
	unsigned (*poll_class)(void *);	/* loop_set_poll_class() */
	void *poll_class_arg;
	/* Per class of wait (see loop_set_poll_class()): */
	uint64_t last_wait_ns[2];	/* how long the last waiting turn
					 * without disk ops in flight took */
	unsigned poll_misses[2];	/* busy polls in a row that found
					 * nothing (at most POLL_MISS_MAX) */
	unsigned poll_skip[2];		/* eligible turns left to sleep at once
					 * after a miss (2^misses - 1) */
	struct loop_stats stats;
};

int
loop_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int
uring_setup(struct loop *l, unsigned entries)
{
	struct io_uring_params p;
	const char *env = getenv("BLKMIRROR_NO_IO_URING");
	int ret;

	if (env != NULL && strcmp(env, "1") == 0)
		return -EPERM;
	/* Fastest setup first; older kernels reject the newer flags. */
	static const unsigned flag_sets[] = {
		IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
		    IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_CQSIZE,
	};
	for (size_t i = 0; i < ARRAY_SIZE(flag_sets); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i];
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, &l->ring, &p);
		if (ret != -EINVAL)
			return ret;
	}
	return ret;
}

int
loop_new(struct loop **out, unsigned entries, bool want_uring, int *uring_err)
{
	struct loop *l = calloc(1, sizeof(*l));
	int ret = -ENOSYS;

	if (l == NULL)
		return -ENOMEM;
	l->epfd = -1;
	l->flush_tail = &l->flushes;
	if (want_uring) {
		ret = uring_setup(l, entries);
		l->uring = (ret == 0);
	}
	if (uring_err != NULL)
		*uring_err = want_uring ? ret : 0;
	if (!l->uring) {
		l->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (l->epfd < 0) {
			ret = -errno;
			free(l);
			return ret;
		}
	}
	*out = l;
	return 0;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	if (l->uring)
		io_uring_queue_exit(&l->ring);
	if (l->epfd >= 0)
		close(l->epfd);
	free(l->fds);
	free(l);
}

struct io_uring *
loop_ring(struct loop *l)
{
	return l->uring ? &l->ring : NULL;
}

struct io_uring_sqe *
loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe;

	while ((sqe = io_uring_get_sqe(&l->ring)) == NULL) {
		/* SQ full: hand what we have to the kernel and retry. */
		if (io_uring_submit(&l->ring) < 0)
			io_uring_get_events(&l->ring);
	}
	return sqe;
}

void
loop_sqe_set_op(struct loop *l, struct io_uring_sqe *sqe, struct loop_op *op)
{
	op->in_flight = true;
	if (op->kind == LOOP_OP_RAW)
		l->raw_in_flight++;
	io_uring_sqe_set_data(sqe, op);
}

static void
ready_push(struct loop *l, struct loop_op *op, int res)
{
	op->res = res;
	op->next = NULL;
	op->in_flight = true;
	if (l->ready_tail != NULL)
		l->ready_tail->next = op;
	else
		l->ready_head = op;
	l->ready_tail = op;
}

/* ---- epoll backend ---------------------------------------------------- */

static struct ep_fd *
ep_slot(struct loop *l, int fd)
{
	if ((size_t)fd >= l->nfds) {
		size_t n = MAX((size_t)fd + 1, l->nfds * 2);
		struct ep_fd *p = realloc(l->fds, n * sizeof(*p));

		if (p == NULL)
			return NULL;
		memset(p + l->nfds, 0, (n - l->nfds) * sizeof(*p));
		l->fds = p;
		l->nfds = n;
	}
	return &l->fds[fd];
}

/* Make the epoll interest of fd match its waiters. */
static int
ep_update(struct loop *l, int fd, struct ep_fd *s)
{
	struct epoll_event ev = { 0 };

	ev.events = (s->rd ? EPOLLIN | EPOLLRDHUP : 0) | (s->wr ? EPOLLOUT : 0);
	ev.data.fd = fd;
	if (ev.events == s->events && s->added)
		return 0;
	if (!s->added) {
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		s->added = true;
	} else if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
		if (errno != ENOENT && errno != EBADF)
			return -errno;
		/* The fd was closed and maybe reused: register afresh. */
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
	}
	s->events = ev.events;
	return 0;
}

/*
 * Try op's syscall once.  Returns true when op finished (its result is in
 * op->res), false when it would block.
 */
static bool
ep_try(struct loop_op *op)
{
	ssize_t n;

	for (;;) {
		switch (op->kind) {
		case LOOP_OP_RECV:
			n = recv(op->fd, op->buf, op->len, MSG_DONTWAIT);
			break;
		case LOOP_OP_RECVMSG: {
			struct msghdr msg = { .msg_iov = op->iov,
			    .msg_iovlen = (size_t)op->iovcnt };

			n = recvmsg(op->fd, &msg, MSG_DONTWAIT);
			break;
		}
		case LOOP_OP_SEND:
			n = send(op->fd, (char *)op->buf + op->done,
			    op->len - op->done, MSG_DONTWAIT | MSG_NOSIGNAL);
			break;
		case LOOP_OP_SENDMSG: {
			struct msghdr msg = { .msg_iov = op->iov,
			    .msg_iovlen = (size_t)op->iovcnt };

			n = sendmsg(op->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
			break;
		}
		case LOOP_OP_ACCEPT:
			n = accept4(op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			break;
		case LOOP_OP_CONNECT:
			if (!op->connect_started) {
				op->connect_started = true;
				n = connect(op->fd, (struct sockaddr *)&op->addr, op->addrlen);
				if (n < 0 && errno == EINPROGRESS)
					errno = EAGAIN;
			} else {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				errno = err;
				n = err != 0 ? -1 : 0;
			}
			break;
		case LOOP_OP_POLL: {
			struct pollfd pfd = { .fd = op->fd, .events = op->poll_events };

			n = poll(&pfd, 1, 0);
			if (n > 0)
				n = pfd.revents;
			else if (n == 0) {
				errno = EAGAIN;
				n = -1;
			}
			break;
		}
		default:
			op->res = -EINVAL;
			return true;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n < 0) {
			op->res = -errno;
			return true;
		}
		if (op->kind == LOOP_OP_SEND || op->kind == LOOP_OP_SENDMSG) {
			op->done += (size_t)n;
			if (op->kind == LOOP_OP_SEND && op->done < op->len)
				continue;
			if (op->kind == LOOP_OP_SENDMSG) {
				size_t left = (size_t)n;

				while (op->iovcnt > 0 && left >= op->iov->iov_len) {
					left -= op->iov->iov_len;
					op->iov++;
					op->iovcnt--;
				}
				if (op->iovcnt > 0) {
					op->iov->iov_base = (char *)op->iov->iov_base + left;
					op->iov->iov_len -= left;
					continue;
				}
			}
			op->res = (int)MIN(op->done, (size_t)INT_MAX);
			return true;
		}
		op->res = (int)n;
		return true;
	}
}

static void
ep_submit(struct loop *l, struct loop_op *op)
{
	struct ep_fd *s;
	/* CONNECT waits for POLLOUT: it is a writer. */
	bool reader = op->kind == LOOP_OP_RECV || op->kind == LOOP_OP_RECVMSG ||
	    op->kind == LOOP_OP_ACCEPT ||
	    (op->kind == LOOP_OP_POLL && (op->poll_events & POLLIN));
	int ret;

	if (ep_try(op)) {
		ready_push(l, op, op->res);
		return;
	}
	s = ep_slot(l, op->fd);
	if (s == NULL) {
		ready_push(l, op, -ENOMEM);
		return;
	}
	if ((reader && s->rd != NULL) || (!reader && s->wr != NULL)) {
		/* One waiter per direction, as io_uring users keep it too. */
		ready_push(l, op, -EBUSY);
		return;
	}
	op->in_flight = true;
	if (reader)
		s->rd = op;
	else
		s->wr = op;
	ret = ep_update(l, op->fd, s);
	if (ret < 0) {
		if (reader)
			s->rd = NULL;
		else
			s->wr = NULL;
		ready_push(l, op, ret);
	}
}

static void
ep_dispatch(struct loop *l, int fd, uint32_t events)
{
	struct ep_fd *s = &l->fds[fd];
	bool err = events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP);

	if (s->rd != NULL && (events & EPOLLIN || err)) {
		struct loop_op *op = s->rd;

		if (ep_try(op)) {
			s->rd = NULL;
			ready_push(l, op, op->res);
		}
	}
	if (s->wr != NULL && (events & EPOLLOUT || err)) {
		struct loop_op *op = s->wr;

		if (ep_try(op)) {
			s->wr = NULL;
			ready_push(l, op, op->res);
		}
	}
	if (ep_update(l, fd, s) < 0) {
		/* fd gone: fail whatever still waits on it. */
		if (s->rd != NULL)
			ready_push(l, s->rd, -EBADF);
		if (s->wr != NULL)
			ready_push(l, s->wr, -EBADF);
		s->rd = s->wr = NULL;
		s->added = false;
	}
}

/* ---- submission --------------------------------------------------------- */

static void
op_init(struct loop_op *op, enum loop_op_kind kind, int fd)
{
	op->kind = (uint8_t)kind;
	op->fd = fd;
	op->done = 0;
	op->next = NULL;
}

static void
uring_submit_op(struct loop *l, struct loop_op *op)
{
	struct io_uring_sqe *sqe = loop_sqe(l);

	switch (op->kind) {
	case LOOP_OP_RECV:
		io_uring_prep_recv(sqe, op->fd, op->buf, op->len, 0);
		break;
	case LOOP_OP_RECVMSG:
		memset(&op->msg, 0, sizeof(op->msg));
		op->msg.msg_iov = op->iov;
		op->msg.msg_iovlen = (size_t)op->iovcnt;
		io_uring_prep_recvmsg(sqe, op->fd, &op->msg, 0);
		break;
	case LOOP_OP_SEND:
		io_uring_prep_send(sqe, op->fd, (char *)op->buf + op->done,
		    op->len - op->done, MSG_NOSIGNAL | MSG_WAITALL);
		break;
	case LOOP_OP_SENDMSG: {
		struct msghdr *msg = &op->msg;

		memset(msg, 0, sizeof(*msg));
		msg->msg_iov = op->iov;
		msg->msg_iovlen = (size_t)op->iovcnt;
		io_uring_prep_sendmsg(sqe, op->fd, msg, MSG_NOSIGNAL | MSG_WAITALL);
		break;
	}
	case LOOP_OP_ACCEPT:
		io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		break;
	case LOOP_OP_POLL:
		io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->poll_events);
		break;
	case LOOP_OP_CONNECT:
		io_uring_prep_connect(sqe, op->fd, (struct sockaddr *)&op->addr, op->addrlen);
		break;
	}
	loop_sqe_set_op(l, sqe, op);
}

static void
submit(struct loop *l, struct loop_op *op)
{
	if (l->uring)
		uring_submit_op(l, op);
	else
		ep_submit(l, op);
}

void
loop_recv(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len)
{
	op_init(op, LOOP_OP_RECV, fd);
	op->buf = buf;
	op->len = len;
	submit(l, op);
}

void
loop_recvmsg(struct loop *l, struct loop_op *op, int fd, struct iovec *iov, int iovcnt)
{
	op_init(op, LOOP_OP_RECVMSG, fd);
	op->iov = iov;
	op->iovcnt = iovcnt;
	submit(l, op);
}

void
loop_send(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len)
{
	op_init(op, LOOP_OP_SEND, fd);
	op->buf = (void *)buf;
	op->len = len;
	submit(l, op);
}

void
loop_sendmsg(struct loop *l, struct loop_op *op, int fd, struct iovec *iov, int iovcnt)
{
	op_init(op, LOOP_OP_SENDMSG, fd);
	op->iov = iov;
	op->iovcnt = iovcnt;
	submit(l, op);
}

void
loop_accept(struct loop *l, struct loop_op *op, int fd)
{
	op_init(op, LOOP_OP_ACCEPT, fd);
	submit(l, op);
}

void
loop_poll(struct loop *l, struct loop_op *op, int fd, short events)
{
	op_init(op, LOOP_OP_POLL, fd);
	op->poll_events = events;
	submit(l, op);
}

void
loop_connect(struct loop *l, struct loop_op *op, int fd,
    const struct sockaddr_storage *ss, socklen_t len)
{
	op_init(op, LOOP_OP_CONNECT, fd);
	memcpy(&op->addr, ss, len);
	op->addrlen = len;
	op->connect_started = false;
	submit(l, op);
}

void
loop_defer(struct loop *l, struct loop_op *op, int res)
{
	op->kind = LOOP_OP_DEFER;
	ready_push(l, op, res);
}

/* ---- end-of-turn work ------------------------------------------------------ */

void
loop_flush_queue(struct loop *l, struct loop_flush *f)
{
	if (f->queued)
		return;
	f->queued = true;
	f->next = NULL;
	*l->flush_tail = f;
	l->flush_tail = &f->next;
}

void
loop_flush_cancel(struct loop *l, struct loop_flush *f)
{
	struct loop_flush **pp;

	if (!f->queued)
		return;
	for (pp = &l->flushes; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			if (l->flush_tail == &f->next)
				l->flush_tail = pp;
			break;
		}
	}
	f->queued = false;
}

/* Run the queued work; what it queues again runs in the next turn. */
static void
run_flushes(struct loop *l)
{
	struct loop_flush *f = l->flushes;

	l->flushes = NULL;
	l->flush_tail = &l->flushes;
	while (f != NULL) {
		struct loop_flush *next = f->next;

		f->queued = false;
		f->cb(f);
		f = next;
	}
}

/* ---- timers --------------------------------------------------------------- */

void
loop_timer_arm_ns(struct loop *l, struct loop_timer *t, uint64_t ns)
{
	struct loop_timer **pp;

	loop_timer_cancel(l, t);
	t->deadline = now_ns() + ns;
	for (pp = &l->timers; *pp != NULL && (*pp)->deadline <= t->deadline;
	    pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

void
loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms)
{
	loop_timer_arm_ns(l, t, ms * 1000000ull);
}

void
loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	struct loop_timer **pp;

	if (!t->armed)
		return;
	for (pp = &l->timers; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
}

static void
run_timers(struct loop *l)
{
	uint64_t now = now_ns();

	while (l->timers != NULL && l->timers->deadline <= now) {
		struct loop_timer *t = l->timers;

		l->timers = t->next;
		t->armed = false;
		t->cb(t);
	}
}

/* ---- running ---------------------------------------------------------------- */

/* Completion of an io_uring op: requeue short sends, else run the callback. */
static void
uring_complete(struct loop *l, struct loop_op *op, int res)
{
	if (res > 0 && op->kind == LOOP_OP_SEND) {
		op->done += (size_t)res;
		if (op->done < op->len) {
			uring_submit_op(l, op);
			return;
		}
		res = (int)MIN(op->done, (size_t)INT_MAX);
	} else if (res > 0 && op->kind == LOOP_OP_SENDMSG) {
		size_t left = (size_t)res;

		op->done += left;
		while (op->iovcnt > 0 && left >= op->iov->iov_len) {
			left -= op->iov->iov_len;
			op->iov++;
			op->iovcnt--;
		}
		if (op->iovcnt > 0) {
			op->iov->iov_base = (char *)op->iov->iov_base + left;
			op->iov->iov_len -= left;
			uring_submit_op(l, op);
			return;
		}
		res = (int)MIN(op->done, (size_t)INT_MAX);
	} else if (res == -EAGAIN && op->kind != LOOP_OP_RAW) {
		uring_submit_op(l, op);
		return;
	}
	if (op->kind == LOOP_OP_RAW)
		l->raw_in_flight--;
	op->in_flight = false;
	l->stats.completions++;
	op->cb(op, res);
}

static void
run_ready(struct loop *l)
{
	struct loop_op *op = l->ready_head;

	/* Callbacks may queue more; those run on the next turn. */
	l->ready_head = l->ready_tail = NULL;
	while (op != NULL) {
		struct loop_op *next = op->next;

		op->in_flight = false;
		l->stats.completions++;
		op->cb(op, op->res);
		op = next;
	}
}

static int
wait_ms(struct loop *l, int timeout_ms)
{
	if (l->ready_head != NULL || l->flushes != NULL)
		return 0;
	if (l->timers != NULL) {
		uint64_t now = now_ns();
		uint64_t left = l->timers->deadline > now ?
		    (l->timers->deadline - now + 999999) / 1000000 : 0;

		if (timeout_ms < 0 || left < (uint64_t)timeout_ms)
			timeout_ms = (int)MIN(left, (uint64_t)INT_MAX);
	}
	return timeout_ms;
}

/* Run the callbacks of the completions in the ring; how many there were. */
static unsigned
uring_reap(struct loop *l)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&l->ring, head, cqe) {
		struct loop_op *op = io_uring_cqe_get_data(cqe);

		n++;
		/* Kernels before 5.11 (no IORING_FEAT_EXT_ARG): liburing's
		 * timed wait posts a timeout of its own, with this tag, and
		 * drops its completion only when it comes first. */
		if (op != NULL && cqe->user_data != LIBURING_UDATA_TIMEOUT)
			uring_complete(l, op, cqe->res);
	}
	io_uring_cq_advance(&l->ring, n);
	return n;
}

static int
uring_turn(struct loop *l, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	int ret;

	if (timeout_ms == 0) {
		ret = io_uring_submit(&l->ring);
	} else if (timeout_ms > 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		ret = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
	} else {
		ret = io_uring_submit_and_wait(&l->ring, 1);
	}
	l->stats.submits++;
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY && ret != -EAGAIN)
		return ret;
	if (uring_reap(l) == 0 && ret == -EINTR)
		return -EINTR;		/* nothing came: loop_run_once waits on */
	return 0;
}

static int
epoll_turn(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[64];
	int n;

	n = epoll_wait(l->epfd, evs, ARRAY_SIZE(evs), timeout_ms);
	l->stats.submits++;
	if (n < 0)
		return -errno;		/* -EINTR: loop_run_once waits on */
	for (int i = 0; i < n; i++)
		ep_dispatch(l, evs[i].data.fd, evs[i].events);
	return 0;
}

/*
 * Busy polling: rather than sleep, look for completions without sleeping
 * for up to busy_poll_ns (at most until the next timer), and say whether
 * one came.  Only when the last such wait was short (within twice the
 * window): then the next event is likely to come within the window too,
 * and catching it awake saves the wake-up of a sleeping thread, which on a
 * virtual machine whose idle CPUs halt costs tens of microseconds each way.
 * After a long wait (an idle volume, a primary waiting for a slow peer)
 * the loop sleeps at once, so the spinning stops by itself when it stops
 * paying.  Never while disk requests (LOOP_OP_RAW) are in the ring, or
 * held outside it (loop_disk_hold()): their completion comes from the
 * device, and a spinning virtual CPU slowed the host's side of the virtual
 * disk (O_DIRECT 4k writes at queue depth 1 took 150-170 us instead of
 * 115-120 us when the loop polled for them).
 * A poll that finds nothing makes the next 2^misses - 1 eligible turns
 * sleep at once (misses in a row, at most POLL_MISS_MAX), so events that
 * keep coming just too late for the window cost a poll now and then, not
 * one per turn.  On a miss *timeout_ms is reduced by the time spent, so a
 * timer is not late by the window.  Waits of the two classes the owner
 * tells apart (loop_set_poll_class(): e.g. a primary waiting for its
 * peer's acknowledgements, which come too late for the window, against
 * one waiting for the next client request, which does not) are judged
 * apart, each with its own last wait and misses.
 */
#define POLL_MISS_MAX	6

static bool
busy_poll(struct loop *l, uint64_t start, int *timeout_ms, bool disk, unsigned c)
{
	uint64_t limit = l->busy_poll_ns, spent;

	if (limit == 0 || disk || l->last_wait_ns[c] > 2 * limit)
		return false;
	if (l->poll_skip[c] > 0) {
		l->poll_skip[c]--;
		return false;
	}
	if (*timeout_ms > 0 && (uint64_t)*timeout_ms * 1000000u < limit)
		limit = (uint64_t)*timeout_ms * 1000000u;
	l->stats.busy_polls++;
	do {
		unsigned n = 0;

		if (l->uring) {
			/* Submits what the turn queued, runs the deferred task
			 * work and posts its completions, without waiting. */
			if (io_uring_submit_and_get_events(&l->ring) >= 0)
				n = uring_reap(l);
		} else {
			int r = epoll_turn(l, 0);

			if (r < 0 && r != -EINTR)
				return false;
		}
		if (n > 0 || l->ready_head != NULL || l->flushes != NULL) {
			l->stats.busy_poll_hits++;
			l->poll_misses[c] = 0;
			return true;
		}
	} while ((spent = now_ns() - start) < limit);
	if (l->poll_misses[c] < POLL_MISS_MAX)
		l->poll_misses[c]++;
	l->poll_skip[c] = (1u << l->poll_misses[c]) - 1;
	if (*timeout_ms > 0) {
		uint64_t ms = spent / 1000000u;

		*timeout_ms = ms >= (uint64_t)*timeout_ms ? 0 : *timeout_ms - (int)ms;
	}
	return false;
}

/*
 * Wait up to timeout_ms for events and dispatch them.  A wait interrupted
 * with nothing to show for it (EINTR: a stop and continue, a signal
 * handler) waits out the rest, unless loop_stop() was called meanwhile:
 * returning early would make an idle turn look like one that found work
 * at once to busy polling's judgement of the last wait.
 */
static int
wait_turn(struct loop *l, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	int ret;

	for (;;) {
		ret = l->uring ? uring_turn(l, timeout_ms) : epoll_turn(l, timeout_ms);
		if (ret != -EINTR)
			return ret;
		if (l->stop || timeout_ms == 0 || l->ready_head != NULL || l->flushes != NULL)
			return 0;
		if (timeout_ms > 0) {
			uint64_t now = now_ns();

			if (now >= deadline)
				return 0;
			timeout_ms = (int)((deadline - now + 999999) / 1000000);
		}
	}
}

int
loop_run_once(struct loop *l, int timeout_ms)
{
	uint64_t start = 0;
	unsigned c = 0;
	bool disk;
	int ret = 0;

	l->stats.iterations++;
	run_ready(l);
	run_flushes(l);
	timeout_ms = wait_ms(l, timeout_ms);
	disk = l->raw_in_flight > 0;
	if (timeout_ms != 0) {
		start = now_ns();
		if (l->poll_class != NULL)
			c = l->poll_class(l->poll_class_arg) != 0;
	}
	if (timeout_ms == 0 || !busy_poll(l, start, &timeout_ms, disk, c))
		ret = wait_turn(l, timeout_ms);
	if (ret < 0)
		return ret;
	if (start != 0 && !disk)
		l->last_wait_ns[c] = now_ns() - start;
	run_timers(l);
	/* Completions the epoll backend gathered run before returning, so a
	 * caller waiting for one does not sleep through another turn. */
	run_ready(l);
	return 0;
}

void
loop_set_busy_poll(struct loop *l, uint64_t ns)
{
	l->busy_poll_ns = ns;
	for (unsigned c = 0; c < 2; c++) {
		l->last_wait_ns[c] = 0;
		l->poll_misses[c] = l->poll_skip[c] = 0;
	}
}

void
loop_disk_hold(struct loop *l, int delta)
{
	l->raw_in_flight += (unsigned)delta;
}

void
loop_set_poll_class(struct loop *l, unsigned (*fn)(void *), void *arg)
{
	l->poll_class = fn;
	l->poll_class_arg = arg;
}

int
loop_run(struct loop *l)
{
	int ret = 0;

	while (!l->stop && ret == 0)
		ret = loop_run_once(l, -1);
	return ret;
}

void
loop_stop(struct loop *l)
{
	l->stop = true;
}

bool
loop_stopping(struct loop *l)
{
	return l->stop;
}

const struct loop_stats *
loop_get_stats(struct loop *l)
{
	return &l->stats;
}
