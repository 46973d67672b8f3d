/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/repl_codec.c: the frame header, a round trip of every
 * message, every decoder's rejections, the encoders' refusals, the HELLO
 * comparison, range checks, names, and BITMAP chunks carried through
 * md_bitmap_rle_encode / md_bitmap_rle_decode.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>
#include <xxhash.h>

#include "bitmap.h"
#include "repl_proto.h"
#include "util.h"
#include "cu_run.h"

static const struct repl_tx TX = { .version = REPL_PROTO_VERSION, .epoch = 0x1122334455667788ull };
static uint8_t buf[REPL_HDR_LEN + REPL_BITMAP_MAX_LEN];

/*
 * Decode the frame encoded in buf (n bytes, header included): check the
 * header (type, epoch, version, length), then decode the body with
 * repl_body_decode().  body_len is the bytes of body present in buf (less
 * than the header's length for DATA / RESYNC_DATA).  Returns the body
 * decoder's result.
 */
static int
frame_decode(int n, uint16_t type, size_t wire_body, union repl_msg *out)
{
	struct repl_hdr h;

	CU_ASSERT_FATAL(n >= REPL_HDR_LEN);
	CU_ASSERT_EQUAL_FATAL(repl_hdr_decode(buf, (size_t)n, &h), 0);
	CU_ASSERT_EQUAL(h.type, type);
	CU_ASSERT_EQUAL(h.epoch, TX.epoch);
	CU_ASSERT_EQUAL(h.version, repl_type_is_handshake(type) ? 1 : TX.version);
	CU_ASSERT_EQUAL(h.flags, 0);
	CU_ASSERT_EQUAL(h.length, wire_body);
	memset(out, 0xa5, sizeof(*out));
	return repl_body_decode(type, buf + REPL_HDR_LEN, h.length, out);
}

/* Re-seal a header after a test changed bytes 0..27. */
static void
reseal(uint8_t *p)
{
	put_be32(p + 28, XXH32(p, 28, 0));
}

/* ---- header ---- */

static void
test_hdr_roundtrip(void)
{
	struct repl_hdr h = { 1, REPL_MSG_DATA, 0, 4096 + REPL_DATA_LEN, 42 }, o;

	repl_hdr_encode(buf, &h);
	CU_ASSERT_EQUAL(get_be32(buf), REPL_MAGIC);
	CU_ASSERT_EQUAL(memcmp(buf, "BMRP", 4), 0);
	CU_ASSERT_EQUAL(repl_hdr_decode(buf, REPL_HDR_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.version, 1);
	CU_ASSERT_EQUAL(o.type, REPL_MSG_DATA);
	CU_ASSERT_EQUAL(o.length, 4096 + REPL_DATA_LEN);
	CU_ASSERT_EQUAL(o.epoch, 42);
	CU_ASSERT_EQUAL(get_be16(buf + 6), REPL_MSG_DATA);	/* big-endian on the wire */
	CU_ASSERT_EQUAL(buf[15], (4096 + REPL_DATA_LEN) & 0xff);
}

/* Encode a header with the given fields; returns the decoder's verdict. */
static int
hdr_try(uint16_t version, uint16_t type, uint32_t flags, uint32_t length)
{
	struct repl_hdr h = { version, type, flags, length, 7 }, o;

	repl_hdr_encode(buf, &h);
	return repl_hdr_decode(buf, REPL_HDR_LEN, &o);
}

static void
test_hdr_rejects(void)
{
	struct repl_hdr o;

	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 0, REPL_PING_LEN), 0);
	for (size_t l = 0; l < REPL_HDR_LEN; l++)
		CU_ASSERT_EQUAL(repl_hdr_decode(buf, l, &o), -EAGAIN);
	buf[0] ^= 1;					/* magic */
	CU_ASSERT_EQUAL(repl_hdr_decode(buf, REPL_HDR_LEN, &o), -EBADMSG);
	buf[0] ^= 1;
	buf[20] ^= 0x10;				/* epoch changed, check not */
	CU_ASSERT_EQUAL(repl_hdr_decode(buf, REPL_HDR_LEN, &o), -EBADMSG);
	CU_ASSERT_EQUAL(hdr_try(0, REPL_MSG_PING, 0, REPL_PING_LEN), -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(hdr_try(REPL_PROTO_VERSION + 1, REPL_MSG_PING, 0, REPL_PING_LEN),
	    -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(hdr_try(1, 0, 0, 0), -EPROTO);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_MAX + 1, 0, 0), -EPROTO);
	CU_ASSERT_EQUAL(hdr_try(1, 0xffff, 0, 0), -EPROTO);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 1, REPL_PING_LEN), -EINVAL);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 0x80000000u, REPL_PING_LEN), -EINVAL);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_DATA, 0, REPL_MAX_PAYLOAD + 1), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_DATA, 0, 0xffffffffu), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_DATA, 0, REPL_DATA_LEN + REPL_MAX_DATA), 0);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_DATA, 0, REPL_DATA_LEN + REPL_MAX_DATA + 1), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 0, REPL_PING_LEN + 1), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 0, REPL_PING_LEN - 1), -EBADMSG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_HELLO, 0, REPL_HELLO_LEN - 1), -EBADMSG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_REJECT, 0, REPL_REJECT_MAX_LEN + 1), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_BITMAP, 0, REPL_BITMAP_MAX_LEN + 1), -E2BIG);
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_BITMAP, 0, REPL_BITMAP_HDR_LEN + MD_BM_CHUNK_HDR - 1),
	    -EBADMSG);
	/* reserved word (bytes 24..27) must be zero */
	CU_ASSERT_EQUAL(hdr_try(1, REPL_MSG_PING, 0, REPL_PING_LEN), 0);
	buf[27] = 1;
	reseal(buf);
	CU_ASSERT_EQUAL(repl_hdr_decode(buf, REPL_HDR_LEN, &o), -EINVAL);
	/* magic is checked before the version */
	CU_ASSERT_EQUAL(hdr_try(9, REPL_MSG_PING, 0, REPL_PING_LEN), -EPROTONOSUPPORT);
	buf[3] = 0;
	CU_ASSERT_EQUAL(repl_hdr_decode(buf, REPL_HDR_LEN, &o), -EBADMSG);
}

/* ---- round trips ---- */

static struct repl_hello
hello_sample(void)
{
	struct repl_hello h = {
		.version_min = 1, .version_max = 1, .conn = REPL_CONN_DATA,
		.mode = REPL_MODE_MEMSYNC, .features = 0x80000000u, .block_size = 4096,
		.size = 1ull << 34, .bitmap_granularity = 4096, .node_id = 1,
		.nonce = 0xdeadbeefcafef00dull, .current_uuid = 0x0123456789abcdefull,
		.volume_uuid = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
	};

	strcpy(h.resource, "r0");
	strcpy(h.node, "alpha");
	return h;
}

