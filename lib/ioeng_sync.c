/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sync engine: every primitive is a blocking system call (pread, pwritev2,
 * fdatasync, fallocate, BLKDISCARD) on the offload pool's threads; the
 * loop thread never blocks on the disk.  For tests and for systems where
 * neither io_uring nor libaio works.
 */
#include "ioeng_internal.h"

/* Start the pool now, so a missing thread shows at open, not on first I/O. */
static int
sync_init(struct ioeng *e)
{
	return offload_new(e->l, e->threads, &e->off);
}

static void
sync_fini(struct ioeng *e)
{
}

static bool
sync_busy(const struct ioeng *e)
{
	return false;
}

static void
sync_issue(struct ioeng *e, struct io_req *r, const struct ioprim *p)
{
	ioeng_offload(e, r, p);
}

const struct ioeng_ops ioeng_sync_ops = {
	.name = "sync",
	.init = sync_init,
	.fini = sync_fini,
	.issue = sync_issue,
	.busy = sync_busy,
	.register_buffers = NULL,
};
