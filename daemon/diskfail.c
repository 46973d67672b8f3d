/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Local disk errors (DESIGN.md write path 9, `on-io-error`).
 *
 * detach (default): a primary whose local I/O fails while its peer is
 * connected and uptodate drops its disk and goes on as a diskless primary:
 *   - the request that failed completes with the peer's result (a write or
 *     FLUSH the peer wrote succeeds; a read is sent to the peer);
 *   - from then on every read goes to the peer (peerread.c) and every write
 *     is shipped and completes on the peer's WRITE_ACK, whatever the
 *     protocol (repl_ship: peer_only_copy), with no local I/O, no activity
 *     log and no bitmap writes;
 *   - the superblock is marked (if the disk still takes the write)
 *     inconsistent with a full sync pending, and the peer, told by STATE,
 *     starts a new generation and keeps the old one in its history (not
 *     as its bitmap UUID): whichever of the two records survives, the old
 *     disk gets a full resync before it is used again;
 *   - without the peer (link lost) reads and writes fail with EIO: this node
 *     has no data.  At reconnect no resync runs; reads and writes go to the
 *     peer again, if it still holds the generation served (serves_exposed).
 * The diskless node cannot be promoted again; demoted, it disconnects.
 * Restarting blkmirrord (after the disk is repaired or replaced) attaches
 * the disk again as a resync target.
 *
 * A secondary detaches on a failed replicated write, flush or resync
 * write: it acknowledges the error and leaves the link (detach()).  A
 * promoted sync target keeps its disk on a client request's error (the
 * peer serves that request) and detaches on a resync write's.
 *
 * pass-on, and every case detach does not cover (standalone, no peer,
 * the peer not uptodate, a resync or verify running on the primary): the
 * error goes to the requester; a failed write of a primary marks its range
 * out of sync, since the peer may hold the data the local disk lacks, and
 * no later acknowledgement from the peer clears it (repl_keep_marked).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "repl.h"
#include "util.h"

bool
diskfail_detached(const struct daemon *d)
{
	return d->md != NULL && d->md->detached;
}

/* Is this node a primary that can lose its disk and serve from the peer? */
static bool
can_detach(const struct daemon *d)
{
	const struct peer *p = d->link;

	return d->conf.on_io_error == IOERR_DETACH && d->md != NULL && p != NULL &&
	    d->role == ROLE_PRIMARY && d->disk == DISK_UPTODATE && !d->md->detached &&
	    p->data != NULL && p->rs == RS_ESTABLISHED && !p->rs_state.active &&
	    !p->rs_state.verify && p->peer_state.disk == REPL_DISK_UPTODATE &&
	    p->peer_state.role != REPL_ROLE_PRIMARY;
}

static const char *
op_name(uint8_t opcode)
{
	switch (opcode) {
	case IO_READ:		return "read";
	case IO_WRITE:		return "write";
	case IO_FLUSH:		return "flush";
	case IO_TRIM:		return "trim";
	case IO_WRITE_ZEROES:	return "write-zeroes";
	default:		return "I/O";
	}
}

/* Queued behind the error acknowledgement of the request that failed. */
static void
leave(struct loop_op *op, int res)
{
	struct daemon *d = op->data;

	(void)res;
	if (d->link != NULL)
		peer_leave(d->link, REPL_DISC_IO_ERROR, "the disk failed and is detached");
}

/*
 * Detach the disk.  A primary goes on diskless (see the top) and tells the
 * peer by STATE.  A secondary stops being a replica: the error
 * acknowledgement of the request that failed (queued as it completes, right
 * after this returns) makes the primary mark the range; the link then goes
 * down, so the primary tracks everything else in its bitmap under a new
 * generation.  Either way the disk is inconsistent from here (superblock,
 * if it takes the write): it cannot be promoted and gets a resync when
 * blkmirrord is restarted on it.
 */
static void
detach(struct daemon *d, const char *what, int res)
{
	static struct loop_op op;
	bool primary = d->role == ROLE_PRIMARY;
	char why[200];

	snprintf(why, sizeof(why), "%s failed: %s", what, strerror(-res));
	log_err("disk: %s; detaching the local disk (on-io-error = detach): %s", why,
	    primary ? "reads and writes are served by the peer from now on" :
	    "this secondary stops replicating until blkmirrord is restarted on a "
	    "repaired disk");
	d->detaches++;
	/* The data clients see from now on is the peer's generation. */
	if (d->link != NULL)
		d->md->exposed_uuid = d->link->peer_state.current_uuid;
	/* Writes waiting for the peer whose local write completed: that copy
	 * is on the disk being dropped, so the peer's result decides. */
	if (primary && d->link != NULL)
		for (struct vol_req *vr = d->link->pend_head; vr != NULL; vr = vr->pnext)
			if (vr->local_done)
				vr->local_lost = true;
	/* The state first: the writes meta_disk_detached releases ship as
	 * writes of a diskless primary.  A promoted sync target stops its
	 * resync and is then served by the peer as any diskless primary. */
	state_set(d, "detach", -1, DISK_DISKLESS, -1,
	    primary && d->link != NULL && d->link->rs != RS_OFF ? RS_ESTABLISHED : -1, why);
	if (d->link != NULL)
		resync_stop(d->link);	/* no more resync I/O on this disk */
	meta_disk_detached(d);
	state_event(d, "detach", "%s", why);
	if (primary) {
		state_send(d->link);
	} else if (d->link != NULL && d->link->rs != RS_OFF) {
		d->link->want_connect = false;
		op.cb = leave;
		op.data = d;
		loop_defer(d->loop, &op, 0);
	}
}

