/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A sync target made primary (DESIGN.md: "a sync target can be made
 * primary"), and a primary whose disk was detached after an I/O error
 * (diskfail.c: every read goes to the peer): its disk is not uptodate until
 * the resync ends, so
 *   - a client read that touches an out-of-sync block is served by the
 *     peer (READ_REQUEST / READ_REPLY on the data connection); reads of
 *     blocks in sync stay local;
 *   - writes are replicated as usual but complete only on the peer's
 *     WRITE_ACK whatever the protocol (replicate.c, vol_req.peer_only_copy):
 *     the peer holds the only good copy of the blocks still out of sync;
 *   - while the peer cannot serve (link down, peer not uptodate) reads of
 *     out-of-sync blocks and every write fail with EIO: this node must not
 *     invent data, nor take writes that a later resync from the peer would
 *     silently overwrite.
 * Ordering: READ_REQUEST follows, on the same connection, every write this
 * node shipped before it, and the peer reads through its volume as a
 * conflict holder, so the reply holds every write the client saw complete.
 *
 * Resync data and this node's own writes: the source read a range at some
 * point of the stream of our writes it applied (RESYNC_DATA.applied_seq).
 * A client write here that overlaps the range and that the source had not
 * applied then would be overwritten by older data; such resync data is
 * refused (resync.c) and the range stays out of sync for a later pass
 * (peerread_newer_write below decides).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "repl.h"
#include "util.h"

/* A client read sent to the peer, or failed and completing on the next turn. */
struct pread {
	struct vol_req *vr;		/* the client's read */
	uint64_t id;			/* READ_REQUEST id */
	uint64_t sent_ns;		/* when it went to the peer (ko-count) */
	struct loop_op op;		/* deferred completion (failures) */
	struct pread *next;		/* pending list */
};
static struct pread *pending;		/* sent, waiting for READ_REPLY */
static uint64_t next_id;		/* last id handed out */

/* A READ_REQUEST being served (source side). */
struct sread {
	struct vol_req vr;		/* the read (a conflict holder) */
	struct peer *p;			/* link it came on */
	struct buf data;		/* the range's data */
	uint64_t id;			/* the request's id */
	uint64_t link_gen;		/* p->connects when it came */
};

bool
peerread_peer_serves(const struct daemon *d)
{
	const struct peer *p = d->link;

	if (p == NULL || p->data == NULL || p->peer_state.disk != REPL_DISK_UPTODATE)
		return false;
	if (diskfail_detached(d))	/* a diskless primary: no resync runs */
		return p->rs == RS_ESTABLISHED;
	return (p->rs == RS_SYNC_TARGET || p->rs == RS_PAUSED_SYNC_TARGET) &&
	    p->rs_state.bitmap_received;
}

static void
deferred_done(struct loop_op *op, int res)
{
	struct pread *r = op->data;
	struct vol_req *vr = r->vr;

	free(r);
	vr->done(vr, res);
}

/*
 * Complete vr with res on the next loop turn, not from inside the caller's
 * submit.  Out of memory even for that, complete it at once: running it
 * locally instead could return or overwrite data that is not good.
 */
static bool
fail_later(struct daemon *d, struct vol_req *vr, int res)
{
	struct pread *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		vr->done(vr, res);
		return true;
	}
	r->vr = vr;
	r->op.cb = deferred_done;
	r->op.data = r;
	loop_defer(d->loop, &r->op, res);
	return true;
}

/* No good copy reachable: fail vr with EIO, count and log it. */
static bool
no_data(struct daemon *d, struct vol_req *vr)
{
	uint64_t n = d->link->io_refused_no_data++;

	if (n % 1000 == 0)
		log_err("volume: %s at offset %" PRIu64 " failed: the local disk is %s and "
		    "the peer cannot serve its data (%" PRIu64 " such requests so far)",
		    vr->io.opcode == IO_READ ? "read" : "write", vr->io.offset,
		    disk_state_name(d->disk), n + 1);
	return fail_later(d, vr, -EIO);
}

