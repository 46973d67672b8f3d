/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl: administer a running blkmirrord over its control socket.
 *
 *   blkmirrorctl [-s SOCKET | -c FILE [-n NODE]] COMMAND [ARGS]
 *
 * The socket is named directly (-s) or found in the resource configuration
 * (-c): the control path of the node given by -n, or of the node named
 * after this host.  Commands live in cmd-*.c, listed in cmd_table below.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cmd.h"
#include "config.h"
#include "config-build.h"
#include "util.h"

static const struct cmd_entry *const cmd_table[] = {
	&cmd_status_entry,
	&cmd_events_entry,
	&cmd_down_entry,
	&cmd_create_md_entry,
	&cmd_dump_md_entry,
	&cmd_primary_entry,
	&cmd_secondary_entry,
	&cmd_connect_entry,
	&cmd_disconnect_entry,
	&cmd_resync_entry,
	&cmd_invalidate_entry,
	&cmd_verify_entry,
	&cmd_pause_sync_entry,
	&cmd_resume_sync_entry,
	&cmd_new_current_uuid_entry,
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: blkmirrorctl [-s SOCKET | -c FILE [-n NODE]] COMMAND [ARGS]\n"
	    "  -s SOCKET  the daemon's control socket\n"
	    "  -c FILE    resource configuration; use the node's control socket\n"
	    "  -n NODE    node section to use with -c (default: the hostname)\n"
	    "  -h         this help; COMMAND --help for a command's\n"
	    "  -V         print the version\n"
	    "commands:\n");
	/* Two lines per command: the name and its arguments, then what it does. */
	for (size_t i = 0; i < ARRAY_SIZE(cmd_table); i++)
		fprintf(f, "  %s%s%s\n      %s\n", cmd_table[i]->name,
		    cmd_table[i]->usage[0] != '\0' ? " " : "", cmd_table[i]->usage,
		    cmd_table[i]->help);
}

