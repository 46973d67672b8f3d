/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Resync and online verify, driven by the sync source.
 *
 * On a sync decision both nodes send their dirty bitmap (BITMAP chunks on
 * the data socket) and OR in the other's; a full sync sets every bit first.
 * The source then walks its bitmap and, for each run of set bits (at most
 * RESYNC_CHUNK bytes, or one granule when bitmap-granularity is larger):
 *   - reads the range locally through the volume as a conflict holder (a
 *     client write to the range waits until the target confirmed it, and a
 *     resync read waits for client writes in flight, so resync data can
 *     never overwrite newer data on the target);
 *   - plain: sends RESYNC_DATA; the target writes it and answers RESYNC_ACK;
 *   - csums = xxh3: sends CSUM_REQUEST with its digest; the target compares
 *     with its own and answers CSUM_SAME, or RESYNC_REQUEST, which the source
 *     answers with the data it still holds.
 * Bits are cleared on both sides as ranges complete; the target writes or
 * compares a range only once its bits are on its disk (meta.c
 * resync_bits_first), so that a crash of the target never loses a range
 * both sides cleared.  Throughput: a fixed
 * resync-rate, or (0) a window of RESYNC_INFLIGHT bytes that shrinks to
 * RESYNC_INFLIGHT_BUSY while clients have I/O in flight.
 *
 * Verify walks the whole device the same way with VERIFY_REQUEST/REPLY and
 * marks differing ranges out of sync on both nodes ("resync" repairs them).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repl.h"
#include "util.h"

#define VERIFY_CHUNK	(1u << 20)	/* verify compares 1 MiB at a time */

/* One range in flight on the source (resync or verify). */
struct rsreq {
	struct vol_req vr;		/* volume request (read, conflict holder) */
	struct peer *p;
	struct buf data;		/* the range's data */
	bool verify;			/* verify rather than resync */
	bool data_sent;			/* RESYNC_DATA went out */
	bool req_sent;			/* its request frame went out */
	bool abandoned;			/* stopped: nothing more is sent for it */
	bool refining;			/* verify: the chunk differs, its granules
					 * are being compared one by one */
	unsigned sub_pending;		/* verify: granule replies outstanding */
	uint64_t applied_seq;		/* the peer's last write applied before the read */
	uint64_t sent_ns;		/* when its last request frame went to the
					 * peer (0: none yet); ko-count judges it */
	unsigned refs;			/* the volume request, and each queued frame
					 * sending from data: freed at 0 */
	struct loop_timer hold;		/* BLKMIRROR_TEST_RESYNC_HOLD_MS delay */
	struct rangeidx_node rnode;	/* in rs_inflight, by range */
};
/* Ranges in flight on the source (disjoint: the bitmap walk and verify move
 * forward), found by offset when their answers come in. */
static struct rangeidx rs_inflight;

/* ---- bitmap exchange ---------------------------------------------------------------- */

static void
send_bitmap(struct peer *p)
{
	struct meta *m = p->d->md;
	struct repl_tx tx = peer_tx(p);
	uint64_t pos = 0;

	do {
		size_t cap = MIN((size_t)REPL_BITMAP_MAX_CHUNK, (size_t)(64u << 10));
		uint8_t *buf = malloc(REPL_HDR_LEN + REPL_BITMAP_HDR_LEN + cap);
		struct repl_bitmap b = { .total_bits = m->bm.nbits,
		    .granularity = m->bm.granularity };
		struct peer_frame *f;
		size_t len = 0;
		int n;

		if (buf == NULL ||
		    md_bitmap_rle_encode(&m->bm, &pos, buf + REPL_HDR_LEN + REPL_BITMAP_HDR_LEN,
		    cap, &len) < 0) {
			free(buf);
			peer_link_down(p, REPL_DISC_PROTOCOL, "cannot encode the bitmap");
			return;
		}
		b.flags = pos < m->bm.nbits ? REPL_BITMAP_F_MORE : 0;
		b.chunk_len = (uint32_t)len;
		n = repl_bitmap_encode(buf, REPL_HDR_LEN + REPL_BITMAP_HDR_LEN + cap, &tx, &b);
		if (n < 0) {
			free(buf);
			peer_link_down(p, REPL_DISC_PROTOCOL, "cannot encode a bitmap frame");
			return;
		}
		f = peer_frame_new();
		f->payload = buf;
		f->payload_len = (uint32_t)n;
		f->free_payload = true;
		peer_send(p->data, f);
	} while (pos < m->bm.nbits);
	p->rs_state.bitmap_sent = true;
}

static void
on_bitmap(struct peer *p, const struct repl_bitmap *b, const uint8_t *body, size_t len)
{
	struct meta *m = p->d->md;
	struct md_bm_chunk info;
	int ret;

	if (!p->rs_state.active || b->total_bits != m->bm.nbits ||
	    b->granularity != m->bm.granularity) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "unexpected or mismatched BITMAP");
		return;
	}
	ret = md_bitmap_rle_decode(body + REPL_BITMAP_HDR_LEN, b->chunk_len, &m->bm, &info);
	if (ret < 0) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "malformed bitmap chunk");
		return;
	}
	if (!(b->flags & REPL_BITMAP_F_MORE)) {
		p->rs_state.bitmap_received = true;
		p->rs_state.total_bytes = md_bitmap_set_bytes(&m->bm);
		log_info("resync: %" PRIu64 " bytes out of sync (both bitmaps merged)",
		    p->rs_state.total_bytes);
		meta_flush_bitmap(p->d);
		resync_kick(p);
	}
}

/* ---- start and finish ------------------------------------------------------------- */

