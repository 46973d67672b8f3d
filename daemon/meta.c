/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Runtime metadata of a two-node resource: the superblock, the activity log
 * and the dirty bitmap (formats in lib/md.c, docs/on-disk-format.md).
 *
 * Start-up and shutdown use plain synchronous I/O (the loop is not running);
 * everything in between goes through the io engine as FUA writes, one per
 * kind at a time:
 *  - superblock: requests that arrive while a write is in flight are all
 *    served by one more write;
 *  - activity log: a primary's write to an extent that is not active waits
 *    until the transaction naming it is durable (DESIGN.md write path 3);
 *  - bitmap: a write the peer will not get waits until the bitmap blocks of
 *    its range are durable with its bits set (write path 4).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "repl.h"
#include "util.h"

static void *
aligned_block(void)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, MD_BLOCK_SIZE) != 0)
		die(EX_OSERR, "out of memory for metadata buffers");
	memset(p, 0, MD_BLOCK_SIZE);
	return p;
}

static void retry_tick(struct loop_timer *t);
static void conn_release(struct loop_timer *t);

/* After a primary crash, every extent of the activity log is out of sync. */
static void
mark_crashed_primary(struct meta *m, const uint32_t *ext, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		md_bitmap_set_range(&m->bm, (uint64_t)ext[i] << MD_AL_EXTENT_SHIFT,
		    MD_AL_EXTENT_SIZE);
	m->sb.flags |= MD_FL_CRASHED_PRIMARY;
	m->sb.flags &= ~MD_FL_PRIMARY;
	log_warn("metadata: this node was primary and did not shut down cleanly: "
	    "%" PRIu32 " activity-log extents (%" PRIu64 " MiB) marked out of sync",
	    n, ((uint64_t)n << MD_AL_EXTENT_SHIFT) >> 20);
}

static int
open_meta(struct daemon *d, struct meta *m)
{
	const char *md_path = strcmp(d->self->meta_disk, "internal") == 0 ?
	    NULL : d->self->meta_disk;
	struct ioeng_opts o = { .kind = d->conf.io_engine, .direct = true,
	    .io_align = MD_BLOCK_SIZE, .queue_depth = 16, .threads = 1 };
	int ret;

	m->loc.internal = md_path == NULL;
	m->loc.disk_bytes = ioeng_size(d->eng);
	m->plain_fd = open(md_path ? md_path : d->self->disk, O_RDWR | O_CLOEXEC);
	if (m->plain_fd < 0)
		return -errno;
	m->loc.fd = m->plain_fd;
	if (md_path == NULL) {
		m->eng = d->eng;
		return 0;
	}
	/* As the disk (main.c disk_open): one daemon per meta-disk. */
	if (lock_exclusive(m->plain_fd) == -EWOULDBLOCK) {
		log_err("meta-disk %s is in use by another blkmirrord (or blkmirrorctl "
		    "create-md)", md_path);
		return -EBUSY;
	}
	ret = ioeng_open(d->loop, md_path, &o, &m->eng);
	m->own_eng = ret == 0;
	return ret;
}

int
meta_attach(struct daemon *d)
{
	struct meta *m = calloc(1, sizeof(*m));
	struct md_al_recovery rec;
	uint32_t *ext = NULL;
	int ret;

	if (m == NULL)
		return -ENOMEM;
	d->md = m;
	m->d = d;
	m->bm_want = MD_BM_NONE;
	m->retry_timer.cb = retry_tick;
	m->retry_timer.data = d;
	m->conn_tail = &m->conn_parked;
	m->conn_timer.cb = conn_release;
	m->conn_timer.data = d;
	if ((ret = open_meta(d, m)) < 0) {
		if (ret != -EBUSY)	/* open_meta said why */
			log_errno(LOG_ERR, ret, "metadata: cannot open %s",
			    d->self->meta_disk);
		return ret;
	}
	ret = md_read(&m->loc, &m->sb, &m->slot, &m->layout, &m->bm, &rec, &ext);
	if (ret == -ENOENT || ret == -ENODATA) {
		log_err("metadata: none found on %s (meta-disk %s): create it with "
		    "'blkmirrorctl -c %s -n %s create-md'", d->self->disk,
		    d->self->meta_disk, d->conf.path, d->self->name);
		return ret;
	}
	if (ret == -EUCLEAN) {
		log_err("metadata: both superblock slots on %s (meta-disk %s) are damaged "
		    "(torn or corrupt; 'blkmirrorctl dump-md' shows them): refusing to start; "
		    "if the peer holds good data, 'blkmirrorctl -c %s -n %s create-md --force' "
		    "makes this disk a full resync target", d->self->disk, d->self->meta_disk,
		    d->conf.path, d->self->name);
		return ret;
	}
	if (ret < 0) {
		log_errno(LOG_ERR, ret, "metadata: cannot read it from %s", d->self->disk);
		return ret;
	}
	if (m->sb.flags & MD_FL_PRIMARY)
		mark_crashed_primary(m, ext, rec.n_extents);
	free(ext);
	if ((ret = md_al_init(&m->al, m->sb.al_extents, m->layout.al_tr_count)) < 0)
		return ret;
	md_al_set_position(&m->al, rec.next_tr, rec.next_index);
	m->sb_buf = aligned_block();
	m->al_buf = aligned_block();
	m->bm_buf = aligned_block();
	/* From here on the metadata says "running": no clean shutdown. */
	m->sb.flags &= ~MD_FL_CLEAN_SHUTDOWN;
	if ((ret = md_write_bitmap(&m->loc, &m->layout, &m->bm)) < 0 ||
	    (ret = md_write_sb(&m->loc, &m->sb, &m->slot)) < 0) {
		log_errno(LOG_ERR, ret, "metadata: cannot write it");
		return ret;
	}
	d->epoch = m->sb.epoch;
	log_info("metadata: %s, data %" PRIu64 " bytes, %" PRIu64 " bytes out of sync, "
	    "current uuid %016" PRIx64 ", epoch %" PRIu64,
	    m->loc.internal ? "internal" : d->self->meta_disk, m->layout.data_bytes,
	    md_bitmap_set_bytes(&m->bm), m->sb.uuids.current, m->sb.epoch);
	return 0;
}

