/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD frontend internals shared by nbd_server.c (accept, handshake,
 * connection lifecycle) and nbd_transmit.c (the transmission phase).
 */
#ifndef BLKMIRRORD_NBD_H
#define BLKMIRRORD_NBD_H

#include <sys/types.h>

#include "internal.h"
#include "nbd_handshake.h"

#define NBD_RX_BUF		(128u << 10)	/* per-connection receive buffer */
#define NBD_MAX_INFLIGHT	256		/* requests per connection before
						 * we stop parsing its input */
#define NBD_CONN_PAYLOAD_MAX	(64u << 20)	/* READ/WRITE buffer bytes one
						 * connection's requests may hold
						 * before its input waits (a
						 * request alone always goes) */
#define NBD_FALLBACK_MAX	(256u << 20)	/* buffer bytes all NBD requests
						 * together may hold outside the
						 * pool; beyond, requests wait */
#define NBD_FALLBACK_RESERVE	(64u << 20)	/* beyond NBD_FALLBACK_MAX, for
						 * a request of at most
						 * NBD_RESERVE_REQ_MAX bytes on
						 * a connection holding no
						 * buffer (progress) */
#define NBD_RESERVE_REQ_MAX	(1u << 20)
#define NBD_SEND_STUCK_S	30		/* a send that moves no byte (or a
						 * WRITE payload that gets none)
						 * this long while requests wait
						 * for memory: the connection is
						 * shut */
#define NBD_STUCK_CHECK_MS	1000		/* how often that is checked */
#define NBD_KEEPIDLE_S		60		/* TCP keepalive: first probe after
						 * this much silence, */
#define NBD_KEEPINTVL_S		10		/* then one every this many s; */
#define NBD_KEEPCNT		6		/* so many unanswered: the client
						 * host is gone */
#define NBD_REQ_CACHE_MAX	1024		/* request structs kept for reuse
						 * when requests end; more are
						 * freed */
#define NBD_TX_BATCH		64		/* replies per sendmsg */
#define NBD_BS_DESCRIPTORS	256		/* extents per BLOCK_STATUS reply */
#define NBD_HANDSHAKE_TIMEOUT_MS 60000		/* idle limit before transmission */
#define NBD_SPEC_MAX		31		/* WRITE payload buffers posted
						 * ahead in one receive */
#define NBD_SPEC_RESERVE	64		/* pool buffers speculation leaves
						 * to requests */
#define NBD_STOP_READ_MAX	NBD_RX_BUF	/* bytes a connection may read
						 * from its socket once the
						 * daemon stops (besides the
						 * rest of a WRITE payload
						 * being received): what is
						 * queued is answered, a client
						 * that keeps sending cannot
						 * hold the stop */
#define NBD_REJECT_LOG_FIRST	10		/* rejected requests logged per
						 * connection before ... */
#define NBD_REJECT_LOG_EVERY	1000		/* ... only every 1000th is */

/* Transmission flags of the export (NBD_INFO_EXPORT and EXPORT_NAME). */
#define NBD_EXPORT_TFLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | \
	NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | \
	NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE | \
	NBD_FLAG_SEND_FAST_ZERO)

enum nbd_conn_state {
	NC_HANDSHAKE = 0,	/* negotiating options */
	NC_TRANSMIT,		/* serving requests */
	NC_CLOSING,		/* no more input; finishing, then freed */
};

/*
 * Why a connection stopped parsing with a complete header at rx_off left
 * in rx (no receive is posted meanwhile; the client's further requests
 * wait in its socket).  Nothing of the header is consumed until it is
 * taken, so resuming just parses again.
 */
enum nbd_stall {
	NBD_STALL_NONE = 0,	/* parsing */
	NBD_STALL_LIMIT,	/* NBD_MAX_INFLIGHT or NBD_CONN_PAYLOAD_MAX
				 * reached: resumed when replies are sent */
	NBD_STALL_MEMORY,	/* NBD_FALLBACK_MAX (+ NBD_FALLBACK_RESERVE)
				 * reached: resumed when some connection frees
				 * a buffer outside the pool */
};

/* One request of the transmission phase, from header to reply sent. */
struct nbd_req {
	struct vol_req vr;		/* volume request (vr.owner = this) */
	struct nbd_conn *c;		/* connection it came on */
	struct nbd_request r;		/* decoded header */
	uint32_t error;			/* NBD error for the reply (0 = ok) */
	struct buf data;		/* READ/WRITE payload, or BLOCK_STATUS extents */
	uint32_t data_len;		/* bytes of data sent with the reply */
	uint32_t got;			/* WRITE payload bytes received so far */
	uint32_t charged;		/* bytes counted in c->payload_bytes */
	uint32_t fallback;		/* bytes counted against NBD_FALLBACK_MAX */
	uint8_t hdr[32];		/* encoded reply header(s) */
	uint8_t hdr_len;		/* bytes used in hdr */
	struct nbd_req *next;		/* reply queue / free list link */
};

/*
 * A pool buffer posted ahead, in a scattering receive, for the payload of a
 * WRITE whose header has not arrived yet (see nbd_transmit.c, "receive
 * ahead").  Slot i's header lands in rx at hdr_off = i * NBD_REQUEST_LEN.
 */
struct nbd_spec {
	struct buf b;		/* pool buffer; b.p NULL once a request took it */
	uint32_t cap;		/* bytes the receive may put into it */
	uint32_t got;		/* bytes that arrived in it */
	uint32_t hdr_off;	/* offset in rx of the header before it */
};