void
resync_begin(struct peer *p, enum md_sync_decision dec)
{
	struct daemon *d = p->d;
	struct meta *m = d->md;
	struct resync *rs = &p->rs_state;
	bool source = dec == MD_SYNC_SOURCE_BITMAP || dec == MD_SYNC_SOURCE_FULL;
	bool full = dec == MD_SYNC_SOURCE_FULL || dec == MD_SYNC_TARGET_FULL;

	if (m->detached || p->peer_state.disk == REPL_DISK_DISKLESS) {
		log_err("resync: %s refused: the %s disk is detached", md_sync_decision_name(dec),
		    m->detached ? "local" : "peer's");
		return;
	}
	if (rs->active || rs->verify) {
		log_info("resync: %s requested while one runs; the running one covers it",
		    md_sync_decision_name(dec));
		return;
	}
	bool paused = rs->paused;	/* pause-sync given before the resync */

	memset(rs, 0, offsetof(struct resync, timer));
	rs->paused = paused;
	rs->done_sent = false;
	rs->active = true;
	rs->source = source;
	rs->started_ns = rs->rate_mark_ns = rs->limit_base_ns = now_ns();
	if (full)
		md_bitmap_set_all(&m->bm);
	paused = rs->paused || p->peer_paused;
	if (source) {
		state_set(d, "resync", -1, -1, -1, paused ? RS_PAUSED_SYNC_SOURCE : RS_SYNC_SOURCE,
		    md_sync_decision_name(dec));
	} else {
		m->sb.flags &= ~(MD_FL_CONSISTENT | MD_FL_WAS_UPTODATE);
		if (full)
			m->sb.flags |= MD_FL_FULL_SYNC;
		m->sb.disk_state = MD_DISK_INCONSISTENT;
		meta_sb_write(d, NULL);
		state_set(d, "resync", -1, DISK_INCONSISTENT, -1,
		    paused ? RS_PAUSED_SYNC_TARGET : RS_SYNC_TARGET,
		    md_sync_decision_name(dec));
	}
	state_event(d, "resync-start", "%s", md_sync_decision_name(dec));
	/* STATE first, on the data socket: the peer learns the direction
	 * before the BITMAP that follows in the same stream. */
	state_send_on(p, p->data);
	send_bitmap(p);
}

static void
send_done(struct peer *p, uint32_t kind, uint64_t bytes)
{
	struct repl_resync_done m = { .kind = kind, .bytes = bytes };
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	int n = repl_resync_done_encode(f->buf, sizeof(f->buf), &tx, &m);

	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? p->data : NULL, f);
}

static void
source_finish(struct peer *p)
{
	struct daemon *d = p->d;
	struct meta *m = d->md;
	struct resync *rs = &p->rs_state;
	uint64_t ms = (now_ns() - rs->started_ns) / 1000000;

	rs->active = false;
	send_done(p, REPL_DONE_RESYNC, rs->shipped_bytes);
	md_uuid_resync_done_source(&m->sb.uuids);
	m->sb.flags &= ~(MD_FL_CRASHED_PRIMARY | MD_FL_FULL_SYNC);
	meta_sb_write(d, NULL);
	log_notice("resync done: %" PRIu64 " bytes in %" PRIu64 " ms, %" PRIu64
	    " bytes shipped, %" PRIu64 " found equal by checksum",
	    rs->done_bytes, ms, rs->shipped_bytes, rs->same_bytes);
	state_event(d, "resync-done", "source: %" PRIu64 " bytes shipped in %" PRIu64 " ms",
	    rs->shipped_bytes, ms);
	state_set(d, "resync done", -1, -1, -1, RS_ESTABLISHED, NULL);
	state_send(p);
}

void
resync_target_finish(struct peer *p)
{
	struct daemon *d = p->d;
	struct meta *m = d->md;
	struct md_uuids src;

	p->rs_state.active = false;
	p->rs_state.done_sent = false;
	if (m->detached)
		return;		/* the disk was dropped meanwhile: not uptodate */
	if (md_bitmap_count(&m->bm) != 0) {
		/* Marked here while the resync ran (a write this disk failed
		 * on a promoted target, a verify): the source never saw those
		 * bits.  The disk is not uptodate yet: another round, with
		 * this node's bitmap. */
		log_notice("resync: the source finished but %" PRIu64 " bytes were marked here "
		    "meanwhile; another round", md_bitmap_set_bytes(&m->bm));
		/* The source's generation now: an interrupted round resumes
		 * from the bitmaps (equal UUIDs, this disk inconsistent), not
		 * as a full resync (the source moved its bitmap UUID to its
		 * history when it finished). */
		state_peer_uuids(p, &src);
		md_uuid_adopt(&m->sb.uuids, &src);
		resync_begin(p, MD_SYNC_TARGET_BITMAP);
		/* This node's bitmap is exact (the source's is empty): a
		 * promoted target keeps serving from it meanwhile. */
		p->rs_state.bitmap_received = true;
		return;
	}
	state_peer_uuids(p, &src);
	md_uuid_adopt(&m->sb.uuids, &src);
	state_disk_uptodate(d);
	state_event(d, "resync-done", "target: %" PRIu64 " bytes received",
	    p->rs_state.done_bytes);
	state_set(d, "resync done", -1, DISK_UPTODATE, -1, RS_ESTABLISHED, NULL);
	state_send(p);
}

/* ---- source side --------------------------------------------------------------------- */

static void
rsreq_unlink(struct rsreq *q)
{
	rangeidx_remove(&rs_inflight, &q->rnode);
}

/* The range in flight that is exactly [off, off + len), or NULL. */
static struct rsreq *
rsreq_find(uint64_t off, uint64_t len)
{
	for (struct rangeidx_node *n = rangeidx_first(&rs_inflight, off, off + 1); n != NULL;
	    n = rangeidx_next(&rs_inflight, n, off, off + 1)) {
		struct rsreq *q = container_of(n, struct rsreq, rnode);

		if (q->vr.io.offset == off && q->vr.io.len == len)
			return q;
	}
	return NULL;
}

