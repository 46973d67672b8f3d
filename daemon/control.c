/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The control socket: line-delimited JSON (lib/ctl_proto.h) on the UNIX
 * socket named by the node's "control =" key, mode 0600.
 *
 * Everything runs on the daemon's loop: accept and receive are loop
 * operations, never blocking calls.  Output goes on a per-client queue and
 * is handed to the socket without blocking (MSG_DONTWAIT) as far as the
 * socket takes it; what it does not take waits for one loop send, the only
 * send in flight, whose completion pushes the rest.  Each client has one
 * receive and one send in flight at most.
 *
 * A client's life:
 *   reading     requests are answered in order; "events" makes it a
 *               subscriber (input is then only watched for end of file);
 *   closing     after a fatal request error, end of file or a subscriber's
 *               overflow: no more input, the queued lines still go out,
 *               then it is shut down;
 *   dead        shut down; freed once its last loop operation completed.
 * Backpressure: while more than CTL_MAX_QUEUE bytes wait that the socket
 * has not taken, a reading client's input is not read; a subscriber that
 * falls that far behind gets a last "overflow" event and is closed (the
 * daemon never blocks on a slow reader).
 * Idle clients: a client that is not a live subscriber (a reading client,
 * or one closing) is shut down after CTL_IDLE_MS without traffic, so that
 * forgotten connections cannot hold the CTL_MAX_CLIENTS slots for ever.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <json-c/json.h>

#include "ctl_proto.h"
#include "internal.h"
#include "repl.h"
#include "log.h"
#include "util.h"

#define CTL_MAX_CLIENTS	128		/* clients at once; more are refused */
#define CTL_MAX_QUEUE	(1024 * 1024)	/* queued output bytes per client that
					 * the socket has not taken; the
					 * "overflow" line may go above it */
#define CTL_RBUF	(CTL_MAX_LINE + 2)	/* line + "\r\n" */
#define CTL_STOP_MS	2000		/* control_stop's bound on draining */
#define CTL_RETRY_MS	100		/* accept retry delay after EMFILE etc. */
#ifndef CTL_IDLE_MS			/* (the unit test sets a shorter one) */
#define CTL_IDLE_MS	30000		/* close a non-subscriber without traffic */
#endif

/* One queued output line. */
struct out_line {
	struct out_line *next;		/* queue link */
	size_t len;			/* bytes in data */
	size_t off;			/* bytes of data the socket took */
	bool then_stop;			/* "down": request stop once sent */
	char data[];			/* the line, '\n' included */
};

/* One connected control client. */
struct ctl_client {
	struct control *ctl;		/* owner */
	struct ctl_client *next;	/* clients list link */
	unsigned id;			/* for log lines */
	int fd;				/* connected socket */
	struct loop_op rop;		/* receive (at most one in flight) */
	struct loop_op sop;		/* send of out_head (at most one) */
	struct loop_op fop;		/* deferred free after client_kill() */
	struct loop_timer idle;		/* CTL_IDLE_MS without traffic: close */
	char *rbuf;			/* CTL_RBUF bytes, allocated on first read */
	size_t rlen;			/* bytes in rbuf */
	struct out_line *out_head;	/* queued output, head is being sent */
	struct out_line *out_tail;	/* last queued line */
	size_t out_bytes;		/* queued bytes the socket has not taken */
	bool subscribed;		/* "events" accepted */
	bool closing;			/* no more input; close once drained */
	bool dead;			/* shut down; free when ops completed */
};

/* The control socket state (d->ctl). */
struct control {
	struct daemon *d;		/* owner */
	struct listener lst;		/* the listening socket */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];	/* bound path */
	dev_t dev;			/* bound socket file's device */
	ino_t ino;			/* and inode, to unlink only our own */
	struct loop_timer retry;	/* accept retry after a transient error */
	struct ctl_client *clients;	/* connected clients */
	unsigned n_clients;		/* entries on clients */
	unsigned next_id;		/* id of the next client */
	bool stopping;			/* control_stop() running */
	bool orphaned;			/* control_stop() gave up on pending
					 * operations: the last completion frees */
};

