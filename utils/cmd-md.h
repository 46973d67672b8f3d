/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the metadata commands (create-md, dump-md) share: they work on the
 * disks named in the configuration, without a running daemon.
 */
#ifndef BLKMIRRORCTL_CMD_MD_H
#define BLKMIRRORCTL_CMD_MD_H

#include <stdbool.h>

#include "cmd.h"
#include "config.h"

/*
 * Load ctx->conf_path and find the node ctx->node (default: the hostname)
 * and its peer (NULL when standalone).  Returns -1 to go on, or an exit code
 * after printing one line (no -c given, bad config, no such node).
 */
int cmd_md_node(const struct cmd_ctx *ctx, const struct cmd_entry *e,
    struct conf *conf, const struct conf_node **self,
    const struct conf_node **peer);

/* The node keeps its metadata on its data disk. */
bool cmd_md_internal(const struct conf_node *n);

/* Exit code and message for a failed metadata operation on path. */
int cmd_md_fail(const struct cmd_entry *e, const char *path, int err);

#endif