static void
test_rt_handshake(void)
{
	struct repl_hello h = hello_sample();
	struct repl_auth_challenge c;
	struct repl_auth_response r;
	struct repl_auth_result res = { .status = 0, .version = 1 };
	struct repl_reject rj = { .reason = REPL_REJECT_SIZE };
	struct repl_tx tx2 = { .version = 1, .epoch = TX.epoch };
	union repl_msg o;
	int n;

	/* names padded with garbage beyond the NUL in the struct: not sent */
	memset(h.node + 6, 'x', sizeof(h.node) - 7);
	h.node[REPL_NAME_LEN - 1] = 0;
	h.node[5] = 0;
	n = repl_hello_encode(buf, sizeof(buf), &tx2, &h);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + REPL_HELLO_LEN);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_HELLO, REPL_HELLO_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.hello.version_min, 1);
	CU_ASSERT_EQUAL(o.hello.conn, REPL_CONN_DATA);
	CU_ASSERT_EQUAL(o.hello.mode, REPL_MODE_MEMSYNC);
	CU_ASSERT_EQUAL(o.hello.features, 0x80000000u);
	CU_ASSERT_EQUAL(o.hello.block_size, 4096);
	CU_ASSERT_EQUAL(o.hello.size, 1ull << 34);
	CU_ASSERT_EQUAL(o.hello.bitmap_granularity, 4096);
	CU_ASSERT_EQUAL(o.hello.node_id, 1);
	CU_ASSERT_EQUAL(o.hello.nonce, 0xdeadbeefcafef00dull);
	CU_ASSERT_EQUAL(o.hello.current_uuid, 0x0123456789abcdefull);
	CU_ASSERT_EQUAL(memcmp(o.hello.volume_uuid, h.volume_uuid, 16), 0);
	CU_ASSERT_STRING_EQUAL(o.hello.resource, "r0");
	CU_ASSERT_STRING_EQUAL(o.hello.node, "alpha");
	CU_ASSERT_EQUAL(o.hello.node[REPL_NAME_LEN - 1], 0);

	for (int i = 0; i < REPL_NONCE_LEN; i++)
		c.nonce[i] = (uint8_t)(i * 7 + 1);
	n = repl_auth_challenge_encode(buf, sizeof(buf), &TX, &c);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_AUTH_CHALLENGE, REPL_NONCE_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(o.challenge.nonce, c.nonce, REPL_NONCE_LEN), 0);

	for (int i = 0; i < REPL_HMAC_LEN; i++)
		r.hmac[i] = (uint8_t)(255 - i);
	n = repl_auth_response_encode(buf, sizeof(buf), &TX, &r);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_AUTH_RESPONSE, REPL_HMAC_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(o.response.hmac, r.hmac, REPL_HMAC_LEN), 0);

	n = repl_auth_result_encode(buf, sizeof(buf), &TX, &res);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_AUTH_RESULT, REPL_AUTH_RESULT_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.result.status, 0);
	CU_ASSERT_EQUAL(o.result.version, 1);

	strcpy(rj.text, "size mismatch: ours 1, peer 2");
	n = repl_reject_encode(buf, sizeof(buf), &TX, &rj);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + 8 + (int)strlen(rj.text) + 1);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_REJECT, 8 + strlen(rj.text) + 1, &o), 0);
	CU_ASSERT_EQUAL(o.reject.reason, REPL_REJECT_SIZE);
	CU_ASSERT_STRING_EQUAL(o.reject.text, rj.text);
}

static void
test_rt_state_control(void)
{
	struct repl_state s = {
		.role = REPL_ROLE_PRIMARY, .disk = REPL_DISK_UPTODATE,
		.repl = REPL_RS_SYNC_SOURCE, .flags = REPL_STATE_F_DISCARD_MY_DATA,
		.md_flags = MD_FL_CONSISTENT | MD_FL_CRASHED_PRIMARY, .epoch = 9,
		.current_uuid = 0x1111, .bitmap_uuid = 0x2222,
		.history_uuid = { 0x3333, 0x4444, 0x5555, 0x6666 }, .out_of_sync = 1ull << 40,
	};
	struct repl_promote_notice pn = { 10, 0xabcdef, REPL_PROMOTE_F_FORCE };
	struct repl_disconnect d = { .reason = REPL_DISC_SPLIT_BRAIN };
	struct repl_ping p = { 123456789012345ull, 0xfeedull };
	union repl_msg o;
	int n;

	n = repl_state_encode(buf, sizeof(buf), &TX, &s);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_STATE, REPL_STATE_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.state.role, REPL_ROLE_PRIMARY);
	CU_ASSERT_EQUAL(o.state.disk, REPL_DISK_UPTODATE);
	CU_ASSERT_EQUAL(o.state.repl, REPL_RS_SYNC_SOURCE);
	CU_ASSERT_EQUAL(o.state.flags, REPL_STATE_F_DISCARD_MY_DATA);
	CU_ASSERT_EQUAL(o.state.md_flags, MD_FL_CONSISTENT | MD_FL_CRASHED_PRIMARY);
	CU_ASSERT_EQUAL(o.state.epoch, 9);
	CU_ASSERT_EQUAL(o.state.current_uuid, 0x1111);
	CU_ASSERT_EQUAL(o.state.bitmap_uuid, 0x2222);
	for (unsigned i = 0; i < REPL_HISTORY_UUIDS; i++)
		CU_ASSERT_EQUAL(o.state.history_uuid[i], s.history_uuid[i]);
	CU_ASSERT_EQUAL(o.state.history_uuid[3], 0x6666);
	CU_ASSERT_EQUAL(o.state.out_of_sync, 1ull << 40);

	n = repl_promote_notice_encode(buf, sizeof(buf), &TX, &pn);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_PROMOTE_NOTICE, REPL_PROMOTE_NOTICE_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.promote.epoch, 10);
	CU_ASSERT_EQUAL(o.promote.current_uuid, 0xabcdef);
	CU_ASSERT_EQUAL(o.promote.flags, REPL_PROMOTE_F_FORCE);

	strcpy(d.text, "split brain: both nodes wrote\n\x01");	/* sanitized on send */
	n = repl_disconnect_encode(buf, sizeof(buf), &TX, &d);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_DISCONNECT, 8 + strlen(d.text) + 1, &o), 0);
	CU_ASSERT_EQUAL(o.disconnect.reason, REPL_DISC_SPLIT_BRAIN);
	CU_ASSERT_STRING_EQUAL(o.disconnect.text, "split brain: both nodes wrote??");

	n = repl_ping_encode(buf, sizeof(buf), &TX, &p);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_PING, REPL_PING_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.ping.timestamp, p.timestamp);
	CU_ASSERT_EQUAL(o.ping.nonce, p.nonce);
	n = repl_ping_ack_encode(buf, sizeof(buf), &TX, &p);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_PING_ACK, REPL_PING_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.ping.timestamp, p.timestamp);
	CU_ASSERT_EQUAL(o.ping.nonce, p.nonce);
}

