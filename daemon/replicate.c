/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The replicated write path, both sides (DESIGN.md "The write path").
 *
 * Primary: vol_start() hands every write, trim, write-zeroes and (in sync
 * and memsync) flush to repl_ship(), which gives it the next sequence number
 * and queues the frame on the data socket; the write completes to the client
 * when the local disk finished and the peer condition of the protocol holds:
 *   sync     WRITE_ACK (peer's disk) / FLUSH_ACK
 *   memsync  RECV_ACK (peer received) / FLUSH_ACK
 *   async    the frame left in a sendmsg (in the kernel's send buffer);
 *            unacknowledged bytes count against max-lag-bytes.
 * Secondary: frames are applied in arrival (= sequence) order through the
 * volume, whose conflict rule keeps overlapping writes in that order; a
 * FLUSH waits for every earlier write, then fdatasync, then FLUSH_ACK.
 * When the link goes, every write the peer did not confirm is marked out of
 * sync in the bitmap (repl_link_lost), and so is every write it confirmed
 * but has not flushed yet ("unflushed" below).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repl.h"
#include "util.h"

/* An async write sent but not yet written by the peer (lag and bitmap). */
struct lag_rec {
	uint64_t seq;			/* its sequence number */
	uint64_t offset, len;		/* range, marked out of sync if lost */
	uint64_t shipped_ns;		/* when its frame was queued (ko-count) */
	bool keep_marked;		/* the local write failed: never clear */
	bool al_held;			/* holds the range's AL extents */
	struct lag_rec *next;		/* FIFO link */
};
static struct lag_rec *lag_head, *lag_tail;

/* A write applied on the secondary. */
struct apply {
	struct vol_req vr;		/* volume request; vr.owner = this */
	struct peer *p;			/* link it came on */
	struct buf data;		/* payload (DATA) */
	uint16_t type;			/* REPL_MSG_* it came as */
	uint64_t link_gen;		/* p->connects when it came: acknowledge it
					 * only on the link it came on */
	uint64_t held;			/* its share of p->apply_bytes */
};

/*
 * Unflushed writes (primary).  A WRITE_ACK says the peer's write completed,
 * not that it is durable: it may sit in the peer's page cache (direct-io =
 * no) or its disk's volatile cache until the peer's next FLUSH.  If the
 * peer then loses power, the write is gone there although this node
 * forgot it at the acknowledgement.  So every shipped write's range is
 * kept in a bitmap of its "epoch" until a FLUSH shipped after it is
 * acknowledged (the peer runs a FLUSH only after every earlier write
 * completed, and FLUSH_ACKs come in order); when the link goes, what is
 * still kept is marked out of sync like the unconfirmed writes (DRBD's
 * transfer log and barrier acks do this).  Clients' FLUSHes close epochs
 * in sync and memsync; when the open epoch's first write is UF_FLUSH_MS
 * old (always so in async, whose client FLUSHes stay local), this node
 * sends a FLUSH of its own at the next ping tick, so a link loss marks
 * about two seconds of writes at most.
 *
 * The bitmaps have the dirty bitmap's granularity, coarser on volumes so
 * large that one would pass UF_MAX_BITS bits.  An epoch closed by a FLUSH
 * (close_seq) is cleared by its FLUSH_ACK; with every epoch closed, new
 * writes go back into the newest, which is then open again and cleared
 * only by a later FLUSH.
 */
static bool shipping(struct daemon *d);

/* An own FLUSH may go to the peer: shipping, or ahead (pull-ahead: writes
 * are marked instead, but those shipped before still wait for a FLUSH). */
static bool
flushing(struct daemon *d)
{
	return shipping(d) || (d->role == ROLE_PRIMARY && d->link->data != NULL &&
	    d->link->rs == RS_AHEAD);
}

#define UF_EPOCHS	4
#define UF_MAX_BITS	(1ull << 24)	/* per epoch: 2 MiB of memory */
#define UF_FLUSH_MS	1000

struct uf_epoch {
	uint64_t *bits;			/* one bit per granule */
	size_t lo, hi;			/* words holding set bits: [lo, hi) */
	uint64_t *ext;			/* one bit per AL extent it holds */
	size_t ext_lo, ext_hi;		/* words holding set bits */
	uint64_t close_seq;		/* the FLUSH that closes it; 0: open */
	uint64_t first_ns;		/* its first write was shipped */
};
static struct {
	unsigned shift;			/* granule = 1 << shift bytes */
	size_t words;			/* per bitmap; 0: not set up */
	size_t ext_words;		/* per extent bitmap */
	struct uf_epoch ep[UF_EPOCHS];
	unsigned cur;			/* the open epoch new writes go to */
	uint64_t own_seq;		/* this node's own FLUSH waiting for its
					 * ack (0: none): one at a time */
	uint64_t own_ns;		/* when it was shipped (ko-count) */
} uf;

static bool
uf_any(const struct uf_epoch *e)
{
	return e->hi > e->lo;
}

/* Words [first, last] of a bitmap got bits: grow its span [*lo, *hi). */
static void
span_add(size_t *lo, size_t *hi, size_t first, size_t last)
{
	if (*lo == *hi) {
		*lo = first;
		*hi = last + 1;
	} else {
		*lo = MIN(*lo, first);
		*hi = MAX(*hi, last + 1);
	}
}

/* Forget e's ranges and give back the AL extents it held. */
static void
uf_clear(struct daemon *d, struct uf_epoch *e)
{
	if (uf_any(e))
		memset(e->bits + e->lo, 0, (e->hi - e->lo) * sizeof(uint64_t));
	e->lo = e->hi = 0;
	e->close_seq = 0;
	for (size_t w = e->ext_lo; w < e->ext_hi; w++) {
		for (uint64_t bits = e->ext[w]; bits != 0; bits &= bits - 1) {
			uint64_t x = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(bits);

			meta_al_release(d, x << MD_AL_EXTENT_SHIFT, 1);
		}
		e->ext[w] = 0;
	}
	e->ext_lo = e->ext_hi = 0;
}

/*
 * The AL extents of vr stay active while e holds ranges of them: were one
 * evicted before the peer flushed, a crash of both nodes (the peer losing
 * its cache) would leave this disk newer than the peer's, with neither
 * the log nor the bitmap naming the range.  One hold per extent and epoch.
 */
static void
uf_hold_extents(struct daemon *d, struct uf_epoch *e, const struct vol_req *vr)
{
	uint32_t first = md_al_extent_of(vr->io.offset);
	uint32_t last = md_al_extent_of(vr->io.offset + vr->io.len - 1);

	for (uint32_t x = first; x <= last; x++) {
		size_t w = x / 64;
		uint64_t bit = 1ull << (x % 64);

		if (w >= uf.ext_words || (e->ext[w] & bit) || !meta_al_get(d, x))
			continue;
		e->ext[w] |= bit;
		span_add(&e->ext_lo, &e->ext_hi, w, w);
	}
}

/* Keep vr's range until a FLUSH after it is acknowledged. */
static void
uf_mark(struct daemon *d, const struct vol_req *vr)
{
	uint64_t off = vr->io.offset, len = vr->io.len;
	struct uf_epoch *e;
	uint64_t first, last;

	if (len == 0)
		return;
	if (uf.words == 0) {
		uf.shift = d->md != NULL ? d->md->bm.gran_shift : 12;
		while ((d->size >> uf.shift) >= UF_MAX_BITS)
			uf.shift++;
		uf.words = (size_t)(((d->size >> uf.shift) + 1 + 63) / 64);
		uf.ext_words = (size_t)(((d->size >> MD_AL_EXTENT_SHIFT) + 1 + 63) / 64);
	}
	e = &uf.ep[uf.cur];
	if ((e->bits == NULL && (e->bits = calloc(uf.words, sizeof(uint64_t))) == NULL) ||
	    (e->ext == NULL && (e->ext = calloc(uf.ext_words, sizeof(uint64_t))) == NULL)) {
		meta_set_oos(d, off, len);	/* cannot keep it: as if lost */
		return;
	}
	if (vr->al_pinned)
		uf_hold_extents(d, e, vr);
	first = off >> uf.shift;
	last = (off + len - 1) >> uf.shift;
	if (!uf_any(e))
		e->first_ns = now_ns();
	for (uint64_t g = first; g <= last; g++)
		e->bits[g / 64] |= 1ull << (g % 64);
	span_add(&e->lo, &e->hi, (size_t)(first / 64), (size_t)(last / 64));
}

/* A FLUSH with sequence number seq was shipped: it closes the open epoch. */
static void
uf_flush_shipped(uint64_t seq)
{
	struct uf_epoch *e = &uf.ep[uf.cur];

	if (!uf_any(e))
		return;
	e->close_seq = seq;
	for (unsigned i = 1; i < UF_EPOCHS; i++) {
		unsigned n = (uf.cur + i) % UF_EPOCHS;

		if (!uf_any(&uf.ep[n]) && uf.ep[n].close_seq == 0) {
			uf.cur = n;
			return;
		}
	}
	/* All in use: this one stays open, for a later FLUSH to close. */
	e->close_seq = 0;
}

/* FLUSH_ACK for seq: the epochs it closes are durable on the peer. */
static void
uf_flush_acked(struct daemon *d, uint64_t seq)
{
	for (unsigned i = 0; i < UF_EPOCHS; i++)
		if (uf.ep[i].close_seq != 0 && uf.ep[i].close_seq <= seq)
			uf_clear(d, &uf.ep[i]);
}

/* Mark granules [g, g + n) out of sync (clipped to the volume); bytes. */
static uint64_t
uf_mark_run(struct daemon *d, uint64_t g, uint64_t n)
{
	uint64_t off = g << uf.shift, len;

	if (n == 0 || off >= d->size)
		return 0;
	len = MIN(n << uf.shift, d->size - off);
	meta_set_oos(d, off, len);
	return len;
}

/* The link went: mark what no FLUSH_ACK covered.  Bytes marked. */
static uint64_t
uf_link_lost(struct daemon *d)
{
	uint64_t marked = 0;

	for (unsigned i = 0; i < UF_EPOCHS; i++) {
		struct uf_epoch *e = &uf.ep[i];
		uint64_t run = 0, run_len = 0;	/* granules set one after the other */

		for (size_t w = e->lo; w < e->hi; w++) {
			for (uint64_t bits = e->bits[w]; bits != 0; bits &= bits - 1) {
				uint64_t g = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(bits);

				if (run_len > 0 && g == run + run_len) {
					run_len++;
					continue;
				}
				marked += uf_mark_run(d, run, run_len);
				run = g;
				run_len = 1;
			}
		}
		marked += uf_mark_run(d, run, run_len);
		/* The marks are in memory: the extents stay active until the
		 * bitmap holds them on disk (victims_durable in meta.c). */
		uf_clear(d, e);
	}
	uf.cur = 0;
	uf.own_seq = 0;
	return marked;
}

/* A FLUSH of this node's own, not a client's (repl_tick). */
static void
ship_own_flush(struct peer *p)
{
	struct repl_tx tx = peer_tx(p);
	struct repl_flush m = { .seq = p->send_seq + 1 };
	struct peer_frame *f = peer_frame_new();
	int n = repl_flush_encode(f->buf, sizeof(f->buf), &tx, &m);

	if (n < 0) {
		log_errno(LOG_ERR, n, "replication: cannot encode a FLUSH");
		f->len = 0;
		peer_send(NULL, f);	/* releases it */
		return;
	}
	f->len = (uint32_t)n;
	p->send_seq++;
	p->peer_flushes++;
	uf.own_seq = p->send_seq;
	uf.own_ns = now_ns();
	uf_flush_shipped(p->send_seq);
	f->seq = p->send_seq;
	peer_send(p->data, f);
}

static uint64_t
uf_flush_ms(void)
{
	static uint64_t ms;

	if (ms == 0) {
		ms = test_setting("BLKMIRROR_TEST_PEER_FLUSH_MS", 3600000,
		    "the interval of the FLUSHes this node sends on its own (ms)");
		if (ms == 0)
			ms = UF_FLUSH_MS;
	}
	return ms;
}

bool
repl_tick(struct peer *p)
{
	struct daemon *d = p->d;
	const struct uf_epoch *e = &uf.ep[uf.cur];
	uint64_t now = now_ns();

	if (uf.own_seq != 0) {
		/* One at a time: a peer whose flushes hang gets no pile of
		 * them, and is dropped as for a write it does not complete. */
		if (now - uf.own_ns > (uint64_t)d->conf.timeout_ms * 1000000 * d->conf.ko_count) {
			peer_link_down(p, REPL_DISC_TIMEOUT,
			    "peer did not complete a FLUSH within timeout x ko-count");
			return false;
		}
		return true;
	}
	if (flushing(d) && uf_any(e) && now - e->first_ns >= uf_flush_ms() * 1000000)
		ship_own_flush(p);
	return true;
}

bool
repl_settled(struct daemon *d)
{
	struct peer *p = d->link;
	bool unflushed = false;

	for (unsigned i = 0; i < UF_EPOCHS; i++)
		unflushed |= uf_any(&uf.ep[i]);
	if (p == NULL || (p->pend_head == NULL && lag_head == NULL && !unflushed))
		return true;
	if (p->data != NULL && uf.own_seq == 0 && uf_any(&uf.ep[uf.cur]))
		ship_own_flush(p);
	return false;
}

void
repl_al_starved(struct daemon *d)
{
	struct peer *p = d->link;
	const struct uf_epoch *e = &uf.ep[uf.cur];

	if (p == NULL || uf.own_seq != 0 || !flushing(d) || e->ext_lo == e->ext_hi)
		return;
	p->al_starved_flushes++;
	ship_own_flush(p);
}

/* ---- primary ----------------------------------------------------------------- */

static void
pend_remove(struct peer *p, struct vol_req *vr)
{
	struct vol_req **pp;

	for (pp = &p->pend_head; *pp != NULL; pp = &(*pp)->pnext) {
		if (*pp == vr) {
			*pp = vr->pnext;
			if (p->pend_tail == vr) {
				struct vol_req *t = p->pend_head;

				while (t != NULL && t->pnext != NULL)
					t = t->pnext;
				p->pend_tail = t;
			}
			vr->pnext = NULL;
			p->n_pend--;
			if (vr->peer_only_copy)
				p->n_peer_only--;
			/* An async frame still queued or in a sendmsg must not
			 * complete vr a second time (async_sent). */
			if (vr->repl_ctx != NULL) {
				struct peer_frame *f = vr->repl_ctx;

				f->sent = NULL;
				f->ctx = NULL;
				vr->repl_ctx = NULL;
			}
			return;
		}
	}
}

static struct vol_req *
pend_find(struct peer *p, uint64_t seq)
{
	for (struct vol_req *vr = p->pend_head; vr != NULL; vr = vr->pnext)
		if (vr->peer_seq == seq)
			return vr;
	return NULL;
}

/* async: the frame is in the kernel's send buffer: the client may be told. */
static void
async_sent(struct peer_frame *f, int res)
{
	struct vol_req *vr = f->ctx;
	struct peer *p = vr->d->link;

	vr->repl_ctx = NULL;
	if (res < 0 || vr->peer_done)
		return;
	pend_remove(p, vr);
	vol_peer_done(vr->d, vr, 0);
}

static void
lag_add(struct peer *p, const struct vol_req *vr)
{
	struct lag_rec *r = malloc(sizeof(*r));

	if (r == NULL) {
		/* Cannot track it: treat it as not replicated. */
		meta_set_oos(vr->d, vr->io.offset, vr->io.len);
		return;
	}
	r->seq = vr->peer_seq;
	r->offset = vr->io.offset;
	r->len = vr->io.len;
	r->shipped_ns = vr->shipped_ns;
	r->keep_marked = false;
	r->al_held = meta_al_hold(vr->d, vr);
	r->next = NULL;
	if (lag_tail != NULL)
		lag_tail->next = r;
	else
		lag_head = r;
	lag_tail = r;
	p->lag_bytes += vr->io.len;
}

bool
repl_lag_oldest(uint64_t *shipped_ns)
{
	if (lag_head == NULL)
		return false;
	*shipped_ns = lag_head->shipped_ns;
	return true;
}

static void congestion_check(struct peer *p);

static void
lag_ack(struct peer *p, uint64_t seq, int status)
{
	struct lag_rec **pp, *prev = NULL;

	for (pp = &lag_head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		struct lag_rec *r = *pp;

		if (r->seq != seq)
			continue;
		if (status != 0)
			meta_set_oos(p->d, r->offset, r->len);
		else if (!r->keep_marked &&
		    (p->rs == RS_SYNC_SOURCE || p->rs == RS_PAUSED_SYNC_SOURCE)) {
			meta_clear_oos(p->d, r->offset, r->len);
			resync_cleared(p);
		}
		*pp = r->next;
		if (lag_tail == r)
			lag_tail = prev;
		p->lag_bytes -= r->len;
		if (r->al_held)
			meta_al_release(p->d, r->offset, r->len);
		free(r);
		congestion_check(p);
		return;
	}
}

/*
 * The async send queue drained below max-lag-bytes: release writes that
 * waited (on-congestion = block), or leave AHEAD and resync what was only
 * marked meanwhile (pull-ahead), once everything sent was written.
 */
static void
congestion_check(struct peer *p)
{
	struct daemon *d = p->d;
	struct vol_req *vr;

	/* Only while the first one fits (repl_congested's own rule): one that
	 * does not would be parked again at once, at the end, and this loop
	 * would never end.  The others wait behind it, in order. */
	while ((vr = p->cong_wait) != NULL &&
	    (p->lag_bytes == 0 || p->lag_bytes + vr->io.len <= d->conf.max_lag_bytes)) {
		p->cong_wait = vr->pnext;
		vr->pnext = NULL;
		/* Again through the metadata step: the link state may have
		 * changed (ahead, down) while it waited. */
		meta_prepare_write(d, vr);
	}
	if (p->rs == RS_AHEAD && p->lag_bytes == 0 && p->data != NULL &&
	    d->conf.protocol == PROTO_ASYNC) {
		log_notice("replication: send queue drained; resyncing what was marked while ahead");
		resync_begin(p, MD_SYNC_SOURCE_BITMAP);
	}
}

bool
repl_congested(struct daemon *d, struct vol_req *vr)
{
	struct peer *p = d->link;

	if (d->conf.protocol != PROTO_ASYNC || vr->io.opcode == IO_READ ||
	    vr->io.opcode == IO_FLUSH || vr->from_peer || !shipping(d) ||
	    p->lag_bytes + vr->io.len <= d->conf.max_lag_bytes || p->lag_bytes == 0)
		return false;
	/* Not while this node verifies: the resync that ends "ahead" could
	 * not start before the verify's end (as in DRBD, which pulls ahead
	 * from Connected only); block meanwhile. */
	if (d->conf.on_congestion == CONGESTION_PULL_AHEAD && p->rs == RS_ESTABLISHED &&
	    !p->rs_state.verify && !diskfail_detached(d)) {
		/* Stop shipping: from here writes are marked in the bitmap. */
		state_set(d, "pull-ahead", -1, -1, -1, RS_AHEAD,
		    "async send queue over max-lag-bytes");
		meta_set_oos(d, vr->io.offset, vr->io.len);
		return false;
	}
	vr->pnext = NULL;
	{
		struct vol_req **pp = &p->cong_wait;

		while (*pp != NULL)
			pp = &(*pp)->pnext;
		*pp = vr;
	}
	p->congestion_waits++;
	return true;
}

/* Should this write go to the peer now? */
static bool
shipping(struct daemon *d)
{
	struct peer *p = d->link;

	return d->role == ROLE_PRIMARY && p->data != NULL &&
	    (p->rs == RS_ESTABLISHED || p->rs == RS_SYNC_SOURCE ||
	    p->rs == RS_PAUSED_SYNC_SOURCE || p->rs == RS_SYNC_TARGET ||
	    p->rs == RS_PAUSED_SYNC_TARGET);
}

/*
 * For tests: BLKMIRROR_TEST_SEQ_GAP=N puts sequence number + 1 on the wire
 * in the Nth write frame this process encodes (once), as a broken or
 * hostile peer would: the secondary must refuse the gap.
 */
static uint64_t
test_seq_skew(void)
{
	static int64_t left = -1;

	if (left < 0)
		left = (int64_t)test_setting("BLKMIRROR_TEST_SEQ_GAP", INT64_MAX,
		    "that write frame goes out with a wrong sequence number");
	return left > 0 && --left == 0 ? 1 : 0;
}

/* Encode vr's frame into f; false if vr is not replicated (reads, async flush). */
static bool
encode(struct daemon *d, struct vol_req *vr, struct peer_frame *f)
{
	struct repl_tx tx = peer_tx(d->link);
	uint32_t fua = (vr->io.flags & IO_F_FUA) ? REPL_WRITE_F_FUA : 0;
	int n = -EINVAL;

	switch (vr->io.opcode) {
	case IO_WRITE: {
		struct repl_data m = { .seq = vr->peer_seq + test_seq_skew(),
		    .offset = vr->io.offset,
		    .length = (uint32_t)vr->io.len, .flags = fua };

		n = repl_data_encode(f->buf, sizeof(f->buf), &tx, &m);
		f->payload = vr->io.buf;
		f->payload_len = (uint32_t)vr->io.len;
		break;
	}
	case IO_TRIM:
	case IO_WRITE_ZEROES: {
		struct repl_trim m = { .seq = vr->peer_seq, .offset = vr->io.offset,
		    .length = (uint32_t)vr->io.len, .flags = fua };

		if (vr->io.opcode == IO_TRIM) {
			n = repl_trim_encode(f->buf, sizeof(f->buf), &tx, &m);
		} else {
			if (vr->io.flags & IO_F_NO_HOLE)
				m.flags |= REPL_WRITE_F_NO_HOLE;
			n = repl_write_zeroes_encode(f->buf, sizeof(f->buf), &tx, &m);
		}
		break;
	}
	case IO_FLUSH: {
		struct repl_flush m = { .seq = vr->peer_seq };

		if (d->conf.protocol == PROTO_ASYNC && !vr->peer_only_copy)
			return false;
		n = repl_flush_encode(f->buf, sizeof(f->buf), &tx, &m);
		break;
	}
	default:
		return false;
	}
	if (n < 0) {
		log_errno(LOG_ERR, n, "replication: cannot encode a frame");
		return false;
	}
	f->len = (uint32_t)n;
	return true;
}

bool
repl_ship(struct daemon *d, struct vol_req *vr)
{
	struct peer *p = d->link;
	struct peer_frame *f;

	if (vr->io.opcode == IO_READ || vr->from_peer || !shipping(d))
		return false;
	f = peer_frame_new();
	vr->peer_seq = p->send_seq + 1;
	/* A promoted sync target: the peer holds the only good copy of the
	 * out-of-sync blocks, so every write waits for the peer's disk. */
	vr->peer_only_copy = d->disk != DISK_UPTODATE || diskfail_detached(d);
	if (!encode(d, vr, f)) {
		f->len = 0;
		f->payload = NULL;
		f->payload_len = 0;
		peer_send(NULL, f);	/* releases it */
		return false;
	}
	p->send_seq++;
	f->seq = vr->peer_seq;
	if (vr->io.opcode == IO_FLUSH)
		uf_flush_shipped(vr->peer_seq);
	else
		uf_mark(d, vr);
	vr->shipped_ns = now_ns();
	vr->pnext = NULL;
	if (p->pend_tail != NULL)
		p->pend_tail->pnext = vr;
	else
		p->pend_head = vr;
	p->pend_tail = vr;
	p->n_pend++;
	if (vr->peer_only_copy) {
		p->n_peer_only++;
		peer_send(p->data, f);
		return true;
	}
	if (d->conf.protocol == PROTO_ASYNC && vr->io.opcode != IO_FLUSH) {
		f->sent = async_sent;
		f->ctx = vr;
		vr->repl_ctx = f;	/* repl_link_lost unhooks it */
	}
	/* async and memsync complete before the peer's disk: remember the
	 * range until WRITE_ACK says whether the peer wrote it. */
	if (d->conf.protocol != PROTO_SYNC && vr->io.opcode != IO_FLUSH)
		lag_add(p, vr);
	peer_send(p->data, f);
	return true;
}

/* The peer acknowledged vr with the wrong kind of ack. */
static void
ack_mismatch(struct peer *p, uint16_t type, const struct vol_req *vr)
{
	char why[160];

	snprintf(why, sizeof(why), "peer sent %s for sequence number %" PRIu64
	    ", a %s", repl_type_name(type), vr->peer_seq,
	    vr->io.opcode == IO_FLUSH ? "FLUSH" : "write");
	peer_link_down(p, REPL_DISC_PROTOCOL, why);
}

/* An acknowledgement from the peer for sequence number seq. */
static void
on_ack(struct peer *p, uint16_t type, uint64_t seq, uint32_t status)
{
	struct daemon *d = p->d;
	struct vol_req *vr = NULL;

	/*
	 * Only for a frame already handed to the kernel: one still queued
	 * cannot have been received, and completing its request would free
	 * the buffer the queued frame sends from.
	 */
	if (seq == 0 || seq > p->tx_seq) {
		char why[160];

		snprintf(why, sizeof(why), "peer sent %s for sequence number %" PRIu64
		    ", never sent (last sent %" PRIu64 ", last queued %" PRIu64 ")",
		    repl_type_name(type), seq, p->tx_seq, p->send_seq);
		peer_link_down(p, REPL_DISC_PROTOCOL, why);
		return;
	}
	if (type == REPL_MSG_FLUSH_ACK && (vr = pend_find(p, seq)) != NULL &&
	    vr->io.opcode != IO_FLUSH) {
		ack_mismatch(p, type, vr);
		return;
	}
	vr = NULL;
	if (type == REPL_MSG_FLUSH_ACK && seq == uf.own_seq)
		uf.own_seq = 0;
	if (type == REPL_MSG_FLUSH_ACK && status == 0)
		uf_flush_acked(p->d, seq);
	if (type == REPL_MSG_FLUSH_ACK && status != 0 && pend_find(p, seq) == NULL) {
		/* One of this node's own FLUSHes: as for a client's below. */
		log_err("replication: the peer failed FLUSH of seq %" PRIu64 ": %s; the peer's "
		    "disk is marked out of sync entirely", seq, strerror((int)status));
		meta_set_oos(d, 0, d->size);
		peer_link_down(p, REPL_DISC_IO_ERROR, "the peer's disk failed a flush");
		return;
	}
	if (type == REPL_MSG_WRITE_ACK && d->conf.protocol != PROTO_SYNC &&
	    (p->n_peer_only == 0 || (vr = pend_find(p, seq)) == NULL || !vr->peer_only_copy)) {
		/* The write completed earlier (sent / received); the peer's
		 * result decides its bits. */
		lag_ack(p, seq, (int)status);
		return;
	}
	if (vr == NULL)
		vr = pend_find(p, seq);
	if (vr == NULL)
		return;		/* already completed (link loss raced) */
	if (type != REPL_MSG_FLUSH_ACK && vr->io.opcode == IO_FLUSH) {
		ack_mismatch(p, type, vr);
		return;
	}
	if (type == REPL_MSG_RECV_ACK && vr->peer_only_copy)
		return;		/* it waits for WRITE_ACK */
	if (status != 0 && vr->io.opcode == IO_FLUSH) {
		/* Nothing tells which earlier writes the peer lost: mark the
		 * whole volume and drop the link (the client's FLUSH is
		 * durable here; the peer catches up by a full resync). */
		log_err("replication: the peer failed FLUSH of seq %" PRIu64 ": %s; the peer's "
		    "disk is marked out of sync entirely", seq, strerror((int)status));
		meta_set_oos(d, 0, d->size);
		pend_remove(p, vr);
		/* Where the peer held the only good copy, the FLUSH failed. */
		vol_peer_done(d, vr, vr->peer_only_copy ? -(int)status : 0);
		peer_link_down(p, REPL_DISC_IO_ERROR, "the peer's disk failed a flush");
		return;
	}
	if (status != 0) {
		log_warn("replication: the peer failed %s of seq %" PRIu64 ": %s; "
		    "region marked out of sync", repl_type_name(type), seq,
		    strerror((int)status));
		meta_set_oos(d, vr->io.offset, vr->io.len);
	} else if (vr->io.opcode != IO_FLUSH && type == REPL_MSG_WRITE_ACK &&
	    !vr->local_lost && !vr->local_failed &&
	    (p->rs == RS_SYNC_SOURCE || p->rs == RS_PAUSED_SYNC_SOURCE ||
	    p->rs == RS_SYNC_TARGET || p->rs == RS_PAUSED_SYNC_TARGET) &&
	    (d->disk == DISK_UPTODATE || (vr->local_done && vr->local_res >= 0))) {
		/* Sync source, or a promoted sync target: the peer wrote what we
		 * wrote, so the blocks the write covers whole are in sync.  On
		 * a promoted target only once its own write is done too: the
		 * clear sends its reads of those blocks to the local disk
		 * (peerread.c), which until then holds the stale data.  If
		 * the ack came first the bits stay: the source cleared its
		 * own, so resync_target_finish() runs another round for
		 * them. */
		meta_clear_oos(d, vr->io.offset, vr->io.len);
		resync_cleared(p);
	}
	pend_remove(p, vr);
	vol_peer_done(d, vr, status ? -(int)status : 0);
}

/* vr's local write failed and its range is marked: no WRITE_ACK may clear it. */
void
repl_keep_marked(struct daemon *d, struct vol_req *vr)
{
	vr->local_failed = true;
	if (!vr->shipped)
		return;
	for (struct lag_rec *r = lag_head; r != NULL; r = r->next)
		if (r->seq == vr->peer_seq) {
			r->keep_marked = true;
			return;
		}
}

void
repl_link_lost(struct peer *p)
{
	struct daemon *d = p->d;
	struct vol_req *vr, *lost = NULL, **tail = &lost;
	bool marked = false;
	uint64_t n;

	/* Writes the peer did not confirm may be missing there.  Where the
	 * peer held the only good copy (or will: the local disk fails it
	 * later and is detached), they fail; the others complete with their
	 * local result (finish() uses the peer's only for those), once a new
	 * generation says that this node changed alone (meta_link_lost). */
	while ((vr = p->pend_head) != NULL) {
		if (vr->io.opcode != IO_FLUSH) {
			meta_set_oos(d, vr->io.offset, vr->io.len);
			marked = true;
		}
		/* Also unhooks an async frame still queued (a send cut short
		 * by the link's end reports success for its whole batch): vr
		 * completes below, once, and may be reused after. */
		pend_remove(p, vr);
		*tail = vr;
		tail = &vr->pnext;
	}
	peerread_link_lost(p);
	while (lag_head != NULL) {
		struct lag_rec *r = lag_head;

		lag_head = r->next;
		meta_set_oos(d, r->offset, r->len);
		marked = true;
		/* The extents may leave the AL once the mark is durable
		 * (victims_durable). */
		if (r->al_held)
			meta_al_release(d, r->offset, r->len);
		free(r);
	}
	lag_tail = NULL;
	p->lag_bytes = 0;
	/* Acknowledged writes the peer may not have flushed: marked too, but
	 * they take no new generation (meta_link_lost): the peer most likely
	 * holds them, and a peer promoted meanwhile would otherwise meet this
	 * node as one that changed alone (split brain) in a plain failover. */
	if ((n = uf_link_lost(d)) > 0) {
		p->unflushed_marked += n;
		log_info("replication: %" PRIu64 " bytes the peer had not flushed yet marked "
		    "out of sync", n);
	}
	meta_link_lost(d, lost, marked);
	/* Secondary: writes of this link still running are not acknowledged
	 * any more (apply_done); the next link's FLUSHes must not wait for
	 * them, nor run before that link's own writes. */
	p->apply_head = p->apply_tail = NULL;
	/* Its FLUSHes still waiting for them run now (their results go to
	 * nobody): left queued they would hold up the next link's FLUSHes
	 * (flush_kick compares sequence numbers of two links), or be shipped
	 * as a new FLUSH of this node's if it is promoted meanwhile. */
	while ((vr = p->flush_wait) != NULL) {
		p->flush_wait = vr->pnext;
		vr->pnext = NULL;
		vol_submit(d, vr);
	}
	/* Writes parked by congestion go ahead, tracked in the bitmap. */
	while ((vr = p->cong_wait) != NULL) {
		p->cong_wait = vr->pnext;
		vr->pnext = NULL;
		meta_prepare_write(d, vr);
	}
}

/* ---- secondary ---------------------------------------------------------------- */

static void
apply_unlink(struct peer *p, struct vol_req *vr)
{
	struct vol_req **pp;

	for (pp = &p->apply_head; *pp != NULL; pp = &(*pp)->pnext) {
		if (*pp == vr) {
			*pp = vr->pnext;
			if (p->apply_tail == vr) {
				struct vol_req *t = p->apply_head;

				while (t != NULL && t->pnext != NULL)
					t = t->pnext;
				p->apply_tail = t;
			}
			return;
		}
	}
}

static void send_ack(struct peer *p, uint16_t type, uint64_t seq, int res);
static void flush_kick(struct peer *p);

static void
apply_done(struct vol_req *vr, int res)
{
	struct apply *a = vr->owner;
	struct peer *p = a->p;
	struct daemon *d = vr->d;

	/* Sequence numbers restart with each link: an acknowledgement of a
	 * write of an earlier link would name a write of this one. */
	bool same_link = peer_link_is(p, a->link_gen);

	if (vr->io.opcode == IO_FLUSH) {
		if (same_link)
			send_ack(p, REPL_MSG_FLUSH_ACK, vr->peer_seq, res);
	} else {
		apply_unlink(p, vr);
		if (res < 0)
			log_errno(LOG_ERR, res, "replication: applying seq %" PRIu64 " failed",
			    vr->peer_seq);
		else if (same_link && (p->rs == RS_SYNC_TARGET || p->rs == RS_PAUSED_SYNC_TARGET ||
		    ((p->rs == RS_SYNC_SOURCE || p->rs == RS_PAUSED_SYNC_SOURCE) &&
		    p->peer_state.role == REPL_ROLE_PRIMARY)))
			/* Both nodes hold this write now (a sync source whose
			 * peer is a promoted target clears too, or a block the
			 * target keeps rewriting would never settle). */
			meta_clear_oos(d, vr->io.offset, vr->io.len);
		if (same_link)
			send_ack(p, REPL_MSG_WRITE_ACK, vr->peer_seq, res);
		flush_kick(p);
	}
	p->apply_bytes -= a->held;
	bufpool_put(&d->pool, &a->data);
	free(a);
	peer_apply_resume(p);
}

static void
send_ack(struct peer *p, uint16_t type, uint64_t seq, int res)
{
	struct peer_frame *f = peer_frame_new();
	struct repl_tx tx = peer_tx(p);
	int n;

	if (type == REPL_MSG_FLUSH_ACK) {
		struct repl_flush_ack m = { .seq = seq, .status = (uint32_t)-res };

		n = repl_flush_ack_encode(f->buf, sizeof(f->buf), &tx, &m);
	} else if (type == REPL_MSG_RECV_ACK) {
		struct repl_recv_ack m = { .seq = seq };

		n = repl_recv_ack_encode(f->buf, sizeof(f->buf), &tx, &m);
	} else {
		struct repl_write_ack m = { .seq = seq, .status = (uint32_t)-res };

		n = repl_write_ack_encode(f->buf, sizeof(f->buf), &tx, &m);
	}
	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? p->meta : NULL, f);
}

/* Start the FLUSHes whose earlier writes have all completed. */
static void
flush_kick(struct peer *p)
{
	while (p->flush_wait != NULL &&
	    (p->apply_head == NULL || p->apply_head->peer_seq > p->flush_wait->peer_seq)) {
		struct vol_req *vr = p->flush_wait;

		p->flush_wait = vr->pnext;
		vr->pnext = NULL;
		vol_submit(p->d, vr);
	}
}

static struct apply *
apply_new(struct peer *p, uint16_t type, uint64_t seq, uint8_t opcode,
    uint64_t off, uint64_t len, uint32_t flags)
{
	struct apply *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->p = p;
	a->type = type;
	a->link_gen = p->connects;
	a->vr.d = p->d;
	a->vr.owner = a;
	a->vr.done = apply_done;
	a->vr.peer_seq = seq;
	a->vr.io.opcode = opcode;
	a->vr.io.offset = off;
	a->vr.io.len = len;
	a->vr.io.buf_index = -1;
	a->vr.io.flags = ((flags & REPL_WRITE_F_FUA) ? IO_F_FUA : 0) |
	    ((flags & REPL_WRITE_F_NO_HOLE) ? IO_F_NO_HOLE : 0);
	a->vr.is_write = opcode != IO_FLUSH;
	a->vr.from_peer = true;
	return a;
}

/* A write-type frame on the secondary. */
static void
apply(struct peer *p, const struct repl_hdr *h, const union repl_msg *m, struct buf *payload)
{
	struct daemon *d = p->d;
	struct apply *a;
	uint64_t seq, off = 0, len = 0;
	uint32_t flags = 0;
	uint8_t opcode;
	int ret;

	if (d->role == ROLE_PRIMARY) {
		peer_link_down(p, REPL_DISC_STATE_CONFLICT,
		    "the peer sent writes but this node is primary (two primaries)");
		return;
	}
	if (diskfail_detached(d)) {
		p->want_connect = false;
		peer_link_down(p, REPL_DISC_IO_ERROR,
		    "the peer sent writes but this node's disk is detached");
		state_set(d, "refused", -1, -1, CONN_STANDALONE, RS_OFF,
		    "the local disk is detached: restart blkmirrord once it is repaired");
		return;
	}
	switch (h->type) {
	case REPL_MSG_DATA:
		seq = m->data.seq; off = m->data.offset; len = m->data.length;
		flags = m->data.flags; opcode = IO_WRITE;
		break;
	case REPL_MSG_TRIM:
	case REPL_MSG_WRITE_ZEROES:
		seq = m->trim.seq; off = m->trim.offset; len = m->trim.length;
		flags = m->trim.flags;
		opcode = h->type == REPL_MSG_TRIM ? IO_TRIM : IO_WRITE_ZEROES;
		break;
	default:
		seq = m->flush.seq;
		opcode = IO_FLUSH;
	}
	if (seq != p->apply_seq + 1) {
		/* TCP keeps the order: a gap or a repeat is a broken peer. */
		char why[128];

		snprintf(why, sizeof(why), "peer sent %s with sequence number %" PRIu64
		    ", expected %" PRIu64, repl_type_name(h->type), seq, p->apply_seq + 1);
		peer_link_down(p, REPL_DISC_PROTOCOL, why);
		return;
	}
	if (opcode != IO_FLUSH &&
	    (ret = repl_check_range(off, len, d->size, d->block_size)) < 0) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "peer sent a write outside the volume");
		return;
	}
	log_debug("apply: %s seq %" PRIu64 " %" PRIu64 "+%" PRIu64, repl_type_name(h->type),
	    seq, off, len);
	p->apply_seq = seq;
	a = apply_new(p, h->type, seq, opcode, off, len, flags);
	if (a == NULL) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "out of memory applying a write");
		return;
	}
	if (opcode == IO_WRITE) {
		a->data = *payload;
		payload->p = NULL;
		a->vr.io.buf = a->data.p;
		a->vr.io.buf_index = a->data.index;
	}
	a->held = sizeof(*a) + (opcode == IO_WRITE ? len : 0);
	p->apply_bytes += a->held;	/* peer.c stops reading past PEER_APPLY_MAX */
	if (d->conf.protocol == PROTO_MEMSYNC && opcode != IO_FLUSH)
		send_ack(p, REPL_MSG_RECV_ACK, seq, 0);
	if (opcode == IO_FLUSH) {
		/* fdatasync once every earlier write completed. */
		struct vol_req **pp = &p->flush_wait;

		while (*pp != NULL)
			pp = &(*pp)->pnext;
		*pp = &a->vr;
		flush_kick(p);
		return;
	}
	a->vr.pnext = NULL;
	if (p->apply_tail != NULL)
		p->apply_tail->pnext = &a->vr;
	else
		p->apply_head = &a->vr;
	p->apply_tail = &a->vr;
	vol_submit(d, &a->vr);
}

