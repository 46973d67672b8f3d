/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrord: serves one resource (volume).  Start-up order: config, node,
 * event loop, io engine on the backing device, buffers, NBD listeners,
 * control socket, signals, then READY=1 to systemd and the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>

#include "config-build.h"
#include "repl.h"
#include "log.h"
#include "util.h"

#define LOOP_ENTRIES		1024	/* io_uring submission queue size */
#define ENGINE_QUEUE_DEPTH	512	/* disk requests in flight */
#define SHUTDOWN_GRACE_MS	10000	/* clean-shutdown limit before forcing */

/* Buffer pool classes: many small, some medium, a few full-size payloads. */
static const size_t pool_sizes[BUFPOOL_CLASSES] = { 4096, 128 << 10, 1 << 20 };
static const unsigned pool_counts[BUFPOOL_CLASSES] = { 1024, 128, 32 };

static struct daemon daemon_state;

static const char *const role_names[] = {
	[ROLE_SECONDARY] = "secondary", [ROLE_PRIMARY] = "primary",
};
static const char *const disk_names[] = {
	[DISK_DISKLESS] = "diskless", [DISK_INCONSISTENT] = "inconsistent",
	[DISK_OUTDATED] = "outdated", [DISK_CONSISTENT] = "consistent",
	[DISK_UPTODATE] = "uptodate", [DISK_FAILED] = "failed",
};
static const char *const conn_names[] = {
	[CONN_STANDALONE] = "standalone", [CONN_CONNECTING] = "connecting",
	[CONN_CONNECTED] = "connected",
};

const char *role_name(enum role r) { return role_names[r]; }
const char *disk_state_name(enum disk_state s) { return disk_names[s]; }
const char *conn_state_name(enum conn_state s) { return conn_names[s]; }

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: blkmirrord -c FILE [-n NODE] [-f] [-v]\n"
	    "  -c FILE   resource configuration (see blkmirror.conf(5))\n"
	    "  -n NODE   this node's [node NAME] section (default: the hostname)\n"
	    "  -f        stay in the foreground, log to stderr\n"
	    "  -v        debug logging\n"
	    "  -V        print the version\n");
}

/* ---- shutdown ------------------------------------------------------------------ */

static void
stop_poll(struct loop_timer *t)
{
	struct daemon *d = t->data;

	if ((d->n_conns == 0 && d->inflight == 0) || now_ns() > d->stop_deadline) {
		if (d->n_conns > 0)
			log_warn("shutdown: %u connection(s) still busy after %d s; forcing",
			    d->n_conns, SHUTDOWN_GRACE_MS / 1000);
		loop_stop(d->loop);
		return;
	}
	loop_timer_arm(d->loop, t, 10);
}

void
daemon_request_stop(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_notice("shutting down: %s", why);
	/* A test's stalled disk (BLKMIRROR_FAULT "stall") resumes, or the
	 * requests it holds would keep the shutdown from being clean. */
	ioeng_fault_release(d->eng);
	if (d->md != NULL && d->md->own_eng)
		ioeng_fault_release(d->md->eng);
	sd_notify(0, "STOPPING=1");
	nbd_server_stop(d);
	peer_stop(d);
	d->stop_deadline = now_ns() + SHUTDOWN_GRACE_MS * 1000000ull;
	d->stop_timer.cb = stop_poll;
	d->stop_timer.data = d;
	loop_timer_arm(d->loop, &d->stop_timer, 0);
}

/* ---- signals through the loop ------------------------------------------------------ */

static struct loop_op sig_op;
static int sig_fd = -1;

/*
 * SIGUSR1 with BLKMIRROR_FAULT_FILE set (tests): arm the fault spec that
 * file holds (BLKMIRROR_FAULT's syntax; an empty file disarms) on the data
 * engine and on the metadata engine, so that a test can make one later
 * write fail rather than every matching write from the start.
 */