/*
 * Let the asynchronous metadata writes in flight (and those their
 * completions start) finish before the final synchronous ones: their
 * callbacks use m, and an older block landing after the final write would
 * undo it.
 */
static void
drain_writes(struct daemon *d)
{
	struct meta *m = d->md;
	uint64_t deadline = now_ns() + 10000000000ull;

	while (m->sb_busy || m->bm_busy || m->al.tr_busy || m->al_flush_busy) {
		int ret;

		if (now_ns() > deadline) {
			log_msg(LOG_CRIT, "metadata: writes still running after 10 s at shutdown; "
			    "exiting without waiting for them");
			_exit(70);	/* EX_SOFTWARE: not a clean shutdown */
		}
		ret = loop_run_once(d->loop, 5);
		if (ret < 0) {
			log_errno(LOG_CRIT, ret, "metadata: loop failed while waiting for "
			    "metadata writes");
			return;
		}
	}
}

void
meta_detach(struct daemon *d, bool clean)
{
	struct meta *m = d->md;
	int ret;

	if (m == NULL)
		return;
	/* No new AL/bitmap write, and no retry armed, from here: the final
	 * synchronous writes below cover them. */
	m->retry_wait = true;
	drain_writes(d);
	loop_timer_cancel(d->loop, &m->retry_timer);
	loop_timer_cancel(d->loop, &m->conn_timer);
	loop_timer_cancel(d->loop, &m->settle_timer);
	m->demoting = m->demote_writing = false;
	if (clean) {
		m->sb.flags |= MD_FL_CLEAN_SHUTDOWN;
		m->sb.flags &= ~MD_FL_PRIMARY;
	}
	/* The final bitmap may hold clears: the data they vouch for is made
	 * durable first, as for every bitmap write (bm_kick). */
	if (m->detached)
		log_notice("metadata: the disk is detached: no final metadata write (it "
		    "was marked for a full resync when it was detached)");
	else if (fdatasync(ioeng_fd(d->eng)) < 0)
		log_errno(LOG_ERR, -errno, "metadata: final flush of the data device failed: "
		    "no final metadata write (the next start replays the activity log, and "
		    "the bitmap on disk has every mark, if not every clear)");
	else if ((ret = md_write_bitmap(&m->loc, &m->layout, &m->bm)) < 0 ||
	    (ret = md_write_sb(&m->loc, &m->sb, &m->slot)) < 0)
		log_errno(LOG_ERR, ret, "metadata: final write failed");
	if (m->own_eng)
		ioeng_close(m->eng);
	close(m->plain_fd);
	md_bitmap_free(&m->bm);
	md_al_free(&m->al);
	free(m->sb_buf);
	free(m->al_buf);
	free(m->bm_buf);
	free(m);
	d->md = NULL;
}

/* ---- superblock ---------------------------------------------------------------- */

static void sb_start(struct daemon *d);

static void
run_waiters(struct meta_wait *w, int res)
{
	while (w != NULL) {
		struct meta_wait *next = w->next;

		w->cb(w, res);
		w = next;
	}
}

static void
sb_done(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;
	struct meta_wait *w = m->sb_waiting;

	m->sb_busy = false;
	m->sb_waiting = NULL;
	if (res < 0)
		log_errno(LOG_ERR, res, "metadata: superblock write failed");
	else
		m->slot ^= 1;
	run_waiters(w, res);
	if (m->sb_next != NULL || m->sb_again)
		sb_start(d);
	/* Last: a detach writes the superblock again. */
	if (res < 0)
		diskfail_meta_error(d, "superblock write", res);
}

static void data_flush(struct daemon *d, struct io_req *io,
    void (*cb)(struct io_req *io, int res));
static void sb_flushed(struct io_req *io, int res);

