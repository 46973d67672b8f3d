/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/repl_handshake.c: two handshake machines wired to each
 * other in memory (success; wrong secret; each HELLO mismatch; version
 * mismatch; byte-at-a-time delivery; trailing bytes after the handshake;
 * garbage, oversize and out-of-order frames; DISCONNECT).
 */
#include <errno.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "repl_handshake.h"
#include "util.h"
#include "cu_run.h"

static struct repl_secret sec_a, sec_b;

/* The HELLO of node name on the data connection. */
static struct repl_hello
hello(const char *name, uint32_t id)
{
	struct repl_hello h;

	memset(&h, 0, sizeof(h));
	h.version_min = REPL_PROTO_VERSION_MIN;
	h.version_max = REPL_PROTO_VERSION;
	h.conn = REPL_CONN_DATA;
	h.mode = REPL_MODE_SYNC;
	h.block_size = 4096;
	h.size = 1ull << 30;
	h.bitmap_granularity = 4096;
	h.node_id = id;
	h.nonce = 1000 + id;
	h.current_uuid = 0x55;
	memset(h.volume_uuid, 0x42, sizeof(h.volume_uuid));
	strcpy(h.resource, "r0");
	strcpy(h.node, name);
	return h;
}

static void
set_secret(struct repl_secret *s, const char *text)
{
	memset(s, 0, sizeof(*s));
	s->len = strlen(text);
	memcpy(s->key, text, s->len);
}

/*
 * Move x's pending output into y, step bytes at a time; returns y's result.
 * Bytes y did not consume stay counted in *left.
 */
static int
deliver(struct repl_hs *x, struct repl_hs *y, size_t step, size_t *left)
{
	size_t off = 0, used;
	int rc = repl_hs_result(y);

	*left = 0;
	while (off < x->out_len) {
		size_t n = MIN(step, x->out_len - off);

		rc = repl_hs_feed(y, x->out + off, n, &used);
		CU_ASSERT(used <= n);
		off += used;
		if (used < n) {
			*left = x->out_len - off;
			break;
		}
	}
	x->out_len = 0;
	return rc;
}

/*
 * Run both machines until neither has output (bounded), delivering step
 * bytes at a time.  Results in *ra, *rb.
 */
static void
run(struct repl_hs *a, struct repl_hs *b, size_t step, int *ra, int *rb)
{
	size_t left;

	*ra = repl_hs_result(a);
	*rb = repl_hs_result(b);
	for (int i = 0; i < 10 && (a->out_len > 0 || b->out_len > 0); i++) {
		*rb = deliver(a, b, step, &left);
		*ra = deliver(b, a, step, &left);
	}
}

/* Start both sides: a = alpha, b = beta, with their secrets. */
static void
start(struct repl_hs *a, struct repl_hs *b, const struct repl_hello *ha,
    const struct repl_hello *hb)
{
	uint8_t na[REPL_NONCE_LEN], nb[REPL_NONCE_LEN];

	CU_ASSERT_EQUAL_FATAL(repl_random(na, sizeof(na)), 0);
	CU_ASSERT_EQUAL_FATAL(repl_random(nb, sizeof(nb)), 0);
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(a, ha, &sec_a, hb->node, na, 3), 0);
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(b, hb, &sec_b, ha->node, nb, 3), 0);
	CU_ASSERT_EQUAL(a->out_len, 2 * REPL_HDR_LEN + REPL_HELLO_LEN + REPL_NONCE_LEN);
	{
		struct repl_hdr h;

		/* every frame carries the sender's epoch, handshake frames too */
		CU_ASSERT_EQUAL(repl_hdr_decode(a->out, a->out_len, &h), 0);
		CU_ASSERT_EQUAL(h.epoch, 3);
		CU_ASSERT_EQUAL(h.type, REPL_MSG_HELLO);
	}
}

static void
test_success(void)
{
	static struct repl_hs a, b;
	struct repl_hello ha = hello("alpha", 0), hb = hello("beta", 1);
	static const size_t steps[] = { 1, 7, 32, 4096 };
	int ra, rb;

	set_secret(&sec_a, "shared");
	set_secret(&sec_b, "shared");
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		start(&a, &b, &ha, &hb);
		run(&a, &b, steps[i], &ra, &rb);
		CU_ASSERT_EQUAL(ra, 1);
		CU_ASSERT_EQUAL(rb, 1);
		CU_ASSERT_EQUAL(a.state, REPL_HS_DONE);
		CU_ASSERT_EQUAL(a.version, REPL_PROTO_VERSION);
		CU_ASSERT_EQUAL(b.version, REPL_PROTO_VERSION);
		CU_ASSERT_STRING_EQUAL(a.peer.node, "beta");
		CU_ASSERT_STRING_EQUAL(b.peer.node, "alpha");
		CU_ASSERT_EQUAL(a.peer.nonce, hb.nonce);
		CU_ASSERT_EQUAL(b.peer.node_id, 0);
	}
}