static void
fault_from_file(struct daemon *d)
{
	const char *path = getenv("BLKMIRROR_FAULT_FILE");
	char spec[160] = "";
	size_t n = 0;
	FILE *f;

	if (path == NULL || *path == '\0') {
		log_info("SIGUSR1 ignored: BLKMIRROR_FAULT_FILE is not set");
		return;
	}
	if ((f = fopen(path, "re")) == NULL) {
		log_errno(LOG_ERR, -errno, "SIGUSR1: cannot open %s", path);
		return;
	}
	n = fread(spec, 1, sizeof(spec) - 1, f);
	fclose(f);
	spec[n] = '\0';
	spec[strcspn(spec, "\r\n")] = '\0';
	if (ioeng_fault_set(d->eng, spec) < 0)
		return;
	if (d->md != NULL && d->md->own_eng)
		(void)ioeng_fault_set(d->md->eng, spec);
	log_notice("SIGUSR1: fault injection %s%s", *spec ? "armed: " : "disarmed", spec);
}

static void
sig_ready(struct loop_op *op, int res)
{
	struct daemon *d = op->data;
	struct signalfd_siginfo si;

	while (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			daemon_request_stop(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		case SIGHUP:
			log_info("SIGHUP ignored: the configuration is read at start");
			break;
		case SIGUSR1:
			fault_from_file(d);
			break;
		}
	}
	if (res >= 0 || res == -EINTR)
		loop_poll(d->loop, &sig_op, sig_fd, POLLIN);
}

static int
signals_setup(struct daemon *d)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0)
		return -errno;
	sig_op.cb = sig_ready;
	sig_op.data = d;
	loop_poll(d->loop, &sig_op, sig_fd, POLLIN);
	return 0;
}

/* ---- start-up -------------------------------------------------------------------- */

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Open the backing device and size the export; exits on failure. */
static void
disk_open(struct daemon *d)
{
	struct ioeng_opts o = {
		.kind = d->conf.io_engine,
		.direct = d->conf.direct_io,
		.inline_writes = d->conf.inline_writes,
		.io_align = d->conf.block_size,
		.queue_depth = ENGINE_QUEUE_DEPTH,
		.threads = 4,
	};
	struct iovec iov[BUFPOOL_CLASSES];
	int ret;

	ret = ioeng_open(d->loop, d->self->disk, &o, &d->eng);
	if (ret < 0)
		die_errno(EX_NOINPUT, ret, "cannot open disk %s", d->self->disk);
	/* One daemon per disk, and no create-md under it: taken before the
	 * metadata is read or written (a second start of a resource would
	 * otherwise rewrite the live daemon's superblock before it found
	 * the control socket taken). */
	if ((ret = lock_exclusive(ioeng_fd(d->eng))) == -EWOULDBLOCK)
		die(EX_UNAVAILABLE, "disk %s is in use by another blkmirrord (or "
		    "blkmirrorctl create-md)", d->self->disk);
	else if (ret < 0)
		log_errno(LOG_WARNING, ret, "disk %s: cannot lock it against a second "
		    "blkmirrord", d->self->disk);
	d->block_size = d->conf.block_size;
	d->size = ioeng_size(d->eng) / d->block_size * d->block_size;
	if (d->size == 0)
		die(EX_DATAERR, "disk %s is smaller than one %u-byte block",
		    d->self->disk, d->block_size);
	if (ioeng_alignment(d->eng) > d->block_size)
		die(EX_CONFIG, "disk %s needs %u-byte aligned I/O; set block-size = 4096",
		    d->self->disk, ioeng_alignment(d->eng));
	if (bufpool_init(&d->pool, pool_sizes, pool_counts) < 0)
		die(EX_OSERR, "cannot allocate I/O buffers");
	bufpool_iovecs(&d->pool, iov);
	ret = ioeng_register_buffers(d->eng, iov, BUFPOOL_CLASSES);
	if (ret < 0)
		log_errno(LOG_INFO, ret, "disk: buffers not registered (plain I/O buffers used)");
	log_info("disk %s: %" PRIu64 " bytes, engine %s (%s), block size %u",
	    d->self->disk, d->size, ioeng_kind_name(ioeng_get_kind(d->eng)),
	    ioeng_is_direct(d->eng) ? "O_DIRECT" : d->conf.direct_io ?
	    "buffered: O_DIRECT not possible here" : "buffered: direct-io = no",
	    d->block_size);
}