static void
sb_start(struct daemon *d)
{
	struct meta *m = d->md;
	int slot = m->slot;

	m->sb_waiting = m->sb_next;
	m->sb_next = NULL;
	m->sb_again = false;
	m->sb_busy = true;
	md_sb_next(&m->sb, &slot);
	md_sb_encode(&m->sb, m->sb_buf);
	memset(&m->sb_io, 0, sizeof(m->sb_io));
	m->sb_io.cb = sb_done;
	m->sb_io.data = d;
	m->sb_io.opcode = IO_WRITE;
	m->sb_io.flags = IO_F_FUA;
	m->sb_io.offset = m->layout.sb_offset[slot];
	m->sb_io.len = MD_BLOCK_SIZE;
	m->sb_io.buf = m->sb_buf;
	m->sb_io.buf_index = -1;
	if (m->sb_flush) {
		m->sb_flush = false;
		data_flush(d, &m->sb_flush_io, sb_flushed);
		return;
	}
	ioeng_submit(m->eng, &m->sb_io);
}

static void
sb_flushed(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;

	if (res < 0) {
		log_errno(LOG_ERR, res, "metadata: the data flush before a superblock write failed");
		m->sb_flush = true;	/* the next attempt flushes again */
		sb_done(&m->sb_io, res);
		return;
	}
	ioeng_submit(m->eng, &m->sb_io);
}

/* As meta_sb_write, after a flush of the data device: for a superblock
 * that vouches for data written before (the disk is uptodate). */
void
meta_sb_write_flushed(struct daemon *d, struct meta_wait *w)
{
	d->md->sb_flush = true;
	meta_sb_write(d, w);
}

/* Make the in-memory superblock durable; w->cb runs after (w may be NULL). */
void
meta_sb_write(struct daemon *d, struct meta_wait *w)
{
	struct meta *m = d->md;

	/* A detached disk got its last superblock at the detach; only a
	 * write someone waits for (a demotion) still goes to it. */
	if (m->detached && w == NULL)
		return;
	if (w != NULL) {
		w->next = m->sb_next;
		m->sb_next = w;
	}
	if (m->sb_busy)
		m->sb_again = true;	/* the write in flight may predate the change */
	else
		sb_start(d);
}

/* ---- activity log ------------------------------------------------------------- */

static void al_kick(struct daemon *d);
static void bm_kick(struct daemon *d);

static void
retry_tick(struct loop_timer *t)
{
	struct daemon *d = t->data;

	d->md->retry_wait = false;
	if (d->md->rot_retry) {
		d->md->rot_retry = false;
		meta_sb_write(d, &d->md->rot_wait);
	}
	al_kick(d);
	bm_kick(d);
}

/*
 * A metadata write failed and the disk stays (not detached): try again in
 * a second, not at once -- a failing disk would otherwise be hammered in a
 * tight loop.  The writes waiting for it wait meanwhile, for at most
 * META_FAIL_AFTER_S of failures with no metadata write getting through;
 * after that each failure fails the writes waiting for it (EIO: nothing of
 * them was written or shipped), so that clients of a disk whose metadata
 * area died get errors, not requests that hang for ever.
 */
#define META_FAIL_AFTER_S	10

static void
retry_later(struct daemon *d)
{
	struct meta *m = d->md;

	m->write_errors++;
	if (m->failing_since_ns == 0)
		m->failing_since_ns = now_ns();
	if (m->detached || m->retry_wait)
		return;
	m->retry_wait = true;
	if (m->write_errors % 60 == 1)
		log_warn("metadata: retrying the failed write in 1 s (%" PRIu64 " failed "
		    "metadata writes so far)", m->write_errors);
	loop_timer_arm(d->loop, &m->retry_timer, 1000);
}

static void
retry_list(struct daemon *d, struct vol_req *vr)
{
	while (vr != NULL) {
		struct vol_req *next = vr->pnext;

		vr->pnext = NULL;
		meta_prepare_write(d, vr);
		vr = next;
	}
}

/* Have metadata writes failed for META_FAIL_AFTER_S, none getting through? */
static bool
failing_too_long(const struct meta *m)
{
	return !m->detached && m->failing_since_ns != 0 &&
	    now_ns() - m->failing_since_ns >= (uint64_t)META_FAIL_AFTER_S * 1000000000;
}

/* After a metadata write's result: go on, or fail the waiters (above). */
static void
release_waiters(struct daemon *d, struct vol_req *w, int res, const char *what)
{
	struct meta *m = d->md;
	uint64_t n = 0;

	if (res >= 0)
		m->failing_since_ns = 0;
	if (res >= 0 || !failing_too_long(m)) {
		retry_list(d, w);
		return;
	}
	while (w != NULL) {
		struct vol_req *next = w->pnext;

		w->pnext = NULL;
		vol_fail(d, w, -EIO);
		n++;
		w = next;
	}
	if (n == 0)
		return;
	if (m->failed_writes == 0 || m->failed_writes / 1000 != (m->failed_writes + n) / 1000)
		log_err("metadata: %s writes have failed for %d s or more: %" PRIu64 " waiting "
		    "writes fail with EIO (%" PRIu64 " so far); still retrying", what,
		    META_FAIL_AFTER_S, n, m->failed_writes + n);
	m->failed_writes += n;
}

