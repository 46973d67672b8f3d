/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * io_uring engine: primitives are SQEs on the loop's own ring, so one
 * io_uring_enter per loop turn submits disk I/O and socket I/O together.
 * user_data is the request's loop_op; its callback is ioeng_prim_cb().
 * BLKDISCARD has no io_uring opcode here and runs on the offload pool.
 * Small buffered writes are written inline (inline_write()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <liburing.h>

#include "ioeng_internal.h"
#include "log.h"
#include "util.h"

struct uring_eng {
	struct io_uring *ring;		/* the loop's ring */
	uint64_t inline_resume;		/* no inline writes before (now_ns) */
	struct iovec *bufs;		/* registered buffers, NULL if none */
	unsigned nbufs;			/* entries in bufs */
};

static int
uring_init(struct ioeng *e)
{
	struct uring_eng *u;
	struct io_uring *ring = loop_ring(e->l);

	if (ring == NULL)
		return -ENOSYS;
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->ring = ring;
	e->priv = u;
	return 0;
}

static void
uring_fini(struct ioeng *e)
{
	struct uring_eng *u = e->priv;

	if (u->bufs != NULL)
		io_uring_unregister_buffers(u->ring);
	free(u->bufs);
	free(u);
}

static bool
uring_busy(const struct ioeng *e)
{
	return false;
}

/* Registered buffer index usable for p, or -1 (plain read/write). */
static int
fixed_index(const struct uring_eng *u, const struct ioprim *p)
{
	const struct iovec *v;
	uintptr_t b = (uintptr_t)p->buf, base;

	if (p->buf_index < 0 || (unsigned)p->buf_index >= u->nbufs)
		return -1;
	v = &u->bufs[p->buf_index];
	base = (uintptr_t)v->iov_base;
	if (b < base || b + p->len > base + v->iov_len)
		return -1;
	return p->buf_index;
}

/*
 * A small buffered write without FUA, written on the loop thread instead of
 * io_uring's io-wq (see "Inline buffered writes" in ioengine.h).  False
 * when p does not qualify or a recent inline write blocked.
 */
static bool
inline_write(struct ioeng *e, struct io_req *r, const struct ioprim *p)
{
	struct uring_eng *u = e->priv;
	struct iovec v = { p->buf, (size_t)p->len };
	uint64_t t0, t1;
	ssize_t n;

	if (p->kind != PRIM_WRITE || e->direct || !e->inline_writes ||
	    p->rw_flags != 0 || p->len > IOENG_INLINE_WRITE_MAX)
		return false;
	t0 = now_ns();
	if (t0 < u->inline_resume)
		return false;
	n = pwritev2(e->fd, &v, 1, (off_t)p->off, 0);
	if (n < 0)
		n = -errno;
	t1 = now_ns();
	e->stats.inline_writes++;
	if ((t1 - t0 > IOENG_INLINE_SLOW_NS && !e->fast_inline) ||
	    e->slow_inline) {
		e->stats.inline_backoffs++;
		u->inline_resume = t1 + IOENG_INLINE_BACKOFF_NS;
		log_debug("%s: an inline write took %llu us; writes go to "
		    "io_uring's workers for %u ms", e->path,
		    (unsigned long long)(t1 - t0) / 1000,
		    IOENG_INLINE_BACKOFF_NS / 1000000);
	}
	r->op.cb = ioeng_prim_cb;
	r->op.data = e;
	loop_defer(e->l, &r->op, (int)n);	/* n <= IOENG_INLINE_WRITE_MAX */
	return true;
}

static void
uring_issue(struct ioeng *e, struct io_req *r, const struct ioprim *p)
{
	struct uring_eng *u = e->priv;
	struct io_uring_sqe *sqe;
	int idx;

	if (p->kind == PRIM_DISCARD) {
		ioeng_offload(e, r, p);
		return;
	}
	if (inline_write(e, r, p))
		return;
	sqe = loop_sqe(e->l);
	switch (p->kind) {
	case PRIM_READ:
	case PRIM_WRITE:
		idx = fixed_index(u, p);
		if (p->kind == PRIM_READ && idx >= 0)
			io_uring_prep_read_fixed(sqe, e->fd, p->buf, (unsigned)p->len, p->off, idx);
		else if (p->kind == PRIM_READ)
			io_uring_prep_read(sqe, e->fd, p->buf, (unsigned)p->len, p->off);
		else if (idx >= 0)
			io_uring_prep_write_fixed(sqe, e->fd, p->buf, (unsigned)p->len, p->off, idx);
		else
			io_uring_prep_write(sqe, e->fd, p->buf, (unsigned)p->len, p->off);
		sqe->rw_flags = p->rw_flags;
		break;
	case PRIM_FSYNC:
		io_uring_prep_fsync(sqe, e->fd, IORING_FSYNC_DATASYNC);
		break;
	case PRIM_FALLOC:
		io_uring_prep_fallocate(sqe, e->fd, p->mode, (off_t)p->off, (off_t)p->len);
		break;
	}
	r->op.cb = ioeng_prim_cb;
	r->op.data = e;
	r->op.kind = LOOP_OP_RAW;
	loop_sqe_set_op(e->l, sqe, &r->op);
}

/*
 * Register the caller's buffer pool with the ring (one set per ring).  The
 * iovecs are kept so each request can be checked against its buffer.
 */
static int
uring_register(struct ioeng *e, const struct iovec *iov, unsigned n)
{
	struct uring_eng *u = e->priv;
	int ret;

	if (u->bufs != NULL)
		return -EBUSY;
	if (n == 0)
		return -EINVAL;
	u->bufs = calloc(n, sizeof(*iov));
	if (u->bufs == NULL)
		return -ENOMEM;
	ret = io_uring_register_buffers(u->ring, iov, n);
	if (ret < 0) {
		log_errno(LOG_INFO, ret, "%s: io_uring buffer registration", e->path);
		free(u->bufs);
		u->bufs = NULL;
		return ret;
	}
	memcpy(u->bufs, iov, n * sizeof(*iov));
	u->nbufs = n;
	return 0;
}

const struct ioeng_ops ioeng_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.issue = uring_issue,
	.busy = uring_busy,
	.register_buffers = uring_register,
};