/* A command: one handler each, mirroring blkmirrorctl's table. */
struct ctl_cmd {
	const char *name;		/* "cmd" value */
	void (*exec)(struct ctl_client *c, const struct ctl_request *req);
};

static void client_pump(struct ctl_client *c);
static void control_release(struct control *ctl);

/* ---- client output ------------------------------------------------------ */

/* Free c once none of its operations is in flight (called from completions). */
static void
client_free_if_idle(struct ctl_client *c)
{
	struct control *ctl = c->ctl;
	struct ctl_client **pp;

	if (c->rop.in_flight || c->sop.in_flight || c->fop.in_flight)
		return;
	for (pp = &ctl->clients; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	ctl->n_clients--;
	while (c->out_head != NULL) {
		struct out_line *o = c->out_head;

		c->out_head = o->next;
		if (o->then_stop)
			daemon_request_stop(ctl->d, "blkmirrorctl down");
		free(o);
	}
	loop_timer_cancel(ctl->d->loop, &c->idle);
	close(c->fd);
	free(c->rbuf);
	log_debug("control: client %u closed", c->id);
	free(c);
	control_release(ctl);
}

/* Deferred completion after client_kill(): free if nothing else is pending. */
static void
on_free(struct loop_op *op, int res)
{
	client_free_if_idle(op->data);
}

/*
 * Shut the client down.  It is never freed here, only from a completion
 * (on_free or the last of its receive and send), so callers may still look
 * at c->dead afterwards.
 */
static void
client_kill(struct ctl_client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	c->closing = true;
	loop_timer_cancel(c->ctl->d->loop, &c->idle);
	shutdown(c->fd, SHUT_RDWR);
	loop_defer(c->ctl->d->loop, &c->fop, 0);
}

/* Traffic: restart the idle clock, unless c is a live subscriber. */
static void
client_touch(struct ctl_client *c)
{
	if (!c->dead && (!c->subscribed || c->closing))
		loop_timer_arm(c->ctl->d->loop, &c->idle, CTL_IDLE_MS);
}

/* CTL_IDLE_MS without traffic: shut the client down, its slot is free. */
static void
on_idle(struct loop_timer *t)
{
	struct ctl_client *c = t->data;

	log_notice("control: client %u: no traffic for %d s, closing it", c->id,
	    CTL_IDLE_MS / 1000);
	client_kill(c);
}

/* The head line is out: drop it (a "down" reply now asks for the stop). */
static void
line_sent(struct ctl_client *c)
{
	struct out_line *o = c->out_head;

	c->out_head = o->next;
	if (c->out_head == NULL)
		c->out_tail = NULL;
	if (o->then_stop)
		daemon_request_stop(c->ctl->d, "blkmirrorctl down");
	free(o);
}

/*
 * Hand queued output to the socket: as much as it takes now, without
 * blocking, then one loop send for the rest of the head line, whose
 * completion (on_send) calls here again.  So out_bytes counts only what
 * the socket has not taken.  A "down" reply always goes by the loop send:
 * the stop it asks for then starts from a completion, not from inside a
 * request.  A closing client is shut down once everything is out.
 */
static void
client_flush(struct ctl_client *c)
{
	struct out_line *o;
	bool moved = false;

	/* Each pass sends part of the head line or hands it to the loop. */
	while (!c->dead && !c->sop.in_flight && (o = c->out_head) != NULL) {
		ssize_t n = 0;

		if (!o->then_stop)
			n = send(c->fd, o->data + o->off, o->len - o->off,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (o->then_stop || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
			loop_send(c->ctl->d->loop, &c->sop, c->fd, o->data + o->off,
			    o->len - o->off);
			break;
		}
		if (n < 0) {
			log_debug("control: client %u: send failed: %s", c->id,
			    strerror(errno));
			client_kill(c);
			return;
		}
		o->off += (size_t)n;
		c->out_bytes -= (size_t)n;
		moved = true;
		if (o->off == o->len)
			line_sent(c);
	}
	if (moved)
		client_touch(c);
	if (c->closing && c->out_head == NULL)
		client_kill(c);
}

/* Queue line (malloc'd by an encoder, freed here) for sending. */
static int
client_queue(struct ctl_client *c, char *line, size_t len, bool then_stop)
{
	struct out_line *o;

	if (line == NULL)
		return -ENOMEM;
	o = malloc(sizeof(*o) + len);
	if (o == NULL) {
		free(line);
		return -ENOMEM;
	}
	memcpy(o->data, line, len);
	free(line);
	o->len = len;
	o->off = 0;
	o->then_stop = then_stop;
	o->next = NULL;
	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_bytes += len;
	client_flush(c);
	return 0;
}

/*
 * Loop send completion (the rest of the head line): pop it, push what
 * follows, resume reading below the bound.
 */
static void
on_send(struct loop_op *op, int res)
{
	struct ctl_client *c = op->data;
	struct out_line *o = c->out_head;

	c->out_bytes -= o->len - o->off;
	line_sent(c);
	if (c->dead) {
		client_free_if_idle(c);
		return;
	}
	if (res < 0) {
		log_debug("control: client %u: send failed: %s", c->id, strerror(-res));
		client_kill(c);
		return;
	}
	client_touch(c);
	client_flush(c);
	if (!c->dead)
		client_pump(c);
}

static void
reply_ok(struct ctl_client *c, struct json_object *result)
{
	size_t len;
	char *line = ctl_reply_ok(result, &len);

	if (client_queue(c, line, len, false) < 0)
		client_kill(c);
}

static void
reply_error(struct ctl_client *c, const char *fmt, ...)
{
	char msg[CTL_ERR_MAX];
	size_t len;
	char *line;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line = ctl_reply_error(&len, "%s", msg);
	if (client_queue(c, line, len, false) < 0)
		client_kill(c);
}

/*
 * A subscriber more than CTL_MAX_QUEUE bytes behind: its subscription ends
 * with one "overflow" event after what is queued (that line may take the
 * queue above the bound, so it always fits), then the client is closed, or
 * after CTL_IDLE_MS if it does not read.  Without the event a reader could
 * not tell the end of its stream from the daemon going away.
 */
static void
client_overflow(struct ctl_client *c)
{
	struct json_object *ev = ctl_event_new("overflow");
	char msg[160];
	size_t len = 0;
	char *line;

	log_warn("control: client %u reads events too slowly (%zu bytes behind), "
	    "ending its subscription", c->id, c->out_bytes);
	c->closing = true;
	client_touch(c);
	snprintf(msg, sizeof(msg), "events lost from here on: this subscriber fell more "
	    "than %d bytes behind", CTL_MAX_QUEUE);
	if (ev != NULL)
		json_object_object_add(ev, "message", json_object_new_string(msg));
	line = ctl_line(ev, &len);
	if (client_queue(c, line, len, false) < 0)
		client_kill(c);
}

/* ---- status --------------------------------------------------------------- */

static void
add_str(struct json_object *o, const char *key, const char *val)
{
	json_object_object_add(o, key, val != NULL ? json_object_new_string(val) : NULL);
}

static void
add_u64(struct json_object *o, const char *key, uint64_t val)
{
	json_object_object_add(o, key, json_object_new_uint64(val));
}

/* The "ops" object: the volume's per-operation counters. */
static struct json_object *
status_ops(const struct op_counters *ops)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "reads", ops->reads);
	add_u64(o, "writes", ops->writes);
	add_u64(o, "flushes", ops->flushes);
	add_u64(o, "trims", ops->trims);
	add_u64(o, "zeroes", ops->zeroes);
	add_u64(o, "caches", ops->caches);
	add_u64(o, "block_status", ops->block_status);
	add_u64(o, "read_bytes", ops->read_bytes);
	add_u64(o, "write_bytes", ops->write_bytes);
	add_u64(o, "trim_bytes", ops->trim_bytes);
	add_u64(o, "zero_bytes", ops->zero_bytes);
	add_u64(o, "errors", ops->errors);
	add_u64(o, "rejected", ops->rejected);
	return o;
}