static void
load_config(struct daemon *d, const char *path, const char *node)
{
	char err[512], host[256];
	int ret;

	ret = conf_load(path, &d->conf, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s\n", err);
		exit(EX_CONFIG);
	}
	if (node == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			die_errno(EX_OSERR, -errno, "gethostname");
		host[sizeof(host) - 1] = '\0';
		node = host;
	}
	d->self = conf_node(&d->conf, node);
	if (d->self == NULL) {
		fprintf(stderr, "blkmirrord: %s: no [node %s] section (use -n NODE)\n",
		    path, node);
		exit(EX_CONFIG);
	}
	d->peer = conf_peer(&d->conf, node);
}

static int ready_fd = -1;	/* daemonize(): tells the parent we are ready */

/*
 * Become a daemon: fork and start a new session.  The starting command
 * (the parent) returns only once the daemon is ready (0), or with the
 * daemon's exit status if start-up failed; until then the daemon logs to
 * the starting command's standard error, so that a start-up error is seen
 * where it was asked for (daemon_ready() then detaches the standard
 * streams and logs to syslog).
 */
static void
daemonize(void)
{
	int fds[2], status;
	pid_t pid;
	char b;

	if (pipe2(fds, O_CLOEXEC) < 0)
		die_errno(EX_OSERR, -errno, "pipe");
	if ((pid = fork()) < 0)
		die_errno(EX_OSERR, -errno, "fork");
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &b, 1) == 1)
			_exit(0);
		/* No ready byte: the daemon exited during start-up. */
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
			_exit(WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : EX_SOFTWARE);
		_exit(EX_SOFTWARE);
	}
	close(fds[0]);
	ready_fd = fds[1];
	setsid();
	if (chdir("/") < 0)
		die_errno(EX_OSERR, -errno, "chdir /");
}

/* Started: a daemonized process lets its starting command return. */
static void
daemon_ready(void)
{
	int fd;

	if (ready_fd < 0)
		return;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_init(LOG_TO_SYSLOG, log_get_level());
	if (write(ready_fd, "", 1) != 1)
		log_errno(LOG_WARNING, -errno, "cannot tell the starting command that we are ready");
	close(ready_fd);
	ready_fd = -1;
}

/* Busy polling's class of a wait: 1 while the peer owes acknowledgements
 * of client writes (they come at the pace of the peer's disk and the
 * network, not of the clients). */
static unsigned
poll_class_repl(void *arg)
{
	const struct daemon *d = arg;

	return d->link != NULL && d->link->n_pend > 0;
}

/*
 * busy-poll: only where the loop can tell disk completions from socket
 * ones (io_uring loop and engine); with libaio or sync the disk completes
 * through eventfds, and polling for those slowed a virtual disk.
 */
static void
busy_poll_setup(struct daemon *d)
{
	bool uring = loop_ring(d->loop) != NULL &&
	    (d->eng == NULL || ioeng_get_kind(d->eng) == IOENG_URING);

	if (d->conf.busy_poll_us == 0)
		return;
	if (!uring) {
		log_info("busy-poll off: it needs io-engine = io_uring");
		d->conf.busy_poll_us = 0;
		return;
	}
	loop_set_busy_poll(d->loop, (uint64_t)d->conf.busy_poll_us * 1000u);
	if (d->peer != NULL)
		loop_set_poll_class(d->loop, poll_class_repl, d);
}

/* Standalone: the local disk is the volume, primary at once. */
static void
setup_standalone(struct daemon *d)
{
	d->role = ROLE_PRIMARY;
	d->disk = DISK_UPTODATE;
	d->conn = CONN_STANDALONE;
	d->refuse = NULL;
}

/*
 * Two nodes: the metadata says what the disk holds; the node starts as
 * secondary (promotion is an explicit act, as in DRBD and HAST) and
 * connects to its peer.
 */