static void
test_rt_writes(void)
{
	struct repl_data dm = { 77, 1ull << 30, 65536, REPL_WRITE_F_FUA };
	struct repl_trim t = { 78, 4096, 1u << 31, REPL_WRITE_F_FUA };
	struct repl_trim wz = { 79, 8192, 512, REPL_WRITE_F_FUA | REPL_WRITE_F_NO_HOLE };
	struct repl_flush f = { 80 };
	struct repl_recv_ack ra = { 77 };
	struct repl_write_ack wa = { 77, EIO, REPL_WACK_F_DURABLE };
	struct repl_flush_ack fa = { 80, ENOSPC };
	union repl_msg o;
	int n;

	n = repl_data_encode(buf, sizeof(buf), &TX, &dm);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + REPL_DATA_LEN);	/* data not copied */
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_DATA, REPL_DATA_LEN + 65536, &o), 0);
	CU_ASSERT_EQUAL(o.data.seq, 77);
	CU_ASSERT_EQUAL(o.data.offset, 1ull << 30);
	CU_ASSERT_EQUAL(o.data.length, 65536);
	CU_ASSERT_EQUAL(o.data.flags, REPL_WRITE_F_FUA);

	n = repl_trim_encode(buf, sizeof(buf), &TX, &t);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_TRIM, REPL_TRIM_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(&o.trim, &t, sizeof(t)), 0);
	n = repl_write_zeroes_encode(buf, sizeof(buf), &TX, &wz);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_WRITE_ZEROES, REPL_TRIM_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(&o.trim, &wz, sizeof(wz)), 0);
	n = repl_flush_encode(buf, sizeof(buf), &TX, &f);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_FLUSH, REPL_FLUSH_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.flush.seq, 80);
	n = repl_recv_ack_encode(buf, sizeof(buf), &TX, &ra);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RECV_ACK, REPL_RECV_ACK_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.recv_ack.seq, 77);
	n = repl_write_ack_encode(buf, sizeof(buf), &TX, &wa);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_WRITE_ACK, REPL_WRITE_ACK_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.write_ack.seq, 77);
	CU_ASSERT_EQUAL(o.write_ack.status, EIO);
	CU_ASSERT_EQUAL(o.write_ack.flags, REPL_WACK_F_DURABLE);
	n = repl_flush_ack_encode(buf, sizeof(buf), &TX, &fa);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_FLUSH_ACK, REPL_FLUSH_ACK_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.flush_ack.seq, 80);
	CU_ASSERT_EQUAL(o.flush_ack.status, ENOSPC);
}

static void
test_rt_resync(void)
{
	struct repl_resync_request rq = { 1ull << 20, 1u << 20, REPL_RSR_F_URGENT };
	struct repl_resync_data rd = { 1ull << 20, 1u << 20, 0, 0x0123456789abcdefull };
	struct repl_resync_data rde = { 1ull << 20, 1u << 20, EIO, 7 };
	struct repl_resync_ack rk = { 1ull << 20, 1u << 20, 0 };
	struct repl_csum_request cr = { 4096, 4096, 0x0102030405060708ull };
	struct repl_csum_same cs = { 4096, 4096 };
	struct repl_verify_request vq = { 8192, 512, 0x8877665544332211ull };
	struct repl_verify_reply vr = { 8192, 512, 0, 0x1234ull, REPL_VERIFY_F_DIFFERS };
	struct repl_resync_done dn = { REPL_DONE_VERIFY, 0, 3 * 4096 };
	union repl_msg o;
	int n;

	n = repl_resync_request_encode(buf, sizeof(buf), &TX, &rq);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RESYNC_REQUEST, REPL_RESYNC_REQUEST_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(&o.resync_request, &rq, sizeof(rq)), 0);
	n = repl_resync_data_encode(buf, sizeof(buf), &TX, &rd);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + REPL_RESYNC_DATA_LEN);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RESYNC_DATA, REPL_RESYNC_DATA_LEN + (1u << 20), &o), 0);
	CU_ASSERT_EQUAL(memcmp(&o.resync_data, &rd, sizeof(rd)), 0);
	n = repl_resync_data_encode(buf, sizeof(buf), &TX, &rde);	/* error: no data */
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RESYNC_DATA, REPL_RESYNC_DATA_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.resync_data.status, EIO);
	CU_ASSERT_EQUAL(o.resync_data.length, 1u << 20);
	CU_ASSERT_EQUAL(o.resync_data.applied_seq, 7);
	n = repl_resync_ack_encode(buf, sizeof(buf), &TX, &rk);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RESYNC_ACK, REPL_RESYNC_ACK_LEN, &o), 0);
	CU_ASSERT_EQUAL(memcmp(&o.resync_ack, &rk, sizeof(rk)), 0);
	n = repl_csum_request_encode(buf, sizeof(buf), &TX, &cr);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_CSUM_REQUEST, REPL_CSUM_REQUEST_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.csum_request.offset, 4096);
	CU_ASSERT_EQUAL(o.csum_request.length, 4096);
	CU_ASSERT_EQUAL(o.csum_request.digest, 0x0102030405060708ull);
	n = repl_csum_same_encode(buf, sizeof(buf), &TX, &cs);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_CSUM_SAME, REPL_CSUM_SAME_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.csum_same.offset, 4096);
	CU_ASSERT_EQUAL(o.csum_same.length, 4096);
	n = repl_verify_request_encode(buf, sizeof(buf), &TX, &vq);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_VERIFY_REQUEST, REPL_VERIFY_REQUEST_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.verify_request.digest, 0x8877665544332211ull);
	CU_ASSERT_EQUAL(o.verify_request.length, 512);
	n = repl_verify_reply_encode(buf, sizeof(buf), &TX, &vr);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_VERIFY_REPLY, REPL_VERIFY_REPLY_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.verify_reply.offset, 8192);
	CU_ASSERT_EQUAL(o.verify_reply.digest, 0x1234ull);
	CU_ASSERT_EQUAL(o.verify_reply.flags, REPL_VERIFY_F_DIFFERS);
	n = repl_resync_done_encode(buf, sizeof(buf), &TX, &dn);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_RESYNC_DONE, REPL_RESYNC_DONE_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.resync_done.kind, REPL_DONE_VERIFY);
	CU_ASSERT_EQUAL(o.resync_done.bytes, 3 * 4096);
}

/*
 * DATA zero copy: header + fixed part from the encoder, the payload from
 * the caller's buffer; the receiver decodes the fixed part with the body
 * length of the header while the data sits elsewhere.
 */
static void
test_data_zero_copy(void)
{
	static uint8_t payload[8192], wire[REPL_HDR_LEN + REPL_DATA_LEN + sizeof(payload)];
	struct repl_data dm = { 5, 0, sizeof(payload), 0 }, o;
	struct repl_hdr h;
	int n;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 31);
	n = repl_data_encode(wire, REPL_HDR_LEN + REPL_DATA_LEN, &TX, &dm);
	CU_ASSERT_EQUAL_FATAL(n, REPL_HDR_LEN + REPL_DATA_LEN);
	memcpy(wire + n, payload, sizeof(payload));	/* what writev sends */
	CU_ASSERT_EQUAL_FATAL(repl_hdr_decode(wire, sizeof(wire), &h), 0);
	CU_ASSERT_EQUAL(REPL_HDR_LEN + h.length, sizeof(wire));
	CU_ASSERT_EQUAL(repl_data_decode(wire + REPL_HDR_LEN, h.length, &o), 0);
	CU_ASSERT_EQUAL(o.length, sizeof(payload));
	CU_ASSERT_EQUAL(memcmp(wire + REPL_HDR_LEN + REPL_DATA_LEN, payload, sizeof(payload)), 0);
	/* the body length must match the announced data length exactly */
	CU_ASSERT_EQUAL(repl_data_decode(wire + REPL_HDR_LEN, h.length - 512, &o), -EBADMSG);
	CU_ASSERT_EQUAL(repl_data_decode(wire + REPL_HDR_LEN, h.length + 512, &o), -EBADMSG);
	CU_ASSERT_EQUAL(repl_data_decode(wire + REPL_HDR_LEN, REPL_DATA_LEN - 1, &o), -EBADMSG);
	/* room only for the header: -ENOSPC */
	CU_ASSERT_EQUAL(repl_data_encode(wire, REPL_HDR_LEN + REPL_DATA_LEN - 1, &TX, &dm), -ENOSPC);
}

/* ---- body rejections ---- */

/* Encode a HELLO into buf and return a pointer to its body. */
static uint8_t *
hello_body(void)
{
	struct repl_hello h = hello_sample();

	CU_ASSERT_FATAL(repl_hello_encode(buf, sizeof(buf), &TX, &h) > 0);
	return buf + REPL_HDR_LEN;
}

