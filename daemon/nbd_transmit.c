/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD transmission phase: decode requests from the receive buffer, validate
 * each before any side effect (lib/nbd_codec.c), hand it to the volume, and
 * send replies in batches, one sendmsg for as many as are ready.
 *
 * Receive contract: headers and small payloads are parsed out of c->rx;
 * the rest of a WRITE payload that did not fit is received straight into the
 * request's buffer (c->rx_req).  A rejected WRITE still has its payload read
 * and dropped (c->drain) so the stream stays in sync.
 *
 * Receive ahead: after WRITEs of length L, the next receive is a recvmsg
 * whose vector guesses that more of them follow:
 *
 *   [rest of header 0][payload 0: pool buffer, L][header 1: rx + 28]
 *   [payload 1: pool buffer, L] ... [tail: rx + 28 * n, whatever follows]
 *
 * Headers land one after the other at the start of rx, payloads in the
 * I/O buffers the requests then use: no copy.  When the header in front of
 * a slot turns out not to be a valid WRITE of length L (a READ, another
 * length, a rejected request), the bytes after it are put back in stream
 * order into rx ("unwind", one copy, as without receive ahead) and parsing
 * goes on as usual.  The vector never holds more stream bytes than rx can
 * take after header 0, so the unwind always fits.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "log.h"
#include "nbd.h"
#include "util.h"

static struct nbd_req *req_free_list;	/* recycled request structs
					 * (d->req_cached of them) */
static uint8_t unwind_buf[NBD_RX_BUF];	/* scratch for spec_unwind() */

/*
 * Memory limits.  A READ's buffer lives until its reply is sent, so a
 * client that pipelines large READs and never reads the replies would make
 * us hold every one of them.  What clients can make the daemon hold is
 * bounded three ways:
 *
 *   NBD_MAX_INFLIGHT       requests per connection;
 *   NBD_CONN_PAYLOAD_MAX   READ/WRITE buffer bytes per connection;
 *   NBD_FALLBACK_MAX       buffer bytes allocated outside the pool, all
 *                          NBD connections together (the pool is bounded
 *                          by itself).
 *
 * Reaching one of the first two stops parsing the connection's input at
 * the next header (NBD_STALL_LIMIT) until replies are sent (tx_done).
 * Reaching the third makes the request wait (NBD_STALL_MEMORY) until an NBD
 * request frees such a buffer (mem_wake) instead of failing it with ENOMEM:
 * the kernel client turns an error into a failed I/O for the filesystem,
 * while waiting is only slower.
 *
 * Clients that stopped reading may hold all of the pool (small requests
 * take larger classes only while those are plentiful, bufpool.c) and all
 * of NBD_FALLBACK_MAX (four or more of them, each held to
 * NBD_CONN_PAYLOAD_MAX).  That must not stop everybody else:
 *   - a connection that holds no buffer may allocate past NBD_FALLBACK_MAX,
 *     up to NBD_FALLBACK_RESERVE more, for a request of at most
 *     NBD_RESERVE_REQ_MAX bytes: a client with one such request at a time
 *     is served at once (64 such clients hoarding 1 MiB each, or 16384
 *     hoarding 4 KiB, would fill it: then the next point);
 *   - while any request waits for memory, a send that moves no byte for
 *     NBD_SEND_STUCK_S (a client that reads nothing, also one closing
 *     after NBD_CMD_DISC), or a WRITE payload that gets none (a client that
 *     sent a header and stopped), gets its connection shut down
 *     (stuck_check): its buffers are freed as its send or receive fails.
 * Replication buffers (peer.c, resync.c) are bounded by their own windows
 * and do not count here.
 */
static uint64_t fallback_bytes;		/* NBD buffers outside the pool */
static unsigned mem_waiters;		/* NBD_STALL_MEMORY stalls since the
					 * last mem_wake (a hint: may count
					 * connections gone since) */
static struct loop_timer mem_timer;	/* runs mem_wake after a release */
static struct loop_timer stuck_timer;	/* runs stuck_check while requests
					 * wait for memory */

static void mem_wake(struct loop_timer *t);

static struct nbd_req *
req_alloc(struct nbd_conn *c)
{
	struct nbd_req *q = req_free_list;

	if (q != NULL) {
		req_free_list = q->next;
		c->d->req_cached--;
	} else if ((q = malloc(sizeof(*q))) == NULL)
		return NULL;
	memset(q, 0, offsetof(struct nbd_req, hdr));
	q->c = c;
	q->vr.owner = q;
	q->vr.d = c->d;
	c->inflight++;
	c->requests++;
	c->d->client_inflight++;
	return q;
}

/* The reply was sent (or dropped): release everything the request held. */
static void
req_release(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;

	c->payload_bytes -= q->charged;
	if (q->fallback > 0) {
		fallback_bytes -= q->fallback;
		if (mem_waiters > 0 && !mem_timer.armed) {
			/* From the loop, not from inside this connection's
			 * callbacks: the waiters parse again. */
			mem_timer.cb = mem_wake;
			mem_timer.data = c->d;
			loop_timer_arm(c->d->loop, &mem_timer, 0);
		}
	}
	bufpool_put(&c->d->pool, &q->data);
	/* Keep enough for the usual load; a burst (hundreds of connections
	 * with requests in flight) is given back. */
	if (c->d->req_cached < NBD_REQ_CACHE_MAX) {
		q->next = req_free_list;
		req_free_list = q;
		c->d->req_cached++;
	} else {
		free(q);
	}
	c->inflight--;
	c->d->client_inflight--;
}