/* Drop one reference; the last one returns the buffer. */
static void
rsreq_put(struct rsreq *q)
{
	if (--q->refs > 0)
		return;
	bufpool_put(&q->vr.d->pool, &q->data);
	free(q);
}

/* The range is settled (acked, equal, or abandoned): release its hold.  A
 * RESYNC_DATA frame still queued or in a sendmsg keeps the buffer. */
static void
rsreq_done(struct vol_req *vr, int res)
{
	struct rsreq *q = vr->owner;

	loop_timer_cancel(vr->d->loop, &q->hold);
	rsreq_put(q);
}

/* A RESYNC_DATA frame that sent from q->data went out or was dropped. */
static void
rsreq_frame_sent(struct peer_frame *f, int res)
{
	(void)res;
	rsreq_put(f->ctx);
}

static void
send_range(struct rsreq *q, uint16_t type, uint64_t digest, int status)
{
	struct peer *p = q->p;
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	int n;

	if (type == REPL_MSG_RESYNC_DATA) {
		struct repl_resync_data m = { .offset = q->vr.io.offset,
		    .length = (uint32_t)q->vr.io.len, .status = (uint32_t)-status,
		    .applied_seq = q->applied_seq };

		n = repl_resync_data_encode(f->buf, sizeof(f->buf), &tx, &m);
		if (status == 0) {
			f->payload = q->data.p;
			f->payload_len = (uint32_t)q->vr.io.len;
			f->sent = rsreq_frame_sent;
			f->ctx = q;
			q->refs++;
			p->rs_state.shipped_bytes += q->vr.io.len;
			p->resync_bytes_shipped += q->vr.io.len;
		}
		q->data_sent = true;
	} else if (type == REPL_MSG_CSUM_REQUEST) {
		struct repl_csum_request m = { .offset = q->vr.io.offset,
		    .length = (uint32_t)q->vr.io.len, .digest = digest };

		n = repl_csum_request_encode(f->buf, sizeof(f->buf), &tx, &m);
	} else {
		struct repl_verify_request m = { .offset = q->vr.io.offset,
		    .length = (uint32_t)q->vr.io.len, .digest = digest };

		n = repl_verify_request_encode(f->buf, sizeof(f->buf), &tx, &m);
	}
	f->len = n > 0 ? (uint32_t)n : 0;
	q->req_sent = n > 0;
	q->sent_ns = now_ns();
	peer_send(n > 0 ? p->data : NULL, f);
}

/*
 * When the oldest resync or verify request still unanswered went to the
 * peer; false if none.  A target whose disk hangs while it answers pings
 * would otherwise hold the resync (and the conflict holds of its ranges,
 * so the client writes to them) for ever: ko-count judges these requests
 * as it does writes (peer.c, ping_tick).  At most a window of ranges is in
 * flight, so the walk is short.
 */
bool
resync_oldest(uint64_t *sent_ns)
{
	bool any = false;

	for (struct rangeidx_node *n = rangeidx_first(&rs_inflight, 0, UINT64_MAX); n != NULL;
	    n = rangeidx_next(&rs_inflight, n, 0, UINT64_MAX)) {
		const struct rsreq *q = container_of(n, struct rsreq, rnode);

		if (q->sent_ns != 0 && (!any || q->sent_ns < *sent_ns)) {
			*sent_ns = q->sent_ns;
			any = true;
		}
	}
	return any;
}

/* The source's read of a range finished: ship data, digest or verify digest. */
static void
rsreq_ship(struct rsreq *q, int res)
{
	struct vol_req *vr = &q->vr;
	struct peer *p = q->p;

	if (p->data == NULL || q->abandoned)
		return;		/* link gone or stopped: resync_stop released it */
	if (res < 0) {
		log_errno(LOG_ERR, res, "resync: reading offset %" PRIu64 " failed",
		    vr->io.offset);
		if (q->verify)
			send_range(q, REPL_MSG_VERIFY_REQUEST, 0, 0);
		else
			send_range(q, REPL_MSG_RESYNC_DATA, 0, res);
		return;
	}
	if (q->verify)
		send_range(q, REPL_MSG_VERIFY_REQUEST, repl_digest(q->data.p, vr->io.len), 0);
	else if (p->d->conf.csums == CSUMS_XXH3)
		send_range(q, REPL_MSG_CSUM_REQUEST, repl_digest(q->data.p, vr->io.len), 0);
	else
		send_range(q, REPL_MSG_RESYNC_DATA, 0, 0);
}

static void
rsreq_hold_done(struct loop_timer *t)
{
	struct rsreq *q = t->data;

	rsreq_ship(q, q->vr.local_res);
}

/*
 * For tests: BLKMIRROR_TEST_RESYNC_HOLD_MS=N keeps each resync range read
 * N ms before it is shipped, so that a test can write to a range whose
 * resync data is on its way (see peerread.c on stale resync data).
 */
static uint64_t
test_hold_ms(void)
{
	static int64_t ms = -1;

	if (ms < 0)
		ms = (int64_t)test_setting("BLKMIRROR_TEST_RESYNC_HOLD_MS", 60000,
		    "every resync range is held that long before it is shipped");
	return (uint64_t)ms;
}

static void
rsreq_read(struct vol_req *vr, int res)
{
	struct rsreq *q = vr->owner;

	if (!q->verify && test_hold_ms() > 0 && q->p->data != NULL) {
		q->hold.cb = rsreq_hold_done;
		q->hold.data = q;
		loop_timer_arm(vr->d->loop, &q->hold, test_hold_ms());
		return;
	}
	rsreq_ship(q, res);
}

