/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Administrative commands of a two-node resource (blkmirrorctl primary,
 * secondary, connect, disconnect, resync, invalidate, verify, pause-sync,
 * resume-sync, new-current-uuid) and the replication part of "status".
 * control.c runs the table here for commands it does not know itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "log.h"
#include "repl.h"
#include "util.h"

/* The most arguments a command takes (all booleans so far). */
#define ADMIN_MAX_ARGS	1

struct admin_cmd {
	const char *name;	/* "cmd" of the request */
	int (*exec)(struct daemon *d, struct json_object *args, char *err, size_t errlen);
	/* the keys its "args" may hold, each true or false; NULL-padded */
	const char *bool_args[ADMIN_MAX_ARGS];
};

/*
 * Check a request's "args" against the command's keys before anything
 * runs: an unknown key (a misspelt option) or a value other than true or
 * false is refused, never taken as a default or as true.  0 or -EINVAL.
 */
static int
args_check(const struct admin_cmd *c, struct json_object *args, char *err, size_t errlen)
{
	if (args == NULL)
		return 0;
	json_object_object_foreach(args, key, val) {
		size_t i;

		for (i = 0; i < ADMIN_MAX_ARGS && c->bool_args[i] != NULL &&
		    strcmp(c->bool_args[i], key) != 0; i++)
			;
		if (i == ADMIN_MAX_ARGS || c->bool_args[i] == NULL) {
			char known[64] = "";

			for (i = 0; i < ADMIN_MAX_ARGS && c->bool_args[i] != NULL; i++)
				snprintf(known + strlen(known), sizeof(known) - strlen(known),
				    "%s%s", i > 0 ? ", " : "", c->bool_args[i]);
			if (known[0] == '\0')
				snprintf(err, errlen, "command '%s' takes no arguments", c->name);
			else
				snprintf(err, errlen, "command '%s' has no argument '%.64s' "
				    "(it takes: %s)", c->name, key, known);
			return -EINVAL;
		}
		if (!json_object_is_type(val, json_type_boolean)) {
			snprintf(err, errlen, "args.%s must be true or false", key);
			return -EINVAL;
		}
	}
	return 0;
}

/* A boolean argument; args_check() made sure it is one if present. */
static bool
arg_bool(struct json_object *args, const char *key)
{
	struct json_object *v;

	return args != NULL && json_object_object_get_ex(args, key, &v) &&
	    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

static int
need_link(struct daemon *d, char *err, size_t errlen)
{
	if (d->link == NULL) {
		snprintf(err, errlen, "resource %s is standalone (one node configured)",
		    d->conf.name);
		return -ENOTSUP;
	}
	return 0;
}

/* A resync runs, or is paused, in this replication state. */
static bool
resync_state(enum link_state rs)
{
	return rs == RS_SYNC_SOURCE || rs == RS_SYNC_TARGET ||
	    rs == RS_PAUSED_SYNC_SOURCE || rs == RS_PAUSED_SYNC_TARGET;
}

/*
 * resync, invalidate, verify and new-current-uuid need the link up and
 * idle: not resyncing (nor a verify here, for a resync), both disks attached.
 */
static int
need_established(struct daemon *d, bool resync, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	if (ret == 0 && resync_state(d->link->rs)) {
		snprintf(err, errlen, "a resync is running (replication %s)",
		    repl_state_name(d->link->rs));
		return -EBUSY;
	}
	if (ret == 0 && d->link->rs != RS_ESTABLISHED) {
		snprintf(err, errlen, "not connected and in sync with the peer (replication %s)",
		    repl_state_name(d->link->rs));
		return -ENOTCONN;
	}
	if (ret == 0 && resync && d->link->rs_state.verify) {
		snprintf(err, errlen, "a verify runs on this node; start the resync after its "
		    "end (it covers what the verify found)");
		return -EBUSY;
	}
	if (ret == 0 && (diskfail_detached(d) ||
	    d->link->peer_state.disk == REPL_DISK_DISKLESS)) {
		snprintf(err, errlen, "the %s disk is detached (I/O error): nothing to resync or "
		    "verify until it is attached again", diskfail_detached(d) ? "local" : "peer's");
		return -EIO;
	}
	return ret;
}

static int
cmd_primary(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	return ret < 0 ? ret : state_promote(d, arg_bool(args, "force"), err, errlen);
}

static int
cmd_secondary(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	return ret < 0 ? ret : state_demote(d, err, errlen);
}

static int
cmd_connect(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);
	bool discard = arg_bool(args, "discard_my_data");

	if (ret == 0 && discard && d->link->rs != RS_OFF) {
		/* Kept until the next UUID decision, the flag would throw
		 * this node's data away at a split brain days later. */
		snprintf(err, errlen, "connected already (replication %s): --discard-my-data "
		    "is for the connect after a split brain; 'disconnect' first",
		    repl_state_name(d->link->rs));
		return -EISCONN;
	}
	if (ret == 0)
		peer_connect_cmd(d, discard);
	return ret;
}

static int
cmd_disconnect(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	if (ret == 0)
		peer_disconnect_cmd(d);
	return ret;
}