static void
al_done(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;
	struct vol_req *w = m->al_waiting;

	m->al_waiting = NULL;	/* before a detach, which releases waiters too */
	if (res < 0) {
		log_errno(LOG_ERR, res, "metadata: activity log write failed");
		md_al_abort(&m->al);
		diskfail_meta_error(d, "activity log write", res);
		retry_later(d);
	} else {
		md_al_commit(&m->al);
		m->al_writes++;
	}
	release_waiters(d, w, res, "activity log");
	al_kick(d);
}

/*
 * An extent leaves the activity log only once the bitmap holds, durably,
 * every mark of its range: a write that completed under the extent while
 * the peer was not told of it (the link dropped, an async write not yet
 * written there) has only its mark in memory, and after a crash neither
 * the AL nor the bitmap on disk would name it.  False: the bitmap blocks
 * are being written, and al_kick runs again after each (bm_done).
 */
static bool
victims_durable(struct daemon *d)
{
	struct meta *m = d->md;
	uint32_t ext[MD_AL_UPDATES_PER_TR];
	uint32_t n = md_al_victims(&m->al, ext, MD_AL_UPDATES_PER_TR);

	for (uint32_t i = 0; i < n; i++)
		if (!md_bitmap_range_durable(&m->bm, (uint64_t)ext[i] << MD_AL_EXTENT_SHIFT,
		    MD_AL_EXTENT_SIZE)) {
			m->bm_want = md_bitmap_block_of(&m->bm,
			    (uint64_t)ext[i] << MD_AL_EXTENT_SHIFT);
			if (!m->al_evict_wait)
				m->al_evict_waits++;
			m->al_evict_wait = true;
			bm_kick(d);
			return false;
		}
	m->al_evict_wait = false;
	return true;
}

bool
meta_al_hold(struct daemon *d, const struct vol_req *vr)
{
	struct meta *m = d->md;

	if (m == NULL || !vr->al_pinned)
		return false;
	for (uint32_t e = md_al_extent_of(vr->io.offset);
	    e <= md_al_extent_of(vr->io.offset + vr->io.len - 1); e++)
		md_al_get(&m->al, e);
	return true;
}

bool
meta_bitmap_settled(struct daemon *d)
{
	struct meta *m = d->md;

	if (m == NULL || m->detached || md_bitmap_range_durable(&m->bm, 0, d->size))
		return true;
	bm_kick(d);
	return false;
}

bool
meta_al_get(struct daemon *d, uint32_t extent)
{
	return d->md != NULL && md_al_get(&d->md->al, extent) == 0;
}

void
meta_al_release(struct daemon *d, uint64_t off, uint64_t len)
{
	struct meta *m = d->md;

	for (uint32_t e = md_al_extent_of(off); e <= md_al_extent_of(off + len - 1); e++)
		md_al_put(&m->al, e);
	if (m->al_waiting != NULL)
		al_kick(d);
}

static void
al_flushed(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;
	struct vol_req *w;

	m->al_flush_busy = false;
	if (res >= 0) {
		m->al_flushed_clock = m->al_flush_clock;
		al_kick(d);
		return;
	}
	/* As a failed transaction: retried, its waiters fail once it has
	 * failed for too long. */
	log_errno(LOG_ERR, res, "metadata: the data flush before an activity log "
	    "transaction failed");
	w = m->al_waiting;
	m->al_waiting = NULL;
	diskfail_meta_error(d, "data flush before an activity log write", res);
	retry_later(d);
	release_waiters(d, w, res, "activity log");
}

/*
 * An extent leaves the activity log only once its writes are on stable
 * storage: after a crash only the extents the log names are resynced, and
 * a write that completed into a volatile cache (the disk's, or the page
 * cache with direct-io = no) and was lost with it would otherwise leave
 * this disk different from the peer's with nothing marking it.  The
 * transaction's FUA makes only the log block durable, so the data device
 * is flushed first, once every write to the victims had finished (DRBD
 * writes its AL transactions with a preflush for the same reason).  False:
 * that flush is in flight, and al_kick runs again when it is done.
 */
static bool
victims_flushed(struct daemon *d)
{
	struct meta *m = d->md;

	if (md_al_victims_last_put(&m->al) <= m->al_flushed_clock)
		return true;
	if (!m->al_flush_busy) {
		m->al_flush_busy = true;
		m->al_flush_clock = md_al_put_clock(&m->al);
		m->al_flushes++;
		data_flush(d, &m->al_flush_io, al_flushed);
	}
	return false;
}