static int
rsreq_start(struct peer *p, uint64_t off, uint64_t len, bool verify)
{
	struct daemon *d = p->d;
	struct rsreq *q = calloc(1, sizeof(*q));

	if (q == NULL || bufpool_get(&d->pool, len, &q->data) < 0) {
		free(q);
		return -ENOMEM;
	}
	q->p = p;
	q->verify = verify;
	q->refs = 1;			/* the volume request's (rsreq_done) */
	q->vr.d = d;
	q->vr.owner = q;
	q->vr.io.opcode = IO_READ;
	q->vr.io.offset = off;
	q->vr.io.len = len;
	q->vr.io.buf = q->data.p;
	q->vr.io.buf_index = q->data.index;
	q->vr.is_write = true;		/* a conflict holder */
	q->vr.is_resync = true;
	q->vr.local_cb = rsreq_read;
	q->vr.done = rsreq_done;
	/* Writes of a primary peer are submitted in seq order: the read is
	 * ordered after every one submitted so far that overlaps it. */
	q->applied_seq = p->apply_seq;
	log_debug("resync: %s read %" PRIu64 "+%" PRIu64, verify ? "verify" : "resync", off, len);
	rangeidx_insert(&rs_inflight, &q->rnode, off, len, 0);
	p->rs_state.inflight_bytes += len;
	vol_submit(d, &q->vr);
	return 0;
}

/* Bytes the running resync or verify got through (what resync-rate limits). */
static uint64_t
rate_done(const struct resync *rs)
{
	return rs->verify ? rs->verify_done : rs->done_bytes;
}

/* How many bytes may be in flight now (rate limit or dynamic window). */
static uint64_t
window(struct peer *p)
{
	struct daemon *d = p->d;
	struct resync *rs = &p->rs_state;

	if (d->conf.resync_rate > 0) {
		/* From the last start or resume: a pause is not caught up. */
		uint64_t el = (now_ns() - rs->limit_base_ns) / 1000000 + 1;
		uint64_t rate = d->conf.resync_rate;	/* bytes/s; no overflow for
							 * any rate over years */
		uint64_t allowed = rate / 1000 * el + rate % 1000 * el / 1000;
		uint64_t used = rate_done(rs) - rs->limit_base_bytes + rs->inflight_bytes;

		return allowed > used ? MIN(allowed - used + rs->inflight_bytes,
		    (uint64_t)RESYNC_INFLIGHT) : 0;
	}
	/* Client I/O in flight: yield. */
	return d->client_inflight > 0 ? RESYNC_INFLIGHT_BUSY : RESYNC_INFLIGHT;
}

static void verify_kick(struct peer *p);

static void
rs_timer(struct loop_timer *t)
{
	struct peer *p = t->data;

	if (p->rs_state.verify)
		verify_kick(p);		/* resync-rate held it back */
	else
		resync_kick(p);
}

/* Look at the resync or verify again in ms milliseconds. */
static void
rs_timer_arm(struct peer *p, uint64_t ms)
{
	p->rs_state.timer.cb = rs_timer;
	p->rs_state.timer.data = p;
	loop_timer_arm(p->d->loop, &p->rs_state.timer, ms);
}

/*
 * The end of a pass over the bitmap left ranges that failed (our read or
 * the target's write): go over the bitmap again only after a delay, 1 s
 * doubling up to RESYNC_RETRY_MAX_S, instead of hammering a failing disk
 * in a tight loop.  The resync stays running, the target inconsistent: it
 * finishes once a pass gets through (a transient error, a sector the disk
 * remapped, the faulty disk replaced), or an administrator stops it.
 */
static void
retry_later(struct peer *p)
{
	struct resync *rs = &p->rs_state;

	rs->retry_s = rs->retry_s == 0 ? 1 : MIN(rs->retry_s * 2, RESYNC_RETRY_MAX_S);
	rs->retry_ns = now_ns() + (uint64_t)rs->retry_s * 1000000000ull;
	log_err("resync: %" PRIu64 " bytes failed in this pass (%" PRIu64 " bytes still out "
	    "of sync); next pass in %u s", rs->pass_failed, md_bitmap_set_bytes(&p->d->md->bm),
	    rs->retry_s);
	state_event(p->d, "resync-retry", "%" PRIu64 " bytes failed; next pass in %u s",
	    rs->pass_failed, rs->retry_s);
	rs_timer_arm(p, (uint64_t)rs->retry_s * 1000);
}

/*
 * A client write cleared bits on the source (the peer wrote the same
 * data): if the source waits between failed passes and nothing is left,
 * it need not wait for its timer to finish.
 */
void
resync_cleared(struct peer *p)
{
	struct resync *rs = &p->rs_state;

	if (rs->active && rs->source && rs->retry_ns != 0 &&
	    md_bitmap_count(&p->d->md->bm) == 0) {
		rs_timer_arm(p, 1);
	}
}

void
resync_kick(struct peer *p)
{
	struct daemon *d = p->d;
	struct resync *rs = &p->rs_state;
	struct md_bitmap *bm = &d->md->bm;

	if (!rs->active || !rs->source || rs->paused || p->peer_paused ||
	    !rs->bitmap_received || p->data == NULL)
		return;
	if (rs->retry_ns != 0) {
		uint64_t now = now_ns();

		if (now < rs->retry_ns && md_bitmap_count(bm) != 0) {
			rs_timer_arm(p, (rs->retry_ns - now) / 1000000 + 1);
			return;
		}
		rs->retry_ns = 0;
		rs->pos = 0;
		rs->pass_failed = 0;
	}
	while (rs->inflight_bytes < window(p)) {
		uint64_t bit = md_bitmap_find_next_set(bm, rs->pos), end, off, len;

		if (bit == MD_BM_NONE) {
			if (rs->inflight_bytes != 0)
				return;	/* the pass ends when its ranges are settled */
			if (md_bitmap_count(bm) == 0) {
				source_finish(p);
				return;
			}
			if (rs->pass_failed > 0) {
				retry_later(p);
				return;
			}
			rs->pos = 0;	/* bits set again behind us */
			rs->retry_s = 0;
			continue;
		}
		end = md_bitmap_find_next_zero(bm, bit);
		if (end == MD_BM_NONE)
			end = bm->nbits;
		off = md_bitmap_offset_of(bm, bit);
		/* At least one granule: a settled range clears only the
		 * granules it covers whole (bitmap-granularity may exceed
		 * RESYNC_CHUNK). */
		len = MIN(md_bitmap_offset_of(bm, end) - off,
		    MAX((uint64_t)RESYNC_CHUNK, (uint64_t)bm->granularity));
		len = MIN(len, d->size - off);
		rs->pos = md_bitmap_bit_of(bm, off + len - 1) + 1;
		if (rsreq_start(p, off, len, false) < 0)
			break;
	}
	if (rs->active && rs->inflight_bytes == 0)
		rs_timer_arm(p, 10);
}

