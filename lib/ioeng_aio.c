/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libaio engine: reads, writes and fdatasync as iocbs, batched into one
 * io_submit(2) per loop turn; completions signal an eventfd that the loop
 * polls (works on both loop backends), and are reaped with io_getevents(2)
 * without blocking.  fallocate and BLKDISCARD run on the offload pool, and
 * so does fdatasync when the filesystem refuses IOCB_CMD_FDSYNC.
 *
 * Kernel AIO is only asynchronous with O_DIRECT; on a buffered fd
 * io_submit() does the copy itself before returning.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <libaio.h>

#include "ioeng_internal.h"
#include "log.h"

struct aio_eng {
	io_context_t ctx;		/* kernel AIO context, queue_depth events */
	int efd;			/* eventfd, one count per completion */
	struct loop_op poll_op;		/* one-shot POLLIN on efd */
	bool armed;			/* poll_op in flight */
	struct loop_op flush_op;	/* deferred io_submit of the batch */
	bool flush_queued;		/* flush_op waits in the loop */
	struct iocb *iocbs;		/* queue_depth control blocks */
	struct iocb **free;		/* stack of unused iocbs */
	unsigned nfree;			/* entries on the stack */
	struct iocb **batch;		/* prepared, not yet submitted, FIFO */
	unsigned nbatch;		/* entries in batch */
	unsigned submitted;		/* in the kernel, not yet reaped */
	struct io_event *events;	/* reap buffer, queue_depth entries */
};

static void aio_poll_cb(struct loop_op *op, int res);
static void aio_flush_cb(struct loop_op *op, int res);

static int
aio_init(struct ioeng *e)
{
	struct aio_eng *a = calloc(1, sizeof(*a));
	unsigned n = e->queue_depth;
	int ret;

	if (a == NULL)
		return -ENOMEM;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->iocbs = calloc(n, sizeof(*a->iocbs));
	a->free = calloc(n, sizeof(*a->free));
	a->batch = calloc(n, sizeof(*a->batch));
	a->events = calloc(n, sizeof(*a->events));
	ret = a->efd < 0 ? -errno : 0;
	if (ret == 0 && (!a->iocbs || !a->free || !a->batch || !a->events))
		ret = -ENOMEM;
	if (ret == 0)
		ret = io_setup((int)n, &a->ctx);
	if (ret < 0) {
		if (a->efd >= 0)
			close(a->efd);
		free(a->iocbs);
		free(a->free);
		free(a->batch);
		free(a->events);
		free(a);
		return ret;
	}
	for (a->nfree = 0; a->nfree < n; a->nfree++)
		a->free[a->nfree] = &a->iocbs[a->nfree];
	a->poll_op.cb = aio_poll_cb;
	a->poll_op.data = e;
	a->flush_op.cb = aio_flush_cb;
	a->flush_op.data = e;
	e->priv = a;
	return 0;
}

static void
aio_fini(struct ioeng *e)
{
	struct aio_eng *a = e->priv;

	io_destroy(a->ctx);
	close(a->efd);
	free(a->iocbs);
	free(a->free);
	free(a->batch);
	free(a->events);
	free(a);
}

static bool
aio_busy(const struct ioeng *e)
{
	const struct aio_eng *a = e->priv;

	return a->submitted > 0 || a->nbatch > 0 || a->flush_queued || a->armed;
}

/* Watch the eventfd while iocbs are in the kernel. */
static void
aio_arm(struct ioeng *e)
{
	struct aio_eng *a = e->priv;

	if (a->armed || a->submitted == 0)
		return;
	a->armed = true;
	loop_poll(e->l, &a->poll_op, a->efd, POLLIN);
}

static void
aio_issue(struct ioeng *e, struct io_req *r, const struct ioprim *p)
{
	struct aio_eng *a = e->priv;
	struct iocb *cb;

	if (p->kind == PRIM_FALLOC || p->kind == PRIM_DISCARD ||
	    (p->kind == PRIM_FSYNC && e->no_fdsync)) {
		ioeng_offload(e, r, p);
		return;
	}
	/* One primitive per active request: there is always a free iocb. */
	cb = a->free[--a->nfree];
	if (p->kind == PRIM_READ) {
		io_prep_pread(cb, e->fd, p->buf, (size_t)p->len, (long long)p->off);
	} else if (p->kind == PRIM_WRITE) {
		io_prep_pwrite(cb, e->fd, p->buf, (size_t)p->len, (long long)p->off);
		cb->aio_rw_flags = p->rw_flags;
	} else {
		io_prep_fdsync(cb, e->fd);
	}
	cb->data = r;
	io_set_eventfd(cb, a->efd);
	a->batch[a->nbatch++] = cb;
	if (!a->flush_queued) {
		a->flush_queued = true;
		loop_defer(e->l, &a->flush_op, 0);
	}
}

