/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The connection handshake of the replication link as a pure state machine
 * (no I/O, no clock, no randomness: the caller passes the nonce), one per
 * TCP connection, data or meta alike.  docs/protocol.md "Connection setup"
 * has the sequence diagram.  Both ends run the same machine, whoever
 * connected:
 *
 *   repl_hs_init()  queues HELLO + AUTH_CHALLENGE (send them at once);
 *   then, in this order, the peer's frames arrive and are answered:
 *     HELLO           checked with repl_hello_check(); REJECT + fail if not;
 *     AUTH_CHALLENGE  answered with AUTH_RESPONSE;
 *     AUTH_RESPONSE   verified (constant time); REJECT(AUTH) + fail if
 *                     wrong, else AUTH_RESULT(accepted, version);
 *     AUTH_RESULT     accepted with the same version: done.
 *   A REJECT or DISCONNECT from the peer, or any other frame, or a frame out
 *   of order, fails the handshake (a protocol error sends REJECT(PROTOCOL)).
 *
 * Exactly four frames are read, each at most REPL_HDR_LEN +
 * REPL_REJECT_MAX_LEN bytes, so the handshake is bounded by construction;
 * the caller bounds it in time (its connect timeout).
 */
#ifndef BLKMIRROR_REPL_HANDSHAKE_H
#define BLKMIRROR_REPL_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repl_auth.h"
#include "repl_proto.h"

#define REPL_HS_FRAME_MAX	(REPL_HDR_LEN + REPL_REJECT_MAX_LEN)	/* largest handshake frame */
#define REPL_HS_OUT_MAX		1024	/* room for every frame one side sends */

enum repl_hs_state {
	REPL_HS_WAIT_HELLO = 0,		/* HELLO + CHALLENGE sent, peer's HELLO awaited */
	REPL_HS_WAIT_CHALLENGE,		/* peer's HELLO accepted */
	REPL_HS_WAIT_RESPONSE,		/* peer's challenge answered */
	REPL_HS_WAIT_RESULT,		/* peer proved the secret; its verdict on us awaited */
	REPL_HS_DONE,			/* both authenticated: the link may be used */
	REPL_HS_FAILED,			/* close the connection after sending out[] */
};

struct repl_hs {
	enum repl_hs_state state;	/* where the handshake is */
	struct repl_hello mine;		/* our HELLO (conn = this socket's kind) */
	struct repl_hello peer;		/* the peer's HELLO, valid from WAIT_CHALLENGE on */
	const struct repl_secret *secret;	/* shared secret (not owned) */
	char expected_peer[REPL_NAME_LEN];	/* configured peer name, "" = any */
	uint8_t my_nonce[REPL_NONCE_LEN];	/* our challenge */
	uint8_t peer_nonce[REPL_NONCE_LEN];	/* the peer's challenge */
	struct repl_tx tx;		/* header fields of what we send (version 1, our epoch) */
	uint16_t version;		/* negotiated version, valid from WAIT_CHALLENGE on */
	uint32_t reject;		/* on failure: REPL_REJECT_* (ours or the peer's) */
	int error;			/* on failure: what repl_hs_feed() returns */
	bool peer_refused;		/* on failure: the peer refused us (REJECT/DISCONNECT) */
	char why[REPL_TEXT_MAX + 64];	/* on failure: one line for the log */
	uint8_t in[REPL_HS_FRAME_MAX];	/* partial frame being received */
	size_t in_len;			/* bytes of in[] filled */
	struct repl_hdr hdr;		/* header of the frame in in[], once decoded */
	uint8_t out[REPL_HS_OUT_MAX];	/* frames to send, in order */
	size_t out_len;			/* bytes of out[] to send; the caller resets it to 0 */
};

/*
 * Start the handshake: copy mine (with mine->conn the kind of this socket),
 * remember secret (must outlive hs) and expected_peer (the configured peer's
 * node name, or NULL for any), and queue HELLO + AUTH_CHALLENGE(nonce) in
 * hs->out.  nonce must come from repl_random(); epoch is our current epoch,
 * carried in the header of every frame we send.  Returns 0 or -EINVAL (a
 * HELLO field that cannot be encoded).
 */
int repl_hs_init(struct repl_hs *hs, const struct repl_hello *mine,
    const struct repl_secret *secret, const char *expected_peer,
    const uint8_t nonce[REPL_NONCE_LEN], uint64_t epoch);

/*
 * Feed len bytes received on the connection.  *consumed gets how many were
 * used: never any past the last handshake frame, so bytes the peer sent
 * after its AUTH_RESULT belong to the caller.  Frames to send are appended
 * to hs->out (send them, even on failure, then set out_len = 0).
 * Returns 0 (need more bytes), 1 (done: hs->peer and hs->version are set),
 * or on failure (hs->why says why, hs->reject the reason):
 *   -EACCES           wrong secret (the peer failed our check, or we its);
 *   -EPROTONOSUPPORT  no common protocol version;
 *   -ECONNREFUSED     HELLO mismatch, ours or the peer's verdict;
 *   -EPROTO           malformed or unexpected frame;
 *   -ECONNRESET       the peer sent DISCONNECT.
 * Once failed or done, further calls return the same result and consume
 * nothing.
 */
int repl_hs_feed(struct repl_hs *hs, const void *buf, size_t len, size_t *consumed);

/* The result repl_hs_feed() would return now (0 while in progress). */
int repl_hs_result(const struct repl_hs *hs);

#endif