/* The "listeners" array: the daemon's listeners, then the control socket. */
static struct json_object *
status_listeners(const struct daemon *d)
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; i < d->n_listeners; i++) {
		struct json_object *o = json_object_new_object();

		add_str(o, "address", d->listeners[i].name);
		add_str(o, "kind", d->listeners[i].is_control ? "control" : "nbd");
		json_object_array_add(a, o);
	}
	if (d->ctl != NULL) {
		struct json_object *o = json_object_new_object();

		add_str(o, "address", d->ctl->lst.name);
		add_str(o, "kind", "control");
		json_object_array_add(a, o);
	}
	return a;
}

/* The event loop's counters: turns, how busy polling fares, and the
 * buffered writes the loop thread wrote itself. */
static struct json_object *
status_loop(const struct daemon *d)
{
	struct json_object *o = json_object_new_object();
	const struct loop_stats *st = loop_get_stats(d->loop);

	add_u64(o, "turns", st->iterations);
	add_u64(o, "busy_poll_us", d->conf.busy_poll_us);
	add_u64(o, "busy_polls", st->busy_polls);
	add_u64(o, "busy_poll_hits", st->busy_poll_hits);
	if (d->eng != NULL) {
		const struct ioeng_stats *es = ioeng_get_stats(d->eng);

		add_u64(o, "inline_writes", es->inline_writes);
		add_u64(o, "inline_write_backoffs", es->inline_backoffs);
	}
	return o;
}

