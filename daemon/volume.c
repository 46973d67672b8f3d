/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The volume: the I/O path every frontend uses.  It orders writes (two
 * writes that overlap are never in flight together: the later one waits for
 * the earlier, so the disk ends with the bytes of the last one submitted —
 * the rule the replication keeps on the peer too) and hands requests to the
 * io engine.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"
#include "log.h"
#include "util.h"

/* Park vr behind blocker; it is resubmitted when blocker completes. */
static void
wait_behind(struct vol_req *blocker, struct vol_req *vr)
{
	vr->wait_next = NULL;
	if (blocker->waiters == NULL)
		blocker->waiters = vr;
	else
		blocker->waiters_last->wait_next = vr;
	blocker->waiters_last = vr;
}

static void try_start(struct daemon *d, struct vol_req *vr);

/* Local disk and (if shipped) the peer are done: complete vr. */
static void
finish(struct daemon *d, struct vol_req *vr)
{
	struct vol_req *w = vr->waiters, *next;

	if (vr->is_write)
		rangeidx_remove(&d->writes, &vr->wnode);
	meta_write_done(d, vr);
	vr->waiters = vr->waiters_last = NULL;
	/* Release the waiters in arrival order; each re-checks conflicts. */
	for (; w != NULL; w = next) {
		next = w->wait_next;
		try_start(d, w);
	}
	vr->done(vr, vr->local_res < 0 || !(vr->peer_only_copy || vr->local_lost) ?
	    vr->local_res : vr->peer_res);
}

/*
 * A TRIM or WRITE_ZEROES that this disk could not do (-ENOTSUP,
 * -EOPNOTSUPP: not a disk error) went to the peer, which may have done it:
 * the two disks may differ over its range.  Mark it, and keep it marked
 * whatever the peer answers, so that a resync copies this node's data.
 * (FAST_ZERO is refused before shipping when the engine knows it cannot
 * zero fast; this catches what it could not know.)
 */
static void
unsupported_shipped(struct daemon *d, struct vol_req *vr, int res)
{
	static uint64_t count;

	if (d->md == NULL || vr->io.opcode == IO_FLUSH)
		return;
	if (count++ % 1000 == 0)
		log_warn("disk: %s at offset %" PRIu64 " length %" PRIu64 " unsupported "
		    "here (%s) but sent to the peer: range marked out of sync "
		    "(%" PRIu64 " such requests)", vr->io.opcode == IO_TRIM ? "trim" :
		    "write-zeroes", vr->io.offset, vr->io.len, strerror(-res), count);
	meta_set_oos(d, vr->io.offset, vr->io.len);
	repl_keep_marked(d, vr);
}

static void
io_done(struct io_req *io, int res)
{
	struct vol_req *vr = io->data;
	struct daemon *d = vr->d;

	d->inflight--;
	if (res < 0 && res != -ENOTSUP && res != -EOPNOTSUPP) {
		bool taken;

		if (d->disk_errors++ % 1000 == 0)
			log_errno(LOG_ERR, res, "disk: %s at offset %" PRIu64 " length %" PRIu64
			    " failed (%" PRIu64 " disk errors so far)",
			    io->opcode == IO_READ ? "read" : io->opcode == IO_FLUSH ? "flush" :
			    "write", io->offset, io->len, d->disk_errors);
		/* on-io-error: the peer may take over (diskfail.c). */
		res = diskfail_io_error(d, vr, res, &taken);
		if (taken)
			return;		/* a read re-sent to the peer */
	} else if (diskfail_detached(d) && !vr->is_resync) {
		res = diskfail_after_detach(d, vr, res);
	} else if (res < 0 && vr->shipped) {
		unsupported_shipped(d, vr, res);
	}
	vr->local_done = true;
	vr->local_res = res;
	if (vr->local_cb != NULL)
		vr->local_cb(vr, res);
	if (vr->shipped && !vr->peer_done)
		return;		/* the peer's acknowledgement completes it */
	finish(d, vr);
}