static void
test_wrong_secret(void)
{
	static struct repl_hs a, b;
	struct repl_hello ha = hello("alpha", 0), hb = hello("beta", 1);
	int ra, rb;

	set_secret(&sec_a, "shared");
	set_secret(&sec_b, "Shared");
	start(&a, &b, &ha, &hb);
	run(&a, &b, 4096, &ra, &rb);
	CU_ASSERT_EQUAL(ra, -EACCES);
	CU_ASSERT_EQUAL(rb, -EACCES);
	CU_ASSERT_EQUAL(a.reject, REPL_REJECT_AUTH);
	CU_ASSERT_EQUAL(b.reject, REPL_REJECT_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.why, "wrong shared secret"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.why, "beta"));
	CU_ASSERT_FALSE(a.peer_refused);	/* each side found the other wrong */
	CU_ASSERT_EQUAL(a.state, REPL_HS_FAILED);
	/* done is done: no more input is consumed */
	{
		size_t used = 99;

		CU_ASSERT_EQUAL(repl_hs_feed(&a, "x", 1, &used), -EACCES);
		CU_ASSERT_EQUAL(used, 0);
	}
}

/* One side's HELLO differs: it is refused by the other, which both report. */
static void
mismatch(struct repl_hello hb, const char *peer_name, int err, uint32_t reason)
{
	static struct repl_hs a, b;
	struct repl_hello ha = hello("alpha", 0);
	uint8_t n[REPL_NONCE_LEN] = { 1 };
	int ra, rb;

	set_secret(&sec_a, "k");
	set_secret(&sec_b, "k");
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(&a, &ha, &sec_a, peer_name, n, 3), 0);
	n[0] = 2;
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(&b, &hb, &sec_b, "alpha", n, 3), 0);
	run(&a, &b, 4096, &ra, &rb);
	CU_ASSERT_EQUAL(ra, err);
	CU_ASSERT_EQUAL(a.reject, reason);
	CU_ASSERT(rb < 0);		/* b was refused by a (or refused a) */
	CU_ASSERT_EQUAL(b.reject, reason);
	CU_ASSERT_NOT_EQUAL(a.why[0], '\0');
	CU_ASSERT_NOT_EQUAL(b.why[0], '\0');
}

static void
test_mismatches(void)
{
	struct repl_hello hb = hello("beta", 1);

	hb.size += 4096;
	mismatch(hb, "beta", -ECONNREFUSED, REPL_REJECT_SIZE);
	hb = hello("beta", 1);
	strcpy(hb.resource, "r9");
	mismatch(hb, "beta", -ECONNREFUSED, REPL_REJECT_OTHER_RESOURCE);
	hb = hello("beta", 1);
	hb.volume_uuid[3] = 9;
	mismatch(hb, "beta", -ECONNREFUSED, REPL_REJECT_OTHER_VOLUME);
	hb = hello("beta", 1);
	mismatch(hb, "gamma", -ECONNREFUSED, REPL_REJECT_UNKNOWN_NODE);
	hb = hello("beta", 1);
	hb.conn = REPL_CONN_META;
	mismatch(hb, "beta", -ECONNREFUSED, REPL_REJECT_PROTOCOL);
	hb = hello("beta", 1);
	hb.mode = REPL_MODE_ASYNC;
	mismatch(hb, "beta", -ECONNREFUSED, REPL_REJECT_CONFIG);
	hb = hello("beta", 1);
	hb.version_min = hb.version_max = REPL_PROTO_VERSION + 1;	/* a newer peer */
	mismatch(hb, "beta", -EPROTONOSUPPORT, REPL_REJECT_VERSION);
}

/* A refusal by the peer only (a does not know beta) is reported as such. */
static void
test_peer_refusal_text(void)
{
	static struct repl_hs a, b;
	struct repl_hello ha = hello("alpha", 0), hb = hello("beta", 1);
	uint8_t n[REPL_NONCE_LEN] = { 3 };
	int ra, rb;

	set_secret(&sec_a, "k");
	set_secret(&sec_b, "k");
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(&a, &ha, &sec_a, "gamma", n, 3), 0);
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(&b, &hb, &sec_b, "alpha", n, 3), 0);
	run(&a, &b, 4096, &ra, &rb);
	CU_ASSERT_EQUAL(ra, -ECONNREFUSED);
	CU_ASSERT_FALSE(a.peer_refused);
	CU_ASSERT_EQUAL(rb, -ECONNREFUSED);
	CU_ASSERT_TRUE(b.peer_refused);
	CU_ASSERT_EQUAL(b.reject, REPL_REJECT_UNKNOWN_NODE);
	CU_ASSERT_PTR_NOT_NULL(strstr(b.why, "REPL_REJECT_UNKNOWN_NODE"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.why, "configured peer is 'gamma'"));
}