static void
al_kick(struct daemon *d)
{
	struct meta *m = d->md;
	uint32_t index;
	int n;

	if (m->detached || m->retry_wait || m->al.tr_busy || !md_al_need_tr(&m->al) ||
	    !victims_durable(d) || !victims_flushed(d))
		return;
	n = md_al_make_tr(&m->al, m->al_buf, &index);
	if (n < 0) {
		/* Every slot pinned: retried at the next put.  Slots held for
		 * writes the peer has not flushed are freed by its FLUSH_ACK:
		 * ask for one now rather than at the next tick. */
		repl_al_starved(d);
		return;
	}
	memset(&m->al_io, 0, sizeof(m->al_io));
	m->al_io.cb = al_done;
	m->al_io.data = d;
	m->al_io.opcode = IO_WRITE;
	m->al_io.flags = IO_F_FUA;
	m->al_io.offset = m->layout.al_offset + (uint64_t)index * MD_AL_TR_SIZE;
	m->al_io.len = MD_AL_TR_SIZE;
	m->al_io.buf = m->al_buf;
	m->al_io.buf_index = -1;
	ioeng_submit(m->eng, &m->al_io);
}

/* Pin vr's extents if all are active; else queue them and return false. */
static bool
al_pin(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;
	uint32_t first = md_al_extent_of(vr->io.offset);
	uint32_t last = md_al_extent_of(vr->io.offset + vr->io.len - 1);
	bool wait = false;

	for (uint32_t e = first; e <= last; e++) {
		bool need = false;
		int ret = md_al_touch(&m->al, e, &need);

		if (ret < 0 || need)
			wait = true;
	}
	if (wait)
		return false;
	for (uint32_t e = first; e <= last; e++)
		md_al_get(&m->al, e);
	vr->al_pinned = true;
	return true;
}

/* ---- bitmap ------------------------------------------------------------------- */

static void
bm_done(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;
	struct vol_req *w = m->bm_waiting;

	m->bm_busy = false;
	m->bm_waiting = NULL;	/* before a detach, which releases waiters too */
	if (res < 0) {
		log_errno(LOG_ERR, res, "metadata: bitmap block %" PRIu64 " write failed",
		    m->bm_blk);
		diskfail_meta_error(d, "bitmap write", res);
		retry_later(d);
	} else {
		md_bitmap_block_written(&m->bm, m->bm_blk, m->bm_gen);
		m->bm_writes++;
	}
	release_waiters(d, w, res, "bitmap");
	if (res < 0 && failing_too_long(m) && m->al_waiting != NULL && !m->al.tr_busy) {
		/* Writes waiting for an AL transaction that waits for
		 * these bits (victims_durable) fail as well. */
		w = m->al_waiting;
		m->al_waiting = NULL;
		release_waiters(d, w, res, "bitmap");
	}
	bm_kick(d);
	al_kick(d);	/* a transaction may have waited for these bits */
}

/* Flush the data device (what it completed is durable), then cb. */
static void
data_flush(struct daemon *d, struct io_req *io, void (*cb)(struct io_req *io, int res))
{
	memset(io, 0, sizeof(*io));
	io->cb = cb;
	io->data = d;
	io->opcode = IO_FLUSH;
	io->buf_index = -1;
	ioeng_submit(d->eng, io);
}

static void bm_write(struct daemon *d);
static void bm_flushed(struct io_req *io, int res);

static void
bm_kick(struct daemon *d)
{
	struct meta *m = d->md;
	uint64_t blk;

	if (m->detached || m->retry_wait || m->bm_busy)
		return;
	/* A block someone waits for first (a write's bits, an AL eviction),
	 * else the lowest dirty one. */
	if (m->bm_want != MD_BM_NONE && md_bitmap_block_dirty(&m->bm, m->bm_want))
		blk = m->bm_want;
	else if ((blk = md_bitmap_next_dirty_block(&m->bm, 0)) == MD_BM_NONE)
		return;
	m->bm_want = MD_BM_NONE;
	m->bm_busy = true;
	m->bm_blk = blk;
	md_bitmap_encode_block(&m->bm, blk, m->bm_buf, &m->bm_gen);
	/* Clears say that data reached this disk (resync, the peer's
	 * acknowledgement): that data must be on stable storage before
	 * the block saying so is.  FUA makes only the bitmap block itself
	 * durable, so the data device is flushed first -- after the block's
	 * bits were taken, so every clear in it is covered. */
	if (md_bitmap_block_has_clears(&m->bm, blk)) {
		data_flush(d, &m->bm_flush_io, bm_flushed);
		return;
	}
	bm_write(d);
}

static void
bm_flushed(struct io_req *io, int res)
{
	struct daemon *d = io->data;
	struct meta *m = d->md;

	if (res < 0) {
		/* As a failed write of the block: retried, and its waiters
		 * fail once it has failed for too long (bm_done). */
		log_errno(LOG_ERR, res, "metadata: the data flush before bitmap block %" PRIu64
		    " failed", m->bm_blk);
		m->bm_io.data = d;
		bm_done(&m->bm_io, res);
		return;
	}
	m->bm_flushes++;
	bm_write(d);
}