void
vol_fail(struct daemon *d, struct vol_req *vr, int res)
{
	vr->local_done = true;
	vr->local_res = res;
	finish(d, vr);
}

void
vol_peer_done(struct daemon *d, struct vol_req *vr, int res)
{
	vr->peer_done = true;
	vr->peer_res = res;
	if (vr->local_done)
		finish(d, vr);
}

/* Conflicts and metadata are settled: local I/O and replication together. */
void
vol_start(struct daemon *d, struct vol_req *vr)
{
	if (d->link != NULL && !vr->is_resync && repl_congested(d, vr))
		return;		/* restarted when the async queue drains */
	vr->io.cb = io_done;
	vr->io.data = vr;
	if (diskfail_detached(d) && !vr->is_resync) {
		/* Diskless primary: the peer's disk is the only one (its
		 * WRITE_ACK completes vr: repl_ship sets peer_only_copy). */
		vr->shipped = d->link != NULL && repl_ship(d, vr);
		vr->local_done = true;
		vr->local_res = vr->shipped ? 0 : -EIO;
		if (!vr->shipped || vr->peer_done)
			finish(d, vr);
		return;
	}
	d->inflight++;
	/* Resync I/O is held by its peer acknowledgement too (resync.c). */
	vr->shipped = vr->is_resync ? vr->local_cb != NULL :
	    d->link != NULL && repl_ship(d, vr);
	ioeng_submit(d->eng, &vr->io);
}

/*
 * Start vr unless an older write that overlaps it is still running or
 * waiting: then wait behind the newest such one (d->writes finds it in
 * O(log n)), and try again when it completes.  The oldest of any overlapping
 * group always runs, so the group drains in submission order.
 */
static void
try_start(struct daemon *d, struct vol_req *vr)
{
	if (vr->is_write) {
		struct rangeidx_node *o = rangeidx_last_before(&d->writes, vr->io.offset,
		    vr->io.offset + vr->io.len, vr->seq);

		if (o != NULL) {
			wait_behind(container_of(o, struct vol_req, wnode), vr);
			return;
		}
		if (vr->is_resync && !vr->bits_first)
			vol_start(d, vr);
		else
			meta_prepare_write(d, vr);
		return;
	}
	vol_start(d, vr);
}

/*
 * A primary's write must hold every activity-log extent it covers at once
 * (meta.c al_pin), and the AL has al-extents slots: a TRIM or WRITE_ZEROES
 * of up to 4 GiB (1025 extents), or a 32 MiB write with a small
 * al-extents, could never get them all and would wait for ever.  Such a
 * request runs as pieces of at most half the slots (and half of one
 * transaction's updates), one after the other, each through the whole
 * write path (conflicts, AL, replication); the requester sees one
 * completion, with the first error.  Overlapping requests submitted
 * meanwhile may run between two pieces: NBD leaves the order of
 * overlapping requests in flight undefined, and the peer applies the
 * pieces in the same order as this node, so the two disks stay equal.
 */
struct vol_split {
	void (*done)(struct vol_req *vr, int res);	/* the requester's */
	uint64_t offset, len;		/* the whole request */
	void *buf;			/* its payload (WRITE) */
	struct loop_op op;		/* the next piece starts from the loop */
};

/* Largest number of AL extents one piece may span (0: no splitting). */
static uint32_t
split_extents(const struct daemon *d, const struct vol_req *vr)
{
	const struct meta *m = d->md;

	if (m == NULL || m->detached || d->role != ROLE_PRIMARY || vr->is_resync ||
	    !vr->is_write || vr->io.opcode == IO_FLUSH || vr->io.len == 0)
		return 0;
	return MIN(m->al.nr, MD_AL_UPDATES_PER_TR) / 2;
}