int
diskfail_io_error(struct daemon *d, struct vol_req *vr, int res, bool *taken)
{
	char what[96];

	*taken = false;
	if (d->md == NULL)
		return res;	/* standalone */
	snprintf(what, sizeof(what), "%s at offset %" PRIu64 " length %" PRIu64,
	    op_name(vr->io.opcode), vr->io.offset, vr->io.len);
	if (vr->is_resync) {
		/* Resync and verify I/O report their own errors; a resync
		 * write that this target's disk fails (a secondary, or a
		 * promoted target whose peer serves) detaches it, instead of
		 * the range being retried for ever. */
		if (vr->io.opcode == IO_WRITE && d->conf.on_io_error == IOERR_DETACH &&
		    !d->md->detached && (d->role == ROLE_SECONDARY ||
		    (d->role == ROLE_PRIMARY && peerread_peer_serves(d))))
			detach(d, what, res);
		return res;
	}
	if (can_detach(d))
		detach(d, what, res);
	else if (d->role == ROLE_SECONDARY && d->conf.on_io_error == IOERR_DETACH &&
	    !d->md->detached)
		detach(d, what, res);
	if (!d->md->detached && d->role == ROLE_PRIMARY && d->disk != DISK_UPTODATE &&
	    d->conf.on_io_error == IOERR_DETACH && peerread_peer_serves(d)) {
		/* A promoted sync target: the peer holds a good copy of every
		 * block.  A failed read goes to it; a failed write completes
		 * with the peer's result (it waits for it anyway) and its
		 * range is marked, so the resync writes it here again.  The
		 * disk stays: the resync into it goes on. */
		if (vr->io.opcode == IO_READ) {
			*taken = peerread_send(d, vr);
			return res;
		}
		if (vr->io.opcode == IO_FLUSH) {
			/* Which earlier writes did not reach the disk is not
			 * known: the whole disk goes through the resync again. */
			meta_set_oos(d, 0, d->size);
		} else {
			meta_set_oos(d, vr->io.offset, vr->io.len);
			repl_keep_marked(d, vr);
		}
		if (!vr->shipped)
			return res;
		vr->local_lost = true;
		return 0;
	}
	if (!d->md->detached) {
		/* pass-on: the requester gets the error.  The peer may hold
		 * what this disk failed to write: a later resync settles it. */
		if (vr->is_write && vr->io.opcode != IO_FLUSH && d->role == ROLE_PRIMARY) {
			meta_set_oos(d, vr->io.offset, vr->io.len);
			repl_keep_marked(d, vr);
		}
		return res;
	}
	if (d->role != ROLE_PRIMARY)
		return res;	/* acknowledged with the error */
	if (vr->io.opcode == IO_READ) {
		if (peerread_peer_serves(d))
			*taken = peerread_send(d, vr);
		return res;
	}
	if (!vr->shipped && vr->io.opcode == IO_FLUSH && d->link != NULL)
		/* An async FLUSH stays local; now the peer must do it. */
		vr->shipped = repl_ship(d, vr);
	if (!vr->shipped)
		return res;	/* the peer never saw it (link gone) */
	/* The peer's result decides, on the protocol's usual condition. */
	vr->local_lost = true;
	return 0;
}

int
diskfail_after_detach(struct daemon *d, struct vol_req *vr, int res)
{
	/* Local I/O that started before the detach: what it wrote is on a
	 * disk no longer used, and a FLUSH of it says nothing. */
	if (d->role != ROLE_PRIMARY || vr->io.opcode == IO_READ || res < 0)
		return res;
	if (!vr->shipped && vr->io.opcode == IO_FLUSH && d->link != NULL)
		vr->shipped = repl_ship(d, vr);
	if (!vr->shipped)
		return -EIO;
	vr->local_lost = true;
	return 0;
}

void
diskfail_meta_error(struct daemon *d, const char *what, int res)
{
	if (can_detach(d))
		detach(d, what, res);
}