bool
peerread_send(struct daemon *d, struct vol_req *vr)
{
	struct peer *p = d->link;
	struct pread *r = calloc(1, sizeof(*r));
	struct repl_read_request m = { .offset = vr->io.offset, .length = (uint32_t)vr->io.len };
	struct repl_tx tx = peer_tx(p);
	struct peer_frame *f;
	int n;

	if (r == NULL)
		return fail_later(d, vr, -ENOMEM);
	r->vr = vr;
	r->id = m.id = ++next_id;
	f = peer_frame_new();
	n = repl_read_request_encode(f->buf, sizeof(f->buf), &tx, &m);
	if (n < 0) {
		f->len = 0;
		peer_send(NULL, f);
		free(r);
		return fail_later(d, vr, n);
	}
	f->len = (uint32_t)n;
	r->sent_ns = now_ns();
	r->next = pending;
	pending = r;
	log_debug("peerread: read %" PRIu64 "+%" PRIu64 " from the peer (id %" PRIu64 ")",
	    vr->io.offset, vr->io.len, r->id);
	peer_send(p->data, f);
	return true;
}

bool
peerread_divert(struct daemon *d, struct vol_req *vr)
{
	if (d->md == NULL || d->role != ROLE_PRIMARY || d->disk == DISK_UPTODATE)
		return false;
	switch (vr->io.opcode) {
	case IO_READ:
		if (!diskfail_detached(d) &&
		    !md_bitmap_test_range(&d->md->bm, vr->io.offset, vr->io.len))
			return false;	/* in sync: the local copy is good */
		if (!peerread_peer_serves(d))
			return no_data(d, vr);
		return peerread_send(d, vr);
	case IO_WRITE:
	case IO_TRIM:
	case IO_WRITE_ZEROES:
		return peerread_peer_serves(d) ? false : no_data(d, vr);
	default:
		return false;	/* FLUSH: harmless locally, shipped when connected */
	}
}

/* ---- target side: the reply ------------------------------------------------------ */

static void
on_reply(struct peer *p, const struct repl_read_reply *m, struct buf *payload)
{
	struct pread **pp, *r;
	struct vol_req *vr;

	for (pp = &pending; *pp != NULL && (*pp)->id != m->id; pp = &(*pp)->next)
		;
	r = *pp;
	if (r == NULL || r->vr->io.offset != m->offset || r->vr->io.len != m->length) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "READ_REPLY for no read in flight");
		return;
	}
	*pp = r->next;
	vr = r->vr;
	free(r);
	if (m->status != 0) {
		log_err("peerread: the peer failed to read offset %" PRIu64 ": %s",
		    m->offset, strerror((int)m->status));
		vr->done(vr, -(int)m->status);
		return;
	}
	memcpy(vr->io.buf, payload->p, m->length);
	p->reads_from_peer++;
	p->read_bytes_from_peer += m->length;
	vr->done(vr, 0);
}

/* When the oldest read still waiting for the peer's READ_REPLY went out;
 * false if none (ko-count judges it as it does writes). */
bool
peerread_oldest(uint64_t *sent_ns)
{
	bool any = false;

	for (const struct pread *r = pending; r != NULL; r = r->next)
		if (!any || r->sent_ns < *sent_ns) {
			*sent_ns = r->sent_ns;
			any = true;
		}
	return any;
}

void
peerread_link_lost(struct peer *p)
{
	struct pread *r;

	(void)p;
	while ((r = pending) != NULL) {
		struct vol_req *vr = r->vr;

		pending = r->next;
		free(r);
		log_err("peerread: read at offset %" PRIu64 " failed: the link to the peer "
		    "went down", vr->io.offset);
		vr->done(vr, -EIO);
	}
}

/* ---- source side: serve a read ----------------------------------------------------- */

static void
reply_sent(struct peer_frame *f, int res)
{
	struct sread *sr = f->ctx;

	(void)res;
	sr->p->serving_read_bytes -= sr->vr.io.len;
	bufpool_put(&sr->vr.d->pool, &sr->data);
	free(sr);
}