/*
 * An iocb finished (or was refused by io_submit) with res.  A refused
 * fdatasync moves to the offload pool for good; everything else goes to
 * the common completion.
 */
static void
aio_done(struct ioeng *e, struct iocb *cb, int res)
{
	struct aio_eng *a = e->priv;
	struct io_req *r = cb->data;
	bool fdsync = cb->aio_lio_opcode == IO_CMD_FDSYNC;
	struct ioprim p = { .kind = PRIM_FSYNC, .buf_index = -1 };

	a->free[a->nfree++] = cb;
	if (fdsync && res == -EINVAL) {
		if (!e->no_fdsync)
			log_info("%s: IOCB_CMD_FDSYNC refused: fdatasync on a thread",
			    e->path);
		e->no_fdsync = true;
		ioeng_offload(e, r, &p);
		return;
	}
	ioeng_prim_done(e, r, res);
}

/* Submit the batch; a refused iocb completes with the error. */
static void
aio_flush(struct ioeng *e)
{
	struct aio_eng *a = e->priv;
	struct iocb *cb;
	int ret;

	while (a->nbatch > 0) {
		ret = io_submit(a->ctx, (long)a->nbatch, a->batch);
		if (ret > 0) {
			a->submitted += (unsigned)ret;
			/* Disk work in the kernel, its completion comes by
			 * the eventfd: no busy polling meanwhile. */
			loop_disk_hold(e->l, ret);
			a->nbatch -= (unsigned)ret;
			memmove(a->batch, a->batch + ret, a->nbatch * sizeof(*a->batch));
			continue;
		}
		/* Out of kernel slots: the next reap retries the rest. */
		if (ret == -EAGAIN && a->submitted > 0)
			break;
		cb = a->batch[0];
		a->nbatch--;
		memmove(a->batch, a->batch + 1, a->nbatch * sizeof(*a->batch));
		if (ret == 0 || ret == -EAGAIN) {
			struct io_req *r = cb->data;

			log_errno(LOG_ERR, ret == 0 ? -EIO : ret, "%s: io_submit", e->path);
			a->free[a->nfree++] = cb;
			ioeng_prim_fail(e, r, -EIO);
		} else {
			aio_done(e, cb, ret);
		}
	}
	aio_arm(e);
}

static void
aio_flush_cb(struct loop_op *op, int res)
{
	struct ioeng *e = op->data;
	struct aio_eng *a = e->priv;

	a->flush_queued = false;
	aio_flush(e);
}

/* The eventfd fired: reap every finished iocb without blocking. */
static void
aio_poll_cb(struct loop_op *op, int res)
{
	struct ioeng *e = op->data;
	struct aio_eng *a = e->priv;
	struct timespec zero = { 0, 0 };
	uint64_t v;
	int n;

	a->armed = false;
	if (read(a->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_errno(LOG_ERR, -errno, "%s: aio eventfd read", e->path);
	do {
		n = io_getevents(a->ctx, 0, (long)e->queue_depth, a->events, &zero);
		if (n < 0 && n != -EINTR)
			log_errno(LOG_ERR, n, "%s: io_getevents", e->path);
		for (int i = 0; i < n; i++) {
			a->submitted--;
			loop_disk_hold(e->l, -1);
			aio_done(e, a->events[i].obj, (int)(long)a->events[i].res);
		}
	} while (n > 0 || n == -EINTR);
	if (a->nbatch > 0 && !a->flush_queued)
		aio_flush(e);
	aio_arm(e);
}

const struct ioeng_ops ioeng_aio_ops = {
	.name = "libaio",
	.init = aio_init,
	.fini = aio_fini,
	.issue = aio_issue,
	.busy = aio_busy,
	.register_buffers = NULL,
};