/* The target confirmed a range (RESYNC_ACK or CSUM_SAME). */
static void
range_settled(struct peer *p, uint64_t off, uint64_t len, uint32_t status, bool same)
{
	struct resync *rs = &p->rs_state;
	struct rsreq *q = rsreq_find(off, len);
	uint64_t now = now_ns();

	if ((q == NULL || q->verify) && rs->stopped)
		return;		/* answer to a range of a stopped resync */
	/* Only for a range whose request went out (CSUM_SAME: a digest, not
	 * the data) -- else its bits would clear before anything was sent. */
	if (q == NULL || q->verify || !q->req_sent || (same && q->data_sent)) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "acknowledgement for a range not in flight");
		return;
	}
	rsreq_unlink(q);
	rs->inflight_bytes -= len;
	if (status == 0) {
		meta_clear_oos(p->d, off, len);
		rs->done_bytes += len;
		if (same)
			rs->same_bytes += len;
	} else if (status != ESTALE) {
		/* Our read or the target's write failed: the bits stay and
		 * the pass ends with a delay (retry_later). */
		rs->failed_ranges++;
		rs->failed_bytes += len;
		rs->pass_failed += len;
	}
	if (now - rs->rate_mark_ns > 1000000000ull) {
		rs->rate_bps = (rs->done_bytes - rs->rate_mark_bytes) * 1000000000ull /
		    (now - rs->rate_mark_ns);
		rs->rate_mark_bytes = rs->done_bytes;
		rs->rate_mark_ns = now;
	}
	vol_peer_done(p->d, &q->vr, 0);
	resync_kick(p);
}

/* ---- target side ---------------------------------------------------------------------- */

/* A resync or verify operation on the target. */
struct tgt {
	struct vol_req vr;
	struct peer *p;
	struct buf data;
	uint16_t type;			/* the request it answers */
	uint64_t digest;		/* CSUM/VERIFY: the source's digest */
	uint64_t link_gen;		/* p->connects when it came: answered only
					 * on that link */
};

static void
tgt_reply(struct tgt *t, int res)
{
	struct peer *p = t->p;
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	uint64_t off = t->vr.io.offset, len = t->vr.io.len;
	struct peer_sock *s = p->meta;
	int n;

	if (t->type == REPL_MSG_RESYNC_DATA) {
		struct repl_resync_ack m = { .offset = off, .length = (uint32_t)len,
		    .status = (uint32_t)-res };

		if (res == 0) {
			meta_clear_oos(p->d, off, len);
			p->rs_state.done_bytes += len;
			p->resync_bytes_received += len;
		} else {
			p->rs_state.failed_ranges++;
			p->rs_state.failed_bytes += len;
		}
		n = repl_resync_ack_encode(f->buf, sizeof(f->buf), &tx, &m);
	} else if (t->type == REPL_MSG_CSUM_REQUEST) {
		uint64_t mine = res == 0 ? repl_digest(t->data.p, len) : 0;

		if (res == 0 && mine == t->digest) {
			struct repl_csum_same m = { .offset = off, .length = (uint32_t)len };

			meta_clear_oos(p->d, off, len);
			p->rs_state.done_bytes += len;
			n = repl_csum_same_encode(f->buf, sizeof(f->buf), &tx, &m);
		} else if (diskfail_detached(p->d) || !p->rs_state.active) {
			/* No resync into this disk any more (it was detached):
			 * settle the range with an error instead of asking for
			 * data; a source whose resync stopped ignores it. */
			struct repl_resync_ack m = { .offset = off, .length = (uint32_t)len,
			    .status = EIO };

			n = repl_resync_ack_encode(f->buf, sizeof(f->buf), &tx, &m);
		} else {
			struct repl_resync_request m = { .offset = off, .length = (uint32_t)len };

			s = p->data;
			n = repl_resync_request_encode(f->buf, sizeof(f->buf), &tx, &m);
		}
	} else {
		uint64_t mine = res == 0 ? repl_digest(t->data.p, len) : 0;
		struct repl_verify_reply m = { .offset = off, .length = (uint32_t)len,
		    .status = (uint32_t)-res, .digest = mine };

		if (res != 0 || mine != t->digest) {
			m.flags = REPL_VERIFY_F_DIFFERS;
			/* A whole chunk is narrowed down by the source granule by
			 * granule; only those answers mark the bitmap. */
			if (len <= p->d->md->bm.granularity) {
				meta_set_oos(p->d, off, len);
				p->rs_state.verify_diff += len;
			}
		}
		n = repl_verify_reply_encode(f->buf, sizeof(f->buf), &tx, &m);
	}
	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? s : NULL, f);
}

static void
tgt_done(struct vol_req *vr, int res)
{
	struct tgt *t = vr->owner;

	if (peer_link_is(t->p, t->link_gen))
		tgt_reply(t, res);
	t->p->tgt_bytes -= vr->io.len;
	bufpool_put(&vr->d->pool, &t->data);
	free(t);
}

/* Write resync data, or read for a checksum / verify comparison. */
static void
tgt_start(struct peer *p, uint16_t type, uint64_t off, uint64_t len, uint64_t digest,
    struct buf *payload)
{
	struct daemon *d = p->d;
	struct tgt *t;

