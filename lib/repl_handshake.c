/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Replication connection handshake: HELLO, mutual HMAC challenge-response,
 * AUTH_RESULT (repl_handshake.h).  Pure: frames in, frames out.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "repl_handshake.h"
#include "util.h"

/* Append a frame produced by an encoder call; -ENOSPC cannot happen by size. */
#define HS_EMIT(hs, call) do {							\
	int n_ = (call);							\
	if (n_ > 0)								\
		(hs)->out_len += (size_t)n_;					\
} while (0)

/* Fail with error err and REPL_REJECT_* reason; optionally send REJECT. */
static int
hs_fail(struct repl_hs *hs, int err, uint32_t reason, bool send_reject, const char *why)
{
	hs->state = REPL_HS_FAILED;
	hs->error = err;
	hs->reject = reason;
	if (why != hs->why)
		snprintf(hs->why, sizeof(hs->why), "%s", why);
	if (send_reject) {
		struct repl_reject r = { .reason = reason };
		size_t n = strnlen(hs->why, sizeof(r.text) - 1);

		memcpy(r.text, hs->why, n);	/* cut to the REJECT text bound */
		r.text[n] = '\0';
		HS_EMIT(hs, repl_reject_encode(hs->out + hs->out_len,
		    sizeof(hs->out) - hs->out_len, &hs->tx, &r));
	}
	return err;
}

int
repl_hs_init(struct repl_hs *hs, const struct repl_hello *mine,
    const struct repl_secret *secret, const char *expected_peer,
    const uint8_t nonce[REPL_NONCE_LEN], uint64_t epoch)
{
	struct repl_auth_challenge c;
	int n;

	memset(hs, 0, sizeof(*hs));
	hs->tx.version = REPL_PROTO_HANDSHAKE_VERSION;
	hs->tx.epoch = epoch;
	hs->mine = *mine;
	hs->secret = secret;
	if (expected_peer != NULL)
		snprintf(hs->expected_peer, sizeof(hs->expected_peer), "%s", expected_peer);
	memcpy(hs->my_nonce, nonce, REPL_NONCE_LEN);
	if ((n = repl_hello_encode(hs->out, sizeof(hs->out), &hs->tx, mine)) < 0)
		return n;
	hs->out_len = (size_t)n;
	memcpy(c.nonce, nonce, REPL_NONCE_LEN);
	HS_EMIT(hs, repl_auth_challenge_encode(hs->out + hs->out_len,
	    sizeof(hs->out) - hs->out_len, &hs->tx, &c));
	hs->state = REPL_HS_WAIT_HELLO;
	return 0;
}

/* The peer's HELLO: check it, negotiate the version. */
static int
on_hello(struct repl_hs *hs, const struct repl_hello *peer)
{
	uint32_t reason;
	int v;

	reason = repl_hello_check(&hs->mine, peer,
	    hs->expected_peer[0] != '\0' ? hs->expected_peer : NULL, hs->why, sizeof(hs->why));
	if (reason != 0)
		return hs_fail(hs, reason == REPL_REJECT_VERSION ? -EPROTONOSUPPORT :
		    -ECONNREFUSED, reason, true, hs->why);
	v = repl_version_negotiate(hs->mine.version_min, hs->mine.version_max,
	    peer->version_min, peer->version_max);
	hs->version = (uint16_t)v;
	hs->peer = *peer;
	hs->state = REPL_HS_WAIT_CHALLENGE;
	return 0;
}

/* The peer's challenge: answer it. */
static int
on_challenge(struct repl_hs *hs, const struct repl_auth_challenge *c)
{
	struct repl_auth_response r;

	memcpy(hs->peer_nonce, c->nonce, REPL_NONCE_LEN);
	if (repl_auth_compute(hs->secret, hs->mine.resource, hs->mine.node,
	    hs->peer_nonce, hs->my_nonce, r.hmac) < 0)
		return hs_fail(hs, -EPROTO, REPL_REJECT_PROTOCOL, true,
		    "cannot compute the authentication response");
	HS_EMIT(hs, repl_auth_response_encode(hs->out + hs->out_len,
	    sizeof(hs->out) - hs->out_len, &hs->tx, &r));
	hs->state = REPL_HS_WAIT_RESPONSE;
	return 0;
}

/* The peer's answer to our challenge: verify it, give our verdict. */
static int
on_response(struct repl_hs *hs, const struct repl_auth_response *r)
{
	struct repl_auth_result res = { .status = 0, .version = hs->version };

	if (repl_auth_verify(hs->secret, hs->mine.resource, hs->peer.node,
	    hs->my_nonce, hs->peer_nonce, r->hmac) != 0) {
		snprintf(hs->why, sizeof(hs->why), "peer '%s' failed authentication: "
		    "wrong shared secret", hs->peer.node);
		return hs_fail(hs, -EACCES, REPL_REJECT_AUTH, true, hs->why);
	}
	HS_EMIT(hs, repl_auth_result_encode(hs->out + hs->out_len,
	    sizeof(hs->out) - hs->out_len, &hs->tx, &res));
	hs->state = REPL_HS_WAIT_RESULT;
	return 0;
}

/* The peer's verdict on us. */
static int
on_result(struct repl_hs *hs, const struct repl_auth_result *r)
{
	if (r->status != 0) {
		hs->peer_refused = true;
		snprintf(hs->why, sizeof(hs->why), "peer refused us: %s",
		    repl_reject_name(r->status));
		return hs_fail(hs, r->status == REPL_REJECT_AUTH ? -EACCES : -ECONNREFUSED,
		    r->status, false, hs->why);
	}
	if (r->version != hs->version) {
		snprintf(hs->why, sizeof(hs->why), "peer negotiated version %u, we %u",
		    r->version, hs->version);
		return hs_fail(hs, -EPROTO, REPL_REJECT_PROTOCOL, true, hs->why);
	}
	hs->state = REPL_HS_DONE;
	return 1;
}

