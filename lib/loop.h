/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The event loop: one per daemon, one thread.  Everything the daemon does is
 * an operation submitted here and finished by a completion callback:
 * socket receive/send/accept, fd polls, disk I/O prepared by the io engine,
 * and timers.
 *
 * Two backends give the same completion semantics:
 *  - io_uring (default): every operation is an SQE, user_data points at the
 *    struct loop_op, completions are reaped in one batch per iteration;
 *  - epoll (only where io_uring is unavailable: ENOSYS, EPERM,
 *    kernel.io_uring_disabled): socket operations are tried non-blocking and
 *    parked on the fd until epoll says it is ready.  Disk I/O then goes
 *    through the libaio or sync engines, which complete through a polled fd.
 *
 * Rules for users:
 *  - A struct loop_op belongs to the loop from submission until its callback
 *    runs; the callback may resubmit it.  Callbacks never run from inside a
 *    submit call.
 *  - Sockets handed to the loop must be non-blocking (loop_set_nonblock()).
 *  - To abandon a socket with operations in flight, shutdown(2) it: pending
 *    receives complete with 0, sends with -EPIPE; close it once the last
 *    callback ran.
 */
#ifndef BLKMIRROR_LOOP_H
#define BLKMIRROR_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/socket.h>

struct io_uring;
struct io_uring_sqe;
struct loop;
struct loop_op;

/* Completion callback.  res: bytes transferred, a new fd (accept), poll
 * revents, or a negative errno. */
typedef void (*loop_cb)(struct loop_op *op, int res);

enum loop_op_kind {
	LOOP_OP_NONE = 0,
	LOOP_OP_RECV,		/* one recv(2); res = bytes (0 = EOF) */
	LOOP_OP_SEND,		/* send all of buf; res = len or -errno */
	LOOP_OP_SENDMSG,	/* send all of iov[]; res = total or -errno */
	LOOP_OP_ACCEPT,		/* accept4 non-blocking; res = fd */
	LOOP_OP_POLL,		/* one-shot poll; res = revents */
	LOOP_OP_RAW,		/* SQE prepared by the caller (io engine) */
	LOOP_OP_DEFER,		/* run the callback on the next iteration */
	LOOP_OP_CONNECT,	/* connect(2) a non-blocking socket; res = 0 */
	LOOP_OP_RECVMSG,	/* one recvmsg(2) into iov[]; res = bytes (0 = EOF) */
};

struct loop_op {
	loop_cb cb;			/* completion callback */
	void *data;			/* owner's context, untouched by the loop */
	struct loop_op *next;		/* loop-private list link */
	int fd;				/* socket or fd being polled */
	uint8_t kind;			/* enum loop_op_kind */
	bool in_flight;			/* submitted, callback not yet run */
	short poll_events;		/* LOOP_OP_POLL: POLLIN/POLLOUT */
	void *buf;			/* RECV/SEND buffer */
	size_t len;			/* RECV capacity / SEND length */
	size_t done;			/* SEND/SENDMSG bytes sent so far */
	struct iovec *iov;		/* SENDMSG vector (advanced in place),
					 * RECVMSG vector (left alone) */
	int iovcnt;			/* SENDMSG entries left, RECVMSG entries */
	struct msghdr msg;		/* SENDMSG/RECVMSG header while in flight */
	struct sockaddr_storage addr;	/* CONNECT destination */
	socklen_t addrlen;		/* CONNECT: bytes of addr */
	bool connect_started;		/* epoll CONNECT: connect(2) issued */
	int res;			/* DEFER: value passed to the callback */
};

/* A one-shot timer; the callback runs from the loop after the deadline. */
struct loop_timer {
	void (*cb)(struct loop_timer *t);	/* expiry callback */
	void *data;				/* owner's context */
	uint64_t deadline;			/* now_ns() value, loop-private */
	struct loop_timer *next;		/* sorted list, loop-private */
	bool armed;				/* on the timer list */
};

/*
 * Work deferred to the end of the loop turn, run once before the loop waits
 * for completions: lets a producer of many small sends (replies, frames)
 * issue one send for all it produced in the turn.
 */