/* One client connection. */
struct nbd_conn {
	struct daemon *d;		/* owner */
	struct nbd_conn *next, *prev;	/* d->conns list */
	int fd;				/* client socket */
	char peer[96];			/* peer address for log lines */
	enum nbd_conn_state state;
	uint64_t id;			/* connection number since start */

	/* handshake */
	struct nbd_hs hs;		/* option negotiation state */
	struct loop_timer hs_timer;	/* handshake idle limit */

	/* receive side */
	struct loop_op rx_op;		/* pending recv */
	bool rx_busy;			/* rx_op in flight */
	bool rx_stopped;		/* DISC, EOF, error or shutdown: read no more */
	uint8_t *rx;			/* receive buffer, NBD_RX_BUF bytes */
	size_t rx_len;			/* valid bytes in rx */
	size_t rx_off;			/* parse position in rx */
	struct nbd_req *rx_req;		/* WRITE whose payload is being received */
	uint64_t drain;			/* bytes of a rejected payload to skip */
	struct nbd_limits lim;		/* negotiated export limits */
	struct nbd_spec spec[NBD_SPEC_MAX];	/* receive-ahead payload buffers */
	unsigned n_spec;		/* slots in the receive (0: plain recv) */
	unsigned spec_next;		/* first slot whose header is not taken */
	uint32_t spec_len;		/* payload length the slots expect */
	uint32_t last_write_len;	/* length of the last WRITE taken, 0: none
					 * since the last mismatch */
	unsigned batch_writes;		/* WRITEs taken since the last receive */
	struct iovec rx_iov[2 * NBD_SPEC_MAX + 1];	/* the receive's vector */

	/* send side */
	struct loop_op tx_op;		/* pending sendmsg */
	bool tx_busy;			/* tx_op in flight */
	struct loop_flush tx_flush;	/* sends the turn's replies at its end */
	struct nbd_req *txq_head;	/* replies waiting to be sent */
	struct nbd_req *txq_tail;
	struct nbd_req *tx_batch;	/* replies in the sendmsg in flight */
	uint64_t tx_progress_ns;	/* when the send in flight started or
					 * last moved bytes (stuck_check) */
	int tx_outq;			/* its socket's SIOCOUTQ then (-1: not
					 * sampled yet) */
	uint64_t rx_progress_ns;	/* when the WRITE payload being received
					 * (rx_req) started or last got bytes
					 * (stuck_check) */
	struct iovec iov[NBD_TX_BATCH * 2];	/* the batch's vector */
	const uint8_t *hs_out;		/* handshake bytes being sent */

	unsigned inflight;		/* requests not yet fully replied */
	uint64_t payload_bytes;		/* READ/WRITE buffer bytes they hold */
	enum nbd_stall stall;		/* why parsing stopped at a header */
	bool dead;			/* socket unusable: drop replies */
	uint64_t requests;		/* requests seen, for the close log line */
	uint64_t rejected;		/* of those, refused by validation */
	uint64_t spec_hits;		/* WRITE payloads received ahead (no copy) */
	uint64_t spec_unwinds;		/* receive-ahead guesses that missed */

	/* stop (nbd_server_stop): what the client sent before is answered */
	bool stopping;			/* the daemon stops: options get
					 * NBD_REP_ERR_SHUTDOWN, requests not
					 * started NBD_ESHUTDOWN; input is read
					 * only as far as the socket holds it */
	bool refusing;			/* transmission: that refusal waits
					 * for the receive in flight at the stop */
	size_t stop_read_left;		/* bytes the stop may still read from
					 * the socket into rx */
	uint64_t refused;		/* requests answered NBD_ESHUTDOWN */
};

/* nbd_server.c */
void nbd_conn_close(struct nbd_conn *c, const char *why);
/* The line nbd_conn_close() logs, with note appended to its counts. */
void nbd_conn_log_closed(const struct nbd_conn *c, const char *why, const char *note);
/* Stopping: read what c's socket holds now, without waiting, into buf; the
 * bytes read, 0 (nothing queued, or EOF) or a negative errno (c->dead). */
ssize_t nbd_conn_recv_queued(struct nbd_conn *c, void *buf, size_t len);
/* Stopping: the same into the free tail of rx, within c->stop_read_left;
 * the bytes read (0: nothing more). */
size_t nbd_conn_read_queued(struct nbd_conn *c);
void nbd_conn_maybe_free(struct nbd_conn *c);
void nbd_conn_rx_post(struct nbd_conn *c);

/* nbd_transmit.c */
void nbd_transmit_start(struct nbd_conn *c);
/* The daemon stops: answer the requests c received and did not start with
 * NBD_ESHUTDOWN, then close c (see "stopping" in nbd_transmit.c). */
void nbd_transmit_stop(struct nbd_conn *c);
/* The receive in flight when nbd_transmit_stop() ran brought res. */
void nbd_transmit_stop_received(struct nbd_conn *c, int res);
/* Parse and dispatch what sits in the receive buffer. */
void nbd_transmit_input(struct nbd_conn *c);
/* A WRITE payload receive completed with res bytes. */
void nbd_transmit_payload(struct nbd_conn *c, int res);
void nbd_tx_kick(struct nbd_conn *c);
/* Post a scattering receive with payload buffers for the WRITEs likely to
 * come; false (nothing posted) when that does not apply. */
bool nbd_spec_post(struct nbd_conn *c);
/* The receive posted by nbd_spec_post() brought res > 0 bytes. */
void nbd_spec_received(struct nbd_conn *c, size_t res);
/* Give unused receive-ahead buffers back to the pool. */
void nbd_spec_release(struct nbd_conn *c);
void nbd_tx_flush(struct loop_flush *f);

#endif