	if (repl_check_range(off, len, d->size, d->block_size) < 0) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "resync range outside the volume");
		return;
	}
	if (p->tgt_bytes + len > PEER_TGT_MAX) {
		char why[160];

		snprintf(why, sizeof(why), "%s: the peer has more than %u MiB of resync "
		    "or verify ranges in flight", repl_type_name(type), PEER_TGT_MAX >> 20);
		peer_link_down(p, REPL_DISC_PROTOCOL, why);
		return;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "out of memory");
		return;
	}
	t->p = p;
	t->type = type;
	t->digest = digest;
	t->link_gen = p->connects;
	if (payload != NULL) {
		t->data = *payload;
		payload->p = NULL;
	} else if (bufpool_get(&d->pool, len, &t->data) < 0) {
		free(t);
		peer_link_down(p, REPL_DISC_PROTOCOL, "out of memory");
		return;
	}
	p->tgt_bytes += len;
	t->vr.d = d;
	t->vr.owner = t;
	t->vr.done = tgt_done;
	t->vr.io.opcode = type == REPL_MSG_RESYNC_DATA ? IO_WRITE : IO_READ;
	t->vr.io.offset = off;
	t->vr.io.len = len;
	t->vr.io.buf = t->data.p;
	t->vr.io.buf_index = t->data.index;
	log_debug("resync: %s %" PRIu64 "+%" PRIu64, repl_type_name(type), off, len);
	/* Ordered with the DATA stream (a conflict holder) -- except a verify
	 * read on the primary: the verify source then is the secondary, which
	 * holds the chunk while the primary's writes to it wait there; were
	 * this read to wait behind those writes, nothing would move until
	 * ko-count.  Unordered, it can only see a write the source's copy does
	 * not have yet: the granule is marked, and the next resync ships it. */
	t->vr.is_write = !(type == REPL_MSG_VERIFY_REQUEST && d->role == ROLE_PRIMARY);
	t->vr.is_resync = true;
	t->vr.bits_first = type != REPL_MSG_VERIFY_REQUEST;
	if (diskfail_detached(d)) {
		/* No I/O on a detached disk: the range stays marked (resync)
		 * or differs (verify) on the source. */
		tgt_done(&t->vr, -EIO);
		return;
	}
	vol_submit(d, &t->vr);
}

/* ---- verify (source) ------------------------------------------------------------------- */

static void
verify_kick(struct peer *p)
{
	struct daemon *d = p->d;
	struct resync *rs = &p->rs_state;

	while (rs->verify && rs->verify_pos < d->size && rs->inflight_bytes < window(p)) {
		uint64_t len = MIN((uint64_t)VERIFY_CHUNK, d->size - rs->verify_pos);

		if (rsreq_start(p, rs->verify_pos, len, true) < 0)
			break;		/* out of memory: try again (timer below) */
		rs->verify_pos += len;
	}
	if (rs->verify && rs->verify_pos < d->size && rs->inflight_bytes == 0) {
		/* Over the resync-rate budget with nothing in flight: no
		 * reply will call us again; look again in 10 ms. */
		rs_timer_arm(p, 10);
	}
	if (rs->verify && rs->verify_pos >= d->size && rs->inflight_bytes == 0) {
		rs->verify = false;
		send_done(p, REPL_DONE_VERIFY, rs->verify_diff);
		log_notice("verify done: %" PRIu64 " bytes compared, %" PRIu64
		    " bytes differ and are marked out of sync", rs->verify_done, rs->verify_diff);
		state_event(d, "verify-done", "%" PRIu64 " bytes differ", rs->verify_diff);
		state_set(d, "verify done", -1, -1, -1, RS_ESTABLISHED, NULL);
	}
}

int
verify_start(struct daemon *d)
{
	struct peer *p = d->link;
	struct resync *rs;

	if (p == NULL || p->rs != RS_ESTABLISHED)
		return -ENOTCONN;
	rs = &p->rs_state;
	if (rs->verify || rs->active)
		return -EBUSY;
	if (rs->verify_orphans > 0)
		return -EAGAIN;	/* an old reply could be taken for a new one */
	rs->verify = true;
	rs->stopped = false;
	rs->verify_pos = rs->verify_diff = rs->verify_done = 0;
	rs->inflight_bytes = 0;
	rs->limit_base_ns = now_ns();		/* resync-rate limits verify too */
	rs->limit_base_bytes = 0;		/* verify_done is 0 here */
	log_notice("verify: comparing %" PRIu64 " bytes with the peer", d->size);
	state_event(d, "verify-start", "%" PRIu64 " bytes", d->size);
	verify_kick(p);
	return 0;
}

/* The chunk q (held, its data read) differs: compare each granule. */
static void
verify_refine(struct peer *p, struct rsreq *q)
{
	uint32_t gran = p->d->md->bm.granularity;
	struct repl_tx tx = peer_tx(p);

	q->refining = true;
	q->sent_ns = now_ns();
	for (uint64_t o = 0; o < q->vr.io.len; o += gran) {
		uint64_t len = MIN((uint64_t)gran, q->vr.io.len - o);
		struct repl_verify_request m = { .offset = q->vr.io.offset + o,
		    .length = (uint32_t)len,
		    .digest = repl_digest((uint8_t *)q->data.p + o, len) };
		struct peer_frame *f = peer_frame_new();
		int n = repl_verify_request_encode(f->buf, sizeof(f->buf), &tx, &m);

		f->len = n > 0 ? (uint32_t)n : 0;
		peer_send(n > 0 ? p->data : NULL, f);
		q->sub_pending++;
	}
}

/* The verify chunk being refined that holds offset off. */
static struct rsreq *
refining_find(uint64_t off)
{
	for (struct rangeidx_node *n = rangeidx_first(&rs_inflight, off, off + 1); n != NULL;
	    n = rangeidx_next(&rs_inflight, n, off, off + 1)) {
		struct rsreq *q = container_of(n, struct rsreq, rnode);

		if (q->verify && q->refining)
			return q;
	}
	return NULL;
}

