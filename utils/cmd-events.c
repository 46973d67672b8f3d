/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl events [--count N]: stream the daemon's events, one JSON
 * object per line, until interrupted (SIGINT/SIGTERM/SIGHUP: exit 0), the
 * daemon goes away (exit 0), or N events were printed.  An "overflow"
 * event (this reader fell too far behind, the daemon ended the
 * subscription and events were lost) is printed, then ends it with
 * EX_TEMPFAIL.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd-admin.h"
#include "util.h"

/* Signals end the stream at once; a line is never cut (see print_event). */
static void
on_signal(int sig)
{
	_exit(0);
}

static void
catch_signals(sigset_t *set)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/*
 * Check and print one event line; signals wait until it is out.  After an
 * "overflow" event, the daemon's last line, returns EX_TEMPFAIL.
 */
static int
print_event(const sigset_t *set, char *line, long n)
{
	struct ctl_event ev;
	char why[CTL_ERR_MAX] = "";
	int ret = 0;

	if (ctl_event_decode(line, (size_t)n, &ev) < 0)
		return cmd_fail(EX_PROTOCOL, "events: malformed event line from the daemon");
	if (strcmp(ev.name, "overflow") == 0)
		snprintf(why, sizeof(why), "%s", cmd_jstr(ev.root, "message", "events lost"));
	ctl_event_free(&ev);
	sigprocmask(SIG_BLOCK, set, NULL);
	line[n] = '\n';
	if (fwrite(line, 1, (size_t)n + 1, stdout) != (size_t)n + 1 || fflush(stdout) != 0)
		ret = cmd_fail(EX_IOERR, "events: writing to stdout: %s", strerror(errno));
	line[n] = '\0';
	sigprocmask(SIG_UNBLOCK, set, NULL);
	if (ret == 0 && why[0] != '\0')
		ret = cmd_fail(EX_TEMPFAIL, "events: the daemon ended the subscription (%s)", why);
	return ret;
}

static int
events_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--count", .has_value = true } };
	unsigned long count = 0, seen = 0;
	struct ctl_conn c;
	struct ctl_reply rep;
	sigset_t set;
	int ret = cmd_parse_opts(&cmd_events_entry, argc, argv, opts, ARRAY_SIZE(opts));

	if (ret >= 0)
		return ret;
	if (opts[0].set &&
	    (ret = cmd_opt_uint(&cmd_events_entry, &opts[0], 1000000000ul, &count)) >= 0)
		return ret;
	catch_signals(&set);
	if ((ret = cmd_connect(ctx, &c)) != 0)
		return ret;
	if ((ret = cmd_call(ctx, &c, "events", NULL, &rep)) != 0) {
		ctl_close(&c);
		return ret;
	}
	ctl_reply_free(&rep);
	/* One event per pass, until the daemon closes or count is reached. */
	while (count == 0 || seen < count) {
		char *line;
		long n = ctl_recv_line(&c, &line, -1);

		if (n == -EINTR)
			continue;
		if (n == -ECONNRESET)
			break;		/* the daemon went away: the stream ended */
		if (n < 0) {
			ret = cmd_fail(n == -E2BIG ? EX_PROTOCOL : EX_OSERR,
			    "events: %s: %s", ctx->socket, strerror((int)-n));
			break;
		}
		if ((ret = print_event(&set, line, n)) != 0)
			break;
		seen++;
	}
	ctl_close(&c);
	return ret;
}

const struct cmd_entry cmd_events_entry = {
	.name = "events",
	.usage = "[--count N]",
	.help = "print the daemon's events as JSON lines until interrupted",
	.exec = events_exec,
};