static void
test_hello_rejects(void)
{
	struct repl_hello o;
	uint8_t *b;

	b = hello_body();
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), 0);
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN - 1, &o), -EBADMSG);
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN + 1, &o), -EBADMSG);
	memset(b + 64, 'a', REPL_NAME_LEN);		/* resource without NUL */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EBADMSG);
	b = hello_body();
	b[64] = 0;					/* empty resource */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EBADMSG);
	b = hello_body();
	b[128 + 10] = 'z';				/* garbage after the node NUL */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EBADMSG);
	b = hello_body();
	b[128 + 1] = '\n';				/* control char in node name */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EBADMSG);
	b = hello_body();
	b[128 + 1] = ' ';				/* space in node name */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EBADMSG);
	b = hello_body();
	memset(b + 128, 'n', REPL_NAME_LEN - 1);	/* 63 chars + NUL: longest name */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), 0);
	CU_ASSERT_EQUAL(strlen(o.node), REPL_NAME_LEN - 1);
	b = hello_body();
	put_be16(b + 4, 3);				/* conn */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EINVAL);
	b = hello_body();
	put_be16(b + 6, 3);				/* mode */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EINVAL);
	b = hello_body();
	put_be16(b, 2);					/* min > max */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EINVAL);
	b = hello_body();
	put_be32(b + 12, 1000);				/* block size not a power of 2 */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EINVAL);
	b = hello_body();
	put_be32(b + 24, 256);				/* granularity < 512 */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), -EINVAL);
	b = hello_body();
	put_be32(b + 8, 0xffffffffu);			/* unknown features: ignored */
	CU_ASSERT_EQUAL(repl_hello_decode(b, REPL_HELLO_LEN, &o), 0);
}

static void
test_small_rejects(void)
{
	union repl_msg o;
	uint8_t b[REPL_REJECT_MAX_LEN + 8] = { 0 };

	/* fixed-size bodies: one byte short or long */
	CU_ASSERT_EQUAL(repl_auth_challenge_decode(b, REPL_NONCE_LEN - 1, &o.challenge), -EBADMSG);
	CU_ASSERT_EQUAL(repl_auth_response_decode(b, REPL_HMAC_LEN + 1, &o.response), -EBADMSG);
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 7, &o.result), -EBADMSG);
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN - 1, &o.state), -EBADMSG);
	CU_ASSERT_EQUAL(repl_flush_decode(b, 9, &o.flush), -EBADMSG);
	CU_ASSERT_EQUAL(repl_recv_ack_decode(b, 7, &o.recv_ack), -EBADMSG);
	CU_ASSERT_EQUAL(repl_write_ack_decode(b, 15, &o.write_ack), -EBADMSG);
	CU_ASSERT_EQUAL(repl_flush_ack_decode(b, 17, &o.flush_ack), -EBADMSG);
	CU_ASSERT_EQUAL(repl_ping_decode(b, 0, &o.ping), -EBADMSG);
	CU_ASSERT_EQUAL(repl_trim_decode(b, 23, &o.trim), -EBADMSG);
	CU_ASSERT_EQUAL(repl_write_zeroes_decode(b, 25, &o.trim), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_request_decode(b, 15, &o.resync_request), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 15, &o.resync_data), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_ack_decode(b, 17, &o.resync_ack), -EBADMSG);
	CU_ASSERT_EQUAL(repl_csum_request_decode(b, 23, &o.csum_request), -EBADMSG);
	CU_ASSERT_EQUAL(repl_csum_same_decode(b, 15, &o.csum_same), -EBADMSG);
	CU_ASSERT_EQUAL(repl_verify_request_decode(b, 25, &o.verify_request), -EBADMSG);
	CU_ASSERT_EQUAL(repl_verify_reply_decode(b, 31, &o.verify_reply), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_done_decode(b, 15, &o.resync_done), -EBADMSG);
	CU_ASSERT_EQUAL(repl_promote_notice_decode(b, 23, &o.promote), -EBADMSG);
	CU_ASSERT_EQUAL(repl_bitmap_decode(b, REPL_BITMAP_HDR_LEN + MD_BM_CHUNK_HDR - 1,
	    &o.bitmap), -EBADMSG);
	CU_ASSERT_EQUAL(repl_body_decode(0, b, 8, &o), -EPROTO);
	CU_ASSERT_EQUAL(repl_body_decode(REPL_MSG_MAX + 1, b, 8, &o), -EPROTO);

	/* AUTH_RESULT: reserved, unknown reason, accepted without a version */
	memset(b, 0, 8);
	put_be16(b + 4, 1);
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 8, &o.result), 0);
	b[7] = 1;
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 8, &o.result), -EINVAL);
	b[7] = 0;
	put_be32(b, REPL_REJECT_MAX + 1);
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 8, &o.result), -EINVAL);
	put_be32(b, 0);
	put_be16(b + 4, 0);
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 8, &o.result), -EINVAL);
	put_be32(b, REPL_REJECT_AUTH);
	CU_ASSERT_EQUAL(repl_auth_result_decode(b, 8, &o.result), 0);
	CU_ASSERT_EQUAL(o.result.status, REPL_REJECT_AUTH);
}

static void
test_text_rejects(void)
{
	uint8_t b[REPL_REJECT_MAX_LEN + 8];
	struct repl_reject o;
	struct repl_disconnect d;

	memset(b, 0, sizeof(b));
	put_be32(b, REPL_REJECT_AUTH);
	memcpy(b + 8, "bad", 4);
	CU_ASSERT_EQUAL(repl_reject_decode(b, 12, &o), 0);
	CU_ASSERT_STRING_EQUAL(o.text, "bad");
	CU_ASSERT_EQUAL(repl_reject_decode(b, 9, &o), -EBADMSG);	/* "b" without NUL */
	CU_ASSERT_EQUAL(repl_reject_decode(b, 8, &o), -EBADMSG);	/* no text at all */
	CU_ASSERT_EQUAL(repl_reject_decode(b, 13, &o), -EBADMSG);	/* NUL inside */
	b[9] = 0x7f;
	CU_ASSERT_EQUAL(repl_reject_decode(b, 12, &o), -EBADMSG);	/* DEL */
	b[9] = 'a';
	put_be32(b, 0);
	CU_ASSERT_EQUAL(repl_reject_decode(b, 12, &o), -EINVAL);	/* reason 0 */
	put_be32(b, REPL_REJECT_MAX + 1);
	CU_ASSERT_EQUAL(repl_reject_decode(b, 12, &o), -EINVAL);
	put_be32(b, REPL_REJECT_VERSION);
	b[5] = 1;
	CU_ASSERT_EQUAL(repl_reject_decode(b, 12, &o), -EINVAL);	/* reserved */
	b[5] = 0;
	/* longest text: 255 characters + NUL; one more is too long */
	memset(b + 8, 'x', REPL_TEXT_MAX - 1);
	b[8 + REPL_TEXT_MAX - 1] = 0;
	CU_ASSERT_EQUAL(repl_reject_decode(b, 8 + REPL_TEXT_MAX, &o), 0);
	CU_ASSERT_EQUAL(strlen(o.text), REPL_TEXT_MAX - 1);
	b[8 + REPL_TEXT_MAX - 1] = 'x';
	b[8 + REPL_TEXT_MAX] = 0;
	CU_ASSERT_EQUAL(repl_reject_decode(b, 8 + REPL_TEXT_MAX + 1, &o), -EBADMSG);
	/* DISCONNECT has its own reason range */
	put_be32(b, REPL_DISC_MAX);
	memcpy(b + 8, "", 1);
	CU_ASSERT_EQUAL(repl_disconnect_decode(b, 9, &d), 0);
	CU_ASSERT_EQUAL(d.reason, REPL_DISC_MAX);
	CU_ASSERT_STRING_EQUAL(d.text, "");
	put_be32(b, REPL_DISC_MAX + 1);
	CU_ASSERT_EQUAL(repl_disconnect_decode(b, 9, &d), -EINVAL);
}

