/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The peer link: two TCP connections to the other node, data (writes,
 * resync data) and meta (acknowledgements, pings, state), framed by the
 * replication protocol (lib/repl_proto.h, docs/protocol.md).
 *
 * Both nodes listen on their data port and data port + 1 and connect to the
 * peer's every PEER_CONNECT_MS while the link is not up.  On every new
 * socket both sides send HELLO and AUTH_CHALLENGE at once, answer the
 * other's challenge with AUTH_RESPONSE, and accept the other's response with
 * AUTH_RESULT (or REJECT with the reason, then close).  A socket whose both
 * proofs checked out is READY.  When two READY sockets of the same kind
 * exist (both nodes connected at once), repl_arbitrate() picks the same
 * survivor on both nodes.  The link is up when a READY data and a READY meta
 * socket of the same peer daemon (HELLO nonce) exist.
 *
 * Any error on a link socket, a malformed frame, or silence for `timeout`
 * takes the whole link down (peer_link_down); writes waiting for the peer
 * are then handled by replicate.c and the node reconnects.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "log.h"
#include "repl.h"
#include "repl_handshake.h"
#include "util.h"

static struct peer_frame *frame_free_list;

struct peer_frame *
peer_frame_new(void)
{
	struct peer_frame *f = frame_free_list;

	if (f != NULL)
		frame_free_list = f->next;
	else if ((f = malloc(sizeof(*f))) == NULL)
		die(EX_OSERR, "out of memory for replication frames");
	f->len = 0;
	f->payload = NULL;
	f->payload_len = 0;
	f->free_payload = false;
	f->sent = NULL;
	f->ctx = NULL;
	f->seq = 0;
	f->next = NULL;
	return f;
}

static void
frame_release(struct peer_frame *f, int res)
{
	if (f->sent != NULL)
		f->sent(f, res);
	if (f->free_payload)
		free(f->payload);
	f->next = frame_free_list;
	frame_free_list = f;
}

struct repl_tx
peer_tx(struct peer *p)
{
	struct repl_tx tx = { .version = p->version ? p->version : REPL_PROTO_VERSION,
	    .epoch = p->d->epoch };

	return tx;
}

bool
peer_connected(struct daemon *d)
{
	struct peer *p = d->link;

	if (p == NULL || p->data == NULL || p->meta == NULL)
		return false;
	return p->rs == RS_ESTABLISHED || p->rs == RS_SYNC_SOURCE ||
	    p->rs == RS_PAUSED_SYNC_SOURCE || p->rs == RS_SYNC_TARGET ||
	    p->rs == RS_PAUSED_SYNC_TARGET;
}

/*
 * Is the link up, and the one of generation link_gen (p->connects when
 * something came that must be answered on its own link only)?  p->data
 * alone does not say: a new link's data connection is set while its meta
 * connection is still in the handshake, before link_up() counts it.
 */
bool
peer_link_is(const struct peer *p, uint64_t link_gen)
{
	return p->data != NULL && p->rs != RS_OFF && link_gen == p->connects;
}

/* ---- socket lifecycle ------------------------------------------------------------ */

static void sock_rx_post(struct peer_sock *s);
static void sock_tx_kick(struct peer_sock *s);

