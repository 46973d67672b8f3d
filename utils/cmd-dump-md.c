/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl -c FILE [-n NODE] dump-md: print the node's metadata as
 * "key: value" lines: both superblock slots' state, the superblock in use,
 * the layout, the activity log's active extents and the bitmap's
 * out-of-sync ranges.  Read only; works while the daemon runs (the view is
 * then as of the last metadata writes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "cmd-md.h"
#include "md.h"

/* Open path read-only into *fd; returns -1 to go on or an exit code. */
static int
open_ro(const char *path, int *fd)
{

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return cmd_md_fail(&cmd_dump_md_entry, path, -errno);
	return -1;
}

static int
cmd_dump_md_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	static struct conf conf;
	const struct conf_node *self, *peer;
	struct md_loc loc = { .fd = -1 };
	const char *where;
	int dfd = -1, ret;

	if ((ret = cmd_parse_opts(&cmd_dump_md_entry, argc, argv, NULL, 0)) >= 0)
		return ret;
	ret = cmd_md_node(ctx, &cmd_dump_md_entry, &conf, &self, &peer);
	if (ret >= 0)
		return ret;
	loc.internal = cmd_md_internal(self);
	where = loc.internal ? self->disk : self->meta_disk;
	if ((ret = open_ro(self->disk, &dfd)) >= 0)
		return ret;
	if ((ret = md_fd_size(dfd, &loc.disk_bytes)) < 0) {
		ret = cmd_md_fail(&cmd_dump_md_entry, self->disk, ret);
		goto out;
	}
	if (loc.internal)
		loc.fd = dfd;
	else if ((ret = open_ro(self->meta_disk, &loc.fd)) >= 0)
		goto out;
	printf("node: %s\ndisk: %s\nmeta-disk-path: %s\n", self->name, self->disk,
	    where);
	ret = md_dump(&loc, stdout);
	if (ret == -ENOENT)
		ret = cmd_fail(CMD_EXIT_REFUSED, "dump-md: no valid metadata on %s "
		    "(create-md initializes it)", where);
	else if (ret == -EUCLEAN)
		ret = cmd_fail(CMD_EXIT_REFUSED, "dump-md: both superblock slots on %s are "
		    "damaged (torn or corrupt)", where);
	else if (ret == -EPROTO)
		ret = cmd_fail(CMD_EXIT_REFUSED, "dump-md: %s holds metadata of a newer "
		    "format", where);
	else if (ret == -ESTALE)
		ret = cmd_fail(CMD_EXIT_REFUSED, "dump-md: %s changed size since "
		    "create-md", self->disk);
	else if (ret < 0)
		ret = cmd_md_fail(&cmd_dump_md_entry, where, ret);
out:
	if (loc.fd >= 0 && loc.fd != dfd)
		close(loc.fd);
	close(dfd);
	return ret < 0 ? 0 : ret;
}

const struct cmd_entry cmd_dump_md_entry = {
	.name = "dump-md",
	.usage = "",
	.help = "print the node's metadata (no daemon needed)",
	.exec = cmd_dump_md_exec,
};