/* Map a negative errno from the disk to the NBD error on the wire. */
static uint32_t
errno_to_nbd(int err)
{
	switch (-err) {
	case 0:			return 0;
	case EPERM: case EROFS:	return NBD_EPERM;
	case ENOSPC: case EDQUOT: return NBD_ENOSPC;
	case EINVAL:		return NBD_EINVAL;
	case ENOMEM:		return NBD_ENOMEM;
	case EOVERFLOW:		return NBD_EOVERFLOW;
	case ENOTSUP:		return NBD_ENOTSUP;
	case ESHUTDOWN:		return NBD_ESHUTDOWN;
	default:		return NBD_EIO;
	}
}

/* ---- replies --------------------------------------------------------------- */

/* Encode q's reply header for its result; data_len is set for READ. */
static void
reply_encode(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;
	uint8_t *h = q->hdr;
	bool is_read = q->r.type == NBD_CMD_READ;
	bool is_bs = q->r.type == NBD_CMD_BLOCK_STATUS;

	if (q->error != 0 || !(is_read || is_bs))
		q->data_len = 0;
	if (!c->lim.structured) {
		q->hdr_len = (uint8_t)nbd_simple_reply_encode(h, q->error, q->r.cookie);
		return;
	}
	if (q->error != 0) {
		size_t n = nbd_structured_hdr_encode(h, NBD_REPLY_FLAG_DONE,
		    NBD_REPLY_TYPE_ERROR, q->r.cookie, 6);

		put_be32(h + n, q->error);
		put_be16(h + n + 4, 0);		/* no message */
		q->hdr_len = (uint8_t)(n + 6);
	} else if (is_read && q->data_len > 0) {
		size_t n = nbd_structured_hdr_encode(h, NBD_REPLY_FLAG_DONE,
		    NBD_REPLY_TYPE_OFFSET_DATA, q->r.cookie, 8 + q->data_len);

		put_be64(h + n, q->r.offset);
		q->hdr_len = (uint8_t)(n + 8);
	} else if (is_bs) {
		size_t n = nbd_structured_hdr_encode(h, NBD_REPLY_FLAG_DONE,
		    NBD_REPLY_TYPE_BLOCK_STATUS, q->r.cookie, 4 + q->data_len);

		put_be32(h + n, NBD_META_ALLOCATION_ID);
		q->hdr_len = (uint8_t)(n + 4);
	} else {
		q->hdr_len = (uint8_t)nbd_structured_hdr_encode(h, NBD_REPLY_FLAG_DONE,
		    NBD_REPLY_TYPE_NONE, q->r.cookie, 0);
	}
}

/* Queue q's reply and start sending if idle. */
static void
reply(struct nbd_req *q, uint32_t error)
{
	struct nbd_conn *c = q->c;

	q->error = error;
	if (error != 0)
		c->d->ops.errors++;
	reply_encode(q);
	q->next = NULL;
	if (c->txq_tail != NULL)
		c->txq_tail->next = q;
	else
		c->txq_head = q;
	c->txq_tail = q;
	/* One sendmsg for all the replies of this loop turn. */
	if (!c->tx_busy)
		loop_flush_queue(c->d->loop, &c->tx_flush);
}

void
nbd_tx_flush(struct loop_flush *f)
{
	struct nbd_conn *c = f->data;

	nbd_tx_kick(c);
	nbd_conn_maybe_free(c);	/* last use of c */
}

static void resume(struct nbd_conn *c);

static void
tx_done(struct loop_op *op, int res)
{
	struct nbd_conn *c = op->data;
	struct nbd_req *q = c->tx_batch, *next;

	c->tx_busy = false;
	c->tx_batch = NULL;
	if (res < 0 && !c->dead) {
		log_notice("nbd: %s: sending replies failed: %s", c->peer, strerror(-res));
		c->dead = true;
	}
	for (; q != NULL; q = next) {
		next = q->next;
		req_release(q);
	}
	if (c->dead && c->state != NC_CLOSING)
		nbd_conn_close(c, "connection lost");
	nbd_tx_kick(c);
	/* Requests were released: parsing or reading may go on. */
	if (c->stall != NBD_STALL_NONE)
		resume(c);
	else
		nbd_conn_rx_post(c);
	nbd_conn_maybe_free(c);	/* last use of c */
}

/* Send as many queued replies as fit in one sendmsg. */
void
nbd_tx_kick(struct nbd_conn *c)
{
	struct nbd_req *q, **tail = &c->tx_batch;
	int n = 0, k = 0;

	if (c->tx_busy || c->txq_head == NULL)
		return;
	if (c->dead) {
		/* Nobody to tell: drop the replies. */
		while ((q = c->txq_head) != NULL) {
			c->txq_head = q->next;
			req_release(q);
		}
		c->txq_tail = NULL;
		return;		/* the caller frees c if this was its last request */
	}
	while ((q = c->txq_head) != NULL && n < NBD_TX_BATCH) {
		c->txq_head = q->next;
		c->iov[k].iov_base = q->hdr;
		c->iov[k++].iov_len = q->hdr_len;
		if (q->data_len > 0) {
			c->iov[k].iov_base = q->data.p;
			c->iov[k++].iov_len = q->data_len;
		}
		q->next = NULL;
		*tail = q;
		tail = &q->next;
		n++;
	}
	if (c->txq_head == NULL)
		c->txq_tail = NULL;
	c->tx_busy = true;
	c->tx_progress_ns = now_ns();
	c->tx_outq = -1;
	c->tx_op.cb = tx_done;
	c->tx_op.data = c;
	loop_sendmsg(c->d->loop, &c->tx_op, c->fd, c->iov, k);
}

/* ---- requests ---------------------------------------------------------------- */