/* The "status" result object (documented in blkmirrorctl(8)). */
static struct json_object *
status_result(const struct daemon *d)
{
	struct json_object *o = json_object_new_object();
	uint64_t now = now_ns();

	add_str(o, "resource", d->conf.name);
	add_str(o, "node", d->self != NULL ? d->self->name : NULL);
	add_str(o, "role", role_name(d->role));
	add_str(o, "disk", disk_state_name(d->disk));
	add_str(o, "connection", conn_state_name(d->conn));
	add_str(o, "io_engine", d->eng != NULL ?
	    ioeng_kind_name(ioeng_get_kind(d->eng)) : NULL);
	/* O_DIRECT in use on the disk (false: page cache); null before open */
	json_object_object_add(o, "direct_io", d->eng != NULL ?
	    json_object_new_boolean(ioeng_is_direct(d->eng)) : NULL);
	add_u64(o, "size_bytes", d->size);
	add_u64(o, "block_size", d->block_size != 0 ? d->block_size : d->conf.block_size);
	add_str(o, "protocol", conf_protocol_name(d->conf.protocol));
	add_u64(o, "clients", d->n_conns);
	add_u64(o, "clients_total", d->conns_total);
	add_u64(o, "nbd_requests_cached", d->req_cached);
	add_u64(o, "uptime_s", now > d->started_ns ? (now - d->started_ns) / 1000000000u : 0);
	add_u64(o, "pid", (uint64_t)getpid());
	json_object_object_add(o, "listeners", status_listeners(d));
	json_object_object_add(o, "ops", status_ops(&d->ops));
	json_object_object_add(o, "loop", status_loop(d));
	add_u64(o, "in_flight", d->inflight);
	add_u64(o, "disk_errors", d->disk_errors);
	json_object_object_add(o, "stopping", json_object_new_boolean(d->stopping));
	admin_status((struct daemon *)d, o);
	return o;
}

/* ---- commands ------------------------------------------------------------- */

/* status: no arguments; the result object above. */
static void
cmd_status(struct ctl_client *c, const struct ctl_request *req)
{
	reply_ok(c, status_result(c->ctl->d));
}

/* down: reply, then ask the daemon to stop once the reply left. */
static void
cmd_down(struct ctl_client *c, const struct ctl_request *req)
{
	size_t len;
	char *line = ctl_reply_ok(NULL, &len);

	log_notice("control: client %u asked the daemon to stop", c->id);
	if (client_queue(c, line, len, true) < 0) {
		daemon_request_stop(c->ctl->d, "blkmirrorctl down");
		client_kill(c);
	}
}

