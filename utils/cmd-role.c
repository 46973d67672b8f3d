/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl primary [--force] [--wait SECONDS]: promote this node.
 * blkmirrorctl secondary [--wait SECONDS]: demote it.
 *
 * The daemon answers once the role change is under way; the superblock
 * that records it is written asynchronously (promotion takes effect only
 * after that write).  The command then asks for the status every
 * CMD_POLL_MS until the role is the one asked for, at most --wait seconds
 * (default ROLE_WAIT_S).
 */
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "cmd-admin.h"
#include "util.h"

#define ROLE_WAIT_S	10	/* default --wait */

/* Describe the state when the role is not (yet) the wanted one. */
static enum cmd_wait
role_is(struct json_object *r, const char *want, char *why, size_t len)
{
	const char *role = cmd_jstr(r, "role", "unknown");
	const char *err = cmd_peer_error(r);

	if (strcmp(role, want) == 0)
		return CMD_WAIT_DONE;
	snprintf(why, len, "role is still %s (disk %s, replication %s%s%s; the daemon's "
	    "log says why)", role, cmd_jstr(r, "disk", "unknown"),
	    cmd_jstr(r, "replication", "unknown"), err[0] != '\0' ? ", peer: " : "", err);
	return CMD_WAIT_MORE;
}

static enum cmd_wait
is_primary(struct json_object *r, char *why, size_t len)
{
	return role_is(r, "primary", why, len);
}

/* Demoted, and the demotion settled (see "demoting" in blkmirrorctl(8)). */
static enum cmd_wait
is_secondary(struct json_object *r, char *why, size_t len)
{
	struct json_object *v;

	if (role_is(r, "secondary", why, len) != CMD_WAIT_DONE)
		return CMD_WAIT_MORE;
	if (json_object_object_get_ex(r, "demoting", &v) && json_object_get_boolean(v)) {
		snprintf(why, len, "secondary, but writes of its time as primary still wait "
		    "for the peer's confirmation (status: demoting, pending_writes, lag_bytes)");
		return CMD_WAIT_MORE;
	}
	return CMD_WAIT_DONE;
}

/*
 * Both commands: opts[0] is --wait, opts[1] (primary only) --force.  Send
 * the request, then wait for the role.
 */
static int
role_run(struct cmd_ctx *ctx, const struct cmd_entry *e, int argc, char **argv,
    cmd_wait_fn cond)
{
	struct cmd_opt opts[] = {
		{ .name = "--wait", .has_value = true },
		{ .name = "--force" },
	};
	unsigned n = cond == is_primary ? 2 : 1;
	unsigned long wait_s = ROLE_WAIT_S;
	struct json_object *args = NULL;
	struct ctl_conn c;
	int ret = cmd_parse_opts(e, argc, argv, opts, n);

	if (ret >= 0)
		return ret;
	if (opts[0].set && (ret = cmd_opt_uint(e, &opts[0], CMD_WAIT_MAX_S, &wait_s)) >= 0)
		return ret;
	if (n > 1 && opts[1].set) {
		args = json_object_new_object();
		json_object_object_add(args, "force", json_object_new_boolean(1));
	}
	if ((ret = cmd_admin_open(ctx, &c, e->name, args)) != 0)
		return ret;
	ret = cmd_wait_status(ctx, &c, e->name, cond, wait_s);
	ctl_close(&c);
	return ret;
}

static int
primary_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	return role_run(ctx, &cmd_primary_entry, argc, argv, is_primary);
}

static int
secondary_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	return role_run(ctx, &cmd_secondary_entry, argc, argv, is_secondary);
}

const struct cmd_entry cmd_primary_entry = {
	.name = "primary",
	.usage = "[--force] [--wait SECONDS]",
	.help = "promote this node (--force: make an inconsistent disk the sync source)",
	.exec = primary_exec,
};

const struct cmd_entry cmd_secondary_entry = {
	.name = "secondary",
	.usage = "[--wait SECONDS]",
	.help = "demote this node (no NBD client may be connected)",
	.exec = secondary_exec,
};