void
repl_handle(struct peer *p, struct peer_sock *s, const struct repl_hdr *h,
    const union repl_msg *m, struct buf *payload, const uint8_t *body, size_t len)
{
	switch (h->type) {
	case REPL_MSG_DATA:
	case REPL_MSG_TRIM:
	case REPL_MSG_WRITE_ZEROES:
	case REPL_MSG_FLUSH:
		/* Only from a peer whose STATE on this link said primary (a
		 * primary ships nothing before it has ours, and its STATE
		 * comes first on data). */
		if (!p->state_received || p->peer_state.role != REPL_ROLE_PRIMARY) {
			char why[128];

			snprintf(why, sizeof(why), "peer sent %s but is not primary%s",
			    repl_type_name(h->type), p->state_received ? "" :
			    " (no STATE yet on this link)");
			peer_link_down(p, REPL_DISC_PROTOCOL, why);
			return;
		}
		apply(p, h, m, payload);
		return;
	case REPL_MSG_RECV_ACK:
		if (p->d->conf.protocol == PROTO_MEMSYNC)
			on_ack(p, h->type, m->recv_ack.seq, 0);
		return;
	case REPL_MSG_WRITE_ACK:
		on_ack(p, h->type, m->write_ack.seq, m->write_ack.status);
		return;
	case REPL_MSG_FLUSH_ACK:
		on_ack(p, h->type, m->flush_ack.seq, m->flush_ack.status);
		return;
	case REPL_MSG_READ_REQUEST:
	case REPL_MSG_READ_REPLY:
		peerread_handle(p, h, m, payload);
		return;
	default:
		resync_handle(p, h, m, payload, body, len);
	}
}
