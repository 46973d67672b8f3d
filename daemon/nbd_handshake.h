/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD fixed-newstyle handshake as a pure (sans-IO) state machine.  The
 * caller owns the socket: it sends hs->out, feeds whatever it receives to
 * nbd_hs_feed, and acts on the returned status.  Nothing here reads a
 * clock, a socket or a file, so the whole negotiation is unit-tested and
 * fuzzed byte by byte.
 *
 * Options handled (one handler each, see nbd_handshake.c):
 *   EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
 *   LIST_META_CONTEXT, SET_META_CONTEXT ("base:allocation");
 *   STARTTLS, EXTENDED_HEADERS and unknown options -> NBD_REP_ERR_UNSUP.
 */
#ifndef BLKMIRRORD_NBD_HANDSHAKE_H
#define BLKMIRRORD_NBD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd_proto.h"

/* Options longer than this are not skipped but end the connection. */
#define NBD_HS_MAX_SKIP		(1u << 20)

/* What the server offers (one export). */
struct nbd_export {
	const char *name;	/* export name (= resource name); "" also selects it */
	const char *description;	/* NBD_INFO_DESCRIPTION if non-NULL */
	uint64_t size;		/* bytes */
	uint16_t tflags;	/* transmission flags, NBD_FLAG_HAS_FLAGS included */
	uint32_t min_block, pref_block, max_block;	/* NBD_INFO_BLOCK_SIZE */
	const char *refuse;	/* non-NULL: the export cannot be opened now
				   (e.g. "not primary"): GO/INFO get
				   NBD_REP_ERR_POLICY with this text as the error
				   message, EXPORT_NAME closes the connection;
				   LIST still works */
};

enum nbd_hs_status {
	NBD_HS_MORE = 0,	/* send out, then feed more */
	NBD_HS_DONE,		/* send out, then transmission starts */
	NBD_HS_CLOSE,		/* send out if any, then close */
};

/* Where the parser is in the client's byte stream. */
enum nbd_hs_phase {
	NBD_HS_PH_CFLAGS = 0,	/* reading the 4-byte client flags */
	NBD_HS_PH_OPT_HDR,	/* reading a 16-byte option header */
	NBD_HS_PH_OPT_DATA,	/* buffering the option's data */
	NBD_HS_PH_OPT_SKIP,	/* discarding an oversize option's data */
	NBD_HS_PH_DONE,		/* transmission phase reached */
	NBD_HS_PH_CLOSED,	/* connection must be closed */
};

struct nbd_hs {
	/* ---- private state ---- */
	const struct nbd_export *exp;	/* the export offered (not owned) */
	enum nbd_hs_phase phase;	/* parser position */
	uint8_t hdr[NBD_OPT_HDR_LEN];	/* partial client flags / option header */
	size_t hdr_have;		/* bytes of hdr filled */
	uint32_t opt;			/* option being read (NBD_OPT_*) */
	uint32_t opt_len;		/* its data length */
	uint8_t *data;			/* its data (opt_len bytes, malloc'd) */
	size_t data_have;		/* bytes of data filled */
	uint64_t skip_left;		/* bytes still to discard (PH_OPT_SKIP) */
	size_t out_cap;			/* bytes allocated at out */
	bool oom;			/* an allocation failed: close */
	bool meta_selected;		/* SET_META_CONTEXT chose base:allocation */
	bool shutting_down;		/* nbd_hs_shutdown() was called */

	/* ---- output ---- */
	uint8_t *out;		/* bytes to send to the client next, in order; the
				   caller sends out[0..out_len) then calls
				   nbd_hs_out_sent(hs) */
	size_t out_len;

	/* ---- results, valid once nbd_hs_feed returned NBD_HS_DONE ---- */
	bool no_zeroes;		/* client set NBD_FLAG_C_NO_ZEROES */
	bool structured;	/* structured replies negotiated */
	bool meta_allocation;	/* base:allocation selected (implies structured) */
	bool block_size_negotiated;	/* GO asked for NBD_INFO_BLOCK_SIZE: the
					   client obeys min/pref/max_block */
	uint16_t tflags;	/* transmission flags actually sent (exp->tflags
				   minus SEND_DF without structured replies) */
	char reason[200];	/* why NBD_HS_CLOSE (for the one log line), or ""
				   for a clean ABORT */
	unsigned n_options;	/* options processed */
	char note[320];		/* the last option refused with an error reply */
	unsigned notes;		/* error replies sent (the caller logs each batch) */
	unsigned shutdown_refused;	/* options answered NBD_REP_ERR_SHUTDOWN */
};

/* Set hs up for a new connection and queue the 18-byte greeting.  exp must
 * outlive hs. */
void nbd_hs_init(struct nbd_hs *hs, const struct nbd_export *exp);
/*
 * Feed received bytes.  *consumed = bytes used: never any byte past the
 * final GO/EXPORT_NAME option (those belong to transmission).  Returns
 * NBD_HS_MORE (send out, feed more), NBD_HS_DONE (send out, then
 * transmission starts), NBD_HS_CLOSE (send out if any, then close; reason
 * says why).  Once DONE or CLOSE, further calls consume nothing and return
 * the same status.  The caller never feeds while out_len > 0 is unsent.
 */
enum nbd_hs_status nbd_hs_feed(struct nbd_hs *hs, const void *buf, size_t len,
    size_t *consumed);
/*
 * The server is shutting down: from now on every option fed gets
 * NBD_REP_ERR_SHUTDOWN (ABORT still its ACK; EXPORT_NAME, which has no
 * error reply, closes) and none enters transmission.
 */
void nbd_hs_shutdown(struct nbd_hs *hs);
/* The caller has sent out[0..out_len). */
void nbd_hs_out_sent(struct nbd_hs *hs);
/* Release what hs allocated (hs itself belongs to the caller). */
void nbd_hs_free(struct nbd_hs *hs);

#endif