static void
bm_write(struct daemon *d)
{
	struct meta *m = d->md;

	memset(&m->bm_io, 0, sizeof(m->bm_io));
	m->bm_io.cb = bm_done;
	m->bm_io.data = d;
	m->bm_io.opcode = IO_WRITE;
	m->bm_io.flags = IO_F_FUA;
	m->bm_io.offset = m->layout.bitmap_offset + m->bm_blk * MD_BLOCK_SIZE;
	m->bm_io.len = MD_BLOCK_SIZE;
	m->bm_io.buf = m->bm_buf;
	m->bm_io.buf_index = -1;
	ioeng_submit(m->eng, &m->bm_io);
}

void
meta_set_oos(struct daemon *d, uint64_t off, uint64_t len)
{
	log_debug("bitmap: set %" PRIu64 "+%" PRIu64, off, len);
	md_bitmap_set_range(&d->md->bm, off, len);
	bm_kick(d);
}

void
meta_clear_oos(struct daemon *d, uint64_t off, uint64_t len)
{
	log_debug("bitmap: clear %" PRIu64 "+%" PRIu64, off, len);
	md_bitmap_clear_range(&d->md->bm, off, len);
	bm_kick(d);
}

void
meta_flush_bitmap(struct daemon *d)
{
	bm_kick(d);
}

/*
 * The disk was detached (diskfail.c): say in the superblock, if the disk
 * still takes the write, that it needs a full sync before it is used
 * again; no more activity-log or bitmap writes; the writes waiting for one
 * go on (to the peer only).
 */
void
meta_disk_detached(struct daemon *d)
{
	struct meta *m = d->md;
	struct vol_req *w;

	m->sb.flags &= ~(MD_FL_CONSISTENT | MD_FL_WAS_UPTODATE);
	m->sb.flags |= MD_FL_FULL_SYNC;
	m->sb.disk_state = MD_DISK_INCONSISTENT;
	meta_sb_write(d, NULL);
	m->detached = true;
	w = m->al_waiting;
	m->al_waiting = NULL;
	retry_list(d, w);
	w = m->bm_waiting;
	m->bm_waiting = NULL;
	retry_list(d, w);
	meta_connecting_over(d);
}

uint64_t
meta_oos_bytes(struct daemon *d)
{
	return d->md != NULL ? md_bitmap_set_bytes(&d->md->bm) : 0;
}

/* ---- the write path ------------------------------------------------------------ */

/* Writes the link lost: the peer's result (an error) decides no more. */
static void
complete_lost(struct daemon *d, struct vol_req *vr)
{
	while (vr != NULL) {
		struct vol_req *next = vr->pnext;

		vr->pnext = NULL;
		vol_peer_done(d, vr, -EIO);
		vr = next;
	}
}

static void
rotated(struct meta_wait *w, int res)
{
	struct meta *m = container_of(w, struct meta, rot_wait);
	struct daemon *d = m->d;
	struct vol_req *list = m->rot_waiting, *lost = m->lost_waiting;

	if (res < 0 && !m->detached) {
		/* Nothing may be written alone before the new generation is
		 * durable (writes made under the old one would meet the peer
		 * as no change at all): retried every second (retry_tick),
		 * the writes wait, and fail as those waiting for the activity
		 * log do (release_waiters) once it has failed too long. */
		log_err("metadata: the new generation uuid could not be written; retrying");
		m->rot_retry = true;
		retry_later(d);
		if (!failing_too_long(m))
			return;
		m->rot_waiting = m->lost_waiting = NULL;
		release_waiters(d, list, res, "superblock");
		/* The writes the link lost were written here: they complete
		 * with that result, as before this generation was begun. */
		complete_lost(d, lost);
		return;
	}
	if (res >= 0) {
		m->failing_since_ns = 0;
		m->gen_own = true;
	}
	m->rotating = false;
	m->rot_waiting = m->lost_waiting = NULL;
	complete_lost(d, lost);
	retry_list(d, list);
}

/* A new current UUID, the old one to the bitmap UUID, being made durable. */
static bool
start_rotation(struct daemon *d, const char *why)
{
	struct meta *m = d->md;
	uint64_t u;

	if (md_uuid_random(&u) < 0)
		return false;
	md_uuid_new_current(&m->sb.uuids, u);
	m->rotating = true;
	m->rot_wait.cb = rotated;
	log_notice("metadata: %s: new generation %016" PRIx64 " (bitmap tracks from %016"
	    PRIx64 ")", why, m->sb.uuids.current, m->sb.uuids.bitmap);
	meta_sb_write(d, &m->rot_wait);
	return true;
}