static void
test_state_rejects(void)
{
	struct repl_state s = { .role = 1, .disk = REPL_DISK_FAILED, .repl = REPL_RS_MAX }, o;
	uint8_t *b = buf + REPL_HDR_LEN;

	CU_ASSERT_FATAL(repl_state_encode(buf, sizeof(buf), &TX, &s) > 0);
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), 0);
	put_be32(b, 2);					/* role */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b, 1);
	put_be32(b + 4, REPL_DISK_FAILED + 1);		/* disk */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b + 4, 0);
	put_be32(b + 8, REPL_RS_MAX + 1);		/* replication state */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b + 8, 0);
	put_be32(b + 12, ~REPL_STATE_F_KNOWN);		/* unknown flag */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b + 12, 0);
	put_be32(b + 16, MD_FL_ALL + 1);		/* unknown md flag */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b + 16, MD_FL_ALL);
	put_be32(b + 20, 1);				/* reserved */
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), -EINVAL);
	put_be32(b + 20, 0);
	CU_ASSERT_EQUAL(repl_state_decode(b, REPL_STATE_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.md_flags, MD_FL_ALL);
}

/* Encode a 24-byte write layout at b. */
static void
put_write(uint8_t *b, uint64_t seq, uint64_t off, uint32_t len, uint32_t flags)
{
	put_be64(b, seq);
	put_be64(b + 8, off);
	put_be32(b + 16, len);
	put_be32(b + 20, flags);
}

static void
test_write_rejects(void)
{
	uint8_t b[REPL_DATA_LEN];
	struct repl_data d;
	struct repl_trim t;

	put_write(b, 1, 0, 4096, REPL_WRITE_F_FUA);
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN + 4096, &d), 0);
	put_write(b, 1, 0, 4096, REPL_WRITE_F_NO_HOLE);		/* NO_HOLE only on WZ */
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN + 4096, &d), -EINVAL);
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), -EINVAL);
	CU_ASSERT_EQUAL(repl_write_zeroes_decode(b, REPL_TRIM_LEN, &t), 0);
	put_write(b, 1, 0, 4096, 1u << 7);			/* unknown flag */
	CU_ASSERT_EQUAL(repl_write_zeroes_decode(b, REPL_TRIM_LEN, &t), -EINVAL);
	put_write(b, 1, 0, 0, 0);				/* zero length */
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN, &d), -EINVAL);
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), -EINVAL);
	put_write(b, 1, 100, 512, 0);				/* misaligned offset */
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN + 512, &d), -EINVAL);
	put_write(b, 1, 0, 1000, 0);				/* misaligned length */
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), -EINVAL);
	put_write(b, 1, 0, REPL_MAX_DATA + 512, 0);		/* over the payload bound */
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN + REPL_MAX_DATA + 512, &d), -EINVAL);
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), 0);	/* TRIM has no payload */
	put_write(b, 1, UINT64_MAX - 511, 1024, 0);		/* offset + length wraps */
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), -EOVERFLOW);
	CU_ASSERT_EQUAL(repl_data_decode(b, REPL_DATA_LEN + 1024, &d), -EOVERFLOW);
	put_write(b, 1, UINT64_MAX - 1023, 512, 0);		/* ends at 2^64 - 512: fine here */
	CU_ASSERT_EQUAL(repl_trim_decode(b, REPL_TRIM_LEN, &t), 0);
}

/* Encode the 16-byte range prefix at b. */
static void
put_range(uint8_t *b, uint64_t off, uint32_t len, uint32_t word)
{
	put_be64(b, off);
	put_be32(b + 8, len);
	put_be32(b + 12, word);
}

/* An ack's or reply's status is an errno: 1..REPL_STATUS_MAX, or 0. */
static void
test_status_bounds(void)
{
	static const uint32_t bad[] = { REPL_STATUS_MAX + 1, 0x80000000u, UINT32_MAX };
	uint8_t b[64] = { 0 };
	struct repl_write_ack wa;
	struct repl_flush_ack fa;
	struct repl_resync_data rd;
	struct repl_resync_ack rk;
	struct repl_read_reply rr;
	struct repl_verify_reply vr;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(bad) + 1; i++) {
		uint32_t st = i < ARRAY_SIZE(bad) ? bad[i] : REPL_STATUS_MAX;
		int want = i < ARRAY_SIZE(bad) ? -EINVAL : 0;

		memset(b, 0, sizeof(b));
		put_be64(b, 9);
		put_be32(b + 8, st);
		CU_ASSERT_EQUAL(repl_write_ack_decode(b, REPL_WRITE_ACK_LEN, &wa), want);
		CU_ASSERT_EQUAL(repl_flush_ack_decode(b, REPL_FLUSH_ACK_LEN, &fa), want);
		put_range(b, 4096, 4096, st);
		CU_ASSERT_EQUAL(repl_resync_data_decode(b, REPL_RESYNC_DATA_LEN, &rd), want);
		CU_ASSERT_EQUAL(repl_resync_ack_decode(b, REPL_RESYNC_ACK_LEN, &rk), want);
		CU_ASSERT_EQUAL(repl_verify_reply_decode(b, REPL_VERIFY_REPLY_LEN, &vr), want);
		memset(b, 0, sizeof(b));
		put_be64(b, 3);
		put_be64(b + 8, 4096);
		put_be32(b + 16, 4096);
		put_be32(b + 20, st);
		CU_ASSERT_EQUAL(repl_read_reply_decode(b, REPL_READ_REPLY_LEN, &rr), want);
	}
}

