/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the replication handshake machine (lib/repl_handshake.c),
 * the code that reads a peer's bytes before it is authenticated.  Input:
 * byte 0 picks the expected peer name, byte 1 seeds the piece sizes, the
 * rest is what the peer sends.  The stream is fed once in one piece and
 * once in pseudo-random pieces; both runs must agree on the result, the
 * bytes consumed and everything sent, and what was sent must parse as a
 * sequence of handshake frames.
 */
#include <stdlib.h>
#include <string.h>

#include "repl_handshake.h"
#include "util.h"

/* What one run produced. */
struct result {
	struct repl_hs hs;		/* final state */
	int rc;				/* final result */
	size_t consumed;		/* input bytes consumed */
	uint8_t out[4 * REPL_HS_OUT_MAX];	/* everything sent */
	size_t out_len;
};

static struct repl_secret secret = { .key = "fuzz", .len = 4 };

/* Our HELLO: a small volume, node "alpha". */
static struct repl_hello
our_hello(void)
{
	struct repl_hello h;

	memset(&h, 0, sizeof(h));
	h.version_min = h.version_max = REPL_PROTO_VERSION;
	h.conn = REPL_CONN_DATA;
	h.block_size = 4096;
	h.size = 1ull << 30;
	h.bitmap_granularity = 4096;
	h.nonce = 1;
	strcpy(h.resource, "r0");
	strcpy(h.node, "alpha");
	return h;
}

/* Take the machine's output into r->out. */
static void
collect(struct result *r)
{
	if (r->out_len + r->hs.out_len > sizeof(r->out))
		abort();
	memcpy(r->out + r->out_len, r->hs.out, r->hs.out_len);
	r->out_len += r->hs.out_len;
	r->hs.out_len = 0;
}

/* Feed data in pieces of 1..max bytes chosen by seed (max 0: one piece). */
static void
run(struct result *r, const uint8_t *data, size_t size, unsigned max, unsigned seed,
    const char *peer)
{
	struct repl_hello h = our_hello();
	uint8_t nonce[REPL_NONCE_LEN] = { 7 };
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	if (repl_hs_init(&r->hs, &h, &secret, peer, nonce, 3) != 0)
		abort();
	collect(r);
	r->rc = repl_hs_result(&r->hs);
	/* each turn consumes >= 1 byte or ends the loop */
	while (off < size && r->rc == 0) {
		size_t n = max == 0 ? size - off : 1 + (seed = seed * 1103515245u + 12345u) % max;
		size_t used;

		n = MIN(n, size - off);
		r->rc = repl_hs_feed(&r->hs, data + off, n, &used);
		if (used > n || (used < n && r->rc == 0))
			abort();
		off += used;
		collect(r);
		if (used < n)
			break;
	}
	r->consumed = off;
}

/* Everything sent parses as handshake frames (the last may be a REJECT). */
static void
check_output(const struct result *r)
{
	size_t off = 0;

	while (off < r->out_len) {
		struct repl_hdr h;
		union repl_msg m;

		if (repl_hdr_decode(r->out + off, r->out_len - off, &h) != 0 ||
		    !repl_type_is_handshake(h.type) || r->out_len - off - REPL_HDR_LEN < h.length ||
		    repl_body_decode(h.type, r->out + off + REPL_HDR_LEN, h.length, &m) != 0)
			abort();
		off += REPL_HDR_LEN + h.length;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result a, b;
	static const char *peers[] = { "beta", NULL, "gamma", "alpha" };
	const char *peer;
	unsigned seed;

	if (size < 2)
		return 0;
	peer = peers[data[0] % ARRAY_SIZE(peers)];
	seed = data[1];
	data += 2, size -= 2;
	run(&a, data, size, 0, 0, peer);
	run(&b, data, size, 1 + seed % 64, seed, peer);
	if (a.rc != b.rc || a.consumed != b.consumed || a.out_len != b.out_len ||
	    memcmp(a.out, b.out, a.out_len) != 0 || a.hs.state != b.hs.state)
		abort();
	if (a.rc == 1 && a.hs.state != REPL_HS_DONE)
		abort();
	check_output(&a);
	return 0;
}