void
diskfail_peer_detached(struct peer *p)
{
	struct daemon *d = p->d;
	struct meta *m = d->md;
	uint64_t u;

	if (md_uuid_random(&u) < 0) {
		log_err("the peer detached its disk, but there is no randomness for a new "
		    "generation uuid; its disk must be invalidated before it is used again");
		return;
	}
	/* The old generation goes to the history, not to the bitmap UUID: no
	 * bitmap says what the detached disk lacks, so it gets a full resync
	 * (rule 60) -- with one superblock write, whatever the volume size.
	 * A bitmap UUID (the peer was a promoted sync target, its disk still
	 * on the generation this node's bitmap tracks from) goes too, first,
	 * or its disk would meet it by rule 50 and get only the bitmap,
	 * without the writes made while it was diskless.  The current UUID
	 * ends up newest in the history, where the diskless node looks for
	 * the generation it served (serves_exposed). */
	md_uuid_history_push(&m->sb.uuids, m->sb.uuids.bitmap);
	m->sb.uuids.bitmap = 0;
	md_uuid_history_push(&m->sb.uuids, m->sb.uuids.current);
	m->sb.uuids.current = u;
	meta_sb_write(d, NULL);
	if (p->rs_state.verify) {
		log_notice("verify: stopped: the peer's disk is detached");
		resync_stop(p);
	}
	log_warn("the peer (primary) detached its disk after an I/O error: this node holds "
	    "the only copy; new generation %016" PRIx64 " (the peer's disk gets a full "
	    "resync when it is attached again)", m->sb.uuids.current);
	state_event(d, "peer-detached", "new generation %016" PRIx64, m->sb.uuids.current);
	state_send(p);
}

/*
 * A diskless primary serves the peer's data, so the peer must still hold
 * the generation it served (DRBD checks its "exposed data UUID" the same
 * way): its current UUID, or, if the peer started a new generation
 * because of our detach and the link dropped before its STATE arrived,
 * that generation's predecessor with nothing written alone since (no
 * bitmap UUID).  Anything else means the peer's data changed while this
 * node was away (its disk was rolled back, or replaced): serving it would
 * change the blocks under the clients' feet.  Checked when a link comes
 * up; on a live link the peer's data is what this node has been serving.
 */
static bool
serves_exposed(const struct peer *p)
{
	uint64_t e = p->d->md->exposed_uuid;
	const struct repl_state *st = &p->peer_state;

	return st->current_uuid == e ||
	    (st->bitmap_uuid == 0 && st->history_uuid[0] == e);
}

static const char *
exposed_why(const struct peer *p, char *buf, size_t len)
{
	snprintf(buf, len, "the local disk is detached and the peer's data is no longer the "
	    "generation this node served (%016" PRIx64 ", peer now %016" PRIx64 "/%016" PRIx64
	    "): it was changed while disconnected; refusing (demote this node)",
	    p->d->md->exposed_uuid, p->peer_state.current_uuid, p->peer_state.bitmap_uuid);
	return buf;
}

bool
diskfail_decide(struct peer *p)
{
	struct daemon *d = p->d;
	bool me = d->md->detached;
	bool peer = p->peer_state.disk == REPL_DISK_DISKLESS;
	const char *why = NULL;
	char whybuf[256];
	bool retry = false;

	if (!me && !peer)
		return false;
	if (me && d->role != ROLE_PRIMARY)
		why = "the local disk is detached and this node is not primary: nothing to "
		    "replicate (restart blkmirrord once the disk is repaired or replaced)";
	else if (me && p->peer_state.disk != REPL_DISK_UPTODATE)
		why = "the local disk is detached and the peer's is not uptodate: no good copy";
	else if (me && p->rs == RS_CONNECTING && !serves_exposed(p))
		why = exposed_why(p, whybuf, sizeof(whybuf));
	else if (peer && d->disk != DISK_UPTODATE)
		why = "the peer's disk is detached and this one is not uptodate: no good copy";
	else if (peer && p->peer_state.role != REPL_ROLE_PRIMARY) {
		why = "the peer's disk is detached: nothing to replicate to until it is "
		    "restarted on a repaired disk";
		retry = true;	/* it comes back with a repaired disk */
	}
	if (why != NULL) {
		log_err("connect: %s", why);
		p->want_connect = retry;
		peer_link_down(p, REPL_DISC_STATE_CONFLICT, why);
		if (!retry)
			state_set(d, "refused", -1, -1, CONN_STANDALONE, RS_OFF, why);
		return true;
	}
	/* A diskless primary and an uptodate peer: no resync, the peer
	 * serves reads and takes the writes. */
	if (me)
		d->md->exposed_uuid = p->peer_state.current_uuid;
	log_info("connect: %s disk is detached: no resync; the %s serves reads and writes",
	    me ? "the local" : "the peer's", me ? "peer" : "local disk");
	state_set(d, "established", -1, -1, -1, RS_ESTABLISHED, me ? "diskless primary" :
	    "the peer is a diskless primary");
	return true;
}
