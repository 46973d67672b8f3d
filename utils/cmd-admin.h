/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Shared by the replication commands (cmd-role.c, cmd-conn.c, cmd-sync.c)
 * and status: one request on a fresh connection, waiting on the status
 * result until a condition holds, and reading fields of a JSON object.
 */
#ifndef BLKMIRRORCTL_CMD_ADMIN_H
#define BLKMIRRORCTL_CMD_ADMIN_H

#include <stdint.h>

#include "cmd.h"

#define CMD_POLL_MS		50	/* status polling interval while waiting */
#define CMD_WAIT_MAX_S		(7 * 86400)	/* largest --wait accepted */

/* What a wait condition says about one status result. */
enum cmd_wait {
	CMD_WAIT_DONE,		/* reached: stop waiting, success */
	CMD_WAIT_MORE,		/* not yet: poll again (why: the state now) */
	CMD_WAIT_FAIL,		/* cannot be reached any more (why: the reason) */
};

/*
 * A condition on the status result r.  Writes into why (always, len bytes)
 * what the state is now (MORE) or why it cannot get there (FAIL).
 */
typedef enum cmd_wait (*cmd_wait_fn)(struct json_object *r, char *why, size_t len);

/*
 * Connect, send cmd (args consumed, may be NULL) and expect {"ok":true}.
 * Returns 0 with *c open (the caller closes it), or an exit code after
 * printing one line, *c then closed.
 */
int cmd_admin_open(struct cmd_ctx *ctx, struct ctl_conn *c, const char *cmd,
    struct json_object *args);
/* cmd_admin_open() and close: 0 or the exit code. */
int cmd_admin_simple(struct cmd_ctx *ctx, const char *cmd, struct json_object *args);
/*
 * Ask c for its status now and then every CMD_POLL_MS until cond says DONE
 * (returns 0) or FAIL (prints "NAME: WHY", returns CMD_EXIT_REFUSED), or
 * timeout_s seconds have passed (prints "NAME: gave up after N s: WHY",
 * returns EX_TEMPFAIL).  A failed status request returns its exit code.
 */
int cmd_wait_status(struct cmd_ctx *ctx, struct ctl_conn *c, const char *name,
    cmd_wait_fn cond, unsigned long timeout_s);
/*
 * One status request on c: 0 with *rep filled (free it), or an exit code
 * after printing one line.
 */
int cmd_status_get(struct cmd_ctx *ctx, struct ctl_conn *c, struct ctl_reply *rep);

/* A string member of o, or def when o is NULL or it is missing or no string. */
const char *cmd_jstr(struct json_object *o, const char *key, const char *def);
/* An integer member (>= 0) of o, or -1 when missing or not an integer. */
int64_t cmd_jnum(struct json_object *o, const char *key);
/* A boolean member of o; false when missing. */
bool cmd_jbool(struct json_object *o, const char *key);
/* An object member of o, or NULL. */
struct json_object *cmd_jobj(struct json_object *o, const char *key);
/*
 * The peer link's last error from a status result while the link is not
 * connected, else "" (once connected again the error is history).
 */
const char *cmd_peer_error(struct json_object *r);
/* A byte count as "1.5 GiB", "512 bytes" or "-" (negative). */
const char *cmd_size_short(int64_t bytes, char *buf, size_t len);

#endif
