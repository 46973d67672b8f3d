/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD frontend internals shared by nbd_server.c (accept, handshake,
 * connection lifecycle) and nbd_transmit.c (the transmission phase).
 */
#ifndef BLKMIRRORD_NBD_H
#define BLKMIRRORD_NBD_H

#include "internal.h"
#include "nbd_handshake.h"

#define NBD_RX_BUF		(128u << 10)	/* per-connection receive buffer */
#define NBD_MAX_INFLIGHT	256		/* requests per connection before
						 * we stop reading its socket */
#define NBD_TX_BATCH		64		/* replies per sendmsg */
#define NBD_BS_DESCRIPTORS	256		/* extents per BLOCK_STATUS reply */
#define NBD_HANDSHAKE_TIMEOUT_MS 60000		/* idle limit before transmission */

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

/* One request of the transmission phase, from header to reply sent. */
struct nbd_req {
	struct vol_req vr;		/* volume request (vr.owner = this) */
	struct nbd_conn *c;		/* connection it came on */
	struct nbd_request r;		/* decoded header */
	uint32_t error;			/* NBD error for the reply (0 = ok) */
	struct buf data;		/* READ/WRITE payload, or BLOCK_STATUS extents */
	uint32_t data_len;		/* bytes of data sent with the reply */
	uint32_t got;			/* WRITE payload bytes received so far */
	uint8_t hdr[32];		/* encoded reply header(s) */
	uint8_t hdr_len;		/* bytes used in hdr */
	struct nbd_req *next;		/* reply queue / free list link */
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

	/* send side */
	struct loop_op tx_op;		/* pending sendmsg */
	bool tx_busy;			/* tx_op in flight */
	struct loop_flush tx_flush;	/* sends the turn's replies at its end */
	struct nbd_req *txq_head;	/* replies waiting to be sent */
	struct nbd_req *txq_tail;
	struct nbd_req *tx_batch;	/* replies in the sendmsg in flight */
	struct iovec iov[NBD_TX_BATCH * 2];	/* the batch's vector */
	const uint8_t *hs_out;		/* handshake bytes being sent */

	unsigned inflight;		/* requests not yet fully replied */
	bool dead;			/* socket unusable: drop replies */
	uint64_t requests;		/* requests seen, for the close log line */
};

/* nbd_server.c */
void nbd_conn_close(struct nbd_conn *c, const char *why);
void nbd_conn_maybe_free(struct nbd_conn *c);
void nbd_conn_rx_post(struct nbd_conn *c);

/* nbd_transmit.c */
void nbd_transmit_start(struct nbd_conn *c);
/* Parse and dispatch what sits in the receive buffer. */
void nbd_transmit_input(struct nbd_conn *c);
/* A WRITE payload receive completed with res bytes. */
void nbd_transmit_payload(struct nbd_conn *c, int res);
void nbd_tx_kick(struct nbd_conn *c);
void nbd_tx_flush(struct loop_flush *f);

#endif