/* The piece of [off, end) starting at off: at most max extents. */
static uint64_t
piece_len(uint64_t off, uint64_t end, uint32_t max)
{
	uint64_t lim = ((off >> MD_AL_EXTENT_SHIFT) + max) << MD_AL_EXTENT_SHIFT;

	return MIN(end, lim) - off;
}

/* The requester's completion, with the whole request's range. */
static void
split_end(struct vol_req *vr, int res)
{
	struct vol_split *sp = vr->split;

	vr->io.offset = sp->offset;
	vr->io.len = sp->len;
	vr->io.buf = sp->buf;
	vr->done = sp->done;
	vr->split = NULL;
	free(sp);
	vr->d->splits_live--;
	vr->done(vr, res);
}

static void
split_next(struct loop_op *op, int res)
{
	struct vol_req *vr = op->data;
	struct daemon *d = vr->d;

	/* No new piece once the daemon stops (its metadata may be gone
	 * before the piece would run) or the node stepped down. */
	if (d->stopping)
		res = -ESHUTDOWN;
	else if (d->md == NULL || d->role != ROLE_PRIMARY)
		res = -EIO;
	else
		res = 0;
	if (res < 0)
		split_end(vr, res);
	else
		vol_submit(d, vr);
}

static void
split_piece_done(struct vol_req *vr, int res)
{
	struct vol_split *sp = vr->split;
	uint64_t next = vr->io.offset + vr->io.len, end = sp->offset + sp->len;
	uint32_t max;

	if (res < 0 || next >= end) {
		split_end(vr, res);
		return;
	}
	/* The disk detached meanwhile (a diskless primary has no AL): the
	 * rest goes to the peer as one piece. */
	max = split_extents(vr->d, vr);
	vr->io.offset = next;
	vr->io.len = max == 0 ? end - next : piece_len(next, end, max);
	if (vr->io.opcode == IO_WRITE)
		vr->io.buf = (char *)sp->buf + (next - sp->offset);
	/* From the loop, not from inside this completion: the caller of
	 * finish() may still be working on vr's lists. */
	sp->op.cb = split_next;
	sp->op.data = vr;
	loop_defer(vr->d->loop, &sp->op, 0);
}

/* Split vr if it spans more extents than a piece may; false: no memory. */
static bool
split_maybe(struct daemon *d, struct vol_req *vr)
{
	uint32_t max = split_extents(d, vr);
	struct vol_split *sp;

	if (max == 0 || vr->split != NULL || md_al_extent_of(vr->io.offset + vr->io.len - 1) -
	    md_al_extent_of(vr->io.offset) < max)
		return true;
	if ((sp = malloc(sizeof(*sp))) == NULL)
		return false;
	sp->done = vr->done;
	sp->offset = vr->io.offset;
	sp->len = vr->io.len;
	sp->buf = vr->io.buf;
	vr->split = sp;
	vr->done = split_piece_done;
	vr->io.len = piece_len(vr->io.offset, vr->io.offset + vr->io.len, max);
	d->split_requests++;
	d->splits_live++;
	return true;
}

void
vol_submit(struct daemon *d, struct vol_req *vr)
{
	/* A primary sync target reads out-of-sync blocks from the peer. */
	if (d->link != NULL && !vr->is_resync && peerread_divert(d, vr))
		return;
	if (!split_maybe(d, vr)) {
		vr->done(vr, -ENOMEM);
		return;
	}
	vr->seq = ++d->vol_seq;
	vr->waiters = vr->waiters_last = NULL;
	vr->al_pinned = vr->shipped = vr->local_done = vr->peer_done = false;
	vr->peer_only_copy = vr->local_lost = vr->local_failed = false;
	vr->local_res = vr->peer_res = 0;
	vr->pnext = NULL;
	vr->repl_ctx = NULL;
	if (vr->is_write)
		rangeidx_insert(&d->writes, &vr->wnode, vr->io.offset, vr->io.len, vr->seq);
	try_start(d, vr);
}