/* The deferred free: the only place a socket's memory goes. */
static void
sock_free(struct loop_op *op, int res)
{
	struct peer_sock *s = op->data;
	struct peer *p = s->p;
	struct peer_sock **pp;
	struct peer_frame *f, *next;

	s->free_queued = false;
	if (s->rx_busy || s->tx_busy || s->connecting || s->overflow_queued)
		return;		/* an operation restarted: its completion retries */
	loop_flush_cancel(p->d->loop, &s->tx_flush);
	for (pp = &p->socks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	for (f = s->txq_head; f != NULL; f = next) {
		next = f->next;
		frame_release(f, -EPIPE);
	}
	p->bytes_sent += s->bytes_sent;
	p->bytes_received += s->bytes_received;
	bufpool_put(&p->d->pool, &s->payload);
	free(s->big);
	free(s->rx);
	close(s->fd);
	free(s);
}

/*
 * Free a closing socket once nothing of it is in flight.  The free itself
 * runs on the next loop turn, so no caller up the stack is left holding a
 * dangling pointer, whichever path closed the socket.
 */
static void
sock_maybe_free(struct peer_sock *s)
{
	if (s->phase != SP_CLOSING || s->rx_busy || s->tx_busy || s->connecting ||
	    s->free_queued || s->overflow_queued)
		return;
	s->free_queued = true;
	s->free_op.cb = sock_free;
	s->free_op.data = s;
	loop_defer(s->p->d->loop, &s->free_op, 0);
}

/*
 * Before a close: push the frames still queued (a STATE, the DISCONNECT
 * that says why) straight out, best effort and without blocking, so the
 * peer learns why the link went.  Not when a send is in flight: bytes of
 * two sends must not interleave.
 */
static void
sock_drain_now(struct peer_sock *s)
{
	struct peer_frame *f;

	if (s->tx_busy)
		return;
	while ((f = s->txq_head) != NULL) {
		struct iovec iov[2] = { { f->buf, f->len }, { f->payload, f->payload_len } };
		struct msghdr msg = { .msg_iov = f->len ? iov : iov + 1,
		    .msg_iovlen = (f->len ? 1 : 0) + (f->payload_len ? 1 : 0) };
		ssize_t n = sendmsg(s->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < (ssize_t)(f->len + f->payload_len))
			return;
		s->txq_head = f->next;
		if (s->txq_head == NULL)
			s->txq_tail = NULL;
		s->txq_n--;
		frame_release(f, 0);
	}
}

/* Close one socket (not the link: see peer_link_down). */
static void
sock_close(struct peer_sock *s)
{
	struct peer *p = s->p;

	if (s->phase == SP_CLOSING)
		return;
	sock_drain_now(s);
	s->phase = SP_CLOSING;
	if (p->data == s)
		p->data = NULL;
	if (p->meta == s)
		p->meta = NULL;
	shutdown(s->fd, SHUT_RDWR);
	sock_maybe_free(s);
}

/* A socket failed: a link socket takes the link down, others just close. */
static void
sock_fail(struct peer_sock *s, uint32_t reason, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (s == s->p->data || s == s->p->meta) {
		peer_link_down(s->p, reason, why);
		return;
	}
	if (s->phase != SP_CLOSING)
		log_notice("peer: %s: %s", s->name, why);
	sock_close(s);
}

static void
frames_sent(struct loop_op *op, int res)
{
	struct peer_sock *s = op->data;
	struct peer_frame *f = s->tx_batch, *next;

	s->tx_busy = false;
	s->tx_batch = NULL;
	if (res > 0)
		s->bytes_sent += (uint64_t)res;
	for (; f != NULL; f = next) {
		next = f->next;
		frame_release(f, res < 0 ? res : 0);
	}
	if (res < 0 && s->phase != SP_CLOSING)
		sock_fail(s, REPL_DISC_PROTOCOL, "send failed: %s", strerror(-res));
	if (s->phase == SP_CLOSING) {
		sock_maybe_free(s);
		return;
	}
	sock_tx_kick(s);
}

static void
sock_tx_kick(struct peer_sock *s)
{
	struct peer_frame *f, **tail = &s->tx_batch;
	int k = 0, n = 0;

	if (s->tx_busy || s->txq_head == NULL || s->phase == SP_CLOSING)
		return;
	while ((f = s->txq_head) != NULL && n < PEER_TX_BATCH) {
		s->txq_head = f->next;
		if (f->len > 0) {
			s->iov[k].iov_base = f->buf;
			s->iov[k++].iov_len = f->len;
		}
		if (f->payload_len > 0) {
			s->iov[k].iov_base = f->payload;
			s->iov[k++].iov_len = f->payload_len;
		}
		if (f->seq != 0 && s == s->p->data)
			s->p->tx_seq = f->seq;	/* frames go out in seq order */
		f->next = NULL;
		*tail = f;
		tail = &f->next;
		n++;
		s->txq_n--;
	}
	if (s->txq_head == NULL)
		s->txq_tail = NULL;
	s->tx_busy = true;
	s->tx_op.cb = frames_sent;
	s->tx_op.data = s;
	loop_sendmsg(s->p->d->loop, &s->tx_op, s->fd, s->iov, k);
}

/* Deferred from peer_send: the caller may be in the middle of a request. */
static void
sock_overflow(struct loop_op *op, int res)
{
	struct peer_sock *s = op->data;

	(void)res;
	s->overflow_queued = false;
	if (s->phase != SP_CLOSING)
		sock_fail(s, REPL_DISC_PROTOCOL, "the peer does not read: %u frames wait "
		    "to be sent", s->txq_n);
	sock_maybe_free(s);
}

void
peer_send(struct peer_sock *s, struct peer_frame *f)
{
	if (s == NULL || s->phase == SP_CLOSING) {
		frame_release(f, -ENOTCONN);
		return;
	}
	f->next = NULL;
	if (s->txq_tail != NULL)
		s->txq_tail->next = f;
	else
		s->txq_head = f;
	s->txq_tail = f;
	/* Only meta (acks, PING_ACKs: answers to the peer's input); data
	 * frames are bounded by the NBD limits, max-lag-bytes and the resync
	 * windows, and a slow honest secondary may hold them back. */
	if (++s->txq_n > PEER_TXQ_MAX && s->kind == REPL_CONN_META &&
	    !s->overflow_queued) {
		s->overflow_queued = true;
		s->overflow_op.cb = sock_overflow;
		s->overflow_op.data = s;
		loop_defer(s->p->d->loop, &s->overflow_op, 0);
	}
	/* One sendmsg for everything this loop turn queues. */
	if (!s->tx_busy)
		loop_flush_queue(s->p->d->loop, &s->tx_flush);
}

static void
tx_flush(struct loop_flush *fl)
{
	sock_tx_kick(fl->data);
}

/* ---- handshake ------------------------------------------------------------------ */

static void
my_hello(struct peer *p, unsigned kind, struct repl_hello *h)
{
	struct daemon *d = p->d;

	memset(h, 0, sizeof(*h));
	h->version_min = REPL_PROTO_VERSION_MIN;
	h->version_max = REPL_PROTO_VERSION;
	h->conn = (uint16_t)kind;
	h->mode = (uint16_t)d->conf.protocol;
	h->block_size = d->block_size;
	h->size = d->size;
	h->bitmap_granularity = d->md->sb.granularity;
	h->node_id = d->md->sb.node_id;
	h->nonce = p->nonce;
	h->current_uuid = d->md->sb.uuids.current;
	memcpy(h->volume_uuid, d->md->sb.volume_uuid, REPL_UUID_LEN);
	snprintf(h->resource, sizeof(h->resource), "%s", d->conf.name);
	snprintf(h->node, sizeof(h->node), "%s", d->self->name);
}

/* Encode a frame with fn(buf, size, tx, msg) and send it on s. */
#define SEND_MSG(s, fn, msg) do {					\
	struct peer_frame *f_ = peer_frame_new();			\
	struct repl_tx tx_ = peer_tx((s)->p);				\
	int n_ = fn(f_->buf, sizeof(f_->buf), &tx_, (msg));		\
	if (n_ < 0) {							\
		log_errno(LOG_ERR, n_, "peer: cannot encode " #fn);	\
		frame_release(f_, n_);					\
	} else {							\
		f_->len = (uint32_t)n_;					\
		peer_send((s), f_);					\
	}								\
} while (0)

static void
close_after_send(struct peer_frame *f, int res)
{
	sock_close(f->ctx);
}

/* Send what the handshake machine queued; close afterwards if it failed. */
static void
hs_flush(struct peer_sock *s, bool then_close)
{
	struct peer_frame *f;

	if (s->hs.out_len == 0) {
		if (then_close)
			sock_close(s);
		return;
	}
	f = peer_frame_new();
	f->payload = malloc(s->hs.out_len);
	if (f->payload == NULL) {
		frame_release(f, -ENOMEM);
		sock_close(s);
		return;
	}
	memcpy(f->payload, s->hs.out, s->hs.out_len);
	f->payload_len = (uint32_t)s->hs.out_len;
	f->free_payload = true;
	s->hs.out_len = 0;
	if (then_close) {
		f->sent = close_after_send;
		f->ctx = s;
	}
	peer_send(s, f);
}

static void link_maybe_up(struct peer *p, struct peer_sock *s);

/*
 * A handshake failed.  On this node's own connection to the peer's address
 * it says why the link does not come up (last_error) and slows the
 * reconnects down (log once per back-off step).  An incoming connection
 * may come from anyone (a port scanner, a stranger sending garbage): its
 * failure is logged and counted, but neither overwrites last_error nor
 * slows the reconnects -- a scanner every few seconds used to hold them at
 * PEER_BACKOFF_MAX_MS.  A real peer that refuses or is refused fails the
 * same way on this node's outgoing connection.
 */
static void
hs_refused(struct peer_sock *s)
{
	struct peer *p = s->p;

	if (!s->outgoing) {
		/* Logged when the reason changes (a real peer's, e.g. a size
		 * mismatch, is worth a line) and every 100th time. */
		p->hs_in_failures++;
		if (strcmp(p->hs_in_why, s->hs.why) != 0 || p->hs_in_failures % 100 == 0)
			log_notice("peer: %s: %s (%s; %" PRIu64 " incoming handshakes failed "
			    "so far)", s->name, s->hs.why, repl_reject_name(s->hs.reject),
			    p->hs_in_failures);
		snprintf(p->hs_in_why, sizeof(p->hs_in_why), "%s", s->hs.why);
		return;
	}
	if (p->backoff_ms < PEER_BACKOFF_MAX_MS || strcmp(p->last_error, s->hs.why) != 0)
		log_warn("peer: %s: %s (%s)", s->name, s->hs.why, repl_reject_name(s->hs.reject));
	snprintf(p->last_error, sizeof(p->last_error), "%s", s->hs.why);
	p->backoff_ms = MIN(MAX(p->backoff_ms * 2, (uint64_t)PEER_CONNECT_MS),
	    (uint64_t)PEER_BACKOFF_MAX_MS);
}

/*
 * Feed received bytes to the handshake (lib/repl_handshake.c).  Returns
 * true when the socket is authenticated and later bytes are frames.
 */
static bool
hs_input(struct peer_sock *s)
{
	size_t used = 0;
	int ret = repl_hs_feed(&s->hs, s->rx + s->rx_off, s->rx_len - s->rx_off, &used);

	s->rx_off += used;
	if (ret < 0) {
		hs_refused(s);
		hs_flush(s, true);
		return false;
	}
	hs_flush(s, false);
	if (ret == 0)
		return false;
	s->hello = s->hs.peer;
	s->p->version = s->hs.version;
	link_maybe_up(s->p, s);
	return s->phase == SP_READY;
}

/* ---- the link ------------------------------------------------------------------- */

static void ping_tick(struct loop_timer *t);

/* Is s in the direction that survives a simultaneous connect? */
static bool
preferred(struct peer *p, const struct peer_sock *s)
{
	struct repl_hello mine;

	my_hello(p, s->kind, &mine);
	return s->outgoing == (repl_arbitrate(&mine, &s->hello) == REPL_SIDE_LOCAL);
}

/*
 * The authenticated socket of one kind for the link: the newest peer
 * session (HELLO nonce) wins, then the preferred direction (both nodes
 * compute the same, repl_arbitrate).  Every other authenticated socket of
 * that kind is closed.
 */
static struct peer_sock *
pick(struct peer *p, unsigned kind, uint64_t nonce)
{
	struct peer_sock *best = NULL, *s, *next;

	for (s = p->socks; s != NULL; s = s->next)
		if (s->phase == SP_READY && s->kind == kind && s->hello.nonce == nonce &&
		    (best == NULL || (preferred(p, s) && !preferred(p, best))))
			best = s;
	for (s = p->socks; s != NULL; s = next) {
		next = s->next;
		if (s->phase == SP_READY && s->kind == kind && s != best) {
			log_info("peer: closing %s (duplicate or stale connection)", s->name);
			if (p->data == s)
				p->data = NULL;
			if (p->meta == s)
				p->meta = NULL;
			sock_close(s);
		}
	}
	return best;
}

/* A freshly created node takes its peer's volume UUID (md_volume_check). */
static void
adopt_volume(struct peer *p)
{
	struct meta *m = p->d->md;
	struct md_uuid_side me = { .uuids = m->sb.uuids, .flags = m->sb.flags,
	    .node_id = m->sb.node_id };
	struct md_uuid_side peer = { .node_id = p->peer_hello.node_id };
	char a[40], b[40];

	peer.uuids.current = p->peer_hello.current_uuid;
	if (md_volume_check(m->sb.volume_uuid, &me, p->peer_hello.volume_uuid, &peer) !=
	    MD_VOL_ADOPT_PEER)
		return;
	log_info("metadata: adopting the peer's volume uuid %s (was %s)",
	    md_volume_uuid_str(p->peer_hello.volume_uuid, a),
	    md_volume_uuid_str(m->sb.volume_uuid, b));
	memcpy(m->sb.volume_uuid, p->peer_hello.volume_uuid, sizeof(m->sb.volume_uuid));
	meta_sb_write(p->d, NULL);
}

static void
link_up(struct peer *p)
{
	p->peer_hello = p->data->hello;
	p->backoff_ms = 0;
	p->rs_state.stopped = false;
	adopt_volume(p);
	p->connects++;
	p->state_sent = p->state_received = false;
	p->send_seq = p->tx_seq = 0;
	p->apply_seq = 0;
	p->data->last_rx_ns = p->meta->last_rx_ns = p->up_ns = now_ns();
	state_set(p->d, "connected", -1, -1, CONN_CONNECTED, RS_CONNECTING, NULL);
	p->ping_timer.cb = ping_tick;
	p->ping_timer.data = p;
	loop_timer_arm(p->d->loop, &p->ping_timer, PEER_PING_MS);
	state_send(p);
	if (p->have_early_state) {
		p->have_early_state = false;
		if (p->early_nonce == p->peer_hello.nonce)
			state_received(p, &p->early_state);
	}
}

/*
 * For tests: BLKMIRROR_TEST_LINK_UP_DELAY_MS=N takes the link up N ms after
 * both connections are authenticated, so that this node's STATE, and its
 * UUID decision, come that much later and the peer stays in RS_CONNECTING
 * meanwhile (the peer's STATE is kept as an early one; pings are answered).
 */
static uint64_t
test_up_delay_ms(void)
{
	static int64_t ms = -1;

	if (ms < 0)
		ms = (int64_t)test_setting("BLKMIRROR_TEST_LINK_UP_DELAY_MS", 600000,
		    "the link comes up that long after its connections are authenticated");
	return (uint64_t)ms;
}

static void
up_delayed(struct loop_timer *t)
{
	struct peer *p = t->data;

	if (p->rs == RS_OFF && p->data != NULL && p->meta != NULL && !p->d->stopping)
		link_up(p);
}

static void
link_up_soon(struct peer *p)
{
	if (test_up_delay_ms() == 0) {
		link_up(p);
		return;
	}
	if (p->up_delay.armed)
		return;
	p->up_delay.cb = up_delayed;
	p->up_delay.data = p;
	loop_timer_arm(p->d->loop, &p->up_delay, test_up_delay_ms());
}

/*
 * s just became authenticated.  Re-pick the link sockets; if the link was
 * up on sockets that lost (a simultaneous connect settling, or the peer
 * restarted), it goes down and comes up on the survivors.
 */
static void
link_maybe_up(struct peer *p, struct peer_sock *s)
{
	struct peer_sock *data, *meta;

	if (s->phase != SP_HANDSHAKE)
		return;
	s->phase = SP_READY;
	log_info("peer: %s authenticated", s->name);
	if (p->rs != RS_OFF && s->hello.nonce != p->peer_hello.nonce)
		peer_link_down(p, REPL_DISC_SESSION, "the peer restarted");
	data = pick(p, REPL_CONN_DATA, s->hello.nonce);
	meta = pick(p, REPL_CONN_META, s->hello.nonce);
	if (p->rs != RS_OFF && (data != p->data || meta != p->meta)) {
		if (p->send_seq == 0) {
			/* Keep the survivors out of the teardown of the old
			 * link: it shipped no write, so no acknowledgement of
			 * one can still be on its way on them. */
			if (p->data == data)
				p->data = NULL;
			if (p->meta == meta)
				p->meta = NULL;
			/* The peer's last STATE holds for the moved link: the
			 * peer may have settled on these connections before
			 * us and sent its STATE for them already, on a
			 * connection our old link had too, and it sends no
			 * other while nothing changes on its side.  (A STATE
			 * kept from a connection not yet in our link is
			 * newer.) */
			if (p->state_received && (!p->have_early_state ||
			    p->early_nonce != p->peer_hello.nonce)) {
				p->early_state = p->peer_state;
				p->early_nonce = p->peer_hello.nonce;
				p->have_early_state = true;
			}
			peer_link_down(p, 0, "link moved to the surviving connections");
		} else {
			/* Writes went out on the old link: an acknowledgement
			 * still on its way on a kept connection would name a
			 * sequence number of the new link and complete the
			 * wrong write.  Nothing of the old link is kept; the
			 * next connect brings fresh connections. */
			if (data == p->data)
				data = NULL;
			if (meta == p->meta)
				meta = NULL;
			peer_link_down(p, 0, "link moved after writes were shipped on it: "
			    "reconnecting on fresh connections");
		}
	}
	if (p->rs != RS_OFF)
		return;
	p->data = data;
	p->meta = meta;
	if (data != NULL && meta != NULL)
		link_up_soon(p);
}

static void connect_tick(struct loop_timer *t);

/*
 * peer_leave's DISCONNECT went out (res >= 0) or was dropped.  Only while
 * it is still p->leave_frame: peer_link_down takes the callback away, so
 * that the link it already took down is not taken down again -- its
 * sock_close drains the queue synchronously, which used to land here
 * before its state_set and run the whole teardown twice -- nor a later
 * link by a DISCONNECT of an old one.
 */
static void
disconnect_sent(struct peer_frame *f, int res)
{
	struct peer *p = f->ctx;

	if (p->leave_frame != f)
		return;
	p->leave_frame = NULL;
	if (res >= 0 && p->rs != RS_OFF)
		peer_link_down(p, 0, p->leaving_why);
}

/*
 * Take the link down once everything queued on the meta connection before
 * now (acknowledgements) and a DISCONNECT saying why have left: unlike
 * peer_link_down, nothing queued is lost to a send still in flight.
 */
void
peer_leave(struct peer *p, uint32_t reason, const char *why)
{
	struct repl_disconnect m = { .reason = reason };
	struct peer_frame *f;
	struct repl_tx tx;
	int n;

	if (p->rs == RS_OFF || p->meta == NULL) {
		peer_link_down(p, reason, why);
		return;
	}
	if (p->leave_frame != NULL)
		return;		/* leaving already: its DISCONNECT says why */
	snprintf(p->leaving_why, sizeof(p->leaving_why), "%s", why);
	snprintf(m.text, sizeof(m.text), "%s", why);
	tx = peer_tx(p);
	f = peer_frame_new();
	n = repl_disconnect_encode(f->buf, sizeof(f->buf), &tx, &m);
	if (n < 0) {
		frame_release(f, n);
		peer_link_down(p, reason, why);
		return;
	}
	f->len = (uint32_t)n;
	f->sent = disconnect_sent;
	f->ctx = p;
	p->leave_frame = f;
	peer_send(p->meta, f);
}

void
peer_link_down(struct peer *p, uint32_t reason, const char *why)
{
	struct daemon *d = p->d;
	struct peer_sock *data = p->data, *meta = p->meta;
	bool was_up = p->rs != RS_OFF;

	if (p->leave_frame != NULL) {
		/* The link goes down here: a queued leave must not do it again. */
		p->leave_frame->sent = NULL;
		p->leave_frame = NULL;
	}
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	if (data == NULL && meta == NULL && !was_up)
		return;
	if (!was_up) {
		/* Half a link (one socket authenticated): just drop it. */
		log_info("peer: %s", why);
		p->data = p->meta = NULL;
		if (data != NULL)
			sock_close(data);
		if (meta != NULL)
			sock_close(meta);
		return;
	}
	log_warn("peer: link down: %s", why);
	/* Tell the peer why, best effort, before the sockets go. */
	if (reason != 0 && meta != NULL) {
		struct repl_disconnect m = { .reason = reason };

		snprintf(m.text, sizeof(m.text), "%s", why);
		SEND_MSG(meta, repl_disconnect_encode, &m);
	}
	p->data = p->meta = NULL;
	loop_timer_cancel(d->loop, &p->ping_timer);
	resync_stop(p);
	if (data != NULL)
		sock_close(data);
	if (meta != NULL)
		sock_close(meta);
	if (was_up) {
		p->disconnects++;
		repl_link_lost(p);
		state_set(d, "disconnected", -1, -1,
		    p->want_connect ? CONN_CONNECTING : CONN_STANDALONE, RS_OFF, why);
	}
	if (p->want_connect && !d->stopping)
		loop_timer_arm(d->loop, &p->connect_timer, PEER_CONNECT_MS);
}

/*
 * When the oldest write still waiting for the peer went out; false if none.
 * Two places hold such writes (ko-count judges both alike):
 *   p->pend_head  the client waits: sync until WRITE_ACK, memsync until
 *                 RECV_ACK, async until the frame is in the send buffer
 *   lag records   the client was answered (async, memsync): the write waits
 *                 for the peer's disk (WRITE_ACK) and holds lag and AL
 */
static bool
oldest_write(const struct peer *p, uint64_t *shipped_ns)
{
	bool lagging = repl_lag_oldest(shipped_ns);

	if (p->pend_head == NULL)
		return lagging;
	if (!lagging || p->pend_head->shipped_ns < *shipped_ns)
		*shipped_ns = p->pend_head->shipped_ns;
	return true;
}

static void
ping_tick(struct loop_timer *t)
{
	struct peer *p = t->data;
	struct daemon *d = p->d;
	uint64_t now = now_ns(), timeout = d->conf.timeout_ms * 1000000ull, shipped;
	struct repl_ping ping;

	if (p->data == NULL || p->meta == NULL)
		return;
	if (now - p->meta->last_rx_ns > timeout) {
		char why[96];

		snprintf(why, sizeof(why), "peer silent for %" PRIu64 " ms (timeout)",
		    (now - p->meta->last_rx_ns) / 1000000);
		peer_link_down(p, REPL_DISC_TIMEOUT, why);
		return;
	}
	if (p->rs == RS_CONNECTING && now - p->up_ns > timeout) {
		/* A peer that answers pings but never lets the UUIDs be
		 * compared would hold the parked client writes (meta.c
		 * park_connecting) for ever. */
		peer_link_down(p, REPL_DISC_TIMEOUT, "the generation uuids were not compared "
		    "within the timeout after the link came up");
		return;
	}
	if (oldest_write(p, &shipped) && now - shipped > timeout * d->conf.ko_count) {
		peer_link_down(p, REPL_DISC_TIMEOUT,
		    "peer did not complete a write within timeout x ko-count");
		return;
	}
	if (resync_oldest(&shipped) && now - shipped > timeout * d->conf.ko_count) {
		peer_link_down(p, REPL_DISC_TIMEOUT,
		    "peer did not answer a resync or verify request within timeout x ko-count");
		return;
	}
	if (peerread_oldest(&shipped) && now - shipped > timeout * d->conf.ko_count) {
		peer_link_down(p, REPL_DISC_TIMEOUT,
		    "peer did not answer a read within timeout x ko-count");
		return;
	}
	if (!repl_tick(p))
		return;
	ping.timestamp = now;
	ping.nonce = ++p->ping_nonce;
	SEND_MSG(p->meta, repl_ping_encode, &ping);
	loop_timer_arm(d->loop, t, MIN((uint64_t)PEER_PING_MS, d->conf.timeout_ms / 3 + 1));
}

/* ---- receive ---------------------------------------------------------------------- */

static bool
frame_has_payload(uint16_t type)
{
	return type == REPL_MSG_DATA || type == REPL_MSG_RESYNC_DATA ||
	    type == REPL_MSG_READ_REPLY;
}

static size_t
frame_fixed_len(uint16_t type)
{
	switch (type) {
	case REPL_MSG_DATA:		return REPL_DATA_LEN;
	case REPL_MSG_READ_REPLY:	return REPL_READ_REPLY_LEN;
	default:			return REPL_RESYNC_DATA_LEN;
	}
}

/* One complete frame: body at body (len bytes), payload (if any) in s->payload. */
static void
dispatch(struct peer_sock *s, const uint8_t *body, size_t len)
{
	struct peer *p = s->p;
	const struct repl_hdr *h = &s->hdr;
	union repl_msg m;
	int ret;

	ret = repl_body_decode(h->type, body, len, &m);
	if (ret < 0) {
		sock_fail(s, REPL_DISC_PROTOCOL, "malformed %s frame (%s)",
		    repl_type_name(h->type), strerror(-ret));
		return;
	}
	/* Each type on its own connection (the ordering rules rest on it),
	 * in the version the handshake negotiated. */
	if (!repl_type_is_handshake(h->type) && !(repl_type_conns(h->type) & s->kind)) {
		sock_fail(s, REPL_DISC_PROTOCOL, "%s on the %s connection",
		    repl_type_name(h->type), s->kind == REPL_CONN_DATA ? "data" : "meta");
		return;
	}
	if (!repl_type_is_handshake(h->type) && h->version != s->hs.version) {
		sock_fail(s, REPL_DISC_PROTOCOL, "%s in protocol version %u, %u was negotiated",
		    repl_type_name(h->type), h->version, s->hs.version);
		return;
	}
	if (h->type == REPL_MSG_STATE && (m.state.epoch != h->epoch ||
	    m.state.epoch > UINT64_MAX / 2)) {
		sock_fail(s, REPL_DISC_PROTOCOL, "STATE with epoch %" PRIu64 " (frame epoch %"
		    PRIu64 ")", m.state.epoch, h->epoch);
		return;
	}
	switch (h->type) {
	case REPL_MSG_HELLO:
	case REPL_MSG_AUTH_CHALLENGE:
	case REPL_MSG_AUTH_RESPONSE:
	case REPL_MSG_AUTH_RESULT:
	case REPL_MSG_REJECT:
		sock_fail(s, REPL_DISC_PROTOCOL, "%s after the handshake",
		    repl_type_name(h->type));
		return;
	case REPL_MSG_DISCONNECT:
		if (s == p->data || s == p->meta) {
			char why[REPL_TEXT_MAX + 64];

			snprintf(why, sizeof(why), "peer disconnected: %s (%s)",
			    m.disconnect.text, repl_disc_name(m.disconnect.reason));
			if (m.disconnect.reason == REPL_DISC_SPLIT_BRAIN ||
			    m.disconnect.reason == REPL_DISC_UNRELATED) {
				/* The peer found it first: stay apart as it does. */
				p->want_connect = false;
				p->split_brains++;
				state_event(p->d, "split-brain", "%s", why);
			}
			peer_link_down(p, 0, why);
			if (!p->want_connect)
				state_set(p->d, "split brain", -1, -1, CONN_STANDALONE, RS_OFF, why);
		} else {
			sock_close(s);
		}
		return;
	case REPL_MSG_PING:
		SEND_MSG(s, repl_ping_ack_encode, &m.ping);
		return;
	case REPL_MSG_PING_ACK:
		return;
	case REPL_MSG_STATE:
		if (p->rs == RS_OFF || (s != p->data && s != p->meta)) {
			/* The peer's link came up before ours: keep its STATE
			 * for our link-up (link_up) rather than lose it. */
			p->early_state = m.state;
			p->early_nonce = s->hello.nonce;
			p->have_early_state = true;
			return;
		}
		state_received(p, &m.state);
		return;
	}
	if (s != p->data && s != p->meta) {
		sock_fail(s, REPL_DISC_PROTOCOL, "%s on a socket that is not part of the link",
		    repl_type_name(h->type));
		return;
	}
	repl_handle(p, s, h, &m, &s->payload, body, len);
}

/*
 * Parse frames out of s->rx.  Returns false when the socket went away or a
 * large body is being received into s->big.
 */
static bool
parse(struct peer_sock *s)
{
	while (s->phase != SP_CLOSING) {
		size_t avail = s->rx_len - s->rx_off;
		const uint8_t *p = s->rx + s->rx_off;
		int ret;

		if (!s->in_body) {
			if (avail < REPL_HDR_LEN)
				return true;
			ret = repl_hdr_decode(p, avail, &s->hdr);
			if (ret < 0) {
				sock_fail(s, REPL_DISC_PROTOCOL, "bad frame header (%s)",
				    ret == -E2BIG ? "oversize frame" : strerror(-ret));
				return false;
			}
			s->in_body = true;
			s->rx_off += REPL_HDR_LEN;
			s->last_rx_ns = now_ns();
			continue;
		}
		if (frame_has_payload(s->hdr.type) && s->hdr.length > frame_fixed_len(s->hdr.type)) {
			size_t fixed = frame_fixed_len(s->hdr.type);
			size_t plen = s->hdr.length - fixed;

			if (avail < fixed)
				return true;
			memcpy(s->fixed, p, fixed);
			s->rx_off += fixed;
			if (bufpool_get(&s->p->d->pool, plen, &s->payload) < 0) {
				sock_fail(s, REPL_DISC_PROTOCOL, "out of memory for a payload");
				return false;
			}
			s->big_len = (uint32_t)plen;
			s->big_got = (uint32_t)MIN(plen, s->rx_len - s->rx_off);
			memcpy(s->payload.p, s->rx + s->rx_off, s->big_got);
			s->rx_off += s->big_got;
			if (s->big_got < s->big_len)
				return false;
			s->in_body = false;
			s->big_len = 0;
			dispatch(s, s->fixed, s->hdr.length);
			bufpool_put(&s->p->d->pool, &s->payload);
			continue;
		}
		if (s->hdr.length > PEER_RX_BUF / 2) {
			/* Large inline body (BITMAP): receive it into its own buffer. */
			s->big = malloc(s->hdr.length);
			if (s->big == NULL) {
				sock_fail(s, REPL_DISC_PROTOCOL, "out of memory for a frame");
				return false;
			}
			s->big_len = s->hdr.length;
			s->big_got = (uint32_t)MIN((size_t)s->big_len, avail);
			memcpy(s->big, p, s->big_got);
			s->rx_off += s->big_got;
			if (s->big_got < s->big_len)
				return false;
			s->in_body = false;
			s->big_len = 0;
			dispatch(s, s->big, s->hdr.length);
			free(s->big);
			s->big = NULL;
			continue;
		}
		if (avail < s->hdr.length)
			return true;
		s->in_body = false;
		s->rx_off += s->hdr.length;
		dispatch(s, p, s->hdr.length);
	}
	return false;
}

static void
sock_rx_done(struct loop_op *op, int res)
{
	struct peer_sock *s = op->data;

	s->rx_busy = false;
	if (s->phase == SP_CLOSING) {
		sock_maybe_free(s);
		return;
	}
	if (res <= 0) {
		sock_fail(s, REPL_DISC_PROTOCOL, "%s", res == 0 ? "connection closed by the peer" :
		    strerror(-res));
		return;
	}
	s->bytes_received += (uint64_t)res;
	s->last_rx_ns = now_ns();
	if (s->big_len > 0) {
		s->big_got += (uint32_t)res;
		if (s->big_got < s->big_len) {
			sock_rx_post(s);
			return;
		}
		s->in_body = false;
		s->big_len = 0;
		if (s->big != NULL) {
			dispatch(s, s->big, s->hdr.length);
			free(s->big);
			s->big = NULL;
		} else {
			dispatch(s, s->fixed, s->hdr.length);
			bufpool_put(&s->p->d->pool, &s->payload);
		}
	} else {
		s->rx_len += (size_t)res;
	}
	if (s->phase == SP_HANDSHAKE && !hs_input(s)) {
		sock_rx_post(s);
		return;
	}
	if (s->phase != SP_CLOSING && parse(s) && s->rx_off > 0) {
		memmove(s->rx, s->rx + s->rx_off, s->rx_len - s->rx_off);
		s->rx_len -= s->rx_off;
		s->rx_off = 0;
	}
	sock_rx_post(s);
}

static void
sock_rx_post(struct peer_sock *s)
{
	if (s->rx_busy || s->phase == SP_CLOSING)
		return;
	/* Between frames: the peer's writes waiting for our disk hold too
	 * much memory; stop reading and let TCP push back on the peer. */
	if (s->big_len == 0 && s == s->p->data && s->p->apply_bytes >= PEER_APPLY_MAX) {
		if (!s->rx_held)
			s->p->apply_holds++;
		s->rx_held = true;
		return;
	}
	s->rx_held = false;
	s->rx_op.cb = sock_rx_done;
	s->rx_op.data = s;
	s->rx_busy = true;
	if (s->big_len > 0) {
		uint8_t *dst = s->big != NULL ? s->big : s->payload.p;

		/* What is still in rx belongs to the big body (parse stopped there). */
		loop_recv(s->p->d->loop, &s->rx_op, s->fd, dst + s->big_got,
		    s->big_len - s->big_got);
		return;
	}
	if (s->rx_off > 0) {
		memmove(s->rx, s->rx + s->rx_off, s->rx_len - s->rx_off);
		s->rx_len -= s->rx_off;
		s->rx_off = 0;
	}
	loop_recv(s->p->d->loop, &s->rx_op, s->fd, s->rx + s->rx_len, PEER_RX_BUF - s->rx_len);
}

void
peer_apply_resume(struct peer *p)
{
	struct peer_sock *s = p->data;

	if (s != NULL && s->rx_held && p->apply_bytes < PEER_APPLY_MAX / 2)
		sock_rx_post(s);
}

/* ---- new sockets -------------------------------------------------------------------- */

static struct peer_sock *
sock_new(struct peer *p, int fd, unsigned kind, bool outgoing)
{
	struct peer_sock *s = calloc(1, sizeof(*s));
	int one = 1;

	if (s == NULL || (s->rx = malloc(PEER_RX_BUF)) == NULL) {
		free(s);
		close(fd);
		return NULL;
	}
	s->p = p;
	s->fd = fd;
	s->kind = kind;
	s->tx_flush.cb = tx_flush;
	s->tx_flush.data = s;
	s->outgoing = outgoing;
	snprintf(s->name, sizeof(s->name), "%s %s %s", kind == REPL_CONN_DATA ? "data" : "meta",
	    outgoing ? "to" : "from", p->d->peer->name);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	{
		/* A partition must not hold a connect for the kernel's two
		 * minutes of SYN retries, nor unacknowledged data forever. */
		int syn = 2;
		unsigned ut = (unsigned)MIN(p->d->conf.timeout_ms * 2, (uint64_t)UINT32_MAX);

		setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &syn, sizeof(syn));
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	}
	s->born_ns = now_ns();
	s->next = p->socks;
	p->socks = s;
	return s;
}