static void
sread_done(struct vol_req *vr, int res)
{
	struct sread *sr = vr->owner;
	struct peer *p = sr->p;
	struct repl_read_reply m = { .id = sr->id, .offset = vr->io.offset,
	    .length = (uint32_t)vr->io.len, .status = (uint32_t)-res };
	struct repl_tx tx;
	struct peer_frame *f;
	int n;

	if (!peer_link_is(p, sr->link_gen)) {
		p->serving_read_bytes -= vr->io.len;
		bufpool_put(&vr->d->pool, &sr->data);
		free(sr);
		return;		/* the link went: the requester failed the read */
	}
	if (res < 0)
		log_errno(LOG_ERR, res, "peerread: reading offset %" PRIu64 " for the peer failed",
		    vr->io.offset);
	tx = peer_tx(p);
	f = peer_frame_new();
	n = repl_read_reply_encode(f->buf, sizeof(f->buf), &tx, &m);
	f->len = n > 0 ? (uint32_t)n : 0;
	if (n > 0 && res == 0) {
		f->payload = sr->data.p;
		f->payload_len = (uint32_t)vr->io.len;
	}
	f->sent = reply_sent;
	f->ctx = sr;
	peer_send(n > 0 ? p->data : NULL, f);
}

static void
on_request(struct peer *p, const struct repl_read_request *m)
{
	struct daemon *d = p->d;
	struct sread *sr;

	if (repl_check_range(m->offset, m->length, d->size, d->block_size) < 0) {
		peer_link_down(p, REPL_DISC_PROTOCOL, "READ_REQUEST outside the volume");
		return;
	}
	if (d->role == ROLE_PRIMARY) {
		peer_link_down(p, REPL_DISC_STATE_CONFLICT,
		    "the peer asked this primary for reads (two primaries)");
		return;
	}
	if (p->serving_read_bytes + m->length > PEER_READS_MAX) {
		char why[128];

		snprintf(why, sizeof(why), "the peer has more than %u MiB of reads in flight",
		    PEER_READS_MAX >> 20);
		peer_link_down(p, REPL_DISC_PROTOCOL, why);
		return;
	}
	if ((sr = calloc(1, sizeof(*sr))) == NULL ||
	    bufpool_get(&d->pool, m->length, &sr->data) < 0) {
		free(sr);
		peer_link_down(p, REPL_DISC_PROTOCOL, "out of memory serving a read");
		return;
	}
	p->reads_for_peer++;
	p->serving_read_bytes += m->length;
	sr->p = p;
	sr->id = m->id;
	sr->link_gen = p->connects;
	sr->vr.d = d;
	sr->vr.owner = sr;
	sr->vr.done = sread_done;
	sr->vr.io.opcode = IO_READ;
	sr->vr.io.offset = m->offset;
	sr->vr.io.len = m->length;
	sr->vr.io.buf = sr->data.p;
	sr->vr.io.buf_index = sr->data.index;
	/* A conflict holder: it reads after the writes that came before it. */
	sr->vr.is_write = true;
	sr->vr.is_resync = true;
	if (d->disk != DISK_UPTODATE) {
		/* Nothing good to give: answer with the error at once. */
		sr->vr.local_res = -EIO;
		sread_done(&sr->vr, -EIO);
		return;
	}
	vol_submit(d, &sr->vr);
}

void
peerread_handle(struct peer *p, const struct repl_hdr *h, const union repl_msg *m,
    struct buf *payload)
{
	if (h->type == REPL_MSG_READ_REQUEST)
		on_request(p, &m->read_request);
	else
		on_reply(p, &m->read_reply, payload);
}

/* ---- resync data against this node's own writes ------------------------------------- */

bool
peerread_newer_write(struct daemon *d, uint64_t off, uint64_t len, uint64_t applied_seq)
{
	if (d->role != ROLE_PRIMARY)
		return false;	/* no writes of our own */
	for (struct rangeidx_node *n = rangeidx_first(&d->writes, off, off + len); n != NULL;
	    n = rangeidx_next(&d->writes, n, off, off + len)) {
		struct vol_req *o = container_of(n, struct vol_req, wnode);

		/* A client write not yet shipped, or shipped after the read. */
		if (!o->is_resync && (!o->shipped || o->peer_seq > applied_seq))
			return true;
	}
	return false;
}