/* resync: ship the regions marked out of sync (after verify, pull-ahead). */
static int
cmd_resync(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	enum md_sync_decision dec;
	int ret = need_established(d, true, err, errlen);

	if (ret < 0)
		return ret;
	dec = state_leftover_decision(d->link);
	if (dec == MD_NO_SYNC) {
		snprintf(err, errlen, "nothing is marked out of sync on either node");
		return -EALREADY;
	}
	resync_begin(d->link, dec);
	return 0;
}

/* invalidate: discard the local data, fetch everything from the peer. */
static int
cmd_invalidate(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_established(d, true, err, errlen);

	if (ret < 0)
		return ret;
	if (d->role == ROLE_PRIMARY) {
		snprintf(err, errlen, "this node is primary: demote it before invalidating its data");
		return -EBUSY;
	}
	if (d->link->peer_state.disk != REPL_DISK_UPTODATE) {
		/* Else this disk would end "uptodate" with the peer's
		 * inconsistent data (and could be promoted without --force). */
		snprintf(err, errlen, "the peer's disk is %s, not uptodate: it has no good "
		    "data to fetch", repl_disk_name(d->link->peer_state.disk));
		return -EPERM;
	}
	resync_begin(d->link, MD_SYNC_TARGET_FULL);
	return 0;
}

static int
cmd_verify(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_established(d, false, err, errlen);

	if (ret < 0)
		return ret;
	ret = verify_start(d);
	if (ret == -EAGAIN)
		snprintf(err, errlen, "replies to a stopped verify are still on their way; "
		    "try again in a moment");
	else if (ret < 0)
		snprintf(err, errlen, "a verify or resync is already running");
	return ret;
}

static int
cmd_pause(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	if (ret == 0)
		resync_cmd_pause(d, true);
	return ret;
}

static int
cmd_resume(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_link(d, err, errlen);

	if (ret == 0)
		resync_cmd_pause(d, false);
	return ret;
}

/* new-current-uuid --clear-bitmap: skip the initial sync of equal disks. */
static int
cmd_new_uuid(struct daemon *d, struct json_object *args, char *err, size_t errlen)
{
	int ret = need_established(d, false, err, errlen);

	if (ret < 0)
		return ret;
	if (!arg_bool(args, "clear_bitmap")) {
		snprintf(err, errlen, "only 'new-current-uuid --clear-bitmap' is supported");
		return -EINVAL;
	}
	return state_clear_bitmap(d, err, errlen);
}

static const struct admin_cmd admin_cmds[] = {
	{ "primary", cmd_primary, { "force" } },
	{ "secondary", cmd_secondary, { NULL } },
	{ "connect", cmd_connect, { "discard_my_data" } },
	{ "disconnect", cmd_disconnect, { NULL } },
	{ "resync", cmd_resync, { NULL } },
	{ "invalidate", cmd_invalidate, { NULL } },
	{ "verify", cmd_verify, { NULL } },
	{ "pause-sync", cmd_pause, { NULL } },
	{ "resume-sync", cmd_resume, { NULL } },
	{ "new-current-uuid", cmd_new_uuid, { "clear_bitmap" } },
};

int
admin_exec(struct daemon *d, const char *cmd, struct json_object *args, char *err,
    size_t errlen)
{
	for (size_t i = 0; i < ARRAY_SIZE(admin_cmds); i++) {
		if (strcmp(admin_cmds[i].name, cmd) == 0) {
			int ret;

			err[0] = '\0';
			ret = args_check(&admin_cmds[i], args, err, errlen);
			if (ret == 0)
				ret = admin_cmds[i].exec(d, args, err, errlen);
			if (ret < 0 && err[0] == '\0')
				snprintf(err, errlen, "%s failed: %s", cmd, strerror(-ret));
			if (ret == 0)
				log_notice("control: %s", cmd);
			return ret;
		}
	}
	return -ENOENT;
}

/* ---- status --------------------------------------------------------------------- */

/* An unsigned counter, as control.c adds them (no wrap to negative). */
static void
add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

static struct json_object *
uuid_hex(uint64_t v)
{
	char b[20];

	snprintf(b, sizeof(b), "%016" PRIx64, v);
	return json_object_new_string(b);
}