struct loop_flush {
	void (*cb)(struct loop_flush *f);	/* the deferred work */
	void *data;				/* owner's context */
	struct loop_flush *next;		/* loop-private list link */
	bool queued;				/* on the list */
};

/* Loop statistics, for status output and tests. */
struct loop_stats {
	uint64_t iterations;		/* loop turns */
	uint64_t completions;		/* callbacks run */
	uint64_t submits;		/* io_uring_enter / epoll_wait calls */
	uint64_t busy_polls;		/* turns that polled before sleeping */
	uint64_t busy_poll_hits;	/* ... and found work without sleeping */
};

/*
 * Create a loop.  want_uring = false forces the epoll backend.  When io_uring
 * cannot be set up, the epoll backend is used and *uring_err (if non-NULL)
 * gets the negative errno io_uring failed with (0 when io_uring works).
 * The environment variable BLKMIRROR_NO_IO_URING=1 makes io_uring setup fail
 * with -EPERM, as kernel.io_uring_disabled=2 would (for tests).
 */
int loop_new(struct loop **out, unsigned entries, bool want_uring, int *uring_err);
void loop_free(struct loop *l);

/* The io_uring behind the loop, or NULL for the epoll backend. */
struct io_uring *loop_ring(struct loop *l);
/* A free SQE (submitting the queue first if it is full); io_uring only.
 * The caller sets user_data with loop_sqe_set_op(). */
struct io_uring_sqe *loop_sqe(struct loop *l);
void loop_sqe_set_op(struct loop *l, struct io_uring_sqe *sqe, struct loop_op *op);

void loop_recv(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len);
/* One scattering receive: fills iov[0], then iov[1]... with what the socket
 * has (like loop_recv, it completes with the first bytes available).  iov
 * must stay valid until the callback. */
void loop_recvmsg(struct loop *l, struct loop_op *op, int fd, struct iovec *iov, int iovcnt);
void loop_send(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len);
void loop_sendmsg(struct loop *l, struct loop_op *op, int fd, struct iovec *iov, int iovcnt);
void loop_accept(struct loop *l, struct loop_op *op, int fd);
void loop_poll(struct loop *l, struct loop_op *op, int fd, short events);
void loop_connect(struct loop *l, struct loop_op *op, int fd,
    const struct sockaddr_storage *ss, socklen_t len);
/* Run op->cb(op, res) on the next loop iteration. */
void loop_defer(struct loop *l, struct loop_op *op, int res);

/* Run f->cb once before the loop next waits (no-op if already queued). */
void loop_flush_queue(struct loop *l, struct loop_flush *f);
void loop_flush_cancel(struct loop *l, struct loop_flush *f);

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_arm_ns(struct loop *l, struct loop_timer *t, uint64_t ns);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* Run until loop_stop(); returns 0 or a negative errno on a fatal error. */
int loop_run(struct loop *l);
/* One iteration: wait at most timeout_ms (-1: until something happens). */
int loop_run_once(struct loop *l, int timeout_ms);
void loop_stop(struct loop *l);
bool loop_stopping(struct loop *l);
const struct loop_stats *loop_get_stats(struct loop *l);
/*
 * Busy polling: a turn that would sleep first looks for work without
 * sleeping for up to ns nanoseconds (0, the default, turns it off), when
 * the last turn that waited found work within twice that; never while
 * LOOP_OP_RAW (disk) ops are in flight, nor disk work held with
 * loop_disk_hold() (an offload thread's BLKDISCARD, whose completion comes
 * through an eventfd).  Trades CPU time for the latency of waking a
 * sleeping thread.
 */
void loop_set_busy_poll(struct loop *l, uint64_t ns);
/* Disk work in flight outside the ring: +1 when it starts, -1 when done. */
void loop_disk_hold(struct loop *l, int delta);
/*
 * Busy polling judges two classes of waits apart: fn(arg), called before
 * a turn waits, says which (0 or non-zero; NULL fn: always 0).  For waits
 * whose next event comes at a different pace, such as a primary waiting
 * for its peer's acknowledgements rather than for its clients.
 */
void loop_set_poll_class(struct loop *l, unsigned (*fn)(void *), void *arg);

int loop_set_nonblock(int fd);

#endif
