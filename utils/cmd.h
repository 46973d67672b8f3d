/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl's commands: one file per command (cmd-NAME.c), each exporting
 * a struct cmd_entry that blkmirrorctl.c lists in its table.  Commands talk
 * to the daemon's control socket through lib/ctl_proto.h; daemon/control.c
 * holds the matching handler table.
 *
 * Exit codes (sysexits(3)), shared by every command:
 *   0               success
 *   1               the daemon answered the request with an error
 *   EX_USAGE        bad command line
 *   EX_CONFIG       the configuration file (-c) could not be used
 *   EX_UNAVAILABLE  the daemon cannot be reached
 *   EX_PROTOCOL     the daemon's answer does not follow the protocol, or it
 *                   closed the connection before answering
 *   EX_TEMPFAIL     no answer (or connection) in time / the daemon did not
 *                   stop in time / it ended an event subscription that fell
 *                   behind ("overflow")
 *   EX_OSERR        a local system call failed
 */
#ifndef BLKMIRRORCTL_CMD_H
#define BLKMIRRORCTL_CMD_H

#include <stdbool.h>
#include <stdio.h>
#include <sysexits.h>

#include "ctl_proto.h"

#define CMD_EXIT_REFUSED	1	/* the daemon replied {"ok":false} */
#define CMD_REPLY_TIMEOUT_MS	10000	/* wait for one reply at most this long */

struct json_object;

/* What every command gets from the global options. */
struct cmd_ctx {
	const char *socket;		/* control socket path */
	const char *conf_path;		/* -c FILE, or NULL */
	const char *node;		/* -n NODE, or NULL (the hostname) */
};

/* One command. */
struct cmd_entry {
	const char *name;		/* as typed on the command line */
	const char *usage;		/* arguments, e.g. "[--json]" */
	const char *help;		/* one-line description */
	/* Run with argv[0] = the command name; returns an exit code (above). */
	int (*exec)(struct cmd_ctx *ctx, int argc, char **argv);
};

extern const struct cmd_entry cmd_status_entry;
extern const struct cmd_entry cmd_events_entry;
extern const struct cmd_entry cmd_down_entry;
extern const struct cmd_entry cmd_create_md_entry;
extern const struct cmd_entry cmd_dump_md_entry;
extern const struct cmd_entry cmd_primary_entry;
extern const struct cmd_entry cmd_secondary_entry;
extern const struct cmd_entry cmd_connect_entry;
extern const struct cmd_entry cmd_disconnect_entry;
extern const struct cmd_entry cmd_resync_entry;
extern const struct cmd_entry cmd_invalidate_entry;
extern const struct cmd_entry cmd_verify_entry;
extern const struct cmd_entry cmd_pause_sync_entry;
extern const struct cmd_entry cmd_resume_sync_entry;
extern const struct cmd_entry cmd_new_current_uuid_entry;

/* blkmirrorctl.c: helpers for commands. */

/* Print "blkmirrorctl: MESSAGE" on stderr and return code. */
int cmd_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "usage: blkmirrorctl [...] NAME USAGE" to f. */
void cmd_usage(FILE *f, const struct cmd_entry *e);
/* One option of a command, filled in by cmd_parse_opts(). */
struct cmd_opt {
	const char *name;		/* "--json" */
	bool has_value;			/* takes a value: "--count N" or "--count=N" */
	bool set;			/* given (output) */
	const char *value;		/* its value (output), NULL without one */
};

/*
 * Parse a command's arguments (argv[0] is the command): only "--help"/"-h"
 * and the options in opts[] are accepted.  Returns -1 to go on, or an exit
 * code to return at once (0 after printing help, EX_USAGE after printing
 * one line naming the error and the usage).
 */
int cmd_parse_opts(const struct cmd_entry *e, int argc, char **argv,
    struct cmd_opt *opts, unsigned n);
/*
 * Parse o->value as a decimal integer in 1..max into *out.  Returns -1 on
 * success, or EX_USAGE after printing the error.
 */
int cmd_opt_uint(const struct cmd_entry *e, const struct cmd_opt *o,
    unsigned long max, unsigned long *out);
/* Connect to ctx->socket; on failure print one line and return its exit code. */
int cmd_connect(struct cmd_ctx *ctx, struct ctl_conn *c);
/*
 * Send cmd (args consumed, may be NULL) and wait for an ok reply into *rep.
 * On failure (including an error reply) print one line and return its exit
 * code; *rep is then empty.
 */
int cmd_call(struct cmd_ctx *ctx, struct ctl_conn *c, const char *cmd,
    struct json_object *args, struct ctl_reply *rep);

#endif