/* REJECT or DISCONNECT from the peer: record its reason and text. */
static int
on_refusal(struct repl_hs *hs, uint16_t type, const union repl_msg *m)
{
	uint32_t reason = type == REPL_MSG_REJECT ? m->reject.reason : REPL_REJECT_PROTOCOL;
	int err;

	hs->peer_refused = true;
	if (type == REPL_MSG_DISCONNECT) {
		snprintf(hs->why, sizeof(hs->why), "peer disconnected: %s: %s",
		    repl_disc_name(m->disconnect.reason), m->disconnect.text);
		return hs_fail(hs, -ECONNRESET, reason, false, hs->why);
	}
	snprintf(hs->why, sizeof(hs->why), "peer rejected us: %s: %s",
	    repl_reject_name(reason), m->reject.text);
	err = reason == REPL_REJECT_AUTH ? -EACCES :
	    reason == REPL_REJECT_VERSION ? -EPROTONOSUPPORT : -ECONNREFUSED;
	return hs_fail(hs, err, reason, false, hs->why);
}

/* The type the machine waits for in each state. */
static const uint16_t expected_type[] = {
	[REPL_HS_WAIT_HELLO] = REPL_MSG_HELLO,
	[REPL_HS_WAIT_CHALLENGE] = REPL_MSG_AUTH_CHALLENGE,
	[REPL_HS_WAIT_RESPONSE] = REPL_MSG_AUTH_RESPONSE,
	[REPL_HS_WAIT_RESULT] = REPL_MSG_AUTH_RESULT,
};

/* A complete frame (hs->hdr + body in hs->in): decode and dispatch. */
static int
on_frame(struct repl_hs *hs)
{
	uint16_t type = hs->hdr.type;
	union repl_msg m;

	if (repl_body_decode(type, hs->in + REPL_HDR_LEN, hs->hdr.length, &m) != 0) {
		snprintf(hs->why, sizeof(hs->why), "malformed %s during the handshake",
		    repl_type_name(type));
		return hs_fail(hs, -EPROTO, REPL_REJECT_PROTOCOL, true, hs->why);
	}
	if (type == REPL_MSG_REJECT || type == REPL_MSG_DISCONNECT)
		return on_refusal(hs, type, &m);
	switch (hs->state) {
	case REPL_HS_WAIT_HELLO:	return on_hello(hs, &m.hello);
	case REPL_HS_WAIT_CHALLENGE:	return on_challenge(hs, &m.challenge);
	case REPL_HS_WAIT_RESPONSE:	return on_response(hs, &m.response);
	default:			return on_result(hs, &m.result);
	}
}

/*
 * The header of the next frame is complete in hs->in: decode it and make
 * sure it is the frame this state waits for (or a REJECT / DISCONNECT),
 * before any of its body is read.
 */
static int
on_header(struct repl_hs *hs)
{
	int rc = repl_hdr_decode(hs->in, REPL_HDR_LEN, &hs->hdr);
	uint16_t type = hs->hdr.type;

	if (rc == -EPROTONOSUPPORT)
		return hs_fail(hs, rc, REPL_REJECT_VERSION, true,
		    "peer sent a frame of an unsupported protocol version");
	if (rc < 0) {
		snprintf(hs->why, sizeof(hs->why), "bad frame header during the handshake (%s)",
		    strerror(-rc));
		return hs_fail(hs, -EPROTO, REPL_REJECT_PROTOCOL, true, hs->why);
	}
	if (type != expected_type[hs->state] && type != REPL_MSG_REJECT &&
	    type != REPL_MSG_DISCONNECT) {
		snprintf(hs->why, sizeof(hs->why), "unexpected %s, waiting for %s",
		    repl_type_name(type), repl_type_name(expected_type[hs->state]));
		return hs_fail(hs, -EPROTO, REPL_REJECT_PROTOCOL, true, hs->why);
	}
	return 0;
}

int
repl_hs_result(const struct repl_hs *hs)
{
	if (hs->state == REPL_HS_DONE)
		return 1;
	return hs->state == REPL_HS_FAILED ? hs->error : 0;
}

/*
 * Each loop turn copies at most the missing part of the current header or
 * body, and handles the header or frame once complete; it stops at the end
 * of the input or when the handshake is over.
 */
int
repl_hs_feed(struct repl_hs *hs, const void *buf, size_t len, size_t *consumed)
{
	const uint8_t *p = buf;
	size_t used = 0;
	int rc = 0;

	while (used < len && hs->state < REPL_HS_DONE && rc == 0) {
		bool have_hdr = hs->in_len >= REPL_HDR_LEN;
		size_t want = have_hdr ? REPL_HDR_LEN + hs->hdr.length : REPL_HDR_LEN;
		size_t n = MIN(len - used, want - hs->in_len);

		memcpy(hs->in + hs->in_len, p + used, n);
		hs->in_len += n;
		used += n;
		if (hs->in_len < want)
			break;
		if (!have_hdr)
			rc = on_header(hs);
		if (rc == 0 && hs->in_len == REPL_HDR_LEN + hs->hdr.length &&
		    (have_hdr || hs->hdr.length == 0)) {
			rc = on_frame(hs);
			hs->in_len = 0;
		}
	}
	*consumed = used;
	return repl_hs_result(hs);
}