/* Feed raw bytes into a fresh machine; returns its result. */
static int
feed_raw(struct repl_hs *hs, const void *p, size_t len, size_t *used)
{
	struct repl_hello h = hello("alpha", 0);
	uint8_t n[REPL_NONCE_LEN] = { 0 };

	set_secret(&sec_a, "k");
	CU_ASSERT_EQUAL_FATAL(repl_hs_init(hs, &h, &sec_a, NULL, n, 3), 0);
	hs->out_len = 0;
	return repl_hs_feed(hs, p, len, used);
}

static void
test_bad_input(void)
{
	static struct repl_hs hs;
	static uint8_t frame[1024];
	struct repl_tx tx = { 1, 0 };
	struct repl_ping ping = { 1, 2 };
	struct repl_hello hb = hello("beta", 1);
	struct repl_disconnect dc = { REPL_DISC_SHUTDOWN, "stopping" };
	struct repl_data d = { 1, 0, 4096, 0 };
	struct repl_hdr h;
	size_t used;
	int n;

	/* garbage: bad magic, REJECT(PROTOCOL) queued */
	memset(frame, 0xee, 64);
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, 64, &used), -EPROTO);
	CU_ASSERT_EQUAL(used, REPL_HDR_LEN);
	CU_ASSERT_EQUAL(hs.reject, REPL_REJECT_PROTOCOL);
	CU_ASSERT_EQUAL_FATAL(repl_hdr_decode(hs.out, hs.out_len, &h), 0);
	CU_ASSERT_EQUAL(h.type, REPL_MSG_REJECT);
	/* a PING before the handshake ended */
	n = repl_ping_encode(frame, sizeof(frame), &tx, &ping);
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(hs.why, "REPL_MSG_PING"));
	/* a 32 MiB DATA header is refused before its body is read */
	n = repl_data_encode(frame, sizeof(frame), &tx, &d);
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), -EPROTO);
	CU_ASSERT_EQUAL(used, REPL_HDR_LEN);
	/* frames out of order: a challenge before the HELLO */
	n = repl_auth_challenge_encode(frame, sizeof(frame), &tx,
	    &(struct repl_auth_challenge){ { 0 } });
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), -EPROTO);
	/* DISCONNECT */
	n = repl_disconnect_encode(frame, sizeof(frame), &tx, &dc);
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), -ECONNRESET);
	CU_ASSERT_TRUE(hs.peer_refused);
	CU_ASSERT_PTR_NOT_NULL(strstr(hs.why, "stopping"));
	/* a malformed HELLO body (empty node name) */
	n = repl_hello_encode(frame, sizeof(frame), &tx, &hb);
	frame[REPL_HDR_LEN + 128] = 0;
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(hs.why, "malformed REPL_MSG_HELLO"));
	/* a good HELLO then nothing: still waiting */
	n = repl_hello_encode(frame, sizeof(frame), &tx, &hb);
	CU_ASSERT_EQUAL(feed_raw(&hs, frame, (size_t)n, &used), 0);
	CU_ASSERT_EQUAL(used, (size_t)n);
	CU_ASSERT_EQUAL(hs.state, REPL_HS_WAIT_CHALLENGE);
}

/* Bytes after the peer's AUTH_RESULT are left to the caller. */
static void
test_trailing_bytes(void)
{
	static struct repl_hs a, b;
	struct repl_hello ha = hello("alpha", 0), hb = hello("beta", 1);
	struct repl_tx tx = { 1, 5 };
	struct repl_ping ping = { 9, 9 };
	size_t left;
	int ra, rb, n;

	set_secret(&sec_a, "s");
	set_secret(&sec_b, "s");
	start(&a, &b, &ha, &hb);
	rb = deliver(&a, &b, 4096, &left);	/* HELLO + CHALLENGE to b */
	ra = deliver(&b, &a, 4096, &left);	/* b's HELLO, CHALLENGE, RESPONSE */
	rb = deliver(&a, &b, 4096, &left);	/* a's RESPONSE, RESULT; b done */
	CU_ASSERT_EQUAL(rb, 1);
	/* b's AUTH_RESULT followed at once by a PING in the same buffer */
	n = repl_ping_encode(b.out + b.out_len, sizeof(b.out) - b.out_len, &tx, &ping);
	CU_ASSERT_FATAL(n > 0);
	b.out_len += (size_t)n;
	ra = deliver(&b, &a, 4096, &left);
	CU_ASSERT_EQUAL(ra, 1);
	CU_ASSERT_EQUAL(left, (size_t)n);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("repl_handshake", NULL, NULL);
	CU_add_test(s, "success", test_success);
	CU_add_test(s, "wrong_secret", test_wrong_secret);
	CU_add_test(s, "mismatches", test_mismatches);
	CU_add_test(s, "peer_refusal_text", test_peer_refusal_text);
	CU_add_test(s, "bad_input", test_bad_input);
	CU_add_test(s, "trailing_bytes", test_trailing_bytes);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