/* events: reply, then stream events until the client goes away. */
static void
cmd_events(struct ctl_client *c, const struct ctl_request *req)
{
	reply_ok(c, NULL);
	c->subscribed = true;
	loop_timer_cancel(c->ctl->d->loop, &c->idle);	/* waiting is its job */
	log_debug("control: client %u subscribed to events", c->id);
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "status", cmd_status },
	{ "down", cmd_down },
	{ "events", cmd_events },
};

/* Replication commands (admin.c), or an unknown command. */
static void
admin_request(struct ctl_client *c, const struct ctl_request *req)
{
	char err[CTL_ERR_MAX];
	int ret = admin_exec(c->ctl->d, req->cmd, req->args, err, sizeof(err));

	if (ret == -ENOENT)
		reply_error(c, "unknown command '%s'", req->cmd);
	else if (ret < 0)
		reply_error(c, "%s", err);
	else
		reply_ok(c, NULL);
}

/* Decode and run one request line.  A decode error closes the client. */
static void
client_request(struct ctl_client *c, const char *line, size_t len)
{
	struct ctl_request req;
	int ret = ctl_request_decode(line, len, &req);

	if (ret < 0) {
		log_warn("control: client %u: bad request: %s", c->id, req.error);
		if (ret == -E2BIG)
			reply_error(c, "request line too long (max %d bytes)", CTL_MAX_LINE);
		else
			reply_error(c, "bad request: %s", req.error);
		c->closing = true;
		return;
	}
	log_debug("control: client %u: %s", c->id, req.cmd);
	for (size_t i = 0; i < ARRAY_SIZE(ctl_cmds); i++) {
		if (strcmp(ctl_cmds[i].name, req.cmd) != 0)
			continue;
		if (req.args != NULL && json_object_object_length(req.args) > 0)
			reply_error(c, "command '%s' takes no arguments", req.cmd);
		else
			ctl_cmds[i].exec(c, &req);
		ctl_request_free(&req);
		return;
	}
	admin_request(c, &req);
	ctl_request_free(&req);
}

/* ---- client input --------------------------------------------------------- */

/*
 * Answer the complete lines in rbuf (in order, stopping under backpressure
 * or when the client starts closing), then keep one receive posted while
 * more input is wanted.
 */
static void
client_pump(struct ctl_client *c)
{
	char *nl;

	while (!c->closing && !c->subscribed && c->out_bytes <= CTL_MAX_QUEUE &&
	    (nl = memchr(c->rbuf, '\n', c->rlen)) != NULL) {
		size_t n = (size_t)(nl - c->rbuf);

		if (n > 0 && !(n == 1 && c->rbuf[0] == '\r'))
			client_request(c, c->rbuf, n);
		memmove(c->rbuf, nl + 1, c->rlen - n - 1);
		c->rlen -= n + 1;
	}
	if (c->dead)
		return;
	if (c->subscribed)
		c->rlen = 0;	/* subscribers' input is ignored */
	if (!c->closing && !c->subscribed && c->rlen == CTL_RBUF &&
	    memchr(c->rbuf, '\n', c->rlen) == NULL) {
		reply_error(c, "request line too long (max %d bytes)", CTL_MAX_LINE);
		log_warn("control: client %u: request line too long", c->id);
		c->closing = true;
	}
	if (c->closing) {
		if (c->out_head == NULL)
			client_kill(c);
		return;
	}
	if (!c->rop.in_flight && c->out_bytes <= CTL_MAX_QUEUE)
		loop_recv(c->ctl->d->loop, &c->rop, c->fd, c->rbuf + c->rlen,
		    CTL_RBUF - c->rlen);
}

/* Receive completion.  End of file: answer a last unterminated line, close. */
static void
on_recv(struct loop_op *op, int res)
{
	struct ctl_client *c = op->data;

	if (c->dead) {
		client_free_if_idle(c);
		return;
	}
	if (res > 0) {
		c->rlen += (size_t)res;
		client_touch(c);
		client_pump(c);
		return;
	}
	if (res < 0)
		log_debug("control: client %u: receive failed: %s", c->id, strerror(-res));
	if (res == 0 && c->rlen > 0 && !c->closing && !c->subscribed)
		client_request(c, c->rbuf, c->rlen);
	c->rlen = 0;
	c->closing = true;
	if (c->out_head == NULL)
		client_kill(c);
}

