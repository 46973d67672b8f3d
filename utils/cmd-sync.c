/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The resync commands of a two-node resource:
 *
 *   resync [--wait SECONDS]      ship the regions marked out of sync
 *   invalidate [--wait SECONDS]  discard this node's data, fetch it all
 *   verify [--no-wait | --wait SECONDS]
 *                                compare both disks, mark the differences
 *   pause-sync, resume-sync      hold and release a running resync
 *   new-current-uuid --clear-bitmap   declare two fresh disks identical
 *
 * resync and invalidate return once the resync started, or with --wait
 * when the resource is connected with nothing out of sync.  verify waits
 * for the end of the comparison unless --no-wait: it subscribes to the
 * events on a connection of its own before it asks for the verify, so the
 * "verify-done" event cannot be missed; --wait bounds that wait (the
 * verify goes on in the daemon after a time-out).  The result comes from a status
 * asked for on a new connection: the daemon closes a plain client that
 * stays idle (30 s), and a verify takes longer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "cmd-admin.h"
#include "util.h"

/* Done when connected and nothing is out of sync; fails when the link is off. */
static enum cmd_wait
in_sync(struct json_object *r, char *why, size_t len)
{
	const char *repl = cmd_jstr(r, "replication", "unknown");
	const char *err = cmd_peer_error(r);
	struct json_object *rs = cmd_jobj(r, "resync");
	int64_t oos = cmd_jnum(r, "out_of_sync_bytes");
	char a[32], b[32], t[32];

	if (strcmp(repl, "established") == 0 && oos == 0)
		return CMD_WAIT_DONE;
	if (strcmp(repl, "off") == 0) {
		snprintf(why, len, "replication is off, the resync cannot go on (%s)",
		    err[0] != '\0' ? err : "disconnected");
		return CMD_WAIT_FAIL;
	}
	snprintf(why, len, "replication %s, %s out of sync, %s of %s resynced", repl,
	    cmd_size_short(oos, a, sizeof(a)),
	    cmd_size_short(cmd_jnum(rs, "done_bytes"), b, sizeof(b)),
	    cmd_size_short(cmd_jnum(rs, "total_bytes"), t, sizeof(t)));
	return CMD_WAIT_MORE;
}

/* resync and invalidate: the request, then the optional wait. */
static int
resync_run(struct cmd_ctx *ctx, const struct cmd_entry *e, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--wait", .has_value = true } };
	unsigned long wait_s = 0;
	struct ctl_conn c;
	int ret = cmd_parse_opts(e, argc, argv, opts, ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if (opts[0].set && (ret = cmd_opt_uint(e, &opts[0], CMD_WAIT_MAX_S, &wait_s)) >= 0)
		return ret;
	if ((ret = cmd_admin_open(ctx, &c, e->name, NULL)) != 0)
		return ret;
	if (wait_s > 0)
		ret = cmd_wait_status(ctx, &c, e->name, in_sync, wait_s);
	ctl_close(&c);
	return ret;
}

static int
resync_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	return resync_run(ctx, &cmd_resync_entry, argc, argv);
}

static int
invalidate_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	return resync_run(ctx, &cmd_invalidate_entry, argc, argv);
}

/*
 * After "verify-done": print the result from the status, unless a verify
 * runs again (*again set: keep waiting).  0 or an exit code.
 */
static int
verify_result(struct cmd_ctx *ctx, bool *again)
{
	struct ctl_conn c;
	struct ctl_reply rep;
	struct json_object *rs;
	int64_t diff;
	int ret = cmd_connect(ctx, &c);

	if (ret != 0)
		return ret;
	ret = cmd_status_get(ctx, &c, &rep);
	ctl_close(&c);
	if (ret != 0)
		return ret;
	rs = cmd_jobj(rep.result, "resync");
	*again = cmd_jbool(rs, "verify_running");
	diff = cmd_jnum(rs, "verify_diff_bytes");
	ctl_reply_free(&rep);
	if (*again)
		return 0;
	if (diff < 0)
		return cmd_fail(EX_PROTOCOL, "verify: the status has no resync.verify_diff_bytes");
	if (diff == 0)
		printf("verify: 0 bytes differ (the disks are identical)\n");
	else
		printf("verify: %" PRId64 " bytes differ (marked out of sync; run "
		    "'blkmirrorctl resync' to repair)\n", diff);
	if (fflush(stdout) != 0)
		return cmd_fail(EX_IOERR, "writing to stdout failed");
	return 0;
}

/*
 * A state event while the verify runs: the verify was abandoned when the
 * replication left "established".  0 to go on, or an exit code.
 */
static int
verify_state(struct ctl_event *ev)
{
	const char *repl = cmd_jstr(ev->root, "replication", "established");
	const char *reason = cmd_jstr(ev->root, "reason", NULL);

	if (strcmp(repl, "established") == 0)
		return 0;
	return cmd_fail(CMD_EXIT_REFUSED, "verify: interrupted: replication is now %s%s%s", repl,
	    reason != NULL ? ": " : "", reason != NULL ? reason : "");
}

