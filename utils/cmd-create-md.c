/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl -c FILE [-n NODE] create-md [--force]: initialize the
 * metadata of the node's disk (internal, at the end of the disk) or
 * meta-disk, with the resource's bitmap-granularity and al-extents.  Refuses
 * to overwrite valid metadata without --force.  No daemon needed; a block
 * device in use (opened exclusively by blkmirrord) is refused.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cmd-md.h"
#include "md.h"

static int
cmd_create_md_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--force" } };
	static struct conf conf;
	const struct conf_node *self, *peer;
	struct md_create_opts o = { 0 };
	struct md_sb sb;
	char vol[40];
	int ret;

	if ((ret = cmd_parse_opts(&cmd_create_md_entry, argc, argv, opts, 1)) >= 0)
		return ret;
	ret = cmd_md_node(ctx, &cmd_create_md_entry, &conf, &self, &peer);
	if (ret >= 0)
		return ret;
	o.granularity = (uint32_t)conf.bitmap_granularity;
	o.al_extents = conf.al_extents;
	o.node_id = md_node_id(self->name, peer != NULL ? peer->name : NULL);
	ret = md_create(self->disk, cmd_md_internal(self) ? NULL : self->meta_disk,
	    &o, opts[0].set, &sb);
	if (ret < 0)
		return cmd_md_fail(&cmd_create_md_entry,
		    cmd_md_internal(self) ? self->disk : self->meta_disk, ret);
	printf("created metadata for %s on %s: data %" PRIu64 " bytes, "
	    "bitmap-granularity %" PRIu32 ", al-extents %" PRIu32
	    ", node-id %" PRIu32 ", volume %s\n", self->disk,
	    cmd_md_internal(self) ? "the disk (internal)" : self->meta_disk,
	    sb.data_bytes, sb.granularity, sb.al_extents, sb.node_id,
	    md_volume_uuid_str(sb.volume_uuid, vol));
	return 0;
}

const struct cmd_entry cmd_create_md_entry = {
	.name = "create-md",
	.usage = "[--force]",
	.help = "initialize the node's metadata (no daemon needed)",
	.exec = cmd_create_md_exec,
};