/* How long a connect plus handshake may take: the link timeout, twice. */
static uint64_t
hs_bound_ms(const struct peer *p)
{
	return MAX(p->d->conf.timeout_ms * 2, (uint64_t)1000);
}

/*
 * Close the sockets whose connect or handshake has not finished in time: a
 * peer that accepted and then hangs, or a stranger that connects and says
 * nothing, would otherwise hold the socket (and, outgoing, stop connect_tick
 * from trying again) for ever.
 */
static void
hs_tick(struct loop_timer *t)
{
	struct peer *p = t->data;
	uint64_t now = now_ns(), bound = hs_bound_ms(p) * 1000000ull, next = 0;

	for (struct peer_sock *s = p->socks; s != NULL; s = s->next) {
		uint64_t age = now - s->born_ns;

		if (s->phase != SP_HANDSHAKE)
			continue;
		if (age < bound) {
			if (next == 0 || bound - age < next)
				next = bound - age;
			continue;
		}
		p->hs_timeouts++;
		log_info("peer: %s: %s not finished within %" PRIu64 " ms: closed", s->name,
		    s->connecting ? "connect" : "handshake", hs_bound_ms(p));
		if (s->outgoing)	/* an incoming one may be anyone's (hs_refused) */
			snprintf(p->last_error, sizeof(p->last_error), "%s: %s timed out",
			    s->name, s->connecting ? "connect" : "handshake");
		sock_close(s);
	}
	if (next != 0)
		loop_timer_arm_ns(p->d->loop, t, next + 1000000);
}