/*
 * Is the generation for writes made alone in place?  A bitmap UUID says so
 * when this run set it.  One found at start-up may be stale: the
 * superblock write that clears it at the end of a resync (the source's) can
 * be lost in a crash, and writes made alone under that node's current UUID
 * would then look, to a peer promoted meanwhile (bitmap UUID = that current
 * UUID), like no change at all (rule 50: this node's writes overwritten)
 * instead of a split brain.  So each run takes a new generation before its
 * first write alone; with a bitmap UUID already set, md_uuid_new_current
 * keeps it and moves the current UUID to the history, which a peer still
 * on the bitmap UUID's generation matches as before (rule 50/70) and a
 * peer that moved on from the stale one meets as common history (rule
 * 100, split brain).
 */
static bool
generation_in_place(const struct meta *m)
{
	return m->sb.uuids.bitmap != 0 && m->gen_own;
}

/*
 * A primary writing without its peer starts a new data generation first
 * (DESIGN.md "Generation UUIDs"): the current UUID moves to the bitmap UUID
 * and a new current one is durable before the first such write.  Returns
 * true when vr may go on, false when it waits for the superblock.
 */
static bool
rotate_generation(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (!m->rotating && generation_in_place(m))
		return true;
	if (!m->rotating && !start_rotation(d, "writing without the peer"))
		return true;
	vr->pnext = m->rot_waiting;
	m->rot_waiting = vr;
	return false;
}

/*
 * The link dropped with writes the peer may lack: they are marked, and an
 * uptodate primary starts the new generation for them now, before they
 * complete, as it would before its first write made alone.  Without it a
 * primary demoted (or stopped) before any later write would meet its peer
 * with equal generations, and the marks alone would not say which copy is
 * newer (state_leftover_decision may pick the peer, whose copy is older).
 * DRBD too takes a new current UUID when a primary loses its peer.
 */
void
meta_link_lost(struct daemon *d, struct vol_req *lost, bool marked)
{
	struct meta *m = d->md;
	struct vol_req **tail;

	if (m == NULL || !marked || m->detached || (d->role != ROLE_PRIMARY && !m->demoting) ||
	    d->disk != DISK_UPTODATE || (!m->rotating && generation_in_place(m)) ||
	    (!m->rotating && !start_rotation(d, "the link dropped with writes the peer may "
	    "lack"))) {
		complete_lost(d, lost);
		return;
	}
	for (tail = &m->lost_waiting; *tail != NULL; tail = &(*tail)->pnext)
		;
	*tail = lost;
}

/*
 * A primary's client write while the link is up and the UUIDs not yet
 * compared (RS_CONNECTING) waits for that decision, before it pins its
 * activity-log extents.  It cannot be shipped (the peer's role and data are
 * not known yet), and marked in the bitmap under the current UUID it would
 * be a write made alone without a new generation: a decision by "the
 * peer's bitmap UUID is my current" (rule 50) would then make this node a
 * sync target that overwrites it, where the rotation would have shown a
 * split brain.  Once the state leaves RS_CONNECTING (established, resync,
 * ahead, or the link down: then it rotates as any write made alone) the
 * parked writes go through here again, in order.  The wait is bounded:
 * the link drops when no decision is made within `timeout` (peer.c).
 */
static bool
park_connecting(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (d->role != ROLE_PRIMARY || vr->is_resync || vr->from_peer || d->stopping ||
	    d->link == NULL || d->link->rs != RS_CONNECTING)
		return false;
	if (m->conn_parked == NULL)
		log_info("replication: client writes wait until the generation uuids are "
		    "compared");
	vr->pnext = NULL;
	*m->conn_tail = vr;
	m->conn_tail = &vr->pnext;
	m->conn_parks++;
	return true;
}

/* The timer of meta_connecting_over: the parked writes go on, in order. */
static void
conn_release(struct loop_timer *t)
{
	struct daemon *d = t->data;
	struct meta *m = d->md;
	struct vol_req *list = m->conn_parked;
	unsigned n = 0;

	m->conn_parked = NULL;
	m->conn_tail = &m->conn_parked;
	for (struct vol_req *vr = list; vr != NULL; vr = vr->pnext)
		n++;
	if (n > 0)
		log_info("replication: %u client write(s) parked while connecting go on "
		    "(replication %s)", n, repl_state_name(d->link != NULL ? (int)d->link->rs :
		    RS_OFF));
	retry_list(d, list);
}

/* Not from inside state_set() or the decision: from the next loop turn. */
void
meta_connecting_over(struct daemon *d)
{
	struct meta *m = d->md;

	if (m != NULL && m->conn_parked != NULL)
		loop_timer_arm(d->loop, &m->conn_timer, 0);
}

/* Are bits of vr's range set in memory only?  Then vr waits for their
 * bitmap block (bm_done retries it) and true. */
static bool
bits_pending(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (md_bitmap_range_durable(&m->bm, vr->io.offset, vr->io.len))
		return false;
	vr->pnext = m->bm_waiting;
	m->bm_waiting = vr;
	m->bm_want = md_bitmap_block_of(&m->bm, vr->io.offset);
	bm_kick(d);
	return true;
}