static void
setup_replicated(struct daemon *d)
{
	int ret;

	if ((ret = meta_attach(d)) < 0)	/* logged */
		exit(ret == -EBUSY ? EX_UNAVAILABLE : EX_CONFIG);
	d->size = d->md->layout.data_bytes / d->block_size * d->block_size;
	d->role = ROLE_SECONDARY;
	d->disk = (enum disk_state)d->md->sb.disk_state;
	d->conn = CONN_CONNECTING;
	d->refuse = "not primary: this node is secondary (blkmirrorctl primary promotes it)";
}

int
main(int argc, char **argv)
{
	struct daemon *d = &daemon_state;
	const char *conf_path = NULL, *node = NULL;
	bool foreground = false;
	int level = LOG_INFO, opt, ret, uring_err = 0;

	while ((opt = getopt(argc, argv, "c:n:fvVh")) != -1) {
		switch (opt) {
		case 'c': conf_path = optarg; break;
		case 'n': node = optarg; break;
		case 'f': foreground = true; break;
		case 'v': level = LOG_DEBUG; break;
		case 'V': printf("blkmirrord %s\n", BLKMIRROR_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_USAGE;
		}
	}
	if (conf_path == NULL || optind != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	log_init(LOG_TO_STDERR, level);
	load_config(d, conf_path, node);
	log_set_prefix(d->conf.name, NULL);
	raise_nofile();
	if (!foreground && getenv("NOTIFY_SOCKET") == NULL)
		daemonize();
	d->started_ns = now_ns();

	ret = loop_new(&d->loop, LOOP_ENTRIES, true, &uring_err);
	if (ret < 0)
		die_errno(EX_OSERR, ret, "cannot create the event loop");
	if (uring_err < 0)
		log_errno(LOG_WARNING, uring_err, "io_uring unavailable; event loop uses epoll");
	disk_open(d);
	busy_poll_setup(d);
	if (d->peer != NULL)
		setup_replicated(d);
	else
		setup_standalone(d);
	log_set_prefix(d->conf.name, role_name(d->role));
	if ((ret = nbd_server_start(d)) < 0)
		die_errno(EX_UNAVAILABLE, ret, "cannot start the NBD server");
	if (d->peer != NULL && (ret = peer_start(d)) < 0) {
		nbd_server_stop(d);	/* leave no socket file behind */
		die_errno(EX_UNAVAILABLE, ret, "cannot start the peer link");
	}
	if ((ret = control_start(d)) < 0) {
		nbd_server_stop(d);
		die_errno(EX_UNAVAILABLE, ret, "cannot open the control socket %s", d->self->control);
	}
	if ((ret = signals_setup(d)) < 0)
		die_errno(EX_OSERR, ret, "cannot set up signal handling");
	sd_notifyf(0, "READY=1\nSTATUS=%s %s, serving %" PRIu64 " bytes",
	    role_name(d->role), disk_state_name(d->disk), d->size);
	log_notice("ready: %s %s, %" PRIu64 " bytes", role_name(d->role),
	    disk_state_name(d->disk), d->size);
	daemon_ready();

	ret = loop_run(d->loop);
	if (ret < 0)
		log_errno(LOG_ERR, ret, "event loop failed");
	control_stop(d);
	/* A forced stop with requests still running is not clean: the
	 * activity log must be replayed at the next start. */
	if (d->inflight > 0 || d->writes.count > 0 || d->splits_live > 0)
		log_warn("shutdown: requests still running (%u on the disk); metadata not "
		    "marked clean", d->inflight);
	meta_detach(d, d->inflight == 0 && d->writes.count == 0 && d->splits_live == 0);
	ioeng_close(d->eng);
	bufpool_destroy(&d->pool);
	loop_free(d->loop);
	free(d->listeners);
	if (sig_fd >= 0)
		close(sig_fd);
	log_notice("stopped");
	return ret < 0 ? EX_SOFTWARE : 0;
}

uint64_t
test_setting(const char *name, uint64_t max, const char *what)
{
	const char *v = getenv(name);
	char *end;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n == 0 || n > max || v[0] == '-')
		return 0;
	log_warn("%s=%llu: %s (a test setting)", name, n, what);
	return (uint64_t)n;
}