static void
hs_watch(struct peer *p)
{
	if (!p->hs_timer.armed)
		loop_timer_arm(p->d->loop, &p->hs_timer, hs_bound_ms(p) + 1);
}

/* Start the handshake: HELLO and challenge go out at once, then read. */
static void
sock_begin(struct peer_sock *s)
{
	struct peer *p = s->p;
	struct repl_hello h;
	uint8_t nonce[REPL_NONCE_LEN];

	my_hello(p, s->kind, &h);
	if (repl_random(nonce, sizeof(nonce)) < 0 ||
	    repl_hs_init(&s->hs, &h, &p->secret, p->d->peer->name, nonce, p->d->epoch) < 0) {
		sock_close(s);
		return;
	}
	hs_flush(s, false);
	sock_rx_post(s);
}

static void
connected(struct loop_op *op, int res)
{
	struct peer_sock *s = op->data;

	s->connecting = false;
	if (s->phase == SP_CLOSING) {
		sock_maybe_free(s);
		return;
	}
	if (res < 0) {
		log_debug("peer: %s: connect failed: %s", s->name, strerror(-res));
		snprintf(s->p->last_error, sizeof(s->p->last_error), "connect to %s: %s",
		    s->p->d->peer->address.text, strerror(-res));
		sock_close(s);
		return;
	}
	sock_begin(s);
}