/* READ_REQUEST / READ_REPLY: round trip, trailing data, every refusal. */
static void
test_peer_read(void)
{
	struct repl_read_request rq = { 0x1122334455667788ull, 1ull << 30, 65536 };
	struct repl_read_reply rp = { 0x1122334455667788ull, 1ull << 30, 65536, 0 };
	struct repl_read_reply rpe = { 9, 4096, 4096, EIO };
	uint8_t b[32] = { 0 };
	union repl_msg o;
	int n;

	n = repl_read_request_encode(buf, sizeof(buf), &TX, &rq);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + REPL_READ_REQUEST_LEN);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_READ_REQUEST, REPL_READ_REQUEST_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.read_request.id, rq.id);
	CU_ASSERT_EQUAL(o.read_request.offset, rq.offset);
	CU_ASSERT_EQUAL(o.read_request.length, rq.length);
	/* The reply's header counts the data; the encoder writes the fixed part. */
	n = repl_read_reply_encode(buf, sizeof(buf), &TX, &rp);
	CU_ASSERT_EQUAL(n, REPL_HDR_LEN + REPL_READ_REPLY_LEN);
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_READ_REPLY, REPL_READ_REPLY_LEN + 65536, &o), 0);
	CU_ASSERT_EQUAL(o.read_reply.id, rp.id);
	CU_ASSERT_EQUAL(o.read_reply.offset, rp.offset);
	CU_ASSERT_EQUAL(o.read_reply.length, rp.length);
	CU_ASSERT_EQUAL(o.read_reply.status, 0);
	n = repl_read_reply_encode(buf, sizeof(buf), &TX, &rpe);	/* error: no data */
	CU_ASSERT_EQUAL(frame_decode(n, REPL_MSG_READ_REPLY, REPL_READ_REPLY_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.read_reply.status, EIO);
	CU_ASSERT_EQUAL(o.read_reply.id, 9);
	CU_ASSERT_EQUAL(repl_type_conns(REPL_MSG_READ_REQUEST), REPL_CONN_DATA);
	CU_ASSERT_STRING_EQUAL(repl_type_name(REPL_MSG_READ_REPLY), "REPL_MSG_READ_REPLY");

	/* Decoder refusals. */
	put_be64(b, 1);
	put_be64(b + 8, 4096);
	put_be32(b + 16, 4096);
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), 0);
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 23, &o.read_request), -EBADMSG);
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 25, &o.read_request), -EBADMSG);
	put_be32(b + 20, 1);					/* reserved */
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), -EINVAL);
	/* ... which is READ_REPLY's status: then no data may follow */
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 24, &o.read_reply), 0);
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 24 + 4096, &o.read_reply), -EBADMSG);
	put_be32(b + 20, 0);
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 24 + 4096, &o.read_reply), 0);
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 24 + 4095, &o.read_reply), -EBADMSG);
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 24, &o.read_reply), -EBADMSG);
	CU_ASSERT_EQUAL(repl_read_reply_decode(b, 23, &o.read_reply), -EBADMSG);
	put_be32(b + 16, 0);					/* zero length */
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), -EINVAL);
	put_be32(b + 16, REPL_MAX_DATA + 512);			/* too long */
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), -EINVAL);
	put_be32(b + 16, 4096);
	put_be64(b + 8, 4095);					/* misaligned */
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), -EINVAL);
	put_be64(b + 8, UINT64_MAX - 511);			/* wraps */
	CU_ASSERT_EQUAL(repl_read_request_decode(b, 24, &o.read_request), -EOVERFLOW);
	/* Encoder refusals. */
	rq.length = 0;
	CU_ASSERT_EQUAL(repl_read_request_encode(buf, sizeof(buf), &TX, &rq), -EINVAL);
	rp.offset = 1;
	CU_ASSERT_EQUAL(repl_read_reply_encode(buf, sizeof(buf), &TX, &rp), -EINVAL);
	rp.offset = 0;
	CU_ASSERT_EQUAL(repl_read_reply_encode(buf, 8, &TX, &rp), -ENOSPC);
}

static void
test_range_rejects(void)
{
	uint8_t b[32] = { 0 };
	union repl_msg o;

	put_range(b, 4096, 4096, REPL_RSR_F_URGENT);
	CU_ASSERT_EQUAL(repl_resync_request_decode(b, 16, &o.resync_request), 0);
	put_range(b, 4096, 4096, 2);				/* unknown flag */
	CU_ASSERT_EQUAL(repl_resync_request_decode(b, 16, &o.resync_request), -EINVAL);
	put_range(b, 4096, 0, 0);				/* zero length */
	CU_ASSERT_EQUAL(repl_resync_request_decode(b, 16, &o.resync_request), -EINVAL);
	CU_ASSERT_EQUAL(repl_csum_same_decode(b, 16, &o.csum_same), -EINVAL);
	put_range(b, 4096, REPL_MAX_DATA + 512, 0);		/* too long */
	CU_ASSERT_EQUAL(repl_resync_request_decode(b, 16, &o.resync_request), -EINVAL);
	CU_ASSERT_EQUAL(repl_verify_request_decode(b, 24, &o.verify_request), -EINVAL);
	put_range(b, UINT64_MAX - 511, 4096, 0);		/* wraps */
	CU_ASSERT_EQUAL(repl_resync_ack_decode(b, 16, &o.resync_ack), -EOVERFLOW);
	CU_ASSERT_EQUAL(repl_csum_request_decode(b, 24, &o.csum_request), -EOVERFLOW);
	put_range(b, 4097, 4096, 0);				/* misaligned */
	CU_ASSERT_EQUAL(repl_verify_reply_decode(b, 32, &o.verify_reply), -EINVAL);
	put_range(b, 4096, 4096, 7);				/* CSUM_SAME reserved */
	CU_ASSERT_EQUAL(repl_csum_same_decode(b, 16, &o.csum_same), -EINVAL);
	CU_ASSERT_EQUAL(repl_csum_request_decode(b, 24, &o.csum_request), -EINVAL);
	put_range(b, 4096, 4096, 0);
	CU_ASSERT_EQUAL(repl_csum_request_decode(b, 24, &o.csum_request), 0);
	put_be32(b + 24, 2);					/* VERIFY_REPLY unknown flag */
	CU_ASSERT_EQUAL(repl_verify_reply_decode(b, 32, &o.verify_reply), -EINVAL);
	put_be32(b + 24, 0);
	put_be32(b + 28, 1);					/* VERIFY_REPLY reserved */
	CU_ASSERT_EQUAL(repl_verify_reply_decode(b, 32, &o.verify_reply), -EINVAL);
	put_be32(b + 28, 0);
	CU_ASSERT_EQUAL(repl_verify_reply_decode(b, 32, &o.verify_reply), 0);
	/* RESYNC_DATA: data length must match, none after an error status */
	put_range(b, 0, 4096, 0);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 24 + 4096, &o.resync_data), 0);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 24, &o.resync_data), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 16 + 4096, &o.resync_data), -EBADMSG);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 23, &o.resync_data), -EBADMSG);
	put_range(b, 0, 4096, EIO);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 24, &o.resync_data), 0);
	CU_ASSERT_EQUAL(repl_resync_data_decode(b, 24 + 4096, &o.resync_data), -EBADMSG);
	/* FLUSH_ACK reserved, RESYNC_DONE kind, PROMOTE flags and reserved, WRITE_ACK flags */
	memset(b, 0, sizeof(b));
	b[12] = 1;
	CU_ASSERT_EQUAL(repl_flush_ack_decode(b, 16, &o.flush_ack), -EINVAL);
	CU_ASSERT_EQUAL(repl_write_ack_decode(b, 16, &o.write_ack), -EINVAL);
	b[15] = 1;
	b[12] = 0;
	CU_ASSERT_EQUAL(repl_write_ack_decode(b, 16, &o.write_ack), 0);
	memset(b, 0, sizeof(b));
	put_be32(b, REPL_DONE_VERIFY + 1);
	CU_ASSERT_EQUAL(repl_resync_done_decode(b, 16, &o.resync_done), -EINVAL);
	memset(b, 0, sizeof(b));
	put_be32(b + 16, 2);
	CU_ASSERT_EQUAL(repl_promote_notice_decode(b, 24, &o.promote), -EINVAL);
	put_be32(b + 16, 0);
	put_be32(b + 20, 1);
	CU_ASSERT_EQUAL(repl_promote_notice_decode(b, 24, &o.promote), -EINVAL);
}

