/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD frontend: listening sockets (from the config or from systemd socket
 * activation), accepting clients, driving the option handshake
 * (nbd_handshake.c) over the loop, and the connection lifecycle.
 *
 * Lifecycle of a connection: accepted -> NC_HANDSHAKE -> NC_TRANSMIT ->
 * NC_CLOSING -> freed.  Closing stops input; requests already taken finish
 * and their replies are sent (unless the socket is dead); the connection is
 * freed once nothing of it is in flight on the loop.
 *
 * When the daemon stops (nbd_server_stop), what a live connection's client
 * sent before is still answered, without waiting for more: options with
 * NBD_REP_ERR_SHUTDOWN (hs_stop), requests not started yet with
 * NBD_ESHUTDOWN (nbd_transmit_stop); then it closes as above.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "nbd.h"
#include "util.h"

#define NBD_MAX_CONNS		4096	/* clients at once */
#define ACCEPT_RETRY_MS		100	/* pause after an accept failure */

static struct nbd_export export;	/* the one export: the resource */

int
listen_on(const struct sockaddr_storage *ss, unsigned sslen, int mode)
{
	int fd, one = 1, ret;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ss->ss_family == AF_UNIX) {
		const char *path = ((const struct sockaddr_un *)ss)->sun_path;
		struct stat st;

		/* Remove a stale socket file, but never a live one. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
			int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

			if (probe >= 0 && connect(probe, (const struct sockaddr *)ss, sslen) == 0) {
				close(probe);
				close(fd);
				return -EADDRINUSE;
			}
			if (probe >= 0)
				close(probe);
			unlink(path);
		}
	} else {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ss->ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)ss, sslen) < 0 || listen(fd, 1024) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (ss->ss_family == AF_UNIX && mode >= 0)
		chmod(((const struct sockaddr_un *)ss)->sun_path, (mode_t)mode);
	return fd;
}

/* ---- connection lifecycle -------------------------------------------------- */

static void
conn_free(struct nbd_conn *c)
{
	struct daemon *d = c->d;

	loop_timer_cancel(d->loop, &c->hs_timer);
	loop_flush_cancel(d->loop, &c->tx_flush);
	nbd_hs_free(&c->hs);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->n_conns--;
	nbd_spec_release(c);
	close(c->fd);
	free(c->rx);
	free(c);
}

void
nbd_conn_maybe_free(struct nbd_conn *c)
{
	if (c->state != NC_CLOSING || c->rx_busy || c->tx_busy || c->inflight > 0)
		return;
	if (c->txq_head != NULL && !c->dead)
		return;
	conn_free(c);
}

/*
 * Stop reading from c and close it once its requests are answered.  why is
 * logged once (NULL: nothing to log).  Never frees c: every completion
 * callback ends with nbd_conn_maybe_free(), the only place c is freed, so
 * no caller is left holding a dangling pointer.
 */
void
nbd_conn_close(struct nbd_conn *c, const char *why)
{
	if (c->state == NC_CLOSING) {
		/* Closing already (NBD_CMD_DISC, a bad request), and declared
		 * dead since: its send stuck while others wait for memory
		 * (stuck_check).  Cut it as below, or its buffers stay held
		 * until the client reads. */
		if (c->dead && (c->rx_busy || c->tx_busy))
			shutdown(c->fd, SHUT_RDWR);
		return;
	}
	if (why != NULL)
		nbd_conn_log_closed(c, why, "");
	c->state = NC_CLOSING;
	c->rx_stopped = true;
	/* A pending recv completes with 0 once the read side is shut.  A dead
	 * connection's send may be stuck (a client that stopped reading):
	 * shut both sides so that it fails and the connection's buffers are
	 * freed without the client's help. */
	if (c->dead && (c->rx_busy || c->tx_busy))
		shutdown(c->fd, SHUT_RDWR);
	else if (c->rx_busy)
		shutdown(c->fd, SHUT_RD);
}

void
nbd_conn_log_closed(const struct nbd_conn *c, const char *why, const char *note)
{
	log_info("nbd: connection %" PRIu64 " from %s closed: %s (%" PRIu64
	    " requests, %" PRIu64 " rejected%s; %" PRIu64 " WRITE payloads"
	    " received ahead, %" PRIu64 " guesses missed)", c->id, c->peer,
	    why, c->requests, c->rejected, note, c->spec_hits, c->spec_unwinds);
}

ssize_t
nbd_conn_recv_queued(struct nbd_conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (c->dead || len == 0)
		return 0;
	do
		n = recv(c->fd, buf, len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	n = -errno;
	log_notice("nbd: %s: reading at shutdown failed: %s", c->peer, strerror((int)-n));
	c->dead = true;
	return n;
}

size_t
nbd_conn_read_queued(struct nbd_conn *c)
{
	ssize_t n;

	if (c->rx_off > 0) {
		memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
		c->rx_len -= c->rx_off;
		c->rx_off = 0;
	}
	n = nbd_conn_recv_queued(c, c->rx + c->rx_len,
	    MIN(NBD_RX_BUF - c->rx_len, c->stop_read_left));
	if (n <= 0)
		return 0;
	c->rx_len += (size_t)n;
	c->stop_read_left -= (size_t)n;
	return (size_t)n;
}

/* ---- handshake over the loop ----------------------------------------------- */

static void hs_step(struct nbd_conn *c);

static void
hs_timeout(struct loop_timer *t)
{
	struct nbd_conn *c = t->data;

	log_notice("nbd: %s: handshake not finished within %u s", c->peer,
	    NBD_HANDSHAKE_TIMEOUT_MS / 1000);
	c->dead = true;
	nbd_conn_close(c, "handshake timeout");
	nbd_conn_maybe_free(c);
}

static void hs_sent(struct loop_op *op, int res);

/* Send what the handshake queued; hs_sent continues. */
static void
hs_send(struct nbd_conn *c)
{
	c->tx_busy = true;
	c->tx_op.cb = hs_sent;
	c->tx_op.data = c;
	loop_send(c->d->loop, &c->tx_op, c->fd, c->hs.out, c->hs.out_len);
}

static void
hs_sent(struct loop_op *op, int res)
{
	struct nbd_conn *c = op->data;

	c->tx_busy = false;
	nbd_hs_out_sent(&c->hs);
	if (res < 0) {
		c->dead = true;
		nbd_conn_close(c, "send failed during handshake");
	} else if (c->state != NC_CLOSING) {
		hs_step(c);
	}
	nbd_conn_maybe_free(c);	/* last use of c */
}

/* Close c during the handshake; once stopping, the line says how many
 * options were refused for it. */
static void
hs_conn_close(struct nbd_conn *c, const char *why)
{
	char note[80] = "";

	if (!c->stopping) {
		nbd_conn_close(c, why);
		return;
	}
	snprintf(note, sizeof(note), "; %u options refused with NBD_REP_ERR_SHUTDOWN",
	    c->hs.shutdown_refused);
	nbd_conn_log_closed(c, why, note);
	nbd_conn_close(c, NULL);
}

/* Feed buffered input to the handshake until it needs more, sends or ends;
 * stopping, until the input the socket holds is used up. */
static void
hs_step(struct nbd_conn *c)
{
	for (;;) {
		size_t used = 0;
		enum nbd_hs_status st;

		unsigned notes = c->hs.notes;

		/* The refusal as it is now: the role may have changed since
		 * the client connected. */
		export.refuse = c->d->refuse;
		st = nbd_hs_feed(&c->hs, c->rx + c->rx_off, c->rx_len - c->rx_off, &used);
		c->rx_off += used;
		if (c->hs.notes != notes)
			log_notice("nbd: %s: %s%s", c->peer, c->hs.note,
			    c->hs.notes - notes > 1 ? " (and earlier options)" : "");
		if (c->hs.out_len > 0 && st != NBD_HS_CLOSE) {
			hs_send(c);
			return;
		}
		if (st == NBD_HS_DONE) {
			loop_timer_cancel(c->d->loop, &c->hs_timer);
			nbd_transmit_start(c);
			return;
		}
		if (st == NBD_HS_CLOSE) {
			if (c->hs.reason[0] != '\0')
				log_notice("nbd: %s: %s", c->peer, c->hs.reason);
			/* Best effort: the final reply (e.g. ABORT's ACK) goes
			 * out synchronously before the close. */
			if (c->hs.out_len > 0)
				(void)send(c->fd, c->hs.out, c->hs.out_len,
				    MSG_DONTWAIT | MSG_NOSIGNAL);
			nbd_hs_out_sent(&c->hs);
			hs_conn_close(c, c->hs.reason[0] ? "handshake failed" : "client aborted");
			return;
		}
		if (used > 0)
			continue;
		/* Stopping: no waiting for the client; what its socket holds
		 * already is answered too. */
		if (!c->stopping)
			break;
		if (nbd_conn_read_queued(c) == 0) {
			hs_conn_close(c, "daemon shutting down");
			return;
		}
	}
	nbd_conn_rx_post(c);
}

/*
 * The daemon stops while c negotiates: the options it sent already get
 * NBD_REP_ERR_SHUTDOWN (ABORT its ACK), then it closes.  A receive in
 * flight (woken by SHUT_RD) completes first and goes on in hs_step().  A
 * send still in flight means a client that does not read its replies: it
 * is cut off at once, as before the refusal existed, rather than holding
 * the stop for the shutdown grace.
 */
static void
hs_stop(struct nbd_conn *c)
{
	nbd_hs_shutdown(&c->hs);
	if (c->tx_busy) {
		c->dead = true;
		hs_conn_close(c, "daemon shutting down (a reply still unsent)");
		return;
	}
	if (c->rx_busy) {
		shutdown(c->fd, SHUT_RD);
		return;
	}
	hs_step(c);
}

/* ---- receive ---------------------------------------------------------------- */

/* Receive completion: payload, handshake or transmission input. */
static void
conn_rx_step(struct nbd_conn *c, int res)
{
	if (c->refusing) {
		nbd_transmit_stop_received(c, res);
		return;
	}
	if (c->rx_req != NULL) {
		/* A payload cut short by a close is dropped with its request. */
		nbd_transmit_payload(c, c->state == NC_CLOSING ? 0 : res);
		return;
	}
	if (c->state == NC_CLOSING)
		return;
	/* Stopping, SHUT_RD ends the handshake's receive: hs_step() goes on
	 * with what the socket holds. */
	if (res < 0 || (res == 0 && !(c->stopping && c->state == NC_HANDSHAKE))) {
		if (res < 0)
			c->dead = true;
		if (c->rx_len > c->rx_off || c->state == NC_HANDSHAKE)
			log_notice("nbd: %s: connection ended %s%s", c->peer,
			    c->state == NC_HANDSHAKE ? "during the handshake" :
			    "in the middle of a request", res < 0 ? " (error)" : "");
		nbd_conn_close(c, res < 0 ? strerror(-res) : "client closed the connection");
		return;
	}
	if (c->n_spec > 0)
		nbd_spec_received(c, (size_t)res);
	else
		c->rx_len += (size_t)res;
	if (c->state == NC_HANDSHAKE)
		hs_step(c);
	else
		nbd_transmit_input(c);
}

static void
conn_rx_done(struct loop_op *op, int res)
{
	struct nbd_conn *c = op->data;

	c->rx_busy = false;
	conn_rx_step(c, res);
	nbd_conn_maybe_free(c);	/* last use of c */
}

/*
 * Post the next receive if the connection wants input: into the pending
 * WRITE's payload buffer, else into the free tail of the receive buffer.
 */
void
nbd_conn_rx_post(struct nbd_conn *c)
{
	struct daemon *d = c->d;

	if (c->rx_busy || c->rx_stopped || c->dead || c->state == NC_CLOSING)
		return;
	c->rx_op.cb = conn_rx_done;
	c->rx_op.data = c;
	if (c->rx_req != NULL) {
		struct nbd_req *q = c->rx_req;

		c->rx_busy = true;
		loop_recv(d->loop, &c->rx_op, c->fd, (char *)q->data.p + q->got,
		    q->r.length - q->got);
		return;
	}
	/* A header waits in rx (enum nbd_stall), or too many requests are in
	 * flight: nbd_transmit.c resumes parsing and receiving.  Checked
	 * before rx moves: a waiting header may be a receive-ahead slot's,
	 * and a buffer full of waiting headers is no overflow. */
	if (c->state == NC_TRANSMIT &&
	    (c->stall != NBD_STALL_NONE || c->inflight >= NBD_MAX_INFLIGHT))
		return;
	if (c->rx_off > 0) {
		memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
		c->rx_len -= c->rx_off;
		c->rx_off = 0;
	}
	if (c->rx_len == NBD_RX_BUF) {
		/* Full buffer without a complete message: cannot happen with
		 * bounded headers, but never spin on it. */
		c->dead = true;
		nbd_conn_close(c, "receive buffer overflow");
		return;
	}
	c->rx_busy = true;
	if (c->state == NC_TRANSMIT && nbd_spec_post(c))
		return;
	loop_recv(d->loop, &c->rx_op, c->fd, c->rx + c->rx_len, NBD_RX_BUF - c->rx_len);
}

/*
 * A TCP client: no Nagle delay on replies, and keepalive probes, so that a
 * client whose host died (its connection idle, or in the middle of a WRITE
 * payload) is noticed after NBD_KEEPIDLE_S + NBD_KEEPCNT x NBD_KEEPINTVL_S
 * seconds (2 minutes) and its buffers are freed -- and a primary is not
 * kept from being demoted by a client that no longer exists.
 */
static void
tcp_options(int fd)
{
	int one = 1, idle = NBD_KEEPIDLE_S, intvl = NBD_KEEPINTVL_S, cnt = NBD_KEEPCNT;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* ---- accept ----------------------------------------------------------------- */

static void
conn_new(struct daemon *d, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct nbd_conn *c;

	if (d->n_conns >= NBD_MAX_CONNS || d->stopping) {
		log_warn("nbd: refusing connection: %s", d->stopping ?
		    "shutting down" : "too many clients");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->rx = malloc(NBD_RX_BUF)) == NULL) {
		log_err("nbd: out of memory for a new connection");
		free(c);
		close(fd);
		return;
	}
	c->d = d;
	c->fd = fd;
	c->id = ++d->conns_total;
	c->tx_flush.cb = nbd_tx_flush;
	c->tx_flush.data = c;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX) {
		sockaddr_str(&ss, c->peer, sizeof(c->peer));
		tcp_options(fd);
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix#%" PRIu64, c->id);
	}
	c->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = c;
	d->conns = c;
	d->n_conns++;
	log_debug("nbd: connection %" PRIu64 " from %s", c->id, c->peer);

	nbd_hs_init(&c->hs, &export);
	c->hs_timer.cb = hs_timeout;
	c->hs_timer.data = c;
	loop_timer_arm(d->loop, &c->hs_timer, NBD_HANDSHAKE_TIMEOUT_MS);
	hs_send(c);
}

static void accept_post(struct listener *ls);

static void
accept_retry(struct loop_timer *t)
{
	accept_post(t->data);
}

static void
accept_done(struct loop_op *op, int res)
{
	struct listener *ls = op->data;
	struct daemon *d = ls->d;

	if (ls->closed) {
		if (res >= 0)
			close(res);	/* accepted as the listener closed */
		close(ls->fd);
		ls->fd = -1;
		return;
	}
	if (res >= 0) {
		conn_new(d, res);
		accept_post(ls);
		return;
	}
	if (res == -EINTR || res == -ECONNABORTED || res == -EAGAIN) {
		accept_post(ls);
		return;
	}
	/* EMFILE, ENOMEM...: log, back off, try again. */
	if (ls->accept_errors++ % 100 == 0)
		log_errno(LOG_WARNING, res, "nbd: accept on %s failed", ls->name);
	ls->retry.cb = accept_retry;
	ls->retry.data = ls;
	loop_timer_arm(d->loop, &ls->retry, ACCEPT_RETRY_MS);
}

static void
accept_post(struct listener *ls)
{
	ls->op.cb = accept_done;
	ls->op.data = ls;
	loop_accept(ls->d->loop, &ls->op, ls->fd);
}

static int
add_listener(struct daemon *d, int fd, const char *name, bool from_systemd)
{
	struct listener *n = realloc(d->listeners, (d->n_listeners + 1) * sizeof(*n));
	struct listener *ls;

	if (n == NULL)
		return -ENOMEM;
	/* Listeners are only added at start, before any accept is posted. */
	d->listeners = n;
	ls = &n[d->n_listeners++];
	memset(ls, 0, sizeof(*ls));
	ls->d = d;
	ls->fd = fd;
	ls->from_systemd = from_systemd;
	snprintf(ls->name, sizeof(ls->name), "%s", name);
	return 0;
}

/* Sockets passed by systemd (LISTEN_FDS) replace the configured ones. */
static int
listeners_from_systemd(struct daemon *d)
{
	int n = sd_listen_fds(1);

	if (n <= 0)
		return n;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		char name[64];

		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_err("nbd: fd %d from systemd is not a listening stream socket", fd);
			return -EINVAL;
		}
		loop_set_nonblock(fd);
		snprintf(name, sizeof(name), "systemd fd %d", fd);
		if (add_listener(d, fd, name, true) < 0)
			return -ENOMEM;
	}
	if (d->self->n_nbd_listen > 0)
		log_info("nbd: using %d socket(s) from systemd; nbd-listen ignored", n);
	return n;
}

