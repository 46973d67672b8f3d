/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the replication protocol decoders (lib/repl_codec.c).
 * Byte 0 selects the decoder: 0 = frame header, 1..REPL_MSG_MAX = the body
 * decoder of that message type (via repl_body_decode), anything else = the
 * header followed by the body it announces.  The rest is the input.
 *
 * Properties checked beyond "no crash, no sanitizer report":
 * - whatever a decoder accepts, the matching encoder turns back into the
 *   very same bytes (the wire form is canonical: no two encodings of one
 *   message, no ignored bytes), and the encoder accepts it;
 * - a BITMAP chunk the decoder accepts is fed to md_bitmap_rle_decode(),
 *   which must either refuse it or leave no bit set past the bitmap's end.
 */
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "repl_proto.h"
#include "util.h"

static uint8_t out[REPL_HDR_LEN + REPL_BITMAP_MAX_LEN];

/* Re-encode a decoded body of type into out; returns the frame length. */
static int
reencode(uint32_t type, const union repl_msg *m, const struct repl_tx *tx)
{
	switch (type) {
	case REPL_MSG_HELLO:		return repl_hello_encode(out, sizeof(out), tx, &m->hello);
	case REPL_MSG_AUTH_CHALLENGE:	return repl_auth_challenge_encode(out, sizeof(out), tx, &m->challenge);
	case REPL_MSG_AUTH_RESPONSE:	return repl_auth_response_encode(out, sizeof(out), tx, &m->response);
	case REPL_MSG_AUTH_RESULT:	return repl_auth_result_encode(out, sizeof(out), tx, &m->result);
	case REPL_MSG_REJECT:		return repl_reject_encode(out, sizeof(out), tx, &m->reject);
	case REPL_MSG_STATE:		return repl_state_encode(out, sizeof(out), tx, &m->state);
	case REPL_MSG_BITMAP:		return repl_bitmap_encode(out, sizeof(out), tx, &m->bitmap);
	case REPL_MSG_DATA:		return repl_data_encode(out, sizeof(out), tx, &m->data);
	case REPL_MSG_TRIM:		return repl_trim_encode(out, sizeof(out), tx, &m->trim);
	case REPL_MSG_WRITE_ZEROES:	return repl_write_zeroes_encode(out, sizeof(out), tx, &m->trim);
	case REPL_MSG_FLUSH:		return repl_flush_encode(out, sizeof(out), tx, &m->flush);
	case REPL_MSG_RECV_ACK:		return repl_recv_ack_encode(out, sizeof(out), tx, &m->recv_ack);
	case REPL_MSG_WRITE_ACK:	return repl_write_ack_encode(out, sizeof(out), tx, &m->write_ack);
	case REPL_MSG_FLUSH_ACK:	return repl_flush_ack_encode(out, sizeof(out), tx, &m->flush_ack);
	case REPL_MSG_PING:		return repl_ping_encode(out, sizeof(out), tx, &m->ping);
	case REPL_MSG_PING_ACK:		return repl_ping_ack_encode(out, sizeof(out), tx, &m->ping);
	case REPL_MSG_RESYNC_REQUEST:	return repl_resync_request_encode(out, sizeof(out), tx, &m->resync_request);
	case REPL_MSG_RESYNC_DATA:	return repl_resync_data_encode(out, sizeof(out), tx, &m->resync_data);
	case REPL_MSG_CSUM_REQUEST:	return repl_csum_request_encode(out, sizeof(out), tx, &m->csum_request);
	case REPL_MSG_CSUM_SAME:	return repl_csum_same_encode(out, sizeof(out), tx, &m->csum_same);
	case REPL_MSG_VERIFY_REQUEST:	return repl_verify_request_encode(out, sizeof(out), tx, &m->verify_request);
	case REPL_MSG_VERIFY_REPLY:	return repl_verify_reply_encode(out, sizeof(out), tx, &m->verify_reply);
	case REPL_MSG_RESYNC_DONE:	return repl_resync_done_encode(out, sizeof(out), tx, &m->resync_done);
	case REPL_MSG_PROMOTE_NOTICE:	return repl_promote_notice_encode(out, sizeof(out), tx, &m->promote);
	case REPL_MSG_DISCONNECT:	return repl_disconnect_encode(out, sizeof(out), tx, &m->disconnect);
	case REPL_MSG_RESYNC_ACK:	return repl_resync_ack_encode(out, sizeof(out), tx, &m->resync_ack);
	case REPL_MSG_READ_REQUEST:	return repl_read_request_encode(out, sizeof(out), tx, &m->read_request);
	case REPL_MSG_READ_REPLY:	return repl_read_reply_encode(out, sizeof(out), tx, &m->read_reply);
	default:			abort();
	}
}

/* Feed an accepted BITMAP chunk to the bitmap decoder on a bounded bitmap. */
static void
bitmap_apply(const struct repl_bitmap *m, const uint8_t *chunk)
{
	struct md_bitmap bm;

	if (m->total_bits > (1u << 16))
		return;
	if (md_bitmap_init(&bm, m->total_bits * m->granularity, m->granularity) != 0)
		abort();
	if (md_bitmap_rle_decode(chunk, m->chunk_len, &bm, NULL) == 0 &&
	    md_bitmap_count(&bm) > bm.nbits)
		abort();
	md_bitmap_free(&bm);
}

/* Decode a body; on success re-encode it and demand the same bytes. */
static void
body(uint32_t type, const uint8_t *p, size_t len)
{
	const struct repl_tx tx = { .version = REPL_PROTO_VERSION, .epoch = 1 };
	size_t fixed = len;
	union repl_msg m;
	int n;

	if (repl_body_decode(type, p, len, &m) != 0)
		return;
	if (type == REPL_MSG_DATA)
		fixed = REPL_DATA_LEN;
	else if (type == REPL_MSG_RESYNC_DATA)
		fixed = REPL_RESYNC_DATA_LEN;
	else if (type == REPL_MSG_READ_REPLY)
		fixed = REPL_READ_REPLY_LEN;
	else if (type == REPL_MSG_BITMAP)
		memcpy(out + REPL_HDR_LEN + REPL_BITMAP_HDR_LEN, p + REPL_BITMAP_HDR_LEN,
		    m.bitmap.chunk_len);
	n = reencode(type, &m, &tx);
	if (n != (int)(REPL_HDR_LEN + fixed) || memcmp(out + REPL_HDR_LEN, p, fixed) != 0)
		abort();
	if (type == REPL_MSG_BITMAP)
		bitmap_apply(&m.bitmap, p + REPL_BITMAP_HDR_LEN);
}

/* Decode a header; on success it must re-encode to the same 32 bytes. */
static int
header(const uint8_t *p, size_t len, struct repl_hdr *h)
{
	uint8_t again[REPL_HDR_LEN];

	if (repl_hdr_decode(p, len, h) != 0)
		return -1;
	repl_hdr_encode(again, h);
	if (memcmp(again, p, REPL_HDR_LEN) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repl_hdr h;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	data++, size--;
	if (sel == 0) {
		header(data, size, &h);
	} else if (sel <= REPL_MSG_MAX) {
		body(sel, data, size);
	} else if (header(data, size, &h) == 0 && size - REPL_HDR_LEN >= h.length) {
		body(h.type, data + REPL_HDR_LEN, h.length);
	}
	return 0;
}