static void
verify_chunk_done(struct peer *p, struct rsreq *q)
{
	struct resync *rs = &p->rs_state;

	rsreq_unlink(q);
	rs->inflight_bytes -= q->vr.io.len;
	rs->verify_done += q->vr.io.len;
	vol_peer_done(p->d, &q->vr, 0);
	verify_kick(p);
}

static void
on_verify_reply(struct peer *p, const struct repl_verify_reply *m)
{
	struct resync *rs = &p->rs_state;
	struct rsreq *q = rsreq_find(m->offset, m->length);
	bool differs = m->flags & REPL_VERIFY_F_DIFFERS;

	if (q != NULL && q->verify && !q->refining) {
		/* Our read failed: nothing to narrow down from (the buffer
		 * holds no data of the chunk); the whole chunk counts. */
		differs = differs || q->vr.local_res < 0;
		if (differs && m->length > p->d->md->bm.granularity && q->vr.local_res >= 0) {
			verify_refine(p, q);
			return;
		}
	} else if ((q = refining_find(m->offset)) != NULL) {
		q->sub_pending--;
	} else if (rs->verify_orphans > 0) {
		/* A reply to a verify stopped on this live link: what it
		 * found different is marked all the same. */
		rs->verify_orphans--;
		if (differs)
			meta_set_oos(p->d, m->offset, m->length);
		return;
	} else if (rs->stopped) {
		return;		/* answer to a chunk of a stopped verify */
	} else {
		peer_link_down(p, REPL_DISC_PROTOCOL, "VERIFY_REPLY for a range not in flight");
		return;
	}
	if (differs) {
		rs->verify_diff += m->length;
		meta_set_oos(p->d, m->offset, m->length);
		log_info("verify: %" PRIu32 " bytes at offset %" PRIu64 " differ",
		    m->length, m->offset);
	}
	if (!q->refining || q->sub_pending == 0)
		verify_chunk_done(p, q);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* Target: ask the source for the data of a range it offered a digest for. */
static void
resync_request_range(struct peer *p, uint64_t off, uint32_t len)
{
	struct repl_resync_request rr = { .offset = off, .length = len };
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	int n = repl_resync_request_encode(f->buf, sizeof(f->buf), &tx, &rr);

	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? p->data : NULL, f);
}

/* Settle a range on the source without writing it (status: positive errno). */
static void
resync_ack_status(struct peer *p, uint64_t off, uint32_t len, uint32_t status)
{
	struct repl_resync_ack a = { .offset = off, .length = len, .status = status };
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	int n = repl_resync_ack_encode(f->buf, sizeof(f->buf), &tx, &a);

	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? p->meta : NULL, f);
}

/*
 * RESYNC_DATA and CSUM_REQUEST are for a sync target.  Any other role
 * means the two nodes took no mirror-image roles (a promotion raced with
 * the decision at connect, and both became sync source): acting on them
 * would write one source's data over the other's, or wait for ever behind
 * this node's own resync reads.  The link goes down and the next connect
 * decides again.  A target whose resync stopped because its disk was
 * detached answers them with an error (tgt_start).
 */
static bool
target_frame_ok(struct peer *p, uint16_t type)
{
	const struct resync *rs = &p->rs_state;
	char why[160];

	if (!rs->source && (rs->active || (rs->stopped && diskfail_detached(p->d))))
		return true;
	snprintf(why, sizeof(why), "%s while this node is %s", repl_type_name(type),
	    rs->active ? "the sync source too" : "not a sync target");
	log_err("resync: %s: the nodes disagree on the direction; reconnecting", why);
	peer_link_down(p, REPL_DISC_PROTOCOL, why);
	return false;
}

/*
 * The peer verifies while this node does too: each would hold its chunk
 * against the other's read of it, and both wait for ever (when neither is
 * primary).  The node with the higher node id stops its own verify; the
 * other's goes on.
 */
static void
verify_yield(struct peer *p)
{
	if (p->rs_state.verify && p->d->md->sb.node_id > p->peer_hello.node_id)
		verify_abandon(p, "the peer runs a verify too; the node with the higher node "
		    "id yields");
}

void
resync_handle(struct peer *p, const struct repl_hdr *h, const union repl_msg *m,
    struct buf *payload, const uint8_t *body, size_t len)
{
	struct rsreq *q;

