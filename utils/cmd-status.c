/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl status [--json]: the daemon's state and counters, as a table
 * or as the daemon's JSON result object.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "cmd.h"
#include "util.h"

/* A string field, or "-" when the daemon did not send it. */
static const char *
field(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return "-";
	return json_object_get_string(v);
}

/* An unsigned field, or -1 (printed as "-") when missing. */
static int64_t
num(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL ||
	    !json_object_is_type(v, json_type_int))
		return -1;
	return json_object_get_int64(v);
}

/* Format a byte count as "1.5 GiB (1610612736 bytes)". */
static const char *
human_size(int64_t bytes, char *buf, size_t len)
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
		snprintf(buf, len, "%.1f %s (%" PRId64 " bytes)", v, units[u], bytes);
	return buf;
}

static const char *
human_uptime(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		return "-";
	if (s >= 86400)
		snprintf(buf, len, "%" PRId64 "d %02" PRId64 "h %02" PRId64 "m",
		    s / 86400, s / 3600 % 24, s / 60 % 60);
	else
		snprintf(buf, len, "%" PRId64 "h %02" PRId64 "m %02" PRId64 "s",
		    s / 3600, s / 60 % 60, s % 60);
	return buf;
}

/* v as decimal, or "-" when missing. */
static const char *
fmt_num(int64_t v, char *buf, size_t len)
{
	if (v < 0)
		return "-";
	snprintf(buf, len, "%" PRId64, v);
	return buf;
}

static void
print_num(const char *label, int64_t v)
{
	char buf[24];

	printf("%-12s %s\n", label, fmt_num(v, buf, sizeof(buf)));
}

/* The per-operation counters: count and bytes side by side. */
static void
print_ops(struct json_object *ops)
{
	static const struct { const char *label, *count, *bytes; } rows[] = {
		{ "read", "reads", "read_bytes" },
		{ "write", "writes", "write_bytes" },
		{ "flush", "flushes", NULL },
		{ "trim", "trims", "trim_bytes" },
		{ "write-zeroes", "zeroes", "zero_bytes" },
		{ "cache", "caches", NULL },
		{ "block-status", "block_status", NULL },
		{ "errors", "errors", NULL },
		{ "rejected", "rejected", NULL },
	};

	printf("\n%-14s %14s %18s\n", "operation", "count", "bytes");
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		int64_t c = ops != NULL ? num(ops, rows[i].count) : -1;
		int64_t b = ops != NULL && rows[i].bytes != NULL ? num(ops, rows[i].bytes) : -1;
		char cb[24], bb[24];

		printf("%-14s %14s %18s\n", rows[i].label, fmt_num(c, cb, sizeof(cb)),
		    fmt_num(b, bb, sizeof(bb)));
	}
}

/* Listeners as "nbd 0.0.0.0:10809, control unix:/run/blkmirror/r0.sock". */
static void
print_listeners(struct json_object *r)
{
	struct json_object *l;
	size_t n;

	printf("%-12s ", "listeners");
	if (!json_object_object_get_ex(r, "listeners", &l) ||
	    !json_object_is_type(l, json_type_array) || (n = json_object_array_length(l)) == 0) {
		printf("-\n");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(l, i);

		printf("%s%s %s", i > 0 ? ", " : "", field(e, "kind"), field(e, "address"));
	}
	printf("\n");
}

static void
print_table(struct json_object *r)
{
	struct json_object *ops = NULL;
	char buf[64];

	printf("%-12s %s\n", "resource", field(r, "resource"));
	printf("%-12s %s\n", "node", field(r, "node"));
	printf("%-12s %s\n", "role", field(r, "role"));
	printf("%-12s %s\n", "disk", field(r, "disk"));
	printf("%-12s %s\n", "connection", field(r, "connection"));
	printf("%-12s %s\n", "io engine", field(r, "io_engine"));
	printf("%-12s %s\n", "protocol", field(r, "protocol"));
	printf("%-12s %s\n", "size", human_size(num(r, "size_bytes"), buf, sizeof(buf)));
	print_num("block size", num(r, "block_size"));
	printf("%-12s %s", "clients", field(r, "clients"));
	if (num(r, "clients_total") >= 0)
		printf(" (%" PRId64 " since start)", num(r, "clients_total"));
	printf("\n");
	print_num("in flight", num(r, "in_flight"));
	printf("%-12s %s\n", "uptime", human_uptime(num(r, "uptime_s"), buf, sizeof(buf)));
	print_listeners(r);
	json_object_object_get_ex(r, "ops", &ops);
	print_ops(ops);
}

static int
status_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--json" } };
	struct ctl_conn c;
	struct ctl_reply rep;
	int ret = cmd_parse_opts(&cmd_status_entry, argc, argv, opts, ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if ((ret = cmd_connect(ctx, &c)) != 0)
		return ret;
	ret = cmd_call(ctx, &c, "status", NULL, &rep);
	ctl_close(&c);
	if (ret != 0)
		return ret;
	if (opts[0].set)
		printf("%s\n", json_object_to_json_string_ext(rep.result,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		    JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		print_table(rep.result);
	ctl_reply_free(&rep);
	if (fflush(stdout) != 0)
		return cmd_fail(EX_IOERR, "writing to stdout failed");
	return 0;
}

const struct cmd_entry cmd_status_entry = {
	.name = "status",
	.usage = "[--json]",
	.help = "show role, disk, connection, size, clients and I/O counters",
	.exec = status_exec,
};
