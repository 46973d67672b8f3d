/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Roles, disk states and the replication state machine.  Every transition
 * goes through state_set(), which logs it, counts it and emits it as an
 * event on the control socket's stream.  On connect both nodes exchange
 * STATE and each runs the same generation-UUID decision (lib/uuid_decide.c,
 * a table in DRBD's order), so both reach mirror-image conclusions.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "ctl_proto.h"
#include "log.h"
#include "repl.h"
#include "util.h"

#define DEMOTE_SETTLE_MS	20	/* how often a demotion checks its writes */

static const char *const rs_names[] = {
	[RS_OFF] = "off", [RS_CONNECTING] = "connecting",
	[RS_ESTABLISHED] = "established", [RS_SYNC_SOURCE] = "sync-source",
	[RS_SYNC_TARGET] = "sync-target", [RS_PAUSED_SYNC_SOURCE] = "paused-sync-source",
	[RS_PAUSED_SYNC_TARGET] = "paused-sync-target", [RS_AHEAD] = "ahead",
	[RS_BEHIND] = "behind",
};

const char *
repl_state_name(int rs)
{
	return rs >= 0 && (size_t)rs < ARRAY_SIZE(rs_names) ? rs_names[rs] : "?";
}

static uint32_t
rs_wire(enum link_state rs)
{
	switch (rs) {
	case RS_ESTABLISHED: return REPL_RS_ESTABLISHED;
	case RS_SYNC_SOURCE: return REPL_RS_SYNC_SOURCE;
	case RS_SYNC_TARGET: return REPL_RS_SYNC_TARGET;
	case RS_PAUSED_SYNC_SOURCE: return REPL_RS_PAUSED_SYNC_SOURCE;
	case RS_PAUSED_SYNC_TARGET: return REPL_RS_PAUSED_SYNC_TARGET;
	case RS_AHEAD: return REPL_RS_AHEAD;
	case RS_BEHIND: return REPL_RS_BEHIND;
	default: return REPL_RS_CONNECTING;
	}
}

void
state_event(struct daemon *d, const char *name, const char *fmt, ...)
{
	struct json_object *ev = ctl_event_new(name);
	char msg[256];
	va_list ap;

	if (ev == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(ev, "resource", json_object_new_string(d->conf.name));
	json_object_object_add(ev, "message", json_object_new_string(msg));
	control_emit(d, ev);
}

/*
 * The one place states change.  -1 leaves a field as it is.  Logs the
 * change, emits a "state" event with the new states and the reason.
 */
void
state_set(struct daemon *d, const char *what, int role, int disk, int conn,
    int rs, const char *reason)
{
	struct peer *p = d->link;
	struct json_object *ev;
	char line[256];
	int n = 0;
	bool was_connecting = p != NULL && p->rs == RS_CONNECTING;

	line[0] = '\0';
#define CHANGE(field, val, names) do {						\
	if ((val) >= 0 && (int)(field) != (val)) {				\
		n += snprintf(line + n, sizeof(line) - (size_t)MIN(n, 255),	\
		    "%s%s -> %s", n ? ", " : "", names((field)), names((val)));	\
		(field) = (val);						\
	}									\
} while (0)
	CHANGE(d->role, role, role_name);
	CHANGE(d->disk, disk, disk_state_name);
	CHANGE(d->conn, conn, conn_state_name);
	if (p != NULL)
		CHANGE(p->rs, rs, repl_state_name);
#undef CHANGE
	if (n == 0)
		return;
	d->transitions++;
	/* Decided (or the link went): client writes parked meanwhile go on. */
	if (was_connecting && p->rs != RS_CONNECTING)
		meta_connecting_over(d);
	if (role >= 0) {
		log_set_prefix(d->conf.name, role_name(d->role));
		d->refuse = d->role == ROLE_PRIMARY ? NULL :
		    "not primary: this node is secondary (blkmirrorctl primary promotes it)";
	}
	log_notice("state: %s: %s%s%s", what, line, reason ? ": " : "", reason ? reason : "");
	ev = ctl_event_new("state");
	if (ev == NULL)
		return;
	json_object_object_add(ev, "resource", json_object_new_string(d->conf.name));
	json_object_object_add(ev, "change", json_object_new_string(what));
	json_object_object_add(ev, "role", json_object_new_string(role_name(d->role)));
	json_object_object_add(ev, "disk", json_object_new_string(disk_state_name(d->disk)));
	json_object_object_add(ev, "connection", json_object_new_string(conn_state_name(d->conn)));
	json_object_object_add(ev, "replication", json_object_new_string(
	    p != NULL ? repl_state_name(p->rs) : "off"));
	if (reason != NULL)
		json_object_object_add(ev, "reason", json_object_new_string(reason));
	control_emit(d, ev);
}

/* ---- STATE exchange ------------------------------------------------------------- */

/*
 * STATE goes on the data connection: it is then ordered with the BITMAP,
 * RESYNC_DONE and write frames around it (a resync's start and end are
 * never seen out of order).  Before the data socket exists, on meta.
 */
void
state_send(struct peer *p)
{
	state_send_on(p, p->data != NULL ? p->data : p->meta);
}

/* STATE on a given socket (the data socket orders it before a BITMAP). */
void
state_send_on(struct peer *p, struct peer_sock *sock)
{
	struct daemon *d = p->d;
	struct peer_frame *f;
	struct repl_tx tx = peer_tx(p);
	struct repl_state st = { 0 };
	int n;

	if (sock == NULL)
		return;
	/* A demotion asked for that has not settled is still a primary to
	 * the peer (it must not be promoted while writes of ours are on their
	 * way); a step-down for a peer with a higher epoch is not hidden. */
	st.role = d->role == ROLE_PRIMARY ||
	    (d->md != NULL && d->md->demoting && d->md->demote_hidden) ?
	    REPL_ROLE_PRIMARY : REPL_ROLE_SECONDARY;
	st.disk = (uint32_t)d->disk;
	st.repl = rs_wire(p->rs);
	st.flags = p->discard_my_data ? REPL_STATE_F_DISCARD_MY_DATA : 0;
	if (p->rs_state.paused)
		st.flags |= REPL_STATE_F_SYNC_PAUSED;
	if (p->clear_bitmap_notice)
		st.flags |= REPL_STATE_F_CLEAR_BITMAP;
	p->clear_bitmap_notice = false;
	st.md_flags = d->md->sb.flags;
	st.epoch = d->epoch;
	st.current_uuid = d->md->sb.uuids.current;
	st.bitmap_uuid = d->md->sb.uuids.bitmap;
	memcpy(st.history_uuid, d->md->sb.uuids.history, sizeof(st.history_uuid));
	st.out_of_sync = meta_oos_bytes(d);
	f = peer_frame_new();
	n = repl_state_encode(f->buf, sizeof(f->buf), &tx, &st);
	f->len = n > 0 ? (uint32_t)n : 0;
	peer_send(n > 0 ? sock : NULL, f);
	p->state_sent = true;
}

static void
side_of(const struct daemon *d, struct md_uuid_side *me)
{
	memset(me, 0, sizeof(*me));
	me->uuids = d->md->sb.uuids;
	me->flags = d->md->sb.flags;
	me->node_id = d->md->sb.node_id;
}

static void
peer_side(const struct peer *p, struct md_uuid_side *ps)
{
	const struct repl_state *st = &p->peer_state;

	memset(ps, 0, sizeof(*ps));
	ps->uuids.current = st->current_uuid;
	ps->uuids.bitmap = st->bitmap_uuid;
	memcpy(ps->uuids.history, st->history_uuid, sizeof(ps->uuids.history));
	ps->flags = st->md_flags;
	ps->node_id = p->peer_hello.node_id;
}

/* Split brain or unrelated data: say so loudly, stay disconnected. */
static void
refuse_connection(struct peer *p, enum md_sync_decision dec, int rule)
{
	struct daemon *d = p->d;
	char why[200];

	snprintf(why, sizeof(why), "%s (rule %d): both nodes changed the data independently; "
	    "resolve with 'blkmirrorctl connect --discard-my-data' on the node whose "
	    "changes are to be discarded", md_sync_decision_name(dec), rule);
	if (dec == MD_UNRELATED)
		snprintf(why, sizeof(why), "unrelated data (rule %d): the two disks share no "
		    "generation; refusing to connect", rule);
	p->split_brains++;
	log_msg(LOG_CRIT, "%s", why);
	state_event(d, dec == MD_UNRELATED ? "unrelated-data" : "split-brain", "%s", why);
	p->want_connect = false;
	peer_link_down(p, dec == MD_UNRELATED ? REPL_DISC_UNRELATED : REPL_DISC_SPLIT_BRAIN, why);
	state_set(d, "split brain", -1, -1, CONN_STANDALONE, RS_OFF, why);
}

/* Out-of-sync bits but equal generations: the primary (or node 0) is source. */
enum md_sync_decision
state_leftover_decision(struct peer *p)
{
	struct daemon *d = p->d;
	bool i_source;

	if (meta_oos_bytes(d) == 0 && p->peer_state.out_of_sync == 0)
		return MD_NO_SYNC;
	if (d->role == ROLE_PRIMARY)
		i_source = true;
	else if (p->peer_state.role == REPL_ROLE_PRIMARY)
		i_source = false;
	else
		i_source = d->md->sb.node_id < p->peer_hello.node_id;
	return i_source ? MD_SYNC_SOURCE_BITMAP : MD_SYNC_TARGET_BITMAP;
}

/*
 * A disk that is inconsistent (a resync into it was interrupted) is never
 * the source towards an uptodate one, whatever the UUIDs say: an interrupted
 * resync leaves the UUIDs as they were, and a promoted sync target that
 * crashed carries the crashed-primary flag (rule 42 would make it the
 * source).  Both nodes apply the same rule to the same two disk states.
 */
static enum md_sync_decision
prefer_good_disk(struct peer *p, enum md_sync_decision dec)
{
	bool me_bad = p->d->disk == DISK_INCONSISTENT;
	bool peer_bad = p->peer_state.disk == REPL_DISK_INCONSISTENT;
	bool me_good = p->d->disk == DISK_UPTODATE;
	bool peer_good = p->peer_state.disk == REPL_DISK_UPTODATE;
	enum md_sync_decision out = dec;

	if (me_bad && peer_good && dec == MD_SYNC_SOURCE_BITMAP)
		out = MD_SYNC_TARGET_BITMAP;
	else if (me_bad && peer_good && dec == MD_SYNC_SOURCE_FULL)
		out = MD_SYNC_TARGET_FULL;
	else if (me_good && peer_bad && dec == MD_SYNC_TARGET_BITMAP)
		out = MD_SYNC_SOURCE_BITMAP;
	else if (me_good && peer_bad && dec == MD_SYNC_TARGET_FULL)
		out = MD_SYNC_SOURCE_FULL;
	else if (me_bad && peer_good && dec == MD_NO_SYNC)
		out = MD_SYNC_TARGET_BITMAP;	/* a resync cut short after its last range */
	else if (me_good && peer_bad && dec == MD_NO_SYNC)
		out = MD_SYNC_SOURCE_BITMAP;
	if (out != dec)
		log_notice("connect: %s turned into %s: the %s disk is inconsistent and the "
		    "other uptodate", md_sync_decision_name(dec), md_sync_decision_name(out),
		    me_bad ? "local" : "peer's");
	return out;
}

/* Run the UUID decision and act on it (both nodes do it, mirror images). */
static void
decide(struct peer *p)
{
	struct daemon *d = p->d;
	struct md_uuid_side me, peer;
	enum md_sync_decision dec;
	bool peer_discards = p->peer_state.flags & REPL_STATE_F_DISCARD_MY_DATA;
	int rule = 0;

	if (diskfail_decide(p))
		return;		/* a detached disk: no resync either way */
	side_of(d, &me);
	peer_side(p, &peer);
	dec = md_uuid_decide(&me, &peer, &rule);
	if (dec == MD_SPLIT_BRAIN || dec == MD_SPLIT_BRAIN_AUTO)
		dec = md_split_brain_resolve(dec, p->discard_my_data, peer_discards);
	log_info("connect: generation uuids %016" PRIx64 "/%016" PRIx64 " vs peer %016"
	    PRIx64 "/%016" PRIx64 ": %s (rule %d)", me.uuids.current, me.uuids.bitmap,
	    peer.uuids.current, peer.uuids.bitmap, md_sync_decision_name(dec), rule);
	if (dec == MD_SPLIT_BRAIN || dec == MD_SPLIT_BRAIN_AUTO || dec == MD_UNRELATED) {
		refuse_connection(p, dec, rule);
		return;
	}
	if (dec == MD_NO_SYNC)
		dec = state_leftover_decision(p);
	dec = prefer_good_disk(p, dec);
	if (d->role == ROLE_PRIMARY && d->disk == DISK_UPTODATE &&
	    (dec == MD_SYNC_TARGET_BITMAP || dec == MD_SYNC_TARGET_FULL)) {
		/* Never overwrite the data a primary serves.  (A primary whose
		 * disk is not uptodate, a promoted sync target, resumes its
		 * resync: what it served came from the peer or reached it.) */
		char why[200];

		snprintf(why, sizeof(why), "this primary's data is older than the peer's (%s): "
		    "refusing; demote it ('blkmirrorctl secondary') and connect again",
		    md_sync_decision_name(dec));
		log_err("%s", why);
		p->want_connect = false;
		peer_link_down(p, REPL_DISC_STATE_CONFLICT, why);
		state_set(d, "refused", -1, -1, CONN_STANDALONE, RS_OFF, why);
		return;
	}
	p->discard_my_data = false;
	if (dec == MD_NO_SYNC) {
		/* Same generation: the peer's disk is as good as ours. */
		if (d->disk == DISK_OUTDATED && p->peer_state.disk == REPL_DISK_UPTODATE)
			state_set(d, "in sync", -1, DISK_UPTODATE, -1, -1, NULL);
		state_set(d, "established", -1, -1, -1, RS_ESTABLISHED, NULL);
		return;
	}
	resync_begin(p, dec);
}

/* The peer's generation UUIDs, from its last STATE. */
void
state_peer_uuids(const struct peer *p, struct md_uuids *u)
{
	memset(u, 0, sizeof(*u));
	u->current = p->peer_state.current_uuid;
	u->bitmap = p->peer_state.bitmap_uuid;
	memcpy(u->history, p->peer_state.history_uuid, sizeof(u->history));
}

/* The local disk holds a whole, current generation: say so durably. */
void
state_disk_uptodate(struct daemon *d)
{
	struct meta *m = d->md;

	m->sb.flags |= MD_FL_CONSISTENT | MD_FL_WAS_UPTODATE;
	m->sb.flags &= ~(MD_FL_FULL_SYNC | MD_FL_CRASHED_PRIMARY);
	m->sb.disk_state = MD_DISK_UPTODATE;
	meta_sb_write_flushed(d, NULL);
}

/* The peer skipped the initial sync (disks known equal): take its UUIDs. */
static void
adopt_cleared(struct peer *p)
{
	struct daemon *d = p->d;
	struct meta *m = d->md;
	struct md_uuids src = { 0 };

	if (d->disk == DISK_UPTODATE) {
		log_warn("connect: the peer cleared its bitmap but this disk is uptodate; ignored");
		return;
	}
	state_peer_uuids(p, &src);
	md_uuid_adopt(&m->sb.uuids, &src);
	md_bitmap_clear_all(&m->bm);
	state_disk_uptodate(d);
	meta_flush_bitmap(d);
	state_set(d, "initial sync skipped", -1, DISK_UPTODATE, -1, -1,
	    "peer ran new-current-uuid --clear-bitmap");
	state_send(p);
}

int
state_clear_bitmap(struct daemon *d, char *err, size_t errlen)
{
	struct peer *p = d->link;
	struct meta *m = d->md;
	uint64_t u;

	if (d->disk == DISK_UPTODATE || p->peer_state.disk == REPL_DISK_UPTODATE) {
		snprintf(err, errlen, "only for two fresh disks (both inconsistent), known "
		    "identical (e.g. both zeroed)");
		return -EPERM;
	}
	if (md_uuid_random(&u) < 0)
		return -EIO;
	md_uuid_clear_bitmap(&m->sb.uuids, u);
	md_bitmap_clear_all(&m->bm);
	state_disk_uptodate(d);
	meta_flush_bitmap(d);
	state_set(d, "initial sync skipped", -1, DISK_UPTODATE, -1, -1,
	    "new-current-uuid --clear-bitmap");
	p->clear_bitmap_notice = true;
	state_send(p);
	return 0;
}

void
state_received(struct peer *p, const struct repl_state *st)
{
	struct daemon *d = p->d;
	bool first = !p->state_received, peer_detached;

	p->peer_state = *st;
	p->state_received = true;
	/*
	 * A primary that sees a higher epoch steps down at once (DESIGN.md:
	 * the other node was promoted later, so this node's role is void),
	 * whatever the peer's role now.  Two primaries with equal epochs
	 * cannot be settled: refuse.  A peer primary with a lower epoch
	 * steps down itself when it sees our STATE.
	 */
	if (st->epoch > d->epoch && d->role == ROLE_PRIMARY) {
		log_warn("the peer has a higher epoch (%" PRIu64 " > %" PRIu64 "): stepping down",
		    st->epoch, d->epoch);
		state_demote(d, NULL, 0);
	}
	if (st->role == REPL_ROLE_PRIMARY && d->role == ROLE_PRIMARY) {
		if (st->epoch < d->epoch) {
			/* It steps down when it sees ours, and says so in its
			 * next STATE: that one is the first to decide on, as
			 * on any connect.  (Taken as a later one, this node
			 * would stay "connecting" -- no decision, its client
			 * writes parked -- and take the peer's BITMAP, once
			 * it chose to be our sync target, as unexpected.) */
			p->state_received = false;
			return;
		}
		p->want_connect = false;
		peer_link_down(p, REPL_DISC_STATE_CONFLICT,
		    "both nodes are primary: refusing to connect (demote one with "
		    "'blkmirrorctl secondary', then 'blkmirrorctl connect')");
		state_set(d, "two primaries", -1, -1, CONN_STANDALONE, RS_OFF, NULL);
		return;
	}
	if (st->epoch > d->epoch) {
		d->epoch = st->epoch;
		d->md->sb.epoch = st->epoch;
		meta_sb_write(d, NULL);	/* the epoch is durable at once */
	}
	/*
	 * The primary detached its disk after an I/O error: this node holds
	 * the only copy.  Once: in the same generation (then they differ), or
	 * as the source of a resync into it (a promoted sync target; the
	 * resync stops), whose generation was never the same.
	 */
	peer_detached = st->disk == REPL_DISK_DISKLESS && st->role == REPL_ROLE_PRIMARY &&
	    d->role == ROLE_SECONDARY && d->disk == DISK_UPTODATE &&
	    (st->current_uuid == d->md->sb.uuids.current ||
	    (p->rs_state.active && p->rs_state.source && !p->rs_state.verify));
	/* The peer (a promoted sync target) detached its disk: no resync
	 * into it any more. */
	if (st->disk == REPL_DISK_DISKLESS && p->rs_state.active && p->rs_state.source) {
		resync_stop(p);
		state_set(d, "resync stopped", -1, -1, -1, RS_ESTABLISHED,
		    "the peer's disk is detached");
	}
	if (peer_detached)
		diskfail_peer_detached(p);
	p->peer_paused = st->flags & REPL_STATE_F_SYNC_PAUSED;
	resync_show_pause(p);
	if ((p->rs == RS_SYNC_TARGET || p->rs == RS_PAUSED_SYNC_TARGET) && p->rs_state.done_sent &&
	    st->repl == REPL_RS_ESTABLISHED) {
		resync_target_finish(p);
		return;
	}
	if ((st->flags & REPL_STATE_F_CLEAR_BITMAP) && !first) {
		/* Only as new-current-uuid gives it: two fresh disks, the link
		 * established and idle. */
		if (p->rs == RS_ESTABLISHED && !p->rs_state.active)
			adopt_cleared(p);
		else
			log_warn("connect: the peer cleared its bitmap while replication is %s; "
			    "ignored", repl_state_name(p->rs));
		return;
	}
	/* The peer started a resync (resync, invalidate): mirror it. */
	if (!first && p->rs == RS_ESTABLISHED && !p->rs_state.active &&
	    (st->repl == REPL_RS_SYNC_SOURCE || st->repl == REPL_RS_SYNC_TARGET ||
	    st->repl == REPL_RS_PAUSED_SYNC_SOURCE || st->repl == REPL_RS_PAUSED_SYNC_TARGET)) {
		bool peer_source = st->repl == REPL_RS_SYNC_SOURCE ||
		    st->repl == REPL_RS_PAUSED_SYNC_SOURCE;
		const char *why = NULL;

		/* The same rules as a decision here would apply: a source has
		 * good data, and nothing overwrites what a primary serves. */
		if (peer_source && st->disk != REPL_DISK_UPTODATE)
			why = "the peer announced a resync from its disk, which is not uptodate";
		else if (peer_source && d->role == ROLE_PRIMARY && d->disk == DISK_UPTODATE)
			why = "the peer announced a resync into this uptodate primary";
		else if (!peer_source && d->disk != DISK_UPTODATE)
			why = "the peer announced a resync from this disk, which is not uptodate";
		if (why != NULL) {
			peer_link_down(p, REPL_DISC_STATE_CONFLICT, why);
			return;
		}
		verify_abandon(p, "the peer started a resync");
		resync_begin(p, st->repl == REPL_RS_SYNC_SOURCE ||
		    st->repl == REPL_RS_PAUSED_SYNC_SOURCE ? MD_SYNC_TARGET_BITMAP :
		    MD_SYNC_SOURCE_BITMAP);
		return;
	}
	if (p->rs_state.active && p->rs_state.source && !p->peer_paused)
		resync_kick(p);
	if (first || (p->rs == RS_ESTABLISHED && !p->rs_state.active &&
	    st->current_uuid != d->md->sb.uuids.current))
		decide(p);
}

/* ---- roles ----------------------------------------------------------------------- */

static void
promoted(struct meta_wait *w, int res)
{
	struct meta *m = container_of(w, struct meta, role_wait);
	struct daemon *d = m->d;

	m->role_busy = false;
	if (m->promote_cancelled) {
		m->promote_cancelled = false;
		m->sb.flags &= ~MD_FL_PRIMARY;
		m->sb.last_role = MD_ROLE_SECONDARY;
		meta_sb_write(d, NULL);
		log_warn("promotion cancelled: stepped down while it was being written");
		return;
	}
	if (res < 0) {
		log_err("promotion failed: the superblock could not be written");
		return;
	}
	state_set(d, "promoted", ROLE_PRIMARY, -1, -1, -1, NULL);
	state_event(d, "after-promote", "primary with epoch %" PRIu64, d->epoch);
	if (d->link != NULL) {
		state_send(d->link);
		/* A forced promotion of a fresh disk makes us a sync source. */
		if (d->link->state_received && d->link->rs == RS_ESTABLISHED)
			decide(d->link);
	}
}

int
state_promote(struct daemon *d, bool force, char *err, size_t errlen)
{
	struct peer *p = d->link;
	struct meta *m = d->md;
	uint64_t u;

	if (m->role_busy) {
		snprintf(err, errlen, "a role change is still being written; try again");
		return -EBUSY;
	}
	if (d->role == ROLE_PRIMARY)
		return 0;
	if (m->detached) {
		snprintf(err, errlen, "the local disk was detached after an I/O error; restart "
		    "blkmirrord once it is repaired or replaced (it then resyncs from the peer)");
		return -EIO;
	}
	if (p != NULL && p->rs != RS_OFF && p->peer_state.role == REPL_ROLE_PRIMARY) {
		snprintf(err, errlen, "the peer is primary: demote it first");
		return -EBUSY;
	}
	if (p != NULL && (p->rs == RS_SYNC_TARGET || p->rs == RS_PAUSED_SYNC_TARGET)) {
		/* A sync target may serve clients: what is still out of sync
		 * is read from the peer (peerread.c).  --force changes nothing
		 * here: the peer's data is the good copy. */
		if (!peerread_peer_serves(d)) {
			snprintf(err, errlen, "this node is a resync target and the peer cannot "
			    "serve its data yet (peer disk %s, bitmaps %s); try again",
			    repl_disk_name(p->peer_state.disk),
			    p->rs_state.bitmap_received ? "exchanged" : "not yet exchanged");
			return -EBUSY;
		}
		log_notice("promoting a resync target: %" PRIu64 " bytes still out of sync are "
		    "read from the peer until the resync ends", meta_oos_bytes(d));
	} else if (d->disk != DISK_UPTODATE && !force) {
		snprintf(err, errlen, "the local disk is %s, not uptodate (use --force to make "
		    "it the source of a full sync)", disk_state_name(d->disk));
		return -EPERM;
	} else if (d->disk != DISK_UPTODATE) {
		if (md_uuid_random(&u) < 0) {
			snprintf(err, errlen, "no randomness for a generation uuid");
			return -EIO;
		}
		md_uuid_new_current(&m->sb.uuids, u);
		state_disk_uptodate(d);
		state_set(d, "forced uptodate", -1, DISK_UPTODATE, -1, -1, "primary --force");
	}
	d->epoch++;
	m->sb.epoch = d->epoch;
	m->sb.flags |= MD_FL_PRIMARY;
	m->sb.last_role = MD_ROLE_PRIMARY;
	m->role_wait.cb = promoted;
	m->role_busy = true;
	meta_sb_write(d, &m->role_wait);
	return 0;
}

static void
demoted(struct meta_wait *w, int res)
{
	struct meta *m = container_of(w, struct meta, role_wait);

	m->role_busy = false;
	m->demoting = m->demote_writing = false;
	if (res < 0)
		log_err("demotion: the superblock could not be written (it still says "
		    "primary: a crash now replays the activity log)");
	if (m->d->link != NULL)
		state_send(m->d->link);
}

/*
 * The superblock loses its primary flag -- after which a crash no longer
 * replays the activity log -- only once no write of this node's primary
 * time can differ from the peer's without a mark on disk: every write the
 * peer had not confirmed (WRITE_ACK; in async and memsync the client was
 * answered before) nor flushed (FLUSH_ACK) is confirmed, or the link went
 * and marked them, and those marks are durable -- and no write of the
 * primary's runs on the disk any more.  Until then status says
 * "demoting", and after a demotion asked for (not a step-down for a
 * higher epoch) the peer still sees a primary: it cannot be promoted
 * while frames of ours are on their way to it.  A peer that never
 * answers is dropped by ko-count.
 */
static void
demote_settle(struct daemon *d)
{
	struct meta *m = d->md;

	if (!m->demoting || m->demote_writing)
		return;
	/* No write of the primary's still running here either (stepping
	 * down for a higher epoch, clients may be connected): they pin
	 * their activity-log extents until they finish. */
	if (!d->stopping && !m->detached && (!repl_settled(d) || !meta_bitmap_settled(d) ||
	    md_al_pinned(&m->al) > 0)) {
		loop_timer_arm(d->loop, &m->settle_timer, DEMOTE_SETTLE_MS);
		return;
	}
	loop_timer_cancel(d->loop, &m->settle_timer);
	if (d->stopping) {
		m->demoting = false;
		return;		/* meta_detach clears the flag with the final writes */
	}
	m->demote_writing = true;	/* "demoting" until it is durable */
	m->sb.flags &= ~MD_FL_PRIMARY;
	m->sb.last_role = MD_ROLE_SECONDARY;
	m->role_wait.cb = demoted;
	/* The data those writes left in a volatile cache reaches the disk
	 * before the superblock that stops a crash from replaying the log. */
	if (m->detached)
		meta_sb_write(d, &m->role_wait);	/* its data counts for nothing */
	else
		meta_sb_write_flushed(d, &m->role_wait);
}

static void
demote_settle_tick(struct loop_timer *t)
{
	demote_settle(t->data);
}

int
state_demote(struct daemon *d, char *err, size_t errlen)
{
	struct meta *m = d->md;

	if (m->role_busy && err == NULL) {
		/* Forced step-down (higher epoch) while a role change is written. */
		m->promote_cancelled = d->role == ROLE_SECONDARY;
		if (d->role == ROLE_SECONDARY)
			return 0;
	} else if (m->role_busy) {
		snprintf(err, errlen, "a role change is still being written; try again");
		return -EBUSY;
	}
	if (d->role == ROLE_SECONDARY)
		return 0;
	if (d->n_conns > 0 && err != NULL) {
		snprintf(err, errlen, "%u NBD client(s) still connected: disconnect them first",
		    d->n_conns);
		return -EBUSY;
	}
	state_set(d, "demoted", ROLE_SECONDARY, -1, -1, -1, NULL);
	/* Stepping down for a peer with a higher epoch: it must know at
	 * once.  Asked to demote: the peer learns it once the writes are
	 * settled (demote_settle), so that it cannot be promoted while
	 * frames of ours are still on their way to it. */
	if (err == NULL && d->link != NULL)
		state_send(d->link);
	if (m->detached && d->link != NULL && d->link->rs != RS_OFF) {
		/* A diskless secondary has nothing to replicate to. */
		d->link->want_connect = false;
		peer_link_down(d->link, REPL_DISC_IO_ERROR, "this node's disk is detached");
		state_set(d, "refused", -1, -1, CONN_STANDALONE, RS_OFF,
		    "the local disk is detached: restart blkmirrord once it is repaired");
	}
	if (m->role_busy) {
		/* A step-down while a promotion is written (never completed):
		 * nothing was written as primary since the last demotion. */
		m->sb.flags &= ~MD_FL_PRIMARY;
		m->sb.last_role = MD_ROLE_SECONDARY;
		meta_sb_write(d, NULL);	/* role_wait is already queued */
		return 0;
	}
	m->role_busy = true;
	m->demoting = true;
	m->demote_hidden = err != NULL;
	m->settle_timer.cb = demote_settle_tick;
	m->settle_timer.data = d;
	demote_settle(d);
	return 0;
}
