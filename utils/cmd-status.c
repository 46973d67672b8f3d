/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl status [--json]: the daemon's state and counters, as a table
 * or as the daemon's JSON result object.  The table shows the replication
 * part (peer, resync, generation uuids, traffic) when the daemon sends it,
 * that is for a two-node resource.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "cmd-admin.h"
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

/* Format a byte count as "1.5 GiB (1610612736 bytes)" (cmd_size_short + exact). */
static const char *
human_size(int64_t bytes, char *buf, size_t len)
{
	char s[32];

	if (bytes < 1024)
		return cmd_size_short(bytes, buf, len);
	cmd_size_short(bytes, s, sizeof(s));
	snprintf(buf, len, "%s (%" PRId64 " bytes)", s, bytes);
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

/* Resync progress while one runs, and the verify's state. */
static void
print_resync(struct json_object *r)
{
	struct json_object *rs = cmd_jobj(r, "resync");
	int64_t done = cmd_jnum(rs, "done_bytes"), total = cmd_jnum(rs, "total_bytes");
	int64_t rate = cmd_jnum(rs, "rate_bytes_per_s");
	char a[32], b[32], c[32];

	/* sync-source, sync-target and their paused-... forms. */
	if (strstr(field(r, "replication"), "sync-") != NULL) {
		printf("%-12s %s of %s", "resync", cmd_size_short(done, a, sizeof(a)),
		    cmd_size_short(total, b, sizeof(b)));
		if (total > 0 && done >= 0)
			printf(" (%.1f%%)", 100.0 * (double)done / (double)total);
		if (rate > 0)
			printf(", %s/s", cmd_size_short(rate, c, sizeof(c)));
		if (rate > 0 && total > done && done >= 0)
			printf(", %s left", human_uptime((total - done) / rate, c, sizeof(c)));
		printf("%s\n", cmd_jbool(rs, "paused") ? ", paused" : "");
		if (cmd_jnum(rs, "failed_bytes") > 0) {
			printf("%-12s %s in %" PRId64 " ranges failed (read or write error)",
			    "resync", cmd_size_short(cmd_jnum(rs, "failed_bytes"), a, sizeof(a)),
			    cmd_jnum(rs, "failed_ranges"));
			if (cmd_jnum(rs, "next_pass_in_ms") > 0)
				printf("; next pass in %" PRId64 " s",
				    (cmd_jnum(rs, "next_pass_in_ms") + 999) / 1000);
			printf("\n");
		}
	} else if (cmd_jbool(rs, "paused")) {
		printf("%-12s paused (resume-sync releases it)\n", "resync");
	}
	if (cmd_jbool(rs, "verify_running"))
		printf("%-12s running, %s differ so far\n", "verify",
		    cmd_size_short(cmd_jnum(rs, "verify_diff_bytes"), a, sizeof(a)));
	else if (cmd_jnum(rs, "verify_diff_bytes") > 0)
		printf("%-12s last run: %s differ\n", "verify",
		    cmd_size_short(cmd_jnum(rs, "verify_diff_bytes"), a, sizeof(a)));
}

/* The generation uuids: current, bitmap, history, and the volume's uuid. */
static void
print_uuids(struct json_object *r)
{
	struct json_object *uu = cmd_jobj(r, "uuids"), *h;
	size_t n;

	if (uu == NULL)
		return;
	printf("%-12s current %s, bitmap %s\n", "uuids", cmd_jstr(uu, "current", "-"),
	    cmd_jstr(uu, "bitmap", "-"));
	/* The history without its unused (all-zero) slots; "-" when empty. */
	if (json_object_object_get_ex(uu, "history", &h) &&
	    json_object_is_type(h, json_type_array)) {
		const char *sep = "";

		printf("%-12s ", "uuid history");
		n = json_object_array_length(h);
		for (size_t i = 0; i < n; i++) {
			const char *u = json_object_get_string(json_object_array_get_idx(h, i));

			if (u == NULL || strspn(u, "0") == strlen(u))
				continue;
			printf("%s%s", sep, u);
			sep = ", ";
		}
		printf("%s\n", sep[0] == '\0' ? "-" : "");
	}
	printf("%-12s %s\n", "volume", cmd_jstr(uu, "volume", "-"));
}

/* The peer link's traffic and event counters. */
static void
print_traffic(struct json_object *r)
{
	char a[64], b[64];

	printf("%-12s %s\n", "sent", human_size(num(r, "bytes_sent"), a, sizeof(a)));
	printf("%-12s %s\n", "received", human_size(num(r, "bytes_received"), a, sizeof(a)));
	printf("%-12s %s shipped, %s received\n", "resync data",
	    cmd_size_short(num(r, "resync_bytes_shipped"), a, sizeof(a)),
	    cmd_size_short(num(r, "resync_bytes_received"), b, sizeof(b)));
	printf("%-12s %s writes, %s behind\n", "pending",
	    fmt_num(num(r, "pending_writes"), a, sizeof(a)),
	    cmd_size_short(num(r, "lag_bytes"), b, sizeof(b)));
	print_num("connects", num(r, "connects"));
	print_num("split brains", num(r, "split_brains"));
	print_num("transitions", num(r, "state_changes"));
	print_num("md writes", num(r, "metadata_writes"));
}

/* The replication part; only "replication off" for a standalone resource. */
static void
print_replication(struct json_object *r)
{
	struct json_object *peer = cmd_jobj(r, "peer");
	char buf[64];

	if (strcmp(field(r, "replication"), "-") == 0)
		return;		/* a daemon without replication support */
	printf("%-12s %s\n", "replication", field(r, "replication"));
	if (peer == NULL)
		return;
	printf("%-12s %s at %s, %s\n", "peer", cmd_jstr(peer, "node", "-"),
	    cmd_jstr(peer, "address", "-"), cmd_jstr(peer, "connection", "-"));
	printf("%-12s %s\n", "peer role", cmd_jstr(peer, "role", "-"));
	printf("%-12s %s\n", "peer disk", cmd_jstr(peer, "disk", "-"));
	if (cmd_peer_error(r)[0] != '\0')
		printf("%-12s %s\n", "last error", cmd_peer_error(r));
	print_num("epoch", num(r, "epoch"));
	printf("%-12s %s\n", "out of sync",
	    human_size(num(r, "out_of_sync_bytes"), buf, sizeof(buf)));
	print_resync(r);
	print_uuids(r);
	print_traffic(r);
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
	printf("%-12s %s%s\n", "io engine", field(r, "io_engine"),
	    strcmp(field(r, "direct_io"), "true") == 0 ? " (O_DIRECT)" :
	    strcmp(field(r, "direct_io"), "false") == 0 ? " (page cache)" : "");
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
	print_replication(r);
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
	.help = "show role, disk, connection, replication, size, clients and I/O counters",
	.exec = status_exec,
};