static void
vol_done(struct vol_req *vr, int res)
{
	struct nbd_req *q = vr->owner;

	/* TRIM is advisory: an unsupported discard is fine (if the peer
	 * discarded the range, volume.c marked it out of sync). */
	if (res == -EOPNOTSUPP && q->r.type == NBD_CMD_TRIM)
		res = 0;
	struct nbd_conn *c = q->c;

	if (res < 0)
		log_debug("nbd: %s: %s offset %" PRIu64 " length %" PRIu32 ": %s",
		    c->peer, nbd_cmd_name(q->r.type), q->r.offset, q->r.length,
		    strerror(-res));
	reply(q, errno_to_nbd(res));
	/* Last use of c here: a dead connection may now be freed. */
	nbd_conn_maybe_free(c);
}

/* Hand a validated data request to the volume. */
static void
submit(struct nbd_req *q, uint8_t opcode, uint32_t flags)
{
	struct vol_req *vr = &q->vr;

	vr->io.opcode = opcode;
	vr->io.flags = flags;
	vr->io.offset = q->r.offset;
	vr->io.len = q->r.length;
	vr->io.buf = q->data.p;
	vr->io.buf_index = q->data.p != NULL ? q->data.index : -1;
	vr->done = vol_done;
	vr->is_write = opcode == IO_WRITE || opcode == IO_TRIM || opcode == IO_WRITE_ZEROES;
	vol_submit(q->c->d, vr);
}

/*
 * Where the data run containing or following pos starts: pos itself when
 * pos is in data, the start of the next data, or end when only a hole
 * follows (SEEK_DATA's ENXIO).  Any other lseek failure (a filesystem
 * fault, an unsupported file) reports pos as data: calling data a hole
 * would make copy tools skip it, calling a hole data costs only a read.
 */
static uint64_t
next_data(struct nbd_conn *c, uint64_t pos, uint64_t end)
{
	static uint64_t failures;	/* for the log's rate limit */
	int64_t data = ioeng_seek(c->d->eng, pos, SEEK_DATA);

	if (data >= 0)
		return MIN((uint64_t)data, end);
	if (data == -ENXIO)
		return end;
	if (failures++ % 1000 == 0)
		log_warn("nbd: %s: BLOCK_STATUS: lseek(SEEK_DATA) at %" PRIu64
		    " failed: %s; reported as data (%" PRIu64 " such failures)",
		    c->peer, pos, strerror((int)-data), failures);
	return pos;
}

/* The end of the data run starting at pos (SEEK_HOLE; on failure: end). */
static uint64_t
next_hole(struct nbd_conn *c, uint64_t pos, uint64_t end)
{
	int64_t hole = ioeng_seek(c->d->eng, pos, SEEK_HOLE);

	return hole < 0 ? end : MIN((uint64_t)hole, end);
}

/*
 * BLOCK_STATUS for base:allocation: holes and data from SEEK_HOLE/SEEK_DATA
 * on regular files; block devices report everything as data.  Validation
 * guarantees length > 0, so the reply carries at least one descriptor.
 */