/* ---- listener ------------------------------------------------------------- */

static void
client_new(struct control *ctl, int fd)
{
	struct ctl_client *c = calloc(1, sizeof(*c));

	if (c != NULL)
		c->rbuf = malloc(CTL_RBUF);
	if (c == NULL || c->rbuf == NULL) {
		log_err("control: out of memory for a new client");
		free(c);
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	c->id = ++ctl->next_id;
	c->rop = (struct loop_op){ .cb = on_recv, .data = c };
	c->sop = (struct loop_op){ .cb = on_send, .data = c };
	c->fop = (struct loop_op){ .cb = on_free, .data = c };
	c->idle = (struct loop_timer){ .cb = on_idle, .data = c };
	c->next = ctl->clients;
	ctl->clients = c;
	ctl->n_clients++;
	log_debug("control: client %u connected", c->id);
	client_touch(c);
	if (ctl->n_clients > CTL_MAX_CLIENTS) {
		log_warn("control: more than %d clients, refusing one", CTL_MAX_CLIENTS);
		c->closing = true;	/* first: the reply may go out at once */
		reply_error(c, "too many control clients (max %d)", CTL_MAX_CLIENTS);
		return;
	}
	client_pump(c);
}

static void
accept_retry(struct loop_timer *t)
{
	struct control *ctl = t->data;

	if (!ctl->stopping)
		loop_accept(ctl->d->loop, &ctl->lst.op, ctl->lst.fd);
}

/*
 * Accept completion: adopt the client and post the next accept.  ctl comes
 * from the listener, not from d->ctl: after control_stop() gave up waiting
 * for this accept, d->ctl is NULL and ctl waits here to be released.
 */
static void
on_accept(struct loop_op *op, int res)
{
	struct listener *lst = op->data;
	struct control *ctl = container_of(lst, struct control, lst);

	if (ctl->stopping) {
		if (res >= 0)
			close(res);
		control_release(ctl);
		return;
	}
	if (res < 0) {
		/* EMFILE and friends: retry later rather than spin. */
		lst->accept_errors++;
		log_errno(LOG_WARNING, res, "control: accept on %s", lst->name);
		loop_timer_arm(lst->d->loop, &ctl->retry, CTL_RETRY_MS);
		return;
	}
	client_new(ctl, res);
	loop_accept(lst->d->loop, op, lst->fd);
}

/* ---- socket file ---------------------------------------------------------- */

/* mkdir -p the directory part of path (mode 0755).  0 or -errno. */
static int
make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	p = strrchr(dir, '/');
	if (p == NULL || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = saved;
		if (saved == '\0')
			return 0;
	}
}

/*
 * path is in use: is a daemon answering there?  Returns 0 when the socket
 * file is stale (and was removed), -EADDRINUSE when someone answers, or
 * another negative errno (e.g. -ENOTSOCK: the path is not a socket).
 */