int
cmd_fail(int code, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("blkmirrorctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

void
cmd_usage(FILE *f, const struct cmd_entry *e)
{
	fprintf(f, "usage: blkmirrorctl [-s SOCKET | -c FILE [-n NODE]] %s%s%s\n  %s\n",
	    e->name, e->usage[0] != '\0' ? " " : "", e->usage, e->help);
}

/* Match arg against opt: "--name", or "--name=VALUE" for valued options. */
static bool
opt_match(struct cmd_opt *o, const char *arg)
{
	size_t n = strlen(o->name);

	if (strncmp(arg, o->name, n) != 0)
		return false;
	if (arg[n] == '\0')
		return true;
	if (arg[n] == '=' && o->has_value) {
		o->value = arg + n + 1;
		return true;
	}
	return false;
}

int
cmd_parse_opts(const struct cmd_entry *e, int argc, char **argv,
    struct cmd_opt *opts, unsigned n)
{
	for (unsigned j = 0; j < n; j++) {
		opts[j].set = false;
		opts[j].value = NULL;
	}
	/* Every argument after the command name must be a known option. */
	for (int i = 1; i < argc; i++) {
		unsigned j;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			cmd_usage(stdout, e);
			return 0;
		}
		for (j = 0; j < n && !opt_match(&opts[j], argv[i]); j++)
			;
		if (j == n)
			return cmd_fail(EX_USAGE, "%s: unknown argument '%s' (usage: %s%s%s)",
			    e->name, argv[i], e->name, e->usage[0] != '\0' ? " " : "",
			    e->usage);
		opts[j].set = true;
		if (opts[j].has_value && opts[j].value == NULL) {
			if (i + 1 >= argc)
				return cmd_fail(EX_USAGE, "%s: %s needs a value (usage: %s %s)",
				    e->name, opts[j].name, e->name, e->usage);
			opts[j].value = argv[++i];
		}
	}
	return -1;
}

int
cmd_opt_uint(const struct cmd_entry *e, const struct cmd_opt *o,
    unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(o->value, &end, 10);
	if (o->value[0] < '0' || o->value[0] > '9' || *end != '\0' || errno != 0 ||
	    v < 1 || v > max)
		return cmd_fail(EX_USAGE, "%s: %s wants a number from 1 to %lu, not '%s'",
		    e->name, o->name, max, o->value);
	*out = v;
	return -1;
}

int
cmd_connect(struct cmd_ctx *ctx, struct ctl_conn *c)
{
	int ret = ctl_connect(c, ctx->socket, CMD_REPLY_TIMEOUT_MS);

	if (ret == 0)
		return 0;
	if (ret == -ETIMEDOUT)
		return cmd_fail(EX_TEMPFAIL, "cannot connect to %s: the daemon accepted no "
		    "connection within %d s (stopped or overloaded?)", ctx->socket,
		    CMD_REPLY_TIMEOUT_MS / 1000);
	if (ret == -ENOENT || ret == -ECONNREFUSED)
		return cmd_fail(EX_UNAVAILABLE, "cannot connect to %s: %s (is blkmirrord running?)",
		    ctx->socket, strerror(-ret));
	return cmd_fail(ret == -EACCES || ret == -EPERM ? EX_NOPERM : EX_UNAVAILABLE,
	    "cannot connect to %s: %s", ctx->socket, strerror(-ret));
}

int
cmd_call(struct cmd_ctx *ctx, struct ctl_conn *c, const char *cmd,
    struct json_object *args, struct ctl_reply *rep)
{
	int ret = ctl_call(c, cmd, args, rep, CMD_REPLY_TIMEOUT_MS);

	switch (ret) {
	case 0:
		break;
	case -ECONNRESET:
	case -EPIPE:
		return cmd_fail(EX_PROTOCOL, "%s: the daemon closed the connection without answering",
		    ctx->socket);
	case -ETIMEDOUT:
		return cmd_fail(EX_TEMPFAIL, "%s: no answer to '%s' within %d s", ctx->socket,
		    cmd, CMD_REPLY_TIMEOUT_MS / 1000);
	case -EBADMSG:
	case -E2BIG:
		return cmd_fail(EX_PROTOCOL, "%s: malformed reply to '%s'", ctx->socket, cmd);
	default:
		return cmd_fail(EX_OSERR, "%s: %s", ctx->socket, strerror(-ret));
	}
	if (!rep->ok) {
		cmd_fail(CMD_EXIT_REFUSED, "%s: %s", cmd, rep->error);
		ctl_reply_free(rep);
		return CMD_EXIT_REFUSED;
	}
	return 0;
}

/*
 * Find the control socket of node (or of this host) in the config at path.
 * Returns 0 with sock filled, or an exit code after printing one line.
 */
static int
socket_from_config(const char *path, const char *node, char *sock, size_t len)
{
	static struct conf conf;
	const struct conf_node *n;
	char err[512], host[256];
	int ret = conf_load(path, &conf, err, sizeof(err));

	if (ret < 0)
		return cmd_fail(EX_CONFIG, "%s", err);
	if (node == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			return cmd_fail(EX_OSERR, "gethostname: %s", strerror(errno));
		host[sizeof(host) - 1] = '\0';
		node = host;
	}
	n = conf_node(&conf, node);
	if (n == NULL)
		return cmd_fail(EX_CONFIG, "%s: no [node %s] section (use -n NODE)", path, node);
	if (n->control[0] != '\0')
		snprintf(sock, len, "%s", n->control);
	else
		snprintf(sock, len, "/run/blkmirror/%s.sock", conf.name);
	return 0;
}

/* The socket from -s, or from -c [-n]; 0 or an exit code (line printed). */
static int
resolve_socket(const char *sock, const char *conf_path, const char *node,
    char *buf, size_t len)
{
	if (sock != NULL && conf_path != NULL)
		return cmd_fail(EX_USAGE, "-s and -c exclude each other");
	if (node != NULL && conf_path == NULL)
		return cmd_fail(EX_USAGE, "-n needs -c FILE");
	if (sock == NULL && conf_path == NULL)
		return cmd_fail(EX_USAGE, "which daemon? give -s SOCKET or -c FILE");
	if (conf_path != NULL)
		return socket_from_config(conf_path, node, buf, len);
	if (strlen(sock) >= len)
		return cmd_fail(EX_USAGE, "socket path too long: %s", sock);
	snprintf(buf, len, "%s", sock);
	return 0;
}

static const struct cmd_entry *
cmd_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmd_table); i++) {
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *conf_path = NULL, *node = NULL;
	const struct cmd_entry *e;
	struct cmd_ctx ctx;
	char sockbuf[256];
	int opt, ret;

	/* "+": options end at the command name; its own options follow it.
	 * ":": report errors ourselves, in one line. */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:s:c:n:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'c': conf_path = optarg; break;
		case 'n': node = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("blkmirrorctl %s\n", BLKMIRROR_VERSION); return 0;
		case ':':
			return cmd_fail(EX_USAGE, "option -%c needs a value", optopt);
		default:
			if (optopt != 0)
				return cmd_fail(EX_USAGE, "unknown option -%c (blkmirrorctl --help "
				    "lists them)", optopt);
			return cmd_fail(EX_USAGE, "unknown option '%s' (blkmirrorctl --help "
			    "lists them)", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cmd_fail(EX_USAGE, "no command given (blkmirrorctl --help lists them)");
	e = cmd_find(argv[optind]);
	if (e == NULL)
		return cmd_fail(EX_USAGE, "unknown command '%s' (blkmirrorctl --help lists them)",
		    argv[optind]);
	/* "COMMAND --help" works without a socket. */
	for (int i = optind + 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			cmd_usage(stdout, e);
			return 0;
		}
	}
	ret = resolve_socket(sock, conf_path, node, sockbuf, sizeof(sockbuf));
	if (ret != 0)
		return ret;
	ctx.socket = sockbuf;
	ctx.conf_path = conf_path;
	ctx.node = node;
	return e->exec(&ctx, argc - optind, argv + optind);
}