static void
test_encoder_refusals(void)
{
	struct repl_hello h = hello_sample();
	struct repl_data d = { 1, 0, 4096, 2 };
	struct repl_trim t = { 1, 0, 0, 0 };
	struct repl_state s = { .role = 5 };
	struct repl_reject rj = { .reason = 0, .text = "x" };
	struct repl_auth_result ar = { .status = 0, .version = 0 };
	struct repl_resync_request rq = { 0, 4096, 4 };
	struct repl_ping p = { 1, 2 };

	CU_ASSERT_EQUAL(repl_data_encode(buf, sizeof(buf), &TX, &d), -EINVAL);
	CU_ASSERT_EQUAL(repl_trim_encode(buf, sizeof(buf), &TX, &t), -EINVAL);
	CU_ASSERT_EQUAL(repl_state_encode(buf, sizeof(buf), &TX, &s), -EINVAL);
	CU_ASSERT_EQUAL(repl_reject_encode(buf, sizeof(buf), &TX, &rj), -EINVAL);
	CU_ASSERT_EQUAL(repl_auth_result_encode(buf, sizeof(buf), &TX, &ar), -EINVAL);
	CU_ASSERT_EQUAL(repl_resync_request_encode(buf, sizeof(buf), &TX, &rq), -EINVAL);
	CU_ASSERT_EQUAL(repl_ping_encode(buf, REPL_HDR_LEN + REPL_PING_LEN - 1, &TX, &p), -ENOSPC);
	CU_ASSERT_EQUAL(repl_ping_encode(buf, REPL_HDR_LEN + REPL_PING_LEN, &TX, &p),
	    REPL_HDR_LEN + REPL_PING_LEN);
	h.node[0] = 0;
	CU_ASSERT_EQUAL(repl_hello_encode(buf, sizeof(buf), &TX, &h), -EINVAL);
	h = hello_sample();
	memset(h.resource, 'r', sizeof(h.resource));	/* no NUL in 64 bytes */
	CU_ASSERT_EQUAL(repl_hello_encode(buf, sizeof(buf), &TX, &h), -EINVAL);
	h = hello_sample();
	strcpy(h.node, "has space");
	CU_ASSERT_EQUAL(repl_hello_encode(buf, sizeof(buf), &TX, &h), -EINVAL);
	/* a long reject text is cut to 255 characters, still decodable */
	rj.reason = REPL_REJECT_PROTOCOL;
	memset(rj.text, 'y', sizeof(rj.text));
	CU_ASSERT_EQUAL(repl_reject_encode(buf, sizeof(buf), &TX, &rj),
	    REPL_HDR_LEN + REPL_REJECT_MAX_LEN);
}

/* Handshake frames are always version 1, whatever the link negotiated. */
static void
test_handshake_version(void)
{
	struct repl_tx tx9 = { .version = 9, .epoch = 1 };
	struct repl_auth_challenge c = { { 0 } };
	struct repl_ping p = { 0, 0 };

	CU_ASSERT_FATAL(repl_auth_challenge_encode(buf, sizeof(buf), &tx9, &c) > 0);
	CU_ASSERT_EQUAL(get_be16(buf + 4), REPL_PROTO_HANDSHAKE_VERSION);
	CU_ASSERT_FATAL(repl_ping_encode(buf, sizeof(buf), &tx9, &p) > 0);
	CU_ASSERT_EQUAL(get_be16(buf + 4), 9);
	CU_ASSERT_TRUE(repl_type_is_handshake(REPL_MSG_HELLO));
	CU_ASSERT_TRUE(repl_type_is_handshake(REPL_MSG_REJECT));
	CU_ASSERT_FALSE(repl_type_is_handshake(REPL_MSG_DATA));
	CU_ASSERT_FALSE(repl_type_is_handshake(0));
}

/* ---- BITMAP ---- */

/* Send bm to a fresh bitmap chunk by chunk through BITMAP frames. */
static int
bitmap_transfer(const struct md_bitmap *bm, struct md_bitmap *dst, size_t cap, unsigned *frames)
{
	uint64_t pos = 0;
	size_t clen;
	bool more = true;

	*frames = 0;
	while (more && *frames < 100000) {
		uint8_t *chunk = buf + REPL_HDR_LEN + REPL_BITMAP_HDR_LEN;
		struct repl_bitmap m = { bm->nbits, bm->granularity, 0, 0 };
		union repl_msg o;
		int n;

		CU_ASSERT_EQUAL_FATAL(md_bitmap_rle_encode(bm, &pos, chunk, cap, &clen), 0);
		more = pos < bm->nbits;
		m.flags = more ? REPL_BITMAP_F_MORE : 0;
		m.chunk_len = (uint32_t)clen;
		n = repl_bitmap_encode(buf, sizeof(buf), &TX, &m);
		CU_ASSERT_EQUAL(n, (int)(REPL_HDR_LEN + REPL_BITMAP_HDR_LEN + clen));
		CU_ASSERT_EQUAL_FATAL(frame_decode(n, REPL_MSG_BITMAP, REPL_BITMAP_HDR_LEN + clen, &o), 0);
		CU_ASSERT_EQUAL(o.bitmap.total_bits, bm->nbits);
		CU_ASSERT_EQUAL(o.bitmap.granularity, bm->granularity);
		CU_ASSERT_EQUAL(o.bitmap.chunk_len, clen);
		CU_ASSERT_EQUAL(!!(o.bitmap.flags & REPL_BITMAP_F_MORE), more);
		CU_ASSERT_EQUAL_FATAL(md_bitmap_rle_decode(buf + REPL_HDR_LEN + REPL_BITMAP_HDR_LEN,
		    o.bitmap.chunk_len, dst, NULL), 0);
		(*frames)++;
	}
	return more ? -1 : 0;
}

static void
test_bitmap(void)
{
	struct md_bitmap a, b;
	unsigned frames;
	union repl_msg o;
	uint8_t body[REPL_BITMAP_HDR_LEN + MD_BM_CHUNK_HDR] = { 0 };

	CU_ASSERT_EQUAL_FATAL(md_bitmap_init(&a, 1ull << 32, 4096), 0);	/* 1 Mi bits */
	CU_ASSERT_EQUAL_FATAL(md_bitmap_init(&b, 1ull << 32, 4096), 0);
	md_bitmap_set_bits(&a, 5, 1);
	md_bitmap_set_bits(&a, 1000, 5000);
	for (uint64_t i = 200000; i < 300000; i += 3)
		md_bitmap_set_bits(&a, i, 1);
	md_bitmap_set_bits(&a, a.nbits - 1, 1);
	CU_ASSERT_EQUAL(bitmap_transfer(&a, &b, 4096, &frames), 0);
	CU_ASSERT(frames > 1);
	CU_ASSERT_EQUAL(md_bitmap_count(&b), md_bitmap_count(&a));
	CU_ASSERT_EQUAL(memcmp(a.words, b.words, a.nwords * 8), 0);
	md_bitmap_free(&a);
	md_bitmap_free(&b);

	/* fixed-part rejections */
	put_be64(body, 1000);
	put_be32(body + 8, 4096);
	CU_ASSERT_EQUAL(repl_bitmap_decode(body, sizeof(body), &o.bitmap), 0);
	put_be32(body + 12, 2);					/* unknown flag */
	CU_ASSERT_EQUAL(repl_bitmap_decode(body, sizeof(body), &o.bitmap), -EINVAL);
	put_be32(body + 12, 0);
	put_be32(body + 8, 4095);				/* granularity */
	CU_ASSERT_EQUAL(repl_bitmap_decode(body, sizeof(body), &o.bitmap), -EINVAL);
	put_be32(body + 8, 4096);
	put_be64(body, 0);					/* empty bitmap */
	CU_ASSERT_EQUAL(repl_bitmap_decode(body, sizeof(body), &o.bitmap), -EINVAL);
	CU_ASSERT_EQUAL(repl_bitmap_decode(body, REPL_BITMAP_MAX_LEN + 1, &o.bitmap), -EBADMSG);
}

/* ---- helpers ---- */