	switch (h->type) {
	case REPL_MSG_BITMAP:
		on_bitmap(p, &m->bitmap, body, len);
		return;
	case REPL_MSG_RESYNC_DATA:
		if (!target_frame_ok(p, h->type))
			return;
		if (m->resync_data.status != 0) {
			/* Settle the range with the error: its bits stay set. */
			log_err("resync: the source could not read offset %" PRIu64 "; the range "
			    "stays out of sync", m->resync_data.offset);
			p->rs_state.failed_ranges++;
			p->rs_state.failed_bytes += m->resync_data.length;
			resync_ack_status(p, m->resync_data.offset, m->resync_data.length,
			    m->resync_data.status);
			return;
		}
		if (peerread_newer_write(p->d, m->resync_data.offset, m->resync_data.length,
		    m->resync_data.applied_seq)) {
			/* We are primary and wrote there after the source read
			 * it: refuse the stale data, the range stays marked and
			 * the source sends it again later.  (Writing it would
			 * also wait behind our write, which waits on the peer
			 * behind this range: a deadlock.) */
			log_debug("resync: %" PRIu64 "+%" PRIu32 " is older than a write of ours; "
			    "refused", m->resync_data.offset, m->resync_data.length);
			p->rs_state.stale_refused++;
			resync_ack_status(p, m->resync_data.offset, m->resync_data.length, ESTALE);
			return;
		}
		tgt_start(p, h->type, m->resync_data.offset, m->resync_data.length, 0, payload);
		return;
	case REPL_MSG_CSUM_REQUEST:
		if (!target_frame_ok(p, h->type))
			return;
		if (peerread_newer_write(p->d, m->csum_request.offset, m->csum_request.length, 0)) {
			/* A write of ours to the range waits on the peer behind
			 * this very range: comparing now would wait for that
			 * write (a deadlock).  Ask for the data instead; it is
			 * checked for staleness when it comes. */
			resync_request_range(p, m->csum_request.offset, m->csum_request.length);
			return;
		}
		tgt_start(p, h->type, m->csum_request.offset, m->csum_request.length,
		    m->csum_request.digest, NULL);
		return;
	case REPL_MSG_VERIFY_REQUEST:
		verify_yield(p);
		tgt_start(p, h->type, m->verify_request.offset, m->verify_request.length,
		    m->verify_request.digest, NULL);
		return;
	case REPL_MSG_RESYNC_REQUEST:
		q = rsreq_find(m->resync_request.offset, m->resync_request.length);
		if (q == NULL && (p->rs_state.stopped || !p->rs_state.active))
			return;		/* a range of a stopped resync: released */
		/* Only after our CSUM_REQUEST for it: before, its read may
		 * still be filling the buffer the data would go from. */
		if (q == NULL || q->verify || q->data_sent || !q->req_sent) {
			peer_link_down(p, REPL_DISC_PROTOCOL, "RESYNC_REQUEST for a range not in flight");
			return;
		}
		send_range(q, REPL_MSG_RESYNC_DATA, 0, 0);
		return;
	case REPL_MSG_RESYNC_ACK:
		range_settled(p, m->resync_ack.offset, m->resync_ack.length,
		    m->resync_ack.status, false);
		return;
	case REPL_MSG_CSUM_SAME:
		range_settled(p, m->csum_same.offset, m->csum_same.length, 0, true);
		return;
	case REPL_MSG_VERIFY_REPLY:
		on_verify_reply(p, &m->verify_reply);
		return;
	case REPL_MSG_RESYNC_DONE:
		if (m->resync_done.kind == REPL_DONE_RESYNC)
			p->rs_state.done_sent = true;	/* finish on the source's STATE */
		else
			state_event(p->d, "verify-done", "%" PRIu64 " bytes differ",
			    m->resync_done.bytes);
		return;
	case REPL_MSG_PROMOTE_NOTICE:
		return;
	}
	peer_link_down(p, REPL_DISC_PROTOCOL, "unexpected frame on the link");
}

void
resync_stop(struct peer *p)
{
	struct resync *rs = &p->rs_state;
	struct rsreq *q;

	loop_timer_cancel(p->d->loop, &rs->timer);
	if (rs->verify) {
		/* A waiting "blkmirrorctl verify" learns it ended unfinished. */
		state_event(p->d, "verify-stopped", "after %" PRIu64 " of %" PRIu64 " bytes; %"
		    PRIu64 " bytes differ so far", rs->verify_done, p->d->size, rs->verify_diff);
	}
	rs->stopped = rs->active || rs->verify;
	rs->active = false;
	rs->verify = false;
	rs->inflight_bytes = 0;
	if (p->data == NULL)
		rs->verify_orphans = 0;	/* the link is gone: no late replies */
	/* A target's ranges waiting for their bitmap block go. */
	meta_drop_resync_waiters(p->d, -ECANCELED);
	/* Ranges in flight keep their bits; release their holds.  A read
	 * still running is not shipped when it completes. */
	while (rs_inflight.root != NULL) {
		q = container_of(rs_inflight.root, struct rsreq, rnode);
		rsreq_unlink(q);
		q->abandoned = true;
		if (q->verify && p->data != NULL)
			rs->verify_orphans += q->refining ? q->sub_pending : q->req_sent;
		if (!q->vr.peer_done)
			vol_peer_done(p->d, &q->vr, 0);
	}
}

/*
 * The peer starts a resync while this node verifies (a pull-ahead that
 * drained, "resync" or "invalidate" there): the verify ends here, with
 * the differences found so far marked (the resync covers them), and this
 * node takes part in the resync.  Refusing it instead made the peer's
 * BITMAP that follows a protocol error (the link went down).  Replies to
 * the verify's requests still on their way are counted and their
 * differences marked (on_verify_reply).
 */
void
verify_abandon(struct peer *p, const char *why)
{
	struct resync *rs = &p->rs_state;
	uint64_t done = rs->verify_done, diff = rs->verify_diff;

	if (!rs->verify)
		return;
	resync_stop(p);
	log_notice("verify: stopped after %" PRIu64 " of %" PRIu64 " bytes (%s); %" PRIu64
	    " bytes found different so far are marked out of sync", done, p->d->size, why, diff);
}

void
resync_show_pause(struct peer *p)
{
	struct resync *rs = &p->rs_state;
	bool paused = rs->paused || p->peer_paused;
	enum link_state want;

	if (!rs->active)
		return;
	if (rs->source)
		want = paused ? RS_PAUSED_SYNC_SOURCE : RS_SYNC_SOURCE;
	else
		want = paused ? RS_PAUSED_SYNC_TARGET : RS_SYNC_TARGET;
	if (p->rs != want)
		state_set(p->d, paused ? "resync paused" : "resync resumed", -1, -1, -1, want,
		    rs->paused ? "pause-sync on this node" :
		    p->peer_paused ? "pause-sync on the peer" : NULL);
}

void
resync_cmd_pause(struct daemon *d, bool pause)
{
	struct peer *p = d->link;
	struct resync *rs = &p->rs_state;

	if (rs->paused == pause)
		return;
	rs->paused = pause;
	if (!pause) {
		rs->limit_base_ns = now_ns();
		rs->limit_base_bytes = rate_done(rs);
	}
	resync_show_pause(p);
	state_send(p);
	resync_kick(p);
}