static void
block_status(struct nbd_req *q)
{
	struct daemon *d = q->c->d;
	uint64_t pos = q->r.offset, end = q->r.offset + q->r.length;
	unsigned max = (q->r.flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_BS_DESCRIPTORS;
	unsigned n = 0;
	uint8_t *p;
	/* A disk that is not uptodate (a promoted sync target) may have holes
	 * where the peer has data: report everything as data then. */
	bool all_data = ioeng_is_blockdev(d->eng) || d->disk != DISK_UPTODATE;

	if (bufpool_get(&d->pool, max * 8, &q->data) < 0) {
		reply(q, NBD_ENOMEM);
		return;
	}
	p = q->data.p;
	while (pos < end && n < max) {
		uint64_t data = all_data ? pos : next_data(q->c, pos, end);
		uint64_t len;
		uint32_t flags;

		if (data > pos) {
			/* A hole up to the next data (or the end). */
			len = data - pos;
			flags = NBD_STATE_HOLE | NBD_STATE_ZERO;
		} else {
			len = (all_data ? end : next_hole(q->c, pos, end)) - pos;
			flags = 0;
		}
		/* Keep extents aligned to the block size (filesystem holes
		 * are page aligned; a tail past the export end is cut). */
		if (len == 0 && n > 0)
			break;
		if (len == 0) {
			/* The extent map changed between the two lseeks (a
			 * TRIM meanwhile): one descriptor is a must, say data. */
			len = end - pos;
			flags = 0;
		}
		if (len > UINT32_MAX - d->block_size)
			len = (UINT32_MAX / d->block_size) * d->block_size;
		put_be32(p + n * 8, (uint32_t)len);
		put_be32(p + n * 8 + 4, flags);
		n++;
		pos += len;
	}
	q->data_len = n * 8;
	d->ops.block_status++;
	reply(q, 0);
}

/* Start a request whose header (and WRITE payload) is complete. */
static void
dispatch(struct nbd_req *q)
{
	struct daemon *d = q->c->d;
	uint32_t fua = (q->r.flags & NBD_CMD_FLAG_FUA) ? IO_F_FUA : 0, zf;

	if (d->role != ROLE_PRIMARY) {
		/* Demoted (e.g. stepped down for a higher epoch) with this
		 * client still connected: no I/O may reach the disk. */
		static uint64_t refused;

		if (refused++ % 1000 == 0)
			log_warn("nbd: %s: %s refused: this node is no longer primary",
			    q->c->peer, nbd_cmd_name(q->r.type));
		reply(q, NBD_EPERM);
		return;
	}

	switch (q->r.type) {
	case NBD_CMD_READ:
		d->ops.reads++;
		d->ops.read_bytes += q->r.length;
		q->data_len = q->r.length;
		if (q->r.length == 0) {
			reply(q, 0);
			return;
		}
		submit(q, IO_READ, 0);
		return;
	case NBD_CMD_WRITE:
		d->ops.writes++;
		d->ops.write_bytes += q->r.length;
		if (q->r.length == 0) {
			reply(q, 0);
			return;
		}
		submit(q, IO_WRITE, fua);
		return;
	case NBD_CMD_FLUSH:
		d->ops.flushes++;
		submit(q, IO_FLUSH, 0);
		return;
	case NBD_CMD_TRIM:
		d->ops.trims++;
		d->ops.trim_bytes += q->r.length;
		if (q->r.length == 0) {
			reply(q, 0);
			return;
		}
		submit(q, IO_TRIM, fua);
		return;
	case NBD_CMD_WRITE_ZEROES:
		d->ops.zeroes++;
		d->ops.zero_bytes += q->r.length;
		zf = fua | ((q->r.flags & NBD_CMD_FLAG_NO_HOLE) ? IO_F_NO_HOLE : 0) |
		    ((q->r.flags & NBD_CMD_FLAG_FAST_ZERO) ? IO_F_FAST_ZERO : 0);
		/* Refused before anything is submitted or shipped: the peer,
		 * which zeroes without FAST_ZERO, must not zero a range that
		 * stays unchanged here. */
		if (!ioeng_can_fast_zero(d->eng, zf)) {
			reply(q, NBD_ENOTSUP);
			return;
		}
		if (q->r.length == 0) {
			reply(q, 0);
			return;
		}
		submit(q, IO_WRITE_ZEROES, zf);
		return;
	case NBD_CMD_CACHE:
		/* Reads are served from the backing device directly (O_DIRECT):
		 * there is no cache of ours to fill. */
		d->ops.caches++;
		reply(q, 0);
		return;
	case NBD_CMD_BLOCK_STATUS:
		block_status(q);
		return;
	}
	reply(q, NBD_EINVAL);
}

/* ---- receive ahead ------------------------------------------------------ */

void
nbd_spec_release(struct nbd_conn *c)
{
	for (unsigned i = 0; i < c->n_spec; i++)
		bufpool_put(&c->d->pool, &c->spec[i].b);
	c->n_spec = c->spec_next = 0;
}

/* A pool buffer for slot s, unless that would eat into the requests' share
 * (fallback allocations or a nearly empty class).  0 or -ENOMEM. */
static int
spec_buf_get(struct bufpool *bp, uint32_t len, struct nbd_spec *s)
{
	if (bufpool_get(bp, len, &s->b) < 0)
		return -ENOMEM;
	if (s->b.cls < 0 || bp->cls[s->b.cls].nfree < NBD_SPEC_RESERVE) {
		bufpool_put(bp, &s->b);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Build the vector in the comment at the top: as many slots as the last
 * receive brought WRITEs, doubled (at least one), as long as the stream
 * bytes after header 0 fit in rx; the first slot alone may be shorter than
 * L (large WRITEs: the rest then arrives through c->rx_req).
 */
bool
nbd_spec_post(struct nbd_conn *c)
{
	size_t k = c->rx_len, left = NBD_RX_BUF - NBD_REQUEST_LEN;
	uint32_t len = c->last_write_len;
	unsigned want = MIN(2 * c->batch_writes + 1, NBD_SPEC_MAX), n = 0, v = 0;

	nbd_spec_release(c);
	c->batch_writes = 0;
	if (len == 0 || c->drain > 0 || k >= NBD_REQUEST_LEN)
		return false;
	c->rx_iov[v++] = (struct iovec){ c->rx + k, NBD_REQUEST_LEN - k };
	while (n < want && left > 0) {
		struct nbd_spec *s = &c->spec[n];

		if (n > 0 && left < NBD_REQUEST_LEN + (size_t)len)
			break;
		if (spec_buf_get(&c->d->pool, len, s) < 0)
			break;
		if (n > 0) {
			c->rx_iov[v++] = (struct iovec){ c->rx + n * NBD_REQUEST_LEN,
			    NBD_REQUEST_LEN };
			left -= NBD_REQUEST_LEN;
		}
		s->cap = (uint32_t)MIN((size_t)len, left);
		s->got = 0;
		s->hdr_off = n * NBD_REQUEST_LEN;
		c->rx_iov[v++] = (struct iovec){ s->b.p, s->cap };
		left -= s->cap;
		n++;
	}
	if (n == 0)
		return false;
	if (left > 0)
		c->rx_iov[v++] = (struct iovec){ c->rx + n * NBD_REQUEST_LEN, left };
	c->n_spec = n;
	c->spec_len = len;
	loop_recvmsg(c->d->loop, &c->rx_op, c->fd, c->rx_iov, (int)v);
	return true;
}

void
nbd_spec_received(struct nbd_conn *c, size_t res)
{
	size_t seg = MIN(res, NBD_REQUEST_LEN - c->rx_len);

	/* Segments fill in vector order; a short one ends the data. */
	c->rx_len += seg;
	res -= seg;
	for (unsigned i = 0; i < c->n_spec && res > 0; i++) {
		struct nbd_spec *s = &c->spec[i];

		if (i > 0) {
			seg = MIN(res, (size_t)NBD_REQUEST_LEN);
			c->rx_len += seg;
			res -= seg;
		}
		s->got = (uint32_t)MIN(res, (size_t)s->cap);
		res -= s->got;
	}
	c->rx_len += res;	/* the tail, at rx + 28 * n_spec */
}

/*
 * Put the stream bytes after slot c->spec_next's header, which is complete,
 * back into rx in order, right behind it, and release the slots.
 */
static void
spec_restream(struct nbd_conn *c)
{
	size_t base = c->spec[c->spec_next].hdr_off + NBD_REQUEST_LEN, n = 0;
	size_t tail = (size_t)c->n_spec * NBD_REQUEST_LEN;

	for (unsigned i = c->spec_next; i < c->n_spec; i++) {
		struct nbd_spec *s = &c->spec[i];

		memcpy(unwind_buf + n, s->b.p, s->got);
		n += s->got;
		if (i + 1 < c->n_spec && c->spec[i + 1].hdr_off < c->rx_len) {
			size_t h = c->spec[i + 1].hdr_off;
			size_t m = MIN((size_t)NBD_REQUEST_LEN, c->rx_len - h);

			memcpy(unwind_buf + n, c->rx + h, m);
			n += m;
		}
	}
	if (c->rx_len > tail) {
		memcpy(unwind_buf + n, c->rx + tail, c->rx_len - tail);
		n += c->rx_len - tail;
	}
	memcpy(c->rx + base, unwind_buf, n);
	c->rx_len = base + n;
	nbd_spec_release(c);
}

/*
 * The header at c->rx_off (slot c->spec_next's) is not the WRITE its slot
 * expected: put the stream bytes after it back into rx, and stop receiving
 * ahead until the next WRITE.
 */
static void
spec_unwind(struct nbd_conn *c)
{
	spec_restream(c);
	c->last_write_len = 0;
	c->spec_unwinds++;
}

/*
 * At slot c->spec_next's header, decoded into r: the slot if r is the
 * valid WRITE it expects (the caller adopts its buffer), else NULL after
 * unwinding.  NULL too when c->rx_off is not at a slot's header.
 */
static struct nbd_spec *
spec_match(struct nbd_conn *c, const struct nbd_request *r)
{
	struct nbd_spec *s = &c->spec[c->spec_next];

	if (c->spec_next >= c->n_spec || c->rx_off != s->hdr_off)
		return NULL;
	if (r->type == NBD_CMD_WRITE && r->length == c->spec_len &&
	    nbd_request_validate(r, &c->lim) == 0) {
		c->spec_next++;
		return s;
	}
	spec_unwind(c);
	return NULL;
}

/* WRITE q takes slot s's buffer and what arrived in it. */
static bool
spec_adopt(struct nbd_conn *c, struct nbd_req *q, struct nbd_spec *s)
{
	q->data = s->b;
	s->b.p = NULL;
	q->charged = q->r.length;
	c->payload_bytes += q->charged;
	c->spec_hits++;
	q->got = s->got;
	if (q->got == q->r.length) {
		dispatch(q);
		return true;
	}
	c->rx_req = q;		/* the rest comes straight into q->data */
	c->rx_progress_ns = now_ns();
	return false;
}

/*
 * Count and log a request refused by validation.  A client can send
 * thousands of bad headers in one receive: the first NBD_REJECT_LOG_FIRST
 * of a connection are logged, then one in NBD_REJECT_LOG_EVERY, with the
 * count; the close line gives the total.
 */
static void
log_rejected(struct nbd_conn *c, const struct nbd_request *r, uint32_t err)
{
	uint64_t n = ++c->rejected;
	char note[96] = "";

	c->d->ops.rejected++;
	if (n > NBD_REJECT_LOG_FIRST && n % NBD_REJECT_LOG_EVERY != 0)
		return;
	if (n == NBD_REJECT_LOG_FIRST)
		snprintf(note, sizeof(note), " (%" PRIu64 " rejected on this connection;"
		    " from now on one line per %u)", n, NBD_REJECT_LOG_EVERY);
	else if (n > NBD_REJECT_LOG_FIRST)
		snprintf(note, sizeof(note), " (%" PRIu64 " rejected on this connection)", n);
	log_notice("nbd: %s: rejected %s offset %" PRIu64 " length %" PRIu32
	    " flags 0x%x: error %" PRIu32 "%s", c->peer, nbd_cmd_name(r->type),
	    r->offset, r->length, r->flags, err, note);
}

/* ---- limits: stalls and resuming ------------------------------------------ */

static void stuck_check(struct loop_timer *t);

/* Stop parsing at the header at c->rx_off (see enum nbd_stall); false, for
 * take_request()'s caller. */
static bool
stall(struct nbd_conn *c, enum nbd_stall why)
{
	c->stall = why;
	if (why == NBD_STALL_MEMORY) {
		mem_waiters++;
		if (!stuck_timer.armed) {
			stuck_timer.cb = stuck_check;
			stuck_timer.data = c->d;
			loop_timer_arm(c->d->loop, &stuck_timer, NBD_STUCK_CHECK_MS);
		}
	}
	return false;
}

/* The no-progress limit of a send, in ns (BLKMIRROR_TEST_SEND_STUCK_S
 * lowers it for tests). */
static uint64_t
stuck_limit_ns(void)
{
	static uint64_t s;

	if (s == 0) {
		s = test_setting("BLKMIRROR_TEST_SEND_STUCK_S", NBD_SEND_STUCK_S,
		    "NBD sends stuck that long are cut while others wait for memory");
		if (s == 0)
			s = NBD_SEND_STUCK_S;
	}
	return s * 1000000000ull;
}

/* Whether c's send in flight moved no byte for the limit; samples the bytes
 * its socket still holds (SIOCOUTQ: a change is progress). */
static bool
send_stuck(struct nbd_conn *c, uint64_t now)
{
	int outq;

	if (!c->tx_busy || c->dead || c->state == NC_HANDSHAKE)
		return false;
	if (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq != c->tx_outq) {
		c->tx_outq = outq;
		c->tx_progress_ns = now;
	}
	return now - c->tx_progress_ns >= stuck_limit_ns();
}

/* Whether the WRITE payload c receives (its buffer held) got no byte for
 * the limit: a client that sent a header and stopped, or whose host died. */
static bool
payload_stuck(const struct nbd_conn *c, uint64_t now)
{
	return c->rx_req != NULL && !c->dead && c->state == NC_TRANSMIT &&
	    now - c->rx_progress_ns >= stuck_limit_ns();
}

/*
 * Every NBD_STUCK_CHECK_MS while some connection waits for memory: shut
 * down the connections whose send is stuck, or whose WRITE payload stopped
 * coming (their requests' buffers are released as the send or the receive
 * fails).  Stops once nobody waits.
 */
static void
stuck_check(struct loop_timer *t)
{
	struct daemon *d = t->data;
	struct nbd_conn *c, *next;
	uint64_t now = now_ns();
	bool waiting = false;

	for (c = d->conns; c != NULL; c = c->next)
		waiting |= c->state == NC_TRANSMIT && c->stall == NBD_STALL_MEMORY;
	if (!waiting)
		return;
	for (c = d->conns; c != NULL; c = next) {
		next = c->next;		/* nothing is freed here: a send or
					 * receive is busy */
		if (payload_stuck(c, now)) {
			log_notice("nbd: %s: no byte of a WRITE payload (%" PRIu32 " of %" PRIu32
			    " bytes received) for %" PRIu64 " s while other requests wait for "
			    "memory; closing", c->peer, c->rx_req->got, c->rx_req->r.length,
			    (uint64_t)(stuck_limit_ns() / 1000000000ull));
			c->dead = true;
			nbd_conn_close(c, "WRITE payload stalled");
			continue;
		}
		if (!send_stuck(c, now))
			continue;
		log_notice("nbd: %s: replies not read for %" PRIu64 " s while other "
		    "requests wait for memory; closing", c->peer,
		    (uint64_t)(stuck_limit_ns() / 1000000000ull));
		c->dead = true;
		nbd_conn_close(c, "client stopped reading its replies");
	}
	loop_timer_arm(d->loop, t, NBD_STUCK_CHECK_MS);
}

/* Parse again after a stall, if c still serves requests. */
static void
resume(struct nbd_conn *c)
{
	if (c->stall == NBD_STALL_NONE || c->state != NC_TRANSMIT || c->rx_busy)
		return;
	nbd_transmit_input(c);
}

/* Some NBD buffer outside the pool was freed: every connection waiting for
 * one tries again (those that still find no room stall again). */
static void
mem_wake(struct loop_timer *t)
{
	struct daemon *d = t->data;
	struct nbd_conn *c, *next;

	mem_waiters = 0;
	for (c = d->conns; c != NULL; c = next) {
		next = c->next;		/* resume() frees nothing but c */
		if (c->stall != NBD_STALL_MEMORY)
			continue;
		resume(c);
		nbd_conn_maybe_free(c);
	}
}

/* Whether r must wait for requests of c to be answered first: too many in
 * flight, or its buffer would take c past NBD_CONN_PAYLOAD_MAX (a request
 * alone always goes, as the spec wants 32 MiB to work). */
static bool
over_limits(const struct nbd_conn *c, const struct nbd_request *r)
{
	if (c->inflight >= NBD_MAX_INFLIGHT)
		return true;
	if (r->type != NBD_CMD_READ && r->type != NBD_CMD_WRITE)
		return false;
	return c->payload_bytes > 0 &&
	    c->payload_bytes + r->length > NBD_CONN_PAYLOAD_MAX;
}

/*
 * The buffer of a valid READ or WRITE of len > 0 bytes on c: from the
 * pool, else allocated while all NBD allocations stay within
 * NBD_FALLBACK_MAX, or NBD_FALLBACK_RESERVE more when c holds no buffer
 * (one alone always goes).  0 (*fallback: the bytes counted against that
 * limit), -EAGAIN (wait for memory) or -ENOMEM.
 */
static int
payload_buf_get(struct nbd_conn *c, uint32_t len, struct buf *b, uint32_t *fallback)
{
	struct daemon *d = c->d;
	size_t size = bufpool_fallback_size(len);
	uint64_t limit = NBD_FALLBACK_MAX;

	*fallback = 0;
	if (bufpool_get_pooled(&d->pool, len, b) == 0)
		return 0;
	if (c->payload_bytes == 0 && len <= NBD_RESERVE_REQ_MAX)
		limit += NBD_FALLBACK_RESERVE;
	if (fallback_bytes > 0 && fallback_bytes + size > limit)
		return -EAGAIN;
	if (bufpool_get(&d->pool, len, b) < 0)
		return -ENOMEM;
	if (b->cls < 0) {
		*fallback = (uint32_t)size;
		fallback_bytes += size;
	}
	return 0;
}

/* ---- taking requests ------------------------------------------------------- */

/*
 * Start valid request q, its buffer (if any) in place: dispatch it, or for
 * a WRITE take the payload bytes already in rx and, if more are to come,
 * receive them straight into q->data (false: parsing waits for them).
 */
static bool
start_request(struct nbd_conn *c, struct nbd_req *q)
{
	size_t avail;

	if (q->r.type != NBD_CMD_WRITE || q->r.length == 0) {
		dispatch(q);
		return true;
	}
	c->last_write_len = q->r.length;	/* receive ahead for the next ones */
	c->batch_writes++;
	avail = MIN(c->rx_len - c->rx_off, (size_t)q->r.length);
	memcpy(q->data.p, c->rx + c->rx_off, avail);
	c->rx_off += avail;
	q->got = (uint32_t)avail;
	if (q->got == q->r.length) {
		dispatch(q);
		return true;
	}
	c->rx_req = q;
	c->rx_progress_ns = now_ns();
	return false;
}

/*
 * Take one request header at c->rx + c->rx_off.  Returns false when the
 * connection must stop parsing (closed, waiting for a payload, or stalled:
 * then nothing of the header is consumed yet).
 */
static bool
take_request(struct nbd_conn *c)
{
	struct nbd_request r;
	struct nbd_spec *s;
	struct nbd_req *q;
	struct buf b = { .p = NULL, .index = -1, .cls = -1 };
	uint32_t err, fallback = 0;

	if (nbd_request_decode(c->rx + c->rx_off, c->rx_len - c->rx_off, &r) < 0) {
		log_notice("nbd: %s: bad request magic 0x%08" PRIx32 "; closing",
		    c->peer, get_be32(c->rx + c->rx_off));
		c->dead = true;
		nbd_conn_close(c, "protocol error");
		return false;
	}
	if (over_limits(c, &r))
		return stall(c, NBD_STALL_LIMIT);
	s = spec_match(c, &r);
	err = s != NULL ? 0 : (uint32_t)nbd_request_validate(&r, &c->lim);
	if (err == 0 && s == NULL && r.length > 0 &&
	    (r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE)) {
		int ret = payload_buf_get(c, r.length, &b, &fallback);

		if (ret == -EAGAIN)
			return stall(c, NBD_STALL_MEMORY);
		if (ret < 0)
			err = NBD_ENOMEM;
	}
	c->rx_off += NBD_REQUEST_LEN;
	if (r.type == NBD_CMD_DISC) {
		nbd_conn_close(c, "client disconnected");
		return false;
	}
	if (r.type == NBD_CMD_WRITE && r.length > NBD_MAX_PAYLOAD) {
		log_notice("nbd: %s: WRITE payload of %" PRIu32 " bytes exceeds the %u MiB maximum; closing",
		    c->peer, r.length, NBD_MAX_PAYLOAD >> 20);
		c->dead = true;
		nbd_conn_close(c, "oversize payload");
		return false;
	}
	if ((q = req_alloc(c)) == NULL) {
		bufpool_put(&c->d->pool, &b);
		fallback_bytes -= fallback;
		c->dead = true;
		nbd_conn_close(c, "out of memory");
		return false;
	}
	q->r = r;
	if (s != NULL) {
		c->batch_writes++;
		return spec_adopt(c, q, s);
	}
	q->data = b;
	q->fallback = fallback;
	q->charged = b.p != NULL ? r.length : 0;
	c->payload_bytes += q->charged;
	if (err != 0) {
		if (err != NBD_ENOMEM)
			log_rejected(c, &r, err);
		if (r.type == NBD_CMD_WRITE)
			c->drain = r.length;	/* read and dropped */
		reply(q, err);
		return true;
	}
	return start_request(c, q);
}

/* Parse until rx holds no complete header, a WRITE payload is awaited, a
 * limit stalls the connection or it closes; then receive more, unless
 * stalled. */
void
nbd_transmit_input(struct nbd_conn *c)
{
	c->stall = NBD_STALL_NONE;
	while (c->state == NC_TRANSMIT) {
		size_t avail = c->rx_len - c->rx_off;

		if (c->drain > 0) {
			size_t n = MIN((uint64_t)avail, c->drain);

			c->rx_off += n;
			c->drain -= n;
			if (c->drain > 0)
				break;
			continue;
		}
		if (avail < NBD_REQUEST_LEN || !take_request(c))
			break;
	}
	if (c->rx_off == c->rx_len)
		c->rx_off = c->rx_len = 0;
	if (c->state == NC_TRANSMIT)
		nbd_conn_rx_post(c);
}

void
nbd_transmit_payload(struct nbd_conn *c, int res)
{
	struct nbd_req *q = c->rx_req;

	if (res <= 0) {
		/* Client vanished mid-payload: the partial write is dropped. */
		log_notice("nbd: %s: connection lost after %" PRIu32 " of %" PRIu32
		    " bytes of a WRITE payload", c->peer, q->got, q->r.length);
		c->rx_req = NULL;
		req_release(q);
		c->dead = true;
		nbd_conn_close(c, "incomplete WRITE");
		return;
	}
	q->got += (uint32_t)res;
	if (q->got < q->r.length) {
		c->rx_progress_ns = now_ns();
		nbd_conn_rx_post(c);
		return;
	}
	c->rx_req = NULL;
	dispatch(q);
	nbd_transmit_input(c);
}

void
nbd_transmit_start(struct nbd_conn *c)
{
	struct daemon *d = c->d;

	c->state = NC_TRANSMIT;
	c->lim.size = d->size;
	c->lim.min_block = d->block_size;
	c->lim.max_payload = NBD_MAX_PAYLOAD;
	c->lim.tflags = c->hs.tflags;
	c->lim.structured = c->hs.structured;
	c->lim.meta_allocation = c->hs.meta_allocation;
	c->lim.read_only = false;
	log_info("nbd: %s: connected (%s replies%s)", c->peer,
	    c->hs.structured ? "structured" : "simple",
	    c->hs.meta_allocation ? ", base:allocation" : "");
	/* GO was answered before the daemon began to stop. */
	if (c->stopping)
		nbd_transmit_stop(c);
	else
		nbd_transmit_input(c);
}

/* ---- stopping: NBD_ESHUTDOWN ------------------------------------------------- */

/*
 * When the daemon stops (nbd_server_stop), a connection takes no more
 * requests.  Those already started finish and get their replies.  Every
 * request complete in its input and not started yet is answered
 * NBD_ESHUTDOWN and not executed (a WRITE's payload is dropped): the ones
 * in rx (behind a stall, or received ahead), the WRITE whose payload was
 * being received, and the ones the socket holds already, read without
 * waiting (MSG_DONTWAIT; at most NBD_STOP_READ_MAX bytes besides that
 * WRITE's payload).  NBD_CMD_DISC or a bad header
 * ends the refusal; an incomplete request gets nothing.  Then the
 * connection closes as usual.
 *
 *   at the stop                 first
 *   a receive is in flight      shutdown(SHUT_RD) ends it (queued bytes stay
 *                               readable); nbd_transmit_stop_received()
 *                               takes its bytes, then refuse_all()
 *   none (stalled, or idle)     refuse_all() at once
 */

/* Put what receive ahead holds back into rx in stream order. */
static void
spec_flatten(struct nbd_conn *c)
{
	if (c->spec_next < c->n_spec &&
	    c->rx_len >= c->spec[c->spec_next].hdr_off + NBD_REQUEST_LEN)
		spec_restream(c);
	else
		nbd_spec_release(c);	/* the stream ends before that header */
}

/* Complete the payload of WRITE q (c->rx_req) from what the socket holds;
 * true once complete. */
static bool
stop_payload(struct nbd_conn *c, struct nbd_req *q)
{
	while (q->got < q->r.length) {
		ssize_t n = nbd_conn_recv_queued(c, (char *)q->data.p + q->got,
		    q->r.length - q->got);

		if (n <= 0)
			return false;
		q->got += (uint32_t)n;
	}
	return true;
}

/* Answer request r (its bytes consumed) with NBD_ESHUTDOWN; false when out
 * of memory. */
static bool
refuse(struct nbd_conn *c, const struct nbd_request *r)
{
	struct nbd_req *q = req_alloc(c);

	if (q == NULL)
		return false;
	q->r = *r;
	c->refused++;
	reply(q, NBD_ESHUTDOWN);
	return true;
}

/*
 * Refuse the complete requests in rx.  Returns true when it needs more
 * input (rx ends inside a request or a rejected payload being drained),
 * false when the input must end here (DISC, a bad header, no memory);
 * *why then says why.
 */
static bool
refuse_input(struct nbd_conn *c, const char **why)
{
	for (;;) {
		size_t avail = c->rx_len - c->rx_off, n;
		struct nbd_request r;
		uint64_t need;

		if (c->drain > 0) {
			n = MIN((uint64_t)avail, c->drain);
			c->rx_off += n;
			c->drain -= n;
			if (c->drain > 0)
				return true;
			continue;
		}
		if (avail < NBD_REQUEST_LEN)
			return true;
		if (nbd_request_decode(c->rx + c->rx_off, avail, &r) < 0) {
			log_notice("nbd: %s: bad request magic 0x%08" PRIx32 " at shutdown",
			    c->peer, get_be32(c->rx + c->rx_off));
			*why = "; input ended with a bad request magic";
			return false;
		}
		if (r.type == NBD_CMD_DISC) {
			c->rx_off += NBD_REQUEST_LEN;
			*why = "; client disconnected (NBD_CMD_DISC)";
			return false;
		}
		need = NBD_REQUEST_LEN + (r.type == NBD_CMD_WRITE ? (uint64_t)r.length : 0);
		if (need > avail)
			return true;
		if (!refuse(c, &r)) {
			*why = "; out of memory";
			return false;
		}
		c->rx_off += need;
	}
}

/* Refuse what c received and did not start (see above), log the one line
 * of c's close. */
static void
refuse_all(struct nbd_conn *c)
{
	struct nbd_req *q = c->rx_req;
	const char *why = "";
	char note[200];
	bool more = true;

	spec_flatten(c);
	c->stall = NBD_STALL_NONE;
	if (q != NULL) {
		c->rx_req = NULL;
		if (stop_payload(c, q)) {
			c->refused++;
			reply(q, NBD_ESHUTDOWN);
		} else {
			log_notice("nbd: %s: WRITE with %" PRIu32 " of %" PRIu32
			    " payload bytes at shutdown: dropped", c->peer, q->got,
			    q->r.length);
			why = "; an incomplete WRITE dropped";
			more = false;
			req_release(q);
		}
	}
	/* rx, then what the socket holds, until either runs out. */
	while (more && !c->dead) {
		more = refuse_input(c, &why);
		if (more && nbd_conn_read_queued(c) == 0)
			break;
	}
	if (more && c->rx_len > c->rx_off)
		why = "; an incomplete request dropped";
	snprintf(note, sizeof(note), "; %" PRIu64 " not started, refused with NBD_ESHUTDOWN%s",
	    c->refused, why);
	nbd_conn_log_closed(c, "daemon shutting down", note);
}

void
nbd_transmit_stop(struct nbd_conn *c)
{
	c->stopping = true;
	nbd_conn_close(c, NULL);	/* no more parsing; SHUT_RD ends a receive */
	if (c->rx_busy)
		c->refusing = true;
	else
		refuse_all(c);
}

void
nbd_transmit_stop_received(struct nbd_conn *c, int res)
{
	c->refusing = false;
	if (res < 0)
		c->dead = true;
	else if (c->rx_req != NULL)
		c->rx_req->got += (uint32_t)res;
	else if (c->n_spec > 0)
		nbd_spec_received(c, (size_t)res);
	else
		c->rx_len += (size_t)res;
	refuse_all(c);
}
