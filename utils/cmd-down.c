/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrorctl down [--timeout SECONDS]: ask the daemon to shut down
 * cleanly and wait (default 30 s) until its process has exited.
 *
 * The daemon's pid comes from SO_PEERCRED on the control connection, pinned
 * with a pidfd while the daemon is certainly alive, so the wait cannot
 * mistake another process that reused the pid.  Where neither is available
 * (another pid namespace, old kernel) it waits for the control socket to
 * stop answering instead.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "cmd.h"
#include "util.h"

#define DOWN_TIMEOUT_S		30	/* default --timeout */
#define DOWN_POLL_MS		50	/* fallback polling interval */

/* A pidfd for the daemon at the other end of fd, or -1. */
static int
daemon_pidfd(int fd, pid_t *pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	*pid = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0)
		return -1;
	*pid = cr.pid;
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, cr.pid, 0);
#else
	return -1;
#endif
}

static int
ms_left(uint64_t deadline)
{
	uint64_t now = now_ns();

	return now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Nobody answers on path any more (a full backlog still counts as there). */
static bool
socket_gone(const char *path)
{
	struct ctl_conn c;
	int ret = ctl_connect(&c, path, DOWN_POLL_MS);

	if (ret == -ETIMEDOUT)
		return false;
	if (ret < 0)
		return true;
	ctl_close(&c);
	return false;
}

/*
 * Wait until the daemon process is gone: pidfd readable, kill(pid, 0)
 * failing, or (pid unknown) the socket not answering.  true when it is.
 */
static bool
wait_gone(const char *path, int pidfd, pid_t pid, uint64_t deadline)
{
	if (pidfd >= 0) {
		struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
		int n;

		while ((n = poll(&pfd, 1, ms_left(deadline))) < 0 && errno == EINTR)
			;
		return n > 0;
	}
	/* Bounded by the deadline: one probe per DOWN_POLL_MS. */
	for (;;) {
		if (pid > 0 ? kill(pid, 0) < 0 && errno == ESRCH : socket_gone(path))
			return true;
		if (ms_left(deadline) == 0)
			return false;
		sleep_ms(DOWN_POLL_MS);
	}
}

static int
down_exec(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct cmd_opt opts[] = { { .name = "--timeout", .has_value = true } };
	unsigned long timeout = DOWN_TIMEOUT_S;
	struct ctl_conn c;
	struct ctl_reply rep;
	uint64_t deadline;
	pid_t pid;
	int pidfd, ret = cmd_parse_opts(&cmd_down_entry, argc, argv, opts, ARRAY_SIZE(opts));
	char *line;
	long n;

	if (ret >= 0)
		return ret;
	if (opts[0].set &&
	    (ret = cmd_opt_uint(&cmd_down_entry, &opts[0], 86400, &timeout)) >= 0)
		return ret;
	if ((ret = cmd_connect(ctx, &c)) != 0)
		return ret;
	pidfd = daemon_pidfd(c.fd, &pid);
	deadline = now_ns() + (uint64_t)timeout * 1000000000ull;
	ret = cmd_call(ctx, &c, "down", NULL, &rep);
	if (ret == 0) {
		ctl_reply_free(&rep);
		/* The daemon closes the connection when its control socket stops. */
		while ((n = ctl_recv_line(&c, &line, ms_left(deadline))) >= 0 || n == -EINTR)
			;
		if (n == -ETIMEDOUT || !wait_gone(ctx->socket, pidfd, pid, deadline))
			ret = cmd_fail(EX_TEMPFAIL, "the daemon on %s did not stop within %lu s",
			    ctx->socket, timeout);
	}
	if (pidfd >= 0)
		close(pidfd);
	ctl_close(&c);
	return ret;
}

const struct cmd_entry cmd_down_entry = {
	.name = "down",
	.usage = "[--timeout SECONDS]",
	.help = "stop the daemon cleanly and wait until it has exited (default 30 s)",
	.exec = down_exec,
};