static void
test_check_range(void)
{
	CU_ASSERT_EQUAL(repl_check_range(0, 4096, 8192, 4096), 0);
	CU_ASSERT_EQUAL(repl_check_range(4096, 4096, 8192, 4096), 0);
	CU_ASSERT_EQUAL(repl_check_range(4096, 8192, 8192, 4096), -ERANGE);
	CU_ASSERT_EQUAL(repl_check_range(8192, 4096, 8192, 4096), -ERANGE);
	CU_ASSERT_EQUAL(repl_check_range(512, 4096, 8192, 4096), -EINVAL);
	CU_ASSERT_EQUAL(repl_check_range(512, 512, 8192, 512), 0);
	CU_ASSERT_EQUAL(repl_check_range(0, 0, 8192, 512), -EINVAL);
	CU_ASSERT_EQUAL(repl_check_range(0, 4096, 8192, 3000), -EINVAL);
	CU_ASSERT_EQUAL(repl_check_range(UINT64_MAX - 4095, 8192, UINT64_MAX, 4096), -EOVERFLOW);
}

static void
test_version_negotiate(void)
{
	CU_ASSERT_EQUAL(repl_version_negotiate(1, 1, 1, 1), 1);
	CU_ASSERT_EQUAL(repl_version_negotiate(1, 3, 2, 5), 3);
	CU_ASSERT_EQUAL(repl_version_negotiate(2, 5, 1, 3), 3);
	CU_ASSERT_EQUAL(repl_version_negotiate(1, 1, 2, 3), -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(repl_version_negotiate(4, 5, 1, 3), -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(repl_version_negotiate(0, 0, 0, 0), -EPROTONOSUPPORT);
}

static void
test_hello_check(void)
{
	struct repl_hello me = hello_sample(), peer = hello_sample();
	char why[256];

	strcpy(peer.node, "beta");
	peer.node_id = 2;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, NULL, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "gamma", why, sizeof(why)),
	    REPL_REJECT_UNKNOWN_NODE);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "gamma"));

	peer.version_min = peer.version_max = 2;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_VERSION);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "version"));
	peer.version_min = 1;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), 0);

	strcpy(peer.resource, "r1");
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)),
	    REPL_REJECT_OTHER_RESOURCE);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "'r1'"));
	strcpy(peer.resource, "r0");

	strcpy(peer.node, "alpha");
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, NULL, why, sizeof(why)), REPL_REJECT_SAME_NODE);
	strcpy(peer.node, "beta");

	peer.conn = REPL_CONN_META;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_PROTOCOL);
	peer.conn = REPL_CONN_DATA;

	peer.volume_uuid[0] ^= 0xff;			/* both have data: other volume */
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)),
	    REPL_REJECT_OTHER_VOLUME);
	peer.current_uuid = MD_UUID_JUST_CREATED;	/* fresh peer adopts ours: fine */
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), 0);
	peer.current_uuid = 0;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), 0);
	peer.volume_uuid[0] ^= 0xff;

	peer.size += 4096;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_SIZE);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "17179873280"));
	peer.size = me.size;

	peer.block_size = 512;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "block-size"));
	peer.block_size = 4096;
	peer.bitmap_granularity = 65536;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_CONFIG);
	peer.bitmap_granularity = 4096;
	peer.mode = REPL_MODE_ASYNC;
	CU_ASSERT_EQUAL(repl_hello_check(&me, &peer, "beta", why, sizeof(why)), REPL_REJECT_CONFIG);
	CU_ASSERT_STRING_EQUAL(why, "protocol mismatch: ours memsync, peer async");
}

static void
test_names(void)
{
	CU_ASSERT_STRING_EQUAL(repl_type_name(REPL_MSG_DATA), "REPL_MSG_DATA");
	CU_ASSERT_STRING_EQUAL(repl_type_name(REPL_MSG_RESYNC_ACK), "REPL_MSG_RESYNC_ACK");
	CU_ASSERT_STRING_EQUAL(repl_type_name(999), "REPL_MSG_999");
	CU_ASSERT_STRING_EQUAL(repl_type_name(0), "REPL_MSG_0");
	CU_ASSERT_STRING_EQUAL(repl_reject_name(REPL_REJECT_AUTH), "REPL_REJECT_AUTH");
	CU_ASSERT_STRING_EQUAL(repl_reject_name(77), "REPL_REJECT_77");
	CU_ASSERT_STRING_EQUAL(repl_disc_name(REPL_DISC_DUPLICATE), "REPL_DISC_DUPLICATE");
	CU_ASSERT_STRING_EQUAL(repl_role_name(REPL_ROLE_PRIMARY), "primary");
	CU_ASSERT_STRING_EQUAL(repl_disk_name(REPL_DISK_UPTODATE), "uptodate");
	CU_ASSERT_STRING_EQUAL(repl_rs_name(REPL_RS_SYNC_TARGET), "sync-target");
	CU_ASSERT_STRING_EQUAL(repl_mode_name(REPL_MODE_ASYNC), "async");
	/* every known type has a name and a connection */
	for (unsigned t = 1; t <= REPL_MSG_MAX; t++) {
		CU_ASSERT_EQUAL(strncmp(repl_type_name(t), "REPL_MSG_", 9), 0);
		CU_ASSERT_NOT_EQUAL(repl_type_conns(t), 0);
	}
	CU_ASSERT_EQUAL(repl_type_conns(REPL_MSG_DATA), REPL_CONN_DATA);
	CU_ASSERT_EQUAL(repl_type_conns(REPL_MSG_WRITE_ACK), REPL_CONN_META);
	CU_ASSERT_EQUAL(repl_type_conns(REPL_MSG_HELLO), REPL_CONN_DATA | REPL_CONN_META);
	CU_ASSERT_EQUAL(repl_type_conns(REPL_MSG_MAX + 1), 0);
}

static void
test_digest(void)
{
	/* XXH3-64 known answer: the empty input */
	CU_ASSERT_EQUAL(repl_digest("", 0), 0x2D06800538D394C2ull);
	CU_ASSERT_NOT_EQUAL(repl_digest("a", 1), repl_digest("b", 1));
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("repl_codec", NULL, NULL);
	CU_add_test(s, "hdr_roundtrip", test_hdr_roundtrip);
	CU_add_test(s, "hdr_rejects", test_hdr_rejects);
	CU_add_test(s, "rt_handshake", test_rt_handshake);
	CU_add_test(s, "rt_state_control", test_rt_state_control);
	CU_add_test(s, "rt_writes", test_rt_writes);
	CU_add_test(s, "rt_resync", test_rt_resync);
	CU_add_test(s, "data_zero_copy", test_data_zero_copy);
	CU_add_test(s, "hello_rejects", test_hello_rejects);
	CU_add_test(s, "small_rejects", test_small_rejects);
	CU_add_test(s, "text_rejects", test_text_rejects);
	CU_add_test(s, "state_rejects", test_state_rejects);
	CU_add_test(s, "write_rejects", test_write_rejects);
	CU_add_test(s, "range_rejects", test_range_rejects);
	CU_add_test(s, "status_bounds", test_status_bounds);
	CU_add_test(s, "peer_read", test_peer_read);
	CU_add_test(s, "encoder_refusals", test_encoder_refusals);
	CU_add_test(s, "handshake_version", test_handshake_version);
	CU_add_test(s, "bitmap", test_bitmap);
	CU_add_test(s, "check_range", test_check_range);
	CU_add_test(s, "version_negotiate", test_version_negotiate);
	CU_add_test(s, "hello_check", test_hello_check);
	CU_add_test(s, "names", test_names);
	CU_add_test(s, "digest", test_digest);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