void
admin_status(struct daemon *d, struct json_object *o)
{
	struct peer *p = d->link;
	struct json_object *peer, *rs, *uu, *hist;
	const struct md_sb *sb;
	uint64_t now = now_ns();
	char vol[40];

	if (p == NULL || d->md == NULL) {
		json_object_object_add(o, "replication", json_object_new_string("off"));
		return;
	}
	sb = &d->md->sb;
	peer = json_object_new_object();
	json_object_object_add(peer, "node", json_object_new_string(d->peer->name));
	json_object_object_add(peer, "address", json_object_new_string(d->peer->address.text));
	json_object_object_add(peer, "role", json_object_new_string(p->rs == RS_OFF ?
	    "unknown" : repl_role_name(p->peer_state.role)));
	json_object_object_add(peer, "disk", json_object_new_string(p->rs == RS_OFF ?
	    "unknown" : repl_disk_name(p->peer_state.disk)));
	json_object_object_add(peer, "connection", json_object_new_string(
	    conn_state_name(d->conn)));
	json_object_object_add(peer, "last_error", json_object_new_string(p->last_error));
	json_object_object_add(o, "peer", peer);
	json_object_object_add(o, "replication", json_object_new_string(repl_state_name(p->rs)));
	add_u64(o, "epoch", d->epoch);
	json_object_object_add(o, "demoting", json_object_new_boolean(d->md->demoting));
	add_u64(o, "out_of_sync_bytes", meta_oos_bytes(d));
	rs = json_object_new_object();
	add_u64(rs, "done_bytes", p->rs_state.done_bytes);
	add_u64(rs, "total_bytes", p->rs_state.total_bytes);
	add_u64(rs, "rate_bytes_per_s", p->rs_state.rate_bps);
	add_u64(rs, "shipped_bytes", p->rs_state.shipped_bytes);
	add_u64(rs, "same_bytes", p->rs_state.same_bytes);
	json_object_object_add(rs, "paused", json_object_new_boolean(p->rs_state.paused));
	json_object_object_add(rs, "verify_running", json_object_new_boolean(p->rs_state.verify));
	add_u64(rs, "verify_diff_bytes", p->rs_state.verify_diff);
	add_u64(rs, "stale_refused", p->rs_state.stale_refused);
	add_u64(rs, "failed_ranges", p->rs_state.failed_ranges);
	add_u64(rs, "failed_bytes", p->rs_state.failed_bytes);
	add_u64(rs, "next_pass_in_ms", p->rs_state.active && p->rs_state.retry_ns > now ?
	    (p->rs_state.retry_ns - now) / 1000000 + 1 : 0);
	json_object_object_add(o, "resync", rs);
	uu = json_object_new_object();
	json_object_object_add(uu, "current", uuid_hex(sb->uuids.current));
	json_object_object_add(uu, "bitmap", uuid_hex(sb->uuids.bitmap));
	hist = json_object_new_array();
	for (int i = 0; i < MD_UUID_HISTORY; i++)
		json_object_array_add(hist, uuid_hex(sb->uuids.history[i]));
	json_object_object_add(uu, "history", hist);
	json_object_object_add(uu, "volume", json_object_new_string(
	    md_volume_uuid_str(sb->volume_uuid, vol)));
	json_object_object_add(o, "uuids", uu);
	add_u64(o, "bytes_sent", p->bytes_sent + (p->data ? p->data->bytes_sent : 0) +
	    (p->meta ? p->meta->bytes_sent : 0));
	add_u64(o, "bytes_received", p->bytes_received +
	    (p->data ? p->data->bytes_received : 0) + (p->meta ? p->meta->bytes_received : 0));
	add_u64(o, "resync_bytes_shipped", p->resync_bytes_shipped);
	add_u64(o, "resync_bytes_received", p->resync_bytes_received);
	add_u64(o, "connects", p->connects);
	add_u64(o, "split_brains", p->split_brains);
	add_u64(o, "state_changes", d->transitions);
	add_u64(o, "pending_writes", p->n_pend);
	add_u64(o, "lag_bytes", p->lag_bytes);
	add_u64(o, "congestion_waits", p->congestion_waits);
	add_u64(o, "writes_parked_connecting", d->md->conn_parks);
	add_u64(o, "peer_flushes", p->peer_flushes);
	add_u64(o, "al_starved_flushes", p->al_starved_flushes);
	add_u64(o, "unflushed_marked_bytes", p->unflushed_marked);
	add_u64(o, "metadata_writes", d->md->al_writes + d->md->bm_writes);
	add_u64(o, "metadata_write_errors", d->md->write_errors);
	add_u64(o, "metadata_failed_writes", d->md->failed_writes);
	add_u64(o, "al_evict_waits", d->md->al_evict_waits);
	add_u64(o, "split_requests", d->split_requests);
	add_u64(o, "bitmap_flushes", d->md->bm_flushes);
	add_u64(o, "resync_bitmap_waits", d->md->resync_bits_waits);
	add_u64(o, "al_flushes", d->md->al_flushes);
	add_u64(o, "writes_failed_stepped_down", d->md->stale_writes);
	add_u64(o, "reads_from_peer", p->reads_from_peer);
	add_u64(o, "read_bytes_from_peer", p->read_bytes_from_peer);
	add_u64(o, "reads_for_peer", p->reads_for_peer);
	add_u64(o, "applying_bytes", p->apply_bytes);
	add_u64(o, "apply_holds", p->apply_holds);
	add_u64(o, "io_refused_no_data", p->io_refused_no_data);
	add_u64(o, "detaches", d->detaches);
	add_u64(o, "handshake_timeouts", p->hs_timeouts);
	add_u64(o, "incoming_handshake_failures", p->hs_in_failures);
	json_object_object_add(o, "on_io_error", json_object_new_string(
	    conf_on_io_error_name(d->conf.on_io_error)));
}