int
nbd_server_start(struct daemon *d)
{
	int n, ret;

	export.name = d->conf.name;
	export.description = "blkmirror volume";
	export.size = d->size;
	export.tflags = NBD_EXPORT_TFLAGS;
	export.min_block = d->block_size;
	export.pref_block = MAX(4096u, d->block_size);
	export.max_block = NBD_MAX_PAYLOAD;

	n = listeners_from_systemd(d);
	if (n < 0)
		return n;
	for (unsigned i = 0; n == 0 && i < d->self->n_nbd_listen; i++) {
		const struct conf_addr *a = &d->self->nbd_listen[i];

		ret = listen_on(&a->ss, a->sslen, 0660);
		if (ret < 0) {
			log_errno(LOG_ERR, ret, "nbd: cannot listen on %s", a->text);
			return ret;
		}
		if (add_listener(d, ret, a->text, false) < 0)
			return -ENOMEM;
		log_info("nbd: listening on %s", a->text);
	}
	for (unsigned i = 0; i < d->n_listeners; i++)
		accept_post(&d->listeners[i]);
	return 0;
}

void
nbd_server_stop(struct daemon *d)
{
	struct nbd_conn *c, *next;

	for (unsigned i = 0; i < d->n_listeners; i++) {
		struct listener *ls = &d->listeners[i];

		if (ls->closed)
			continue;
		ls->closed = true;
		loop_timer_cancel(d->loop, &ls->retry);
		/* The pending accept completes with an error once shut down. */
		shutdown(ls->fd, SHUT_RDWR);
		if (!ls->op.in_flight) {
			close(ls->fd);
			ls->fd = -1;
		}
		if (!ls->from_systemd && ls->name[0] != '\0' &&
		    strncmp(ls->name, "unix:", 5) == 0)
			unlink(ls->name + 5);
	}
	/* Live connections answer what their clients sent already; nothing
	 * in there frees another connection. */
	for (c = d->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == NC_CLOSING || c->dead) {
			nbd_conn_close(c, "daemon shutting down");
		} else {
			c->stopping = true;
			c->stop_read_left = NBD_STOP_READ_MAX;
			if (c->state == NC_HANDSHAKE)
				hs_stop(c);
			else
				nbd_transmit_stop(c);
		}
		nbd_conn_maybe_free(c);
	}
}