/* Read events from ev until the verify ended, for at most wait_s (0: no bound). */
static int
verify_wait(struct cmd_ctx *ctx, struct ctl_conn *ev, unsigned long wait_s)
{
	uint64_t deadline = now_ns() + (uint64_t)wait_s * 1000000000ull;
	/*
	 * Events before our verify-start are older than the request: a
	 * verify-stopped is an earlier verify's, a state event tells of a
	 * change before ours started (the request found the link established).
	 */
	bool started = false;

	/* One event per pass; ends with the verify, the link or the daemon. */
	for (;;) {
		struct ctl_event e;
		bool again = false, done;
		char *line;
		uint64_t now = now_ns();
		long n = ctl_recv_line(ev, &line, wait_s == 0 ? -1 :
		    now >= deadline ? 0 : (int)MIN((deadline - now) / 1000000 + 1,
		    (uint64_t)INT32_MAX));
		int ret = 0;

		if (n == -EINTR)
			continue;
		if (n == -ETIMEDOUT)
			return cmd_fail(EX_TEMPFAIL, "verify: gave up after %lu s: the "
			    "verify %s in the daemon ('blkmirrorctl status' shows its "
			    "progress and result)", wait_s, started ? "still runs" :
			    "has not started yet");
		if (n == -ECONNRESET)
			return cmd_fail(EX_UNAVAILABLE, "verify: the daemon went away before the "
			    "verify finished");
		if (n < 0)
			return cmd_fail(n == -E2BIG ? EX_PROTOCOL : EX_OSERR, "verify: %s: %s",
			    ctx->socket, strerror((int)-n));
		if (ctl_event_decode(line, (size_t)n, &e) < 0)
			return cmd_fail(EX_PROTOCOL, "verify: malformed event line from the daemon");
		done = strcmp(e.name, "verify-done") == 0;
		if (done)
			ret = verify_result(ctx, &again);
		else if (strcmp(e.name, "state") == 0 && started)
			ret = verify_state(&e);
		else if (strcmp(e.name, "verify-start") == 0)
			started = true;
		else if (strcmp(e.name, "verify-stopped") == 0 && started)
			ret = cmd_fail(CMD_EXIT_REFUSED, "verify: stopped %s (the differences "
			    "found so far are marked)", cmd_jstr(e.root, "message", ""));
		else if (strcmp(e.name, "overflow") == 0)
			ret = cmd_fail(EX_TEMPFAIL, "verify: lost track of the verify: the daemon "
			    "ended the event subscription (%s); 'blkmirrorctl status' shows "
			    "whether it still runs", cmd_jstr(e.root, "message", "events lost"));
		ctl_event_free(&e);
		if (ret != 0 || (done && !again))
			return ret;
	}
}

static int
verify_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--no-wait" },
	    { .name = "--wait", .has_value = true } };
	unsigned long wait_s = 0;
	struct ctl_conn ev;
	int ret = cmd_parse_opts(&cmd_verify_entry, argc, argv, opts, ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if (opts[0].set && opts[1].set)
		return cmd_fail(EX_USAGE, "verify: --no-wait and --wait exclude each other");
	if (opts[1].set && (ret = cmd_opt_uint(&cmd_verify_entry, &opts[1],
	    CMD_WAIT_MAX_S, &wait_s)) >= 0)
		return ret;
	if (opts[0].set)
		return cmd_admin_simple(ctx, "verify", NULL);
	/* Subscribed before the verify starts: its end cannot be missed. */
	if ((ret = cmd_admin_open(ctx, &ev, "events", NULL)) != 0)
		return ret;
	if ((ret = cmd_admin_simple(ctx, "verify", NULL)) == 0)
		ret = verify_wait(ctx, &ev, wait_s);
	ctl_close(&ev);
	return ret;
}

static int
pause_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	int ret = cmd_parse_opts(&cmd_pause_sync_entry, argc, argv, NULL, 0);

	return ret >= 0 ? ret : cmd_admin_simple(ctx, "pause-sync", NULL);
}

static int
resume_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	int ret = cmd_parse_opts(&cmd_resume_sync_entry, argc, argv, NULL, 0);

	return ret >= 0 ? ret : cmd_admin_simple(ctx, "resume-sync", NULL);
}

static int
new_uuid_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--clear-bitmap" } };
	struct json_object *args;
	int ret = cmd_parse_opts(&cmd_new_current_uuid_entry, argc, argv, opts,
	    ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if (!opts[0].set)
		return cmd_fail(EX_USAGE, "new-current-uuid: --clear-bitmap is required "
		    "(usage: new-current-uuid %s)", cmd_new_current_uuid_entry.usage);
	args = json_object_new_object();
	json_object_object_add(args, "clear_bitmap", json_object_new_boolean(1));
	return cmd_admin_simple(ctx, "new-current-uuid", args);
}

const struct cmd_entry cmd_resync_entry = {
	.name = "resync",
	.usage = "[--wait SECONDS]",
	.help = "resync the regions marked out of sync (--wait: until in sync)",
	.exec = resync_exec,
};

const struct cmd_entry cmd_invalidate_entry = {
	.name = "invalidate",
	.usage = "[--wait SECONDS]",
	.help = "discard this node's data and fetch all of it from the peer",
	.exec = invalidate_exec,
};

const struct cmd_entry cmd_verify_entry = {
	.name = "verify",
	.usage = "[--no-wait | --wait SECONDS]",
	.help = "compare both disks, mark differences out of sync (waits for the end)",
	.exec = verify_exec,
};

const struct cmd_entry cmd_pause_sync_entry = {
	.name = "pause-sync",
	.usage = "",
	.help = "pause the running resync",
	.exec = pause_exec,
};

const struct cmd_entry cmd_resume_sync_entry = {
	.name = "resume-sync",
	.usage = "",
	.help = "resume a paused resync",
	.exec = resume_exec,
};

const struct cmd_entry cmd_new_current_uuid_entry = {
	.name = "new-current-uuid",
	.usage = "--clear-bitmap",
	.help = "skip the initial sync of two fresh, identical disks (e.g. both zeroed)",
	.exec = new_uuid_exec,
};