static int
remove_stale(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	ret = ret == 0 ? -EADDRINUSE : -errno;
	close(fd);
	if (ret == -EADDRINUSE)
		return ret;
	if (ret != -ECONNREFUSED && ret != -ENOENT)
		return ret;
	log_notice("control: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Bind and listen on path with mode 0600.  Returns the fd or -errno. */
static int
bind_control(struct control *ctl, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, ret;

	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* At most two tries: the second after removing a stale socket file. */
	for (int tries = 0; ; tries++) {
		old = umask(0077);
		ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
		umask(old);
		ret = ret < 0 ? -errno : 0;
		if (ret != -EADDRINUSE || tries > 0)
			break;
		ret = remove_stale(path, &sun);
		if (ret < 0)
			break;
	}
	if (ret == 0 && (chmod(path, 0600) < 0 || stat(path, &st) < 0))
		ret = -errno;
	if (ret == 0 && listen(fd, 64) < 0)
		ret = -errno;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	return fd;
}

/* Remove the socket file if it is still the one we bound. */
static void
unlink_own(const struct control *ctl)
{
	struct stat st;

	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
}

/* ---- public ----------------------------------------------------------------- */

int
control_start(struct daemon *d)
{
	struct control *ctl;
	char path[512];
	int fd, ret;

	if (d->self != NULL && d->self->control[0] != '\0')
		snprintf(path, sizeof(path), "%s", d->self->control);
	else
		snprintf(path, sizeof(path), "/run/blkmirror/%s.sock", d->conf.name);
	if (strlen(path) >= sizeof(ctl->path)) {
		log_err("control: socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	ret = make_parent(path);
	if (ret < 0) {
		log_errno(LOG_ERR, ret, "control: cannot create the directory of %s", path);
		return ret;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (ctl == NULL)
		return -ENOMEM;
	fd = bind_control(ctl, path);
	if (fd == -EADDRINUSE)
		log_err("control: another daemon is running on %s", path);
	else if (fd == -ENOTSOCK)
		log_err("control: %s exists and is not a socket", path);
	else if (fd < 0)
		log_errno(LOG_ERR, fd, "control: cannot listen on %s", path);
	if (fd < 0) {
		free(ctl);
		return fd;
	}
	ctl->d = d;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	ctl->lst = (struct listener){ .d = d, .fd = fd, .is_control = true };
	ctl->lst.op = (struct loop_op){ .cb = on_accept, .data = &ctl->lst };
	snprintf(ctl->lst.name, sizeof(ctl->lst.name), "unix:%s", path);
	ctl->retry = (struct loop_timer){ .cb = accept_retry, .data = ctl };
	d->ctl = ctl;
	loop_accept(d->loop, &ctl->lst.op, fd);
	log_info("control: listening on %s", path);
	return 0;
}

/* Wake our own pending accept by connecting to it (it then sees stopping). */
static void
wake_accept(struct control *ctl)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	strcpy(sun.sun_path, ctl->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		log_errno(LOG_WARNING, -errno, "control: waking the accept on %s", ctl->path);
	close(fd);
}

void
control_stop(struct daemon *d)
{
	struct control *ctl = d->ctl;
	uint64_t deadline = now_ns() + (uint64_t)CTL_STOP_MS * 1000000;

	if (ctl == NULL)
		return;
	ctl->stopping = true;
	loop_timer_cancel(d->loop, &ctl->retry);
	if (ctl->lst.op.in_flight)
		wake_accept(ctl);
	unlink_own(ctl);
	for (struct ctl_client *c = ctl->clients; c != NULL; c = c->next)
		client_kill(c);
	/* Run the loop until our operations completed (bounded). */
	while ((ctl->lst.op.in_flight || ctl->clients != NULL) && now_ns() < deadline)
		loop_run_once(d->loop, 100);
	d->ctl = NULL;
	if (ctl->lst.op.in_flight || ctl->clients != NULL) {
		/* The loop still owns them: the last completion releases ctl. */
		log_warn("control: operations still pending at stop");
		ctl->orphaned = true;
		return;
	}
	close(ctl->lst.fd);
	free(ctl);
	log_debug("control: stopped");
}

/* After control_stop() gave up: free ctl once its last operation ended. */
static void
control_release(struct control *ctl)
{
	if (!ctl->orphaned || ctl->lst.op.in_flight || ctl->clients != NULL)
		return;
	close(ctl->lst.fd);
	free(ctl);
	log_debug("control: the last pending operation ended");
}

void
control_emit(struct daemon *d, void *json_obj)
{
	struct control *ctl = d->ctl;
	size_t len;
	char *line;

	if (ctl == NULL || ctl->stopping) {
		json_object_put(json_obj);
		return;
	}
	line = ctl_line(json_obj, &len);
	if (line == NULL)
		return;
	for (struct ctl_client *c = ctl->clients; c != NULL; c = c->next) {
		if (!c->subscribed || c->closing)
			continue;
		if (c->out_bytes + len > CTL_MAX_QUEUE)
			client_overflow(c);
		else if (client_queue(c, strdup(line), len, false) < 0)
			client_kill(c);
	}
	free(line);
}
