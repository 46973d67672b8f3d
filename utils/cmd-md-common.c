/* SPDX-License-Identifier: BSD-2-Clause */
/* Helpers shared by blkmirrorctl create-md and dump-md (see cmd-md.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cmd-md.h"

int
cmd_md_node(const struct cmd_ctx *ctx, const struct cmd_entry *e,
    struct conf *conf, const struct conf_node **self,
    const struct conf_node **peer)
{
	char err[512], host[256];
	const char *node = ctx->node;

	if (ctx->conf_path == NULL)
		return cmd_fail(EX_USAGE, "%s works on the disks of a configuration: "
		    "give -c FILE [-n NODE]", e->name);
	if (conf_load(ctx->conf_path, conf, err, sizeof(err)) < 0)
		return cmd_fail(EX_CONFIG, "%s", err);
	if (node == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			return cmd_fail(EX_OSERR, "gethostname: %s", strerror(errno));
		host[sizeof(host) - 1] = '\0';
		node = host;
	}
	*self = conf_node(conf, node);
	if (*self == NULL)
		return cmd_fail(EX_CONFIG, "%s: no [node %s] section (use -n NODE)",
		    ctx->conf_path, node);
	*peer = conf_peer(conf, node);
	return -1;
}

bool
cmd_md_internal(const struct conf_node *n)
{

	return n->meta_disk[0] == '\0' || strcmp(n->meta_disk, "internal") == 0;
}

int
cmd_md_fail(const struct cmd_entry *e, const char *path, int err)
{

	switch (err) {
	case -EEXIST:
		return cmd_fail(CMD_EXIT_REFUSED, "%s: %s already holds valid blkmirror "
		    "metadata (--force overwrites it)", e->name, path);
	case -ENOENT:
		return cmd_fail(EX_NOINPUT, "%s: %s: %s", e->name, path, strerror(-err));
	case -EUCLEAN:
		return cmd_fail(CMD_EXIT_REFUSED, "%s: %s holds blkmirror metadata whose two "
		    "superblock slots are both damaged (dump-md shows them); --force "
		    "overwrites it, and the disk then gets a full resync", e->name, path);
	case -ENOSPC:
		return cmd_fail(EX_DATAERR, "%s: %s is too small for the data area and "
		    "its metadata", e->name, path);
	case -EBUSY:
		return cmd_fail(EX_TEMPFAIL, "%s: %s is in use (is blkmirrord running?)",
		    e->name, path);
	case -EACCES:
	case -EPERM:
		return cmd_fail(EX_NOPERM, "%s: %s: %s", e->name, path, strerror(-err));
	default:
		return cmd_fail(EX_IOERR, "%s: %s: %s", e->name, path, strerror(-err));
	}
}