static bool
have_sock(struct peer *p, unsigned kind, bool outgoing)
{
	for (struct peer_sock *s = p->socks; s != NULL; s = s->next)
		if (s->kind == kind && s->outgoing == outgoing && s->phase != SP_CLOSING)
			return true;
	return false;
}

static void
connect_tick(struct loop_timer *t)
{
	struct peer *p = t->data;
	struct daemon *d = p->d;

	if (!p->want_connect || d->stopping)
		return;
	for (unsigned i = 0; i < 2; i++) {
		unsigned kind = i == 0 ? REPL_CONN_DATA : REPL_CONN_META;
		struct peer_sock *s;
		int fd;

		if ((kind == REPL_CONN_DATA ? p->data : p->meta) != NULL ||
		    have_sock(p, kind, true))
			continue;
		fd = socket(p->peer_addr[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0 || (s = sock_new(p, fd, kind, true)) == NULL)
			continue;
		s->connecting = true;
		s->conn_op.cb = connected;
		s->conn_op.data = s;
		hs_watch(p);
		loop_connect(d->loop, &s->conn_op, fd, &p->peer_addr[i], p->peer_addrlen);
	}
	if (p->data == NULL || p->meta == NULL)
		loop_timer_arm(d->loop, t, MAX((uint64_t)PEER_CONNECT_MS, p->backoff_ms));
}

static void
accepted(struct loop_op *op, int res)
{
	struct listener *ls = op->data;
	struct peer *p = ls->d->link;
	unsigned kind = ls == &p->lis[0] ? REPL_CONN_DATA : REPL_CONN_META;
	struct peer_sock *s;

	if (ls->closed) {
		close(ls->fd);
		return;
	}
	if (res >= 0) {
		if (!p->want_connect) {
			close(res);	/* disconnected by hand: refuse */
		} else if ((s = sock_new(p, res, kind, false)) != NULL) {
			hs_watch(p);
			sock_begin(s);
		}
	} else if (ls->accept_errors++ % 100 == 0) {
		log_errno(LOG_WARNING, res, "peer: accept on %s failed", ls->name);
	}
	loop_accept(ls->d->loop, op, ls->fd);
}

int
peer_start(struct daemon *d)
{
	struct peer *p = calloc(1, sizeof(*p));
	char err[256];
	int ret;

	if (p == NULL)
		return -ENOMEM;
	d->link = p;
	p->d = d;
	if (d->conf.secret_file[0] != '\0') {
		ret = repl_secret_load(d->conf.secret_file, &p->secret, err, sizeof(err));
		if (ret < 0) {
			log_err("%s", err);
			return ret;
		}
	} else {
		log_warn("peer: no secret-file configured: the peer is not authenticated");
	}
	if ((ret = repl_random(&p->nonce, sizeof(p->nonce))) < 0)
		return ret;
	for (unsigned i = 0; i < 2; i++) {
		struct sockaddr_storage ss = d->self->address.ss;
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		struct sockaddr_in *pin = (struct sockaddr_in *)&p->peer_addr[i];
		struct listener *ls = &p->lis[i];

		/* Meta is data port + 1 (same offset for IPv6: port is at the same place). */
		sin->sin_port = htons((uint16_t)(ntohs(sin->sin_port) + i));
		p->peer_addr[i] = d->peer->address.ss;
		pin->sin_port = htons((uint16_t)(ntohs(pin->sin_port) + i));
		p->peer_addrlen = d->peer->address.sslen;
		ret = listen_on(&ss, d->self->address.sslen, -1);
		if (ret < 0) {
			log_errno(LOG_ERR, ret, "peer: cannot listen on %s (%s port)",
			    d->self->address.text, i == 0 ? "data" : "meta");
			return ret;
		}
		ls->d = d;
		ls->fd = ret;
		snprintf(ls->name, sizeof(ls->name), "%.120s+%u", d->self->address.text, i);
		p->lis_op[i].cb = accepted;
		p->lis_op[i].data = ls;
		loop_accept(d->loop, &p->lis_op[i], ls->fd);
	}
	log_info("peer: listening on %s (data) and port+1 (meta); peer %s at %s",
	    d->self->address.text, d->peer->name, d->peer->address.text);
	p->want_connect = true;
	p->connect_timer.cb = connect_tick;
	p->connect_timer.data = p;
	p->hs_timer.cb = hs_tick;
	p->hs_timer.data = p;
	loop_timer_arm(d->loop, &p->connect_timer, 0);
	return 0;
}

void
peer_stop(struct daemon *d)
{
	struct peer *p = d->link;

	if (p == NULL)
		return;
	p->want_connect = false;
	loop_timer_cancel(d->loop, &p->connect_timer);
	loop_timer_cancel(d->loop, &p->hs_timer);
	loop_timer_cancel(d->loop, &p->up_delay);
	peer_link_down(p, REPL_DISC_SHUTDOWN, "daemon shutting down");
	for (struct peer_sock *s = p->socks, *next; s != NULL; s = next) {
		next = s->next;
		sock_close(s);
	}
	for (unsigned i = 0; i < 2; i++) {
		p->lis[i].closed = true;
		shutdown(p->lis[i].fd, SHUT_RDWR);
	}
}

void
peer_connect_cmd(struct daemon *d, bool discard_my_data)
{
	struct peer *p = d->link;

	p->discard_my_data = discard_my_data;
	if (p->want_connect && p->rs != RS_OFF)
		return;
	p->want_connect = true;
	state_set(d, "connect", -1, -1, CONN_CONNECTING, -1, "blkmirrorctl connect");
	loop_timer_arm(d->loop, &p->connect_timer, 0);
}

void
peer_disconnect_cmd(struct daemon *d)
{
	struct peer *p = d->link;

	p->want_connect = false;
	loop_timer_cancel(d->loop, &p->connect_timer);
	peer_link_down(p, REPL_DISC_ADMIN, "disconnected by blkmirrorctl");
	for (struct peer_sock *s = p->socks, *next; s != NULL; s = next) {
		next = s->next;
		sock_close(s);
	}
	state_set(d, "disconnect", -1, -1, CONN_STANDALONE, RS_OFF, "blkmirrorctl disconnect");
}
