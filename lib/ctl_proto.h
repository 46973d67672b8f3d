/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The control protocol between blkmirrorctl and blkmirrord: line-delimited
 * JSON (json-c) over a UNIX stream socket, one object per line.
 *
 *   request   {"cmd":"status","args":{...}}            ("args" optional)
 *   reply     {"ok":true,"result":{...}}
 *             {"ok":false,"error":"message"}
 *   event     {"event":"NAME","time":1700000000.123456, ...fields}
 *
 * One reply per request, in order.  "events" turns the connection into a
 * subscription: after its ok reply the daemon sends one event line per event
 * until the client closes, or until the client falls too far behind: then
 * the last line is {"event":"overflow",...,"message":...} and the daemon
 * closes the connection.  A request line longer than CTL_MAX_LINE bytes
 * (newline excluded) or one that does not decode gets an error reply, and the
 * daemon closes the connection.  A connection that is not a subscription is
 * closed after a while (30 s) without traffic.
 *
 * Version history (there is no version field: commands and fields are only
 * ever added, never renamed or removed; clients ignore unknown fields):
 *   1  status, down, events.
 */
#ifndef BLKMIRROR_CTL_PROTO_H
#define BLKMIRROR_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

#define CTL_MAX_LINE	(64 * 1024)	/* longest request line, '\n' excluded */
#define CTL_CMD_MAX	32		/* command name buffer, NUL included */
#define CTL_ERR_MAX	256		/* error message buffer, NUL included */

/* A decoded request. */
struct ctl_request {
	char cmd[CTL_CMD_MAX];		/* [a-z0-9_-]+, NUL-terminated */
	struct json_object *args;	/* "args" object (owned), or NULL */
	const char *error;		/* decode failure reason (static string) */
};

/* A decoded reply (client side). */
struct ctl_reply {
	bool ok;			/* "ok" */
	struct json_object *result;	/* "result" object, borrowed from root */
	char error[CTL_ERR_MAX];	/* "error" when !ok, NUL-terminated */
	struct json_object *root;	/* the whole reply (owned) */
};

/* A decoded event line (client side). */
struct ctl_event {
	char name[CTL_CMD_MAX];		/* "event" */
	double time;			/* "time", unix seconds */
	struct json_object *root;	/* the whole event (owned) */
};

/*
 * Decode one request line (without its '\n'; a trailing '\r' is tolerated).
 * Checks, before any allocation: len <= CTL_MAX_LINE and no NUL byte.  Then:
 * a JSON object with exactly the keys "cmd" (a string of 1..CTL_CMD_MAX-1
 * characters from [a-z0-9_-]) and optionally "args" (an object), nothing
 * after it.  Returns 0 (out->args owned by the caller: ctl_request_free), or
 * -E2BIG (line too long) / -EINVAL (anything else) with out->error set and
 * nothing to free.
 */
int ctl_request_decode(const char *line, size_t len, struct ctl_request *out);
void ctl_request_free(struct ctl_request *req);

/*
 * Decode one reply line (client side): an object with a boolean "ok", an
 * object "result" when ok (an empty one is supplied if absent), a string
 * "error" when not.  Returns 0 (free with ctl_reply_free) or -E2BIG/-EINVAL.
 */
int ctl_reply_decode(const char *line, size_t len, struct ctl_reply *out);
void ctl_reply_free(struct ctl_reply *rep);

/*
 * Decode one event line (client side): an object with a string "event" and
 * a number "time".  Returns 0 (free with ctl_event_free) or -E2BIG/-EINVAL.
 */
int ctl_event_decode(const char *line, size_t len, struct ctl_event *out);
void ctl_event_free(struct ctl_event *ev);

/*
 * Encoders.  Each returns a malloc'd, NUL-terminated line ending in '\n'
 * (*lenp, if non-NULL, gets its length without the NUL), or NULL when out of
 * memory.  Objects passed in are consumed (json_object_put), even on failure.
 */
/* {"cmd":CMD,"args":ARGS}; args may be NULL (then "args" is omitted). */
char *ctl_request_encode(const char *cmd, struct json_object *args, size_t *lenp);
/* {"ok":true,"result":RESULT}; result NULL means an empty object. */
char *ctl_reply_ok(struct json_object *result, size_t *lenp);
/* {"ok":false,"error":MSG} with MSG from a printf format. */
char *ctl_reply_error(size_t *lenp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Any object as one line (plain JSON, no spaces, slashes not escaped). */
char *ctl_line(struct json_object *obj, size_t *lenp);

/*
 * A new event object {"event":NAME,"time":<now, unix seconds, microsecond
 * precision>}; the caller adds fields and hands it to control_emit().
 * Returns NULL when out of memory.
 */
struct json_object *ctl_event_new(const char *name);

/*
 * Blocking client side (blkmirrorctl, tests).  A struct ctl_conn buffers
 * what was received beyond the current line.
 */
struct ctl_conn {
	int fd;				/* connected socket, -1 when closed */
	char *buf;			/* receive buffer, CTL_MAX_REPLY + 1 bytes */
	size_t len;			/* bytes in buf */
	size_t line_len;		/* length of the line last returned, + 1 */
};

#define CTL_MAX_REPLY	(1024 * 1024)	/* longest reply/event line accepted */

/*
 * Connect to the UNIX socket at path, waiting at most timeout_ms (< 0: no
 * bound) for a daemon whose listen backlog is full.  Returns 0 or a
 * negative errno: -ETIMEDOUT when the daemon did not make room in time.
 */
int ctl_connect(struct ctl_conn *c, const char *path, int timeout_ms);
void ctl_close(struct ctl_conn *c);
/* Send a whole line.  Returns 0 or a negative errno. */
int ctl_send_line(struct ctl_conn *c, const char *line, size_t len);
/*
 * Receive the next line; *line points into the connection's buffer (valid
 * until the next call), NUL-terminated, without its '\n'.  timeout_ms < 0
 * waits forever.  Returns the line length, or -ECONNRESET on end of file
 * (also with a partial line), -ETIMEDOUT, -E2BIG (line over CTL_MAX_REPLY),
 * -EINTR (a signal arrived while waiting) or another negative errno.
 */
long ctl_recv_line(struct ctl_conn *c, char **line, int timeout_ms);
/*
 * Send {"cmd":cmd,"args":args} (args consumed, may be NULL) and wait for the
 * reply into *rep.  Returns 0 (free *rep) or a negative errno; -EBADMSG when
 * the reply does not decode.
 */
int ctl_call(struct ctl_conn *c, const char *cmd, struct json_object *args,
    struct ctl_reply *rep, int timeout_ms);

#endif