/*
 * A resync target's write (RESYNC_DATA) or checksum read (CSUM_REQUEST):
 * once it is done the target clears the range's bits and answers, and the
 * source clears its own.  The target's clear reaches its disk only after a
 * data flush (bm_kick), but that protects the range only if its bits were
 * on the target's disk to begin with: the bits the merge of the source's
 * bitmap (or a full sync) set are written block by block after the merge,
 * and a crash that loses the resynced data from a volatile cache (the page
 * cache, the disk's) before its block was written would leave the range
 * marked on neither node.  So the range waits for its bitmap block, as
 * DRBD writes out the bitmap before its resync begins.
 */
static void
resync_bits_first(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (m->detached || d->stopping) {
		/* No resync I/O on a detached disk (resync.c tgt_start), nor
		 * once the daemon stops (nothing would wait for it). */
		vol_fail(d, vr, m->detached ? -EIO : -ESHUTDOWN);
		return;
	}
	if (bits_pending(d, vr)) {
		if (!vr->bits_waited)
			m->resync_bits_waits++;
		vr->bits_waited = true;
		return;
	}
	vol_start(d, vr);
}

/* The resync stopped (link down, a detach, the daemon stopping): its
 * ranges that wait for their bitmap block end with res (their answers
 * are dropped, or ignored by the source). */
void
meta_drop_resync_waiters(struct daemon *d, int res)
{
	struct meta *m = d->md;
	struct vol_req **pp, *vr, *drop = NULL;

	if (m == NULL)
		return;
	for (pp = &m->bm_waiting; (vr = *pp) != NULL;) {
		if (vr->is_resync) {
			*pp = vr->pnext;
			vr->pnext = drop;
			drop = vr;
		} else {
			pp = &vr->pnext;
		}
	}
	while ((vr = drop) != NULL) {
		drop = vr->pnext;
		vr->pnext = NULL;
		vol_fail(d, vr, res);
	}
}

void
meta_prepare_write(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (m == NULL || vr->io.len == 0) {
		vol_start(d, vr);
		return;
	}
	if (vr->is_resync) {
		resync_bits_first(d, vr);
		return;
	}
	/* A client write that waited here (behind another write, the activity
	 * log, the bitmap, a new generation, the link's decision) while this
	 * node stepped down: a secondary's disk takes no client write -- it
	 * would be neither replicated nor marked. */
	if (d->role != ROLE_PRIMARY && !vr->from_peer && !vr->is_resync) {
		if (m->stale_writes++ % 1000 == 0)
			log_warn("metadata: a client write that waited while this node stepped "
			    "down fails with EIO (%" PRIu64 " so far)", m->stale_writes);
		vol_fail(d, vr, -EIO);
		return;
	}
	/* A primary whose disk is not uptodate (a promoted sync target) may
	 * write only while the peer takes the write too: checked here again,
	 * as the link may have gone while this write waited (behind another
	 * write, the activity log, a resync range). */
	if (d->role == ROLE_PRIMARY && d->disk != DISK_UPTODATE && !vr->is_resync &&
	    !peerread_peer_serves(d)) {
		d->link->io_refused_no_data++;
		vol_fail(d, vr, -EIO);
		return;
	}
	if (m->detached && !vr->is_resync) {
		vol_start(d, vr);	/* to the peer only: no AL, no bitmap */
		return;
	}
	if (park_connecting(d, vr))
		return;
	if (d->role == ROLE_PRIMARY && !vr->al_pinned && !al_pin(d, vr)) {
		vr->pnext = m->al_waiting;
		m->al_waiting = vr;
		al_kick(d);
		return;
	}
	/* A new generation when the peer is gone (not when merely ahead) --
	 * or going: while peer_link_down() closes the sockets (data is NULL
	 * already, rs not yet RS_OFF), the async frames it still sends
	 * complete writes, which release the writes waiting behind them, and
	 * the writes congestion parked are prepared again; none of them may
	 * complete before the new generation is on disk. */
	if (!peer_connected(d) && d->role == ROLE_PRIMARY &&
	    (d->link == NULL || d->link->rs == RS_OFF || d->link->data == NULL) &&
	    !rotate_generation(d, vr))
		return;
	if (!peer_connected(d)) {
		/* Degraded: the bits of the range are durable before the data. */
		log_debug("bitmap: set %" PRIu64 "+%" PRIu64 " (not replicated)",
		    vr->io.offset, vr->io.len);
		md_bitmap_set_range(&m->bm, vr->io.offset, vr->io.len);
		if (bits_pending(d, vr))
			return;
	}
	vol_start(d, vr);
}

void
meta_write_done(struct daemon *d, struct vol_req *vr)
{
	struct meta *m = d->md;

	if (m == NULL || !vr->al_pinned)
		return;
	for (uint32_t e = md_al_extent_of(vr->io.offset);
	    e <= md_al_extent_of(vr->io.offset + vr->io.len - 1); e++)
		md_al_put(&m->al, e);
	vr->al_pinned = false;
	/* An unpinned extent may let a waiting transaction through. */
	if (m->al_waiting != NULL)
		al_kick(d);
}
