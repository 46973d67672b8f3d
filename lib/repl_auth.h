/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Peer authentication and connection arbitration of the replication link
 * (docs/protocol.md "Connection setup").
 *
 * Authentication is a mutual HMAC-SHA256 challenge-response over the
 * shared secret of `secret-file =`.  On each connection both peers send
 * AUTH_CHALLENGE with a fresh 32-byte nonce and answer the other's
 * challenge with
 *
 *   AUTH_RESPONSE = HMAC-SHA256(secret, "blkmirror-auth-v1" ||
 *                   resource[64] || responder[64] ||
 *                   challenge[32] || responder_nonce[32])
 *
 * where resource and responder (the answering node's name) are NUL-padded
 * 64-byte fields, challenge is the nonce being answered and responder_nonce
 * the responder's own challenge nonce on the same connection.  Binding the
 * responder's name stops reflection (a peer cannot get our own answer to
 * replay to us: ours name us), binding both nonces stops replay.  The
 * exchange proves knowledge of the secret; it neither encrypts nor
 * authenticates the later stream (run the link on a trusted network).
 */
#ifndef BLKMIRROR_REPL_AUTH_H
#define BLKMIRROR_REPL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "repl_proto.h"

#define REPL_SECRET_MAX		4096	/* largest secret file we accept */
#define REPL_AUTH_LABEL		"blkmirror-auth-v1"	/* HMAC input prefix, no NUL */

/* A shared secret, as read from secret-file. */
struct repl_secret {
	uint8_t key[REPL_SECRET_MAX];	/* the file's bytes, one trailing newline stripped */
	size_t len;			/* bytes of key in use (> 0) */
};

/*
 * Read the secret file at path into *out.  Refuses (and writes one line
 * naming the file and the fix into err): a missing or unreadable file
 * (-errno of open/read), not a regular file (-EINVAL), a mode with any
 * group or other permission bit (mode & 0077: -EPERM, "chmod 600"), more
 * than REPL_SECRET_MAX bytes (-EFBIG), nothing left after stripping one
 * trailing newline (-EINVAL).  Returns 0 on success.
 */
int repl_secret_load(const char *path, struct repl_secret *out, char *err, size_t errlen);
/* Wipe a secret (OPENSSL_cleanse). */
void repl_secret_clear(struct repl_secret *s);

/* Fill buf with len bytes from getrandom(2) (retrying EINTR and short reads); 0 or -errno. */
int repl_random(void *buf, size_t len);

/* HMAC-SHA256(key, data) into out (REPL_HMAC_LEN bytes); 0 or -EIO (libcrypto failure). */
int repl_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
    uint8_t out[REPL_HMAC_LEN]);
/*
 * The AUTH_RESPONSE a node named responder sends for challenge, its own
 * challenge nonce being responder_nonce (formula above).  0, -EINVAL (name
 * empty or longer than REPL_NAME_LEN - 1) or -EIO.
 */
int repl_auth_compute(const struct repl_secret *s, const char *resource, const char *responder,
    const uint8_t challenge[REPL_NONCE_LEN], const uint8_t responder_nonce[REPL_NONCE_LEN],
    uint8_t out[REPL_HMAC_LEN]);
/*
 * Check an AUTH_RESPONSE received from the peer named responder, answering
 * our challenge, the peer's own challenge being responder_nonce.  Compares
 * in constant time (CRYPTO_memcmp).  0 when it matches, -EACCES when not,
 * -EINVAL / -EIO as repl_auth_compute().
 */
int repl_auth_verify(const struct repl_secret *s, const char *resource, const char *responder,
    const uint8_t challenge[REPL_NONCE_LEN], const uint8_t responder_nonce[REPL_NONCE_LEN],
    const uint8_t got[REPL_HMAC_LEN]);

/* Which node opened (connect()ed) a TCP connection. */
enum repl_side {
	REPL_SIDE_LOCAL = 0,	/* we connected, the peer accepted */
	REPL_SIDE_PEER,		/* the peer connected, we accepted */
};

/*
 * Simultaneous connect: both nodes listen and connect, so two
 * authenticated connections of the same kind (data or meta) can exist at
 * once.  Given our HELLO and the peer's, return whose connection survives:
 * the one initiated by the node whose name sorts lower (strcmp), then, for
 * equal names (refused by repl_hello_check anyway), the lower node_id, then
 * the lower nonce.  Both nodes compute the same answer from the two HELLOs
 * (repl_arbitrate(a, b) == LOCAL exactly when repl_arbitrate(b, a) ==
 * PEER), so each closes the same connection, with DISCONNECT
 * (REPL_DISC_DUPLICATE).  Arbitrate only after authentication, so an
 * unauthenticated peer can never make us drop a good connection.
 */
enum repl_side repl_arbitrate(const struct repl_hello *mine, const struct repl_hello *peer);

#endif
