/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the NBD handshake state machine (daemon/nbd_handshake.c).
 * Input: byte 0 picks the export, bytes 1-4 seed the chunk sizes, the rest
 * is what the client sends.  The stream is fed once in one piece and once
 * in pseudo-random pieces; both runs must agree on everything the server
 * sent, consumed and negotiated, and what it sent must parse as a sequence
 * of well-formed option replies.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/nbd_handshake.h"
#include "util.h"

#define TFLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | \
	NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF | \
	NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN)

static const struct nbd_export exports[] = {
	{ "r0", "resource r0", 64ull << 20, TFLAGS, 4096, 4096, 32u << 20, NULL },
	{ "", NULL, 0, NBD_FLAG_HAS_FLAGS, 1, 4096, 0xffffffffu, NULL },
	{ "r0", NULL, 1ull << 40, TFLAGS, 512, 4096, 32u << 20, "not primary" },
};

/* What one run produced. */
struct result {
	struct nbd_hs hs;	/* final state */
	enum nbd_hs_status st;	/* final status */
	size_t consumed;	/* input bytes consumed */
	uint8_t *out;		/* all bytes sent */
	size_t out_len;
};

static void
append(struct result *r)
{
	if (r->hs.out_len == 0)
		return;
	r->out = realloc(r->out, r->out_len + r->hs.out_len);
	if (r->out == NULL)
		abort();
	memcpy(r->out + r->out_len, r->hs.out, r->hs.out_len);
	r->out_len += r->hs.out_len;
	nbd_hs_out_sent(&r->hs);
}

/* Feed in[0..len) in pieces: whole when seed is 0, else pseudo-random. */
static void
run(struct result *r, const struct nbd_export *e, const uint8_t *in, size_t len,
    uint32_t seed)
{
	size_t pos = 0, n, used;

	memset(r, 0, sizeof(*r));
	nbd_hs_init(&r->hs, e);
	while (r->st == NBD_HS_MORE && pos < len) {
		append(r);
		if (seed == 0) {
			n = len - pos;
		} else {
			seed = seed * 1103515245u + 12345u;
			n = MIN(len - pos, 1 + (seed >> 16) % 64);
		}
		r->st = nbd_hs_feed(&r->hs, in + pos, n, &used);
		if (used > n || (r->st == NBD_HS_MORE && used != n))
			abort();
		pos += used;
	}
	append(r);
	r->consumed = pos;
}

/* The bytes sent: greeting, option replies, maybe the EXPORT_NAME block. */
static void
check_output(const struct result *r)
{
	size_t pos = NBD_HELLO_LEN, tail = 0;

	if (r->out_len < NBD_HELLO_LEN || get_be64(r->out) != NBD_MAGIC)
		abort();
	if (r->st == NBD_HS_DONE && r->hs.opt == NBD_OPT_EXPORT_NAME)
		tail = r->hs.no_zeroes ? 10 : 134;
	while (pos + tail < r->out_len) {
		if (r->out_len - pos - tail < NBD_OPT_REPLY_HDR_LEN ||
		    get_be64(r->out + pos) != NBD_OPT_REPLY_MAGIC)
			abort();
		pos += NBD_OPT_REPLY_HDR_LEN + get_be32(r->out + pos + 16);
	}
	if (pos + tail != r->out_len)
		abort();
	if (r->st == NBD_HS_DONE) {
		if (r->hs.meta_allocation && !r->hs.structured)
			abort();
		if ((r->hs.tflags & NBD_FLAG_SEND_DF) && !r->hs.structured)
			abort();
	}
	if (r->hs.n_options > NBD_MAX_OPTIONS)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result a, b;
	const struct nbd_export *e;

	if (size < 5)
		return 0;
	e = &exports[data[0] % ARRAY_SIZE(exports)];
	run(&a, e, data + 5, size - 5, 0);
	run(&b, e, data + 5, size - 5, get_be32(data + 1) | 1);
	check_output(&a);
	if (a.st != b.st || a.consumed != b.consumed || a.out_len != b.out_len ||
	    memcmp(a.out, b.out, a.out_len) != 0 ||
	    a.hs.structured != b.hs.structured || a.hs.no_zeroes != b.hs.no_zeroes ||
	    a.hs.meta_allocation != b.hs.meta_allocation ||
	    a.hs.block_size_negotiated != b.hs.block_size_negotiated ||
	    a.hs.tflags != b.hs.tflags || a.hs.n_options != b.hs.n_options ||
	    strcmp(a.hs.reason, b.hs.reason) != 0)
		abort();
	nbd_hs_free(&a.hs);
	nbd_hs_free(&b.hs);
	free(a.out);
	free(b.out);
	return 0;
}
