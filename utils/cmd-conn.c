/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl connect [--discard-my-data]: (re)start connecting to the
 * peer.  With --discard-my-data this node gives up its changes if the
 * connection finds a split brain (it becomes the sync target).
 * blkmirrorctl disconnect: close the peer link and stay standalone until
 * the next connect.
 *
 * Both return once the daemon accepted the request; "status" and
 * "events" show how the connection goes.
 */
#include <json-c/json.h>

#include "cmd-admin.h"
#include "util.h"

static int
connect_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--discard-my-data" } };
	struct json_object *args = NULL;
	int ret = cmd_parse_opts(&cmd_connect_entry, argc, argv, opts, ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if (opts[0].set) {
		args = json_object_new_object();
		json_object_object_add(args, "discard_my_data", json_object_new_boolean(1));
	}
	return cmd_admin_simple(ctx, "connect", args);
}

static int
disconnect_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	int ret = cmd_parse_opts(&cmd_disconnect_entry, argc, argv, NULL, 0);

	return ret >= 0 ? ret : cmd_admin_simple(ctx, "disconnect", NULL);
}

const struct cmd_entry cmd_connect_entry = {
	.name = "connect",
	.usage = "[--discard-my-data]",
	.help = "connect to the peer (--discard-my-data: lose this node's data on split brain)",
	.exec = connect_exec,
};

const struct cmd_entry cmd_disconnect_entry = {
	.name = "disconnect",
	.usage = "",
	.help = "close the link to the peer and stay standalone",
	.exec = disconnect_exec,
};
