/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Helpers of the replication commands (see cmd-admin.h): a request on its
 * own connection, bounded waits on the status result, JSON field access.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "cmd-admin.h"
#include "util.h"

int
cmd_admin_open(struct cmd_ctx *ctx, struct ctl_conn *c, const char *cmd,
    struct json_object *args)
{
	struct ctl_reply rep;
	int ret = cmd_connect(ctx, c);

	if (ret != 0) {
		json_object_put(args);
		return ret;
	}
	if ((ret = cmd_call(ctx, c, cmd, args, &rep)) != 0) {
		ctl_close(c);
		return ret;
	}
	ctl_reply_free(&rep);
	return 0;
}

int
cmd_admin_simple(struct cmd_ctx *ctx, const char *cmd, struct json_object *args)
{
	struct ctl_conn c;
	int ret = cmd_admin_open(ctx, &c, cmd, args);

	if (ret == 0)
		ctl_close(&c);
	return ret;
}

int
cmd_status_get(struct cmd_ctx *ctx, struct ctl_conn *c, struct ctl_reply *rep)
{
	return cmd_call(ctx, c, "status", NULL, rep);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int
cmd_wait_status(struct cmd_ctx *ctx, struct ctl_conn *c, const char *name,
    cmd_wait_fn cond, unsigned long timeout_s)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull;
	struct ctl_reply rep;
	char why[256];

	/* One status per pass; the deadline bounds the loop. */
	for (;;) {
		enum cmd_wait w;
		int ret = cmd_status_get(ctx, c, &rep);

		if (ret != 0)
			return ret;
		why[0] = '\0';
		w = cond(rep.result, why, sizeof(why));
		ctl_reply_free(&rep);
		if (w == CMD_WAIT_DONE)
			return 0;
		if (w == CMD_WAIT_FAIL)
			return cmd_fail(CMD_EXIT_REFUSED, "%s: %s", name, why);
		if (now_ns() >= deadline)
			return cmd_fail(EX_TEMPFAIL, "%s: gave up after %lu s: %s", name,
			    timeout_s, why);
		sleep_ms(CMD_POLL_MS);
	}
}

const char *
cmd_jstr(struct json_object *o, const char *key, const char *def)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return def;
	return json_object_get_string(v);
}

int64_t
cmd_jnum(struct json_object *o, const char *key)
{
	struct json_object *v;
	int64_t n;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return -1;
	n = json_object_get_int64(v);
	return n < 0 ? -1 : n;
}

bool
cmd_jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

struct json_object *
cmd_jobj(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

const char *
cmd_peer_error(struct json_object *r)
{
	struct json_object *peer = cmd_jobj(r, "peer");

	if (strcmp(cmd_jstr(peer, "connection", "connected"), "connected") == 0)
		return "";
	return cmd_jstr(peer, "last_error", "");
}

const char *
cmd_size_short(int64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned u = 0;

	if (bytes < 0)
		return "-";
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRId64 " bytes", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}
