/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for daemon/nbd_handshake.c.  Every scenario is driven three
 * ways (byte by byte, in 7-byte pieces, in one chunk) and the three runs
 * must agree byte for byte on what the server sent, what it consumed and
 * what it negotiated.
 */
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "daemon/nbd_handshake.h"
#include "util.h"
#include "cu_run.h"

#define EXPORT_SIZE	(64ull << 20)
#define EXPORT_TFLAGS	(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | \
	NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF | \
	NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO)
#define CF_FIXED	NBD_FLAG_C_FIXED_NEWSTYLE
#define CF_BOTH		(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)

static const struct nbd_export export_r0 = {
	.name = "r0",
	.description = "blkmirror resource r0",
	.size = EXPORT_SIZE,
	.tflags = EXPORT_TFLAGS,
	.min_block = 512,
	.pref_block = 4096,
	.max_block = 32u << 20,
};

/* ---- building the client's byte stream ---- */

/* A growable byte buffer. */
struct wire {
	uint8_t *b;		/* bytes */
	size_t len;		/* used */
	size_t cap;		/* allocated */
};

static void
w_put(struct wire *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2 + 64;
		w->b = realloc(w->b, w->cap);
		CU_ASSERT_PTR_NOT_NULL_FATAL(w->b);
	}
	if (n > 0)
		memcpy(w->b + w->len, p, n);
	w->len += n;
}

static void w_be16(struct wire *w, uint16_t v) { uint8_t b[2]; put_be16(b, v); w_put(w, b, 2); }
static void w_be32(struct wire *w, uint32_t v) { uint8_t b[4]; put_be32(b, v); w_put(w, b, 4); }
static void w_be64(struct wire *w, uint64_t v) { uint8_t b[8]; put_be64(b, v); w_put(w, b, 8); }

static void
w_free(struct wire *w)
{
	free(w->b);
	memset(w, 0, sizeof(*w));
}

/* Client flags, then (optionally) an option. */
static void
c_flags(struct wire *w, uint32_t flags)
{
	w_be32(w, flags);
}

static void
c_opt(struct wire *w, uint32_t opt, const void *data, uint32_t len)
{
	w_be64(w, NBD_IHAVEOPT);
	w_be32(w, opt);
	w_be32(w, len);
	w_put(w, data, len);
}

/* INFO or GO for name with n information requests. */
static void
c_info(struct wire *w, uint32_t opt, const char *name, const uint16_t *infos, unsigned n)
{
	struct wire d = { 0 };

	w_be32(&d, (uint32_t)strlen(name));
	w_put(&d, name, strlen(name));
	w_be16(&d, (uint16_t)n);
	for (unsigned i = 0; i < n; i++)
		w_be16(&d, infos[i]);
	c_opt(w, opt, d.b, (uint32_t)d.len);
	w_free(&d);
}

/* LIST/SET_META_CONTEXT for name with n queries. */
static void
c_meta(struct wire *w, uint32_t opt, const char *name, const char *const *q, unsigned n)
{
	struct wire d = { 0 };

	w_be32(&d, (uint32_t)strlen(name));
	w_put(&d, name, strlen(name));
	w_be32(&d, n);
	for (unsigned i = 0; i < n; i++) {
		w_be32(&d, (uint32_t)strlen(q[i]));
		w_put(&d, q[i], strlen(q[i]));
	}
	c_opt(w, opt, d.b, (uint32_t)d.len);
	w_free(&d);
}

/* ---- driving the state machine ---- */

/* One run of a scenario. */
struct run {
	struct nbd_hs hs;		/* the machine (results inside) */
	enum nbd_hs_status st;		/* last status */
	size_t consumed;		/* input bytes consumed in total */
	struct wire out;		/* everything the server sent */
	unsigned feeds_after_end;	/* feeds that returned DONE/CLOSE */
};

/* Scenarios of a server that shuts down: drive() calls nbd_hs_shutdown(). */
static bool drive_shutting_down;

/*
 * Feed in to a fresh machine in pieces of chunk bytes, sending (collecting)
 * hs.out after every call as a caller would.  Stops at DONE/CLOSE; then
 * checks that one more feed consumes nothing and keeps the status.
 */
static void
drive(struct run *r, const struct nbd_export *e, const struct wire *in, size_t chunk)
{
	size_t pos = 0, used, n;

	memset(r, 0, sizeof(*r));
	nbd_hs_init(&r->hs, e);
	if (drive_shutting_down)
		nbd_hs_shutdown(&r->hs);
	r->st = NBD_HS_MORE;
	while (r->st == NBD_HS_MORE && pos < in->len) {
		w_put(&r->out, r->hs.out, r->hs.out_len);
		nbd_hs_out_sent(&r->hs);
		n = MIN(chunk, in->len - pos);
		r->st = nbd_hs_feed(&r->hs, in->b + pos, n, &used);
		CU_ASSERT(used <= n);
		if (r->st == NBD_HS_MORE)
			CU_ASSERT_EQUAL(used, n);	/* MORE consumes everything */
		pos += used;
	}
	w_put(&r->out, r->hs.out, r->hs.out_len);
	nbd_hs_out_sent(&r->hs);
	r->consumed = pos;
	if (r->st != NBD_HS_MORE && pos < in->len) {
		CU_ASSERT_EQUAL(nbd_hs_feed(&r->hs, in->b + pos, in->len - pos, &used), r->st);
		CU_ASSERT_EQUAL(used, 0);
		CU_ASSERT_EQUAL(r->hs.out_len, 0);
	}
}

/* Free a run. */
static void
run_free(struct run *r)
{
	nbd_hs_free(&r->hs);
	w_free(&r->out);
}

/*
 * Drive the scenario byte by byte, in 7-byte pieces and in one chunk; the
 * runs must agree.  *r gets the one-chunk run (free it with run_free).
 */
static void
drive_all(struct run *r, const struct nbd_export *e, const struct wire *in)
{
	static const size_t chunks[] = { 1, 7 };
	struct run o;

	drive(r, e, in, SIZE_MAX);
	for (size_t i = 0; i < ARRAY_SIZE(chunks); i++) {
		drive(&o, e, in, chunks[i]);
		CU_ASSERT_EQUAL(o.st, r->st);
		CU_ASSERT_EQUAL(o.consumed, r->consumed);
		CU_ASSERT_EQUAL_FATAL(o.out.len, r->out.len);
		CU_ASSERT(memcmp(o.out.b, r->out.b, r->out.len) == 0);
		CU_ASSERT_EQUAL(o.hs.no_zeroes, r->hs.no_zeroes);
		CU_ASSERT_EQUAL(o.hs.structured, r->hs.structured);
		CU_ASSERT_EQUAL(o.hs.meta_allocation, r->hs.meta_allocation);
		CU_ASSERT_EQUAL(o.hs.block_size_negotiated, r->hs.block_size_negotiated);
		CU_ASSERT_EQUAL(o.hs.tflags, r->hs.tflags);
		CU_ASSERT_EQUAL(o.hs.n_options, r->hs.n_options);
		CU_ASSERT_STRING_EQUAL(o.hs.reason, r->hs.reason);
		run_free(&o);
	}
}

/* ---- reading the server's replies ---- */

/* A cursor over what the server sent, past the greeting. */
struct rd {
	const uint8_t *b;	/* transcript */
	size_t len;		/* its length */
	size_t pos;		/* next unread byte */
};

/* Check the 18-byte greeting and position a cursor after it. */
static void
rd_start(struct rd *rd, const struct run *r)
{
	CU_ASSERT_FATAL(r->out.len >= NBD_HELLO_LEN);
	CU_ASSERT_EQUAL(get_be64(r->out.b), NBD_MAGIC);
	CU_ASSERT_EQUAL(get_be64(r->out.b + 8), NBD_IHAVEOPT);
	CU_ASSERT_EQUAL(get_be16(r->out.b + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	rd->b = r->out.b;
	rd->len = r->out.len;
	rd->pos = NBD_HELLO_LEN;
}

/*
 * Expect the next option reply to be (opt, type) with data length len
 * (SIZE_MAX: any).  Returns its data, or NULL when it is not.
 */
static const uint8_t *
expect(struct rd *rd, uint32_t opt, uint32_t type, size_t len)
{
	const uint8_t *p = rd->b + rd->pos;
	uint32_t dlen;

	CU_ASSERT_FATAL(rd->len - rd->pos >= NBD_OPT_REPLY_HDR_LEN);
	CU_ASSERT_EQUAL(get_be64(p), NBD_OPT_REPLY_MAGIC);
	CU_ASSERT_EQUAL(get_be32(p + 8), opt);
	CU_ASSERT_EQUAL(get_be32(p + 12), type);
	dlen = get_be32(p + 16);
	if (len != SIZE_MAX)
		CU_ASSERT_EQUAL(dlen, len);
	CU_ASSERT_FATAL(rd->len - rd->pos - NBD_OPT_REPLY_HDR_LEN >= dlen);
	rd->pos += NBD_OPT_REPLY_HDR_LEN + dlen;
	if (get_be32(p + 8) != opt || get_be32(p + 12) != type)
		return NULL;
	/* Error replies carry a human-readable message. */
	if (type & NBD_REP_ERR_BIT)
		CU_ASSERT(dlen > 0);
	return p + NBD_OPT_REPLY_HDR_LEN;
}

/* Expect an NBD_REP_INFO of the given info type; returns its payload. */
static const uint8_t *
expect_info(struct rd *rd, uint32_t opt, uint16_t info, size_t len)
{
	const uint8_t *p = expect(rd, opt, NBD_REP_INFO, len + 2);

	if (p == NULL)
		return NULL;
	CU_ASSERT_EQUAL(get_be16(p), info);
	return p + 2;
}

/* Expect the META_CONTEXT reply for base:allocation with context id. */
static void
expect_meta(struct rd *rd, uint32_t opt, uint32_t id)
{
	const uint8_t *p = expect(rd, opt, NBD_REP_META_CONTEXT, 4 + 15);

	if (p != NULL) {
		CU_ASSERT_EQUAL(get_be32(p), id);
		CU_ASSERT(memcmp(p + 4, "base:allocation", 15) == 0);
	}
}

static void
expect_end(const struct rd *rd)
{
	CU_ASSERT_EQUAL(rd->pos, rd->len);
}

/* The last replies: GO's EXPORT and BLOCK_SIZE infos and its ACK. */
static void
expect_go_ack_last(struct rd *rd)
{
	expect_info(rd, NBD_OPT_GO, NBD_INFO_EXPORT, 10);
	expect_info(rd, NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, 12);
	expect(rd, NBD_OPT_GO, NBD_REP_ACK, 0);
	expect_end(rd);
}

/* ---- tests ---- */

static void
test_greeting(void)
{
	struct nbd_hs hs;
	size_t used = 99;

	nbd_hs_init(&hs, &export_r0);
	CU_ASSERT_EQUAL_FATAL(hs.out_len, NBD_HELLO_LEN);
	CU_ASSERT_EQUAL(get_be64(hs.out), NBD_MAGIC);
	CU_ASSERT_EQUAL(get_be64(hs.out + 8), NBD_IHAVEOPT);
	CU_ASSERT_EQUAL(get_be16(hs.out + 16), 3);
	nbd_hs_out_sent(&hs);
	CU_ASSERT_EQUAL(hs.out_len, 0);
	/* Nothing fed: nothing happens. */
	CU_ASSERT_EQUAL(nbd_hs_feed(&hs, "", 0, &used), NBD_HS_MORE);
	CU_ASSERT_EQUAL(used, 0);
	CU_ASSERT_EQUAL(hs.out_len, 0);
	nbd_hs_free(&hs);
}

/* EXPORT_NAME without NO_ZEROES: size, flags, 124 zeroes. */
static void
test_export_name_zeroes(void)
{
	struct wire in = { 0 };
	struct run r;
	const uint8_t *p;

	c_flags(&in, CF_FIXED);
	c_opt(&in, NBD_OPT_EXPORT_NAME, "r0", 2);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, in.len);
	CU_ASSERT_EQUAL_FATAL(r.out.len, NBD_HELLO_LEN + 8 + 2 + 124);
	p = r.out.b + NBD_HELLO_LEN;
	CU_ASSERT_EQUAL(get_be64(p), EXPORT_SIZE);
	/* No structured replies: SEND_DF must not be advertised. */
	CU_ASSERT_EQUAL(get_be16(p + 8), EXPORT_TFLAGS & ~NBD_FLAG_SEND_DF);
	CU_ASSERT_EQUAL(r.hs.tflags, EXPORT_TFLAGS & ~NBD_FLAG_SEND_DF);
	for (size_t i = 10; i < 134; i++)
		CU_ASSERT_EQUAL(p[i], 0);
	CU_ASSERT_FALSE(r.hs.no_zeroes);
	CU_ASSERT_FALSE(r.hs.structured);
	CU_ASSERT_FALSE(r.hs.meta_allocation);
	CU_ASSERT_FALSE(r.hs.block_size_negotiated);
	CU_ASSERT_EQUAL(r.hs.n_options, 1);
	run_free(&r);
	w_free(&in);
}

/* EXPORT_NAME with NO_ZEROES, and the empty name as the default export. */
static void
test_export_name_no_zeroes(void)
{
	struct wire in = { 0 };
	struct run r;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_opt(&in, NBD_OPT_EXPORT_NAME, NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_TRUE(r.hs.no_zeroes);
	CU_ASSERT_TRUE(r.hs.structured);
	/* greeting + ACK + size/flags, nothing else */
	CU_ASSERT_EQUAL_FATAL(r.out.len, NBD_HELLO_LEN + NBD_OPT_REPLY_HDR_LEN + 10);
	CU_ASSERT_EQUAL(get_be64(r.out.b + r.out.len - 10), EXPORT_SIZE);
	CU_ASSERT_EQUAL(get_be16(r.out.b + r.out.len - 2), EXPORT_TFLAGS);
	run_free(&r);
	w_free(&in);
}

/* EXPORT_NAME cannot be answered with an error: unknown/refused close. */
static void
test_export_name_fail(void)
{
	struct nbd_export refused = export_r0;
	struct wire in = { 0 };
	struct run r;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_EXPORT_NAME, "r1", 2);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN);
	CU_ASSERT(strstr(r.hs.reason, "unknown export") != NULL);
	run_free(&r);

	refused.refuse = "not primary";
	in.len = 0;
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_EXPORT_NAME, "r0", 2);
	drive_all(&r, &refused, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN);
	CU_ASSERT(strstr(r.hs.reason, "not primary") != NULL);
	run_free(&r);
	w_free(&in);
}

/* GO with NBD_INFO_BLOCK_SIZE (+ NAME, DESCRIPTION, an unknown request). */
static void
test_go_block_size(void)
{
	static const uint16_t infos[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME,
	    NBD_INFO_DESCRIPTION, 999 };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;
	const uint8_t *p;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", infos, ARRAY_SIZE(infos));
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, in.len);
	CU_ASSERT_TRUE(r.hs.block_size_negotiated);
	CU_ASSERT_TRUE(r.hs.structured);
	CU_ASSERT_FALSE(r.hs.meta_allocation);
	CU_ASSERT_EQUAL(r.hs.tflags, EXPORT_TFLAGS);
	CU_ASSERT_EQUAL(r.hs.n_options, 2);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	if ((p = expect_info(&rd, NBD_OPT_GO, NBD_INFO_EXPORT, 10)) != NULL) {
		CU_ASSERT_EQUAL(get_be64(p), EXPORT_SIZE);
		CU_ASSERT_EQUAL(get_be16(p + 8), EXPORT_TFLAGS);
	}
	if ((p = expect_info(&rd, NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, 12)) != NULL) {
		CU_ASSERT_EQUAL(get_be32(p), 512);
		CU_ASSERT_EQUAL(get_be32(p + 4), 4096);
		CU_ASSERT_EQUAL(get_be32(p + 8), 32u << 20);
	}
	if ((p = expect_info(&rd, NBD_OPT_GO, NBD_INFO_NAME, 2)) != NULL)
		CU_ASSERT(memcmp(p, "r0", 2) == 0);
	p = expect_info(&rd, NBD_OPT_GO, NBD_INFO_DESCRIPTION,
	    strlen(export_r0.description));
	if (p != NULL)
		CU_ASSERT(memcmp(p, export_r0.description, strlen(export_r0.description)) == 0);
	expect(&rd, NBD_OPT_GO, NBD_REP_ACK, 0);
	expect_end(&rd);	/* no zero padding after GO's ACK */
	run_free(&r);
	w_free(&in);
}

/* GO without information requests (the kernel's nbd-client). */
static void
test_go_plain(void)
{
	struct wire in = { 0 };
	struct run r;
	struct rd rd;
	const uint8_t *p;

	c_flags(&in, CF_FIXED);
	c_info(&in, NBD_OPT_GO, "", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_FALSE(r.hs.block_size_negotiated);
	CU_ASSERT_FALSE(r.hs.structured);
	CU_ASSERT_FALSE(r.hs.no_zeroes);
	rd_start(&rd, &r);
	if ((p = expect_info(&rd, NBD_OPT_GO, NBD_INFO_EXPORT, 10)) != NULL)
		CU_ASSERT_EQUAL(get_be16(p + 8), EXPORT_TFLAGS & ~NBD_FLAG_SEND_DF);
	expect_info(&rd, NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, 12);	/* always sent */
	expect(&rd, NBD_OPT_GO, NBD_REP_ACK, 0);
	expect_end(&rd);
	run_free(&r);
	w_free(&in);
}

/*
 * An export with 4096-byte blocks: INFO and GO without NBD_INFO_BLOCK_SIZE
 * get the block sizes and then BLOCK_SIZE_REQD (a portable client may send
 * 512-byte requests); GO that asks for them enters transmission.
 */
static void
test_block_size_required(void)
{
	static const uint16_t bs[] = { NBD_INFO_BLOCK_SIZE };
	struct nbd_export e4k = export_r0;
	struct wire in = { 0 };
	struct run r;
	struct rd rd;
	const uint8_t *p;

	e4k.min_block = 4096;
	c_flags(&in, CF_BOTH);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	c_info(&in, NBD_OPT_INFO, "r0", NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", bs, 1);
	drive_all(&r, &e4k, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, in.len);
	CU_ASSERT_TRUE(r.hs.block_size_negotiated);
	CU_ASSERT_EQUAL(r.hs.n_options, 3);
	CU_ASSERT(strstr(r.hs.note, "minimum block 4096") != NULL);
	rd_start(&rd, &r);
	for (int i = 0; i < 2; i++) {
		uint32_t opt = i == 0 ? NBD_OPT_GO : NBD_OPT_INFO;

		expect_info(&rd, opt, NBD_INFO_EXPORT, 10);
		if ((p = expect_info(&rd, opt, NBD_INFO_BLOCK_SIZE, 12)) != NULL)
			CU_ASSERT_EQUAL(get_be32(p), 4096);
		expect(&rd, opt, NBD_REP_ERR_BLOCK_SIZE_REQD, SIZE_MAX);
	}
	expect_go_ack_last(&rd);
	run_free(&r);
	w_free(&in);
}

/* INFO then GO with the same parameters: the same answers. */
static void
test_info_then_go(void)
{
	static const uint16_t infos[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_DESCRIPTION };
	struct wire in = { 0 };
	struct run r;
	size_t hdr = NBD_HELLO_LEN + NBD_OPT_REPLY_HDR_LEN, half;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_INFO, "r0", infos, ARRAY_SIZE(infos));
	c_info(&in, NBD_OPT_GO, "r0", infos, ARRAY_SIZE(infos));
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.hs.n_options, 3);
	/* After the STRUCTURED_REPLY ACK, two equal halves but for the option. */
	CU_ASSERT_EQUAL_FATAL((r.out.len - hdr) % 2, 0);
	half = (r.out.len - hdr) / 2;
	for (size_t off = 0; off < half; ) {
		const uint8_t *a = r.out.b + hdr + off, *b = a + half;
		uint32_t dlen = get_be32(a + 16);

		CU_ASSERT_EQUAL(get_be32(a + 8), NBD_OPT_INFO);
		CU_ASSERT_EQUAL(get_be32(b + 8), NBD_OPT_GO);
		CU_ASSERT(memcmp(a, b, 8) == 0);
		CU_ASSERT(memcmp(a + 12, b + 12, 8 + dlen) == 0);
		off += NBD_OPT_REPLY_HDR_LEN + dlen;
	}
	CU_ASSERT_TRUE(r.hs.block_size_negotiated);
	run_free(&r);

	/* INFO alone leaves the handshake going; BLOCK_SIZE in INFO commits nothing. */
	in.len = 0;
	c_flags(&in, CF_BOTH);
	c_info(&in, NBD_OPT_INFO, "r0", infos, 1);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_FALSE(r.hs.block_size_negotiated);
	run_free(&r);
	w_free(&in);
}

/* INFO/GO errors: unknown name, malformed data; the client may retry. */
static void
test_go_errors(void)
{
	static const uint8_t bad_name_len[] = { 0, 0, 0, 9, 'r', '0', 0, 0 };
	static const uint8_t bad_count[] = { 0, 0, 0, 2, 'r', '0', 0, 2, 0, 3 };
	static const uint8_t nul_name[] = { 0, 0, 0, 2, 'r', 0, 0, 0 };
	static const uint8_t trailing[] = { 0, 0, 0, 2, 'r', '0', 0, 1, 0, 3, 0 };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_info(&in, NBD_OPT_GO, "r1", NULL, 0);
	c_opt(&in, NBD_OPT_GO, bad_name_len, sizeof(bad_name_len));
	c_opt(&in, NBD_OPT_INFO, bad_count, sizeof(bad_count));
	c_opt(&in, NBD_OPT_GO, bad_count, 5);	/* shorter than 6 */
	c_opt(&in, NBD_OPT_GO, nul_name, sizeof(nul_name));
	c_opt(&in, NBD_OPT_GO, trailing, sizeof(trailing));
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, SIZE_MAX);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_INFO, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect_go_ack_last(&rd);
	run_free(&r);
	w_free(&in);
}

/* A refused export: GO/INFO get POLICY with the text, LIST still works. */
static void
test_refuse(void)
{
	struct nbd_export refused = export_r0;
	struct wire in = { 0 };
	struct run r;
	struct rd rd;
	const uint8_t *p;

	refused.refuse = "not primary";
	c_flags(&in, CF_BOTH);
	c_info(&in, NBD_OPT_INFO, "r0", NULL, 0);
	c_opt(&in, NBD_OPT_LIST, NULL, 0);
	c_info(&in, NBD_OPT_GO, "", NULL, 0);
	c_opt(&in, NBD_OPT_ABORT, NULL, 0);
	drive_all(&r, &refused, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_STRING_EQUAL(r.hs.reason, "");
	rd_start(&rd, &r);
	if ((p = expect(&rd, NBD_OPT_INFO, NBD_REP_ERR_POLICY, 11)) != NULL)
		CU_ASSERT(memcmp(p, "not primary", 11) == 0);
	expect(&rd, NBD_OPT_LIST, NBD_REP_SERVER, 6);
	expect(&rd, NBD_OPT_LIST, NBD_REP_ACK, 0);
	if ((p = expect(&rd, NBD_OPT_GO, NBD_REP_ERR_POLICY, 11)) != NULL)
		CU_ASSERT(memcmp(p, "not primary", 11) == 0);
	expect(&rd, NBD_OPT_ABORT, NBD_REP_ACK, 0);
	expect_end(&rd);
	run_free(&r);
	w_free(&in);
}

/* Shutting down: every option gets ERR_SHUTDOWN but ABORT (its ACK) and
 * EXPORT_NAME (no error reply: a close); none enters transmission. */
static void
test_shutdown(void)
{
	struct wire in = { 0 }, in2 = { 0 };
	struct run r;
	struct rd rd;

	drive_shutting_down = true;
	c_flags(&in, CF_BOTH);
	c_info(&in, NBD_OPT_INFO, "r0", NULL, 0);
	c_opt(&in, NBD_OPT_LIST, NULL, 0);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_GO, "", NULL, 0);
	c_opt(&in, NBD_OPT_ABORT, NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.hs.shutdown_refused, 4);
	CU_ASSERT_FALSE(r.hs.structured);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_INFO, NBD_REP_ERR_SHUTDOWN, SIZE_MAX);
	expect(&rd, NBD_OPT_LIST, NBD_REP_ERR_SHUTDOWN, SIZE_MAX);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_SHUTDOWN, SIZE_MAX);
	expect(&rd, NBD_OPT_GO, NBD_REP_ERR_SHUTDOWN, SIZE_MAX);
	expect(&rd, NBD_OPT_ABORT, NBD_REP_ACK, 0);
	expect_end(&rd);
	run_free(&r);

	c_flags(&in2, CF_BOTH);
	c_opt(&in2, NBD_OPT_EXPORT_NAME, "r0", 2);
	drive_all(&r, &export_r0, &in2);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT(strstr(r.hs.reason, "shutting down") != NULL);
	rd_start(&rd, &r);
	expect_end(&rd);
	run_free(&r);
	drive_shutting_down = false;
	w_free(&in);
	w_free(&in2);
}

/* LIST: one NBD_REP_SERVER then ACK; with data -> INVALID. */
static void
test_list(void)
{
	struct wire in = { 0 };
	struct run r;
	struct rd rd;
	const uint8_t *p;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_LIST, NULL, 0);
	c_opt(&in, NBD_OPT_LIST, "x", 1);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_MORE);
	CU_ASSERT_EQUAL(r.consumed, in.len);
	rd_start(&rd, &r);
	if ((p = expect(&rd, NBD_OPT_LIST, NBD_REP_SERVER, 6)) != NULL) {
		CU_ASSERT_EQUAL(get_be32(p), 2);
		CU_ASSERT(memcmp(p + 4, "r0", 2) == 0);
	}
	expect(&rd, NBD_OPT_LIST, NBD_REP_ACK, 0);
	expect(&rd, NBD_OPT_LIST, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect_end(&rd);
	run_free(&r);
	w_free(&in);
}

/* ABORT: ACK then a clean close, even with (ignored) data. */
static void
test_abort(void)
{
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_ABORT, "junk", 4);
	c_opt(&in, NBD_OPT_LIST, NULL, 0);	/* never looked at */
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_STRING_EQUAL(r.hs.reason, "");
	CU_ASSERT_EQUAL(r.consumed, 4 + NBD_OPT_HDR_LEN + 4);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_ABORT, NBD_REP_ACK, 0);
	expect_end(&rd);
	run_free(&r);
	w_free(&in);
}

/* STRUCTURED_REPLY: ACK once; twice or with data -> INVALID. */
static void
test_structured_twice(void)
{
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, "x", 1);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_TRUE(r.hs.structured);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, SIZE_MAX);
	run_free(&r);
	w_free(&in);
}

/* SET_META_CONTEXT before STRUCTURED_REPLY -> INVALID, nothing selected. */
static void
test_set_meta_before_structured(void)
{
	static const char *const q[] = { "base:allocation" };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r0", q, 1);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_TRUE(r.hs.structured);
	CU_ASSERT_FALSE(r.hs.meta_allocation);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	run_free(&r);
	w_free(&in);
}

/* LIST_META_CONTEXT: no query or "base:" lists base:allocation (id 0). */
static void
test_list_meta(void)
{
	static const char *const base[] = { "base:" };
	static const char *const other[] = { "qemu:dirty-bitmap:b0", "x-foo:bar", "nocolon" };
	static const char *const both[] = { "base:allocation", "base:", "base:allocation" };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_meta(&in, NBD_OPT_LIST_META_CONTEXT, "r0", NULL, 0);
	c_meta(&in, NBD_OPT_LIST_META_CONTEXT, "", base, 1);
	c_meta(&in, NBD_OPT_LIST_META_CONTEXT, "r0", other, 3);
	c_meta(&in, NBD_OPT_LIST_META_CONTEXT, "r0", both, 3);
	c_meta(&in, NBD_OPT_LIST_META_CONTEXT, "nope", NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_FALSE(r.hs.meta_allocation);	/* LIST selects nothing */
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	expect_meta(&rd, NBD_OPT_LIST_META_CONTEXT, 0);
	expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, 0);
	expect_meta(&rd, NBD_OPT_LIST_META_CONTEXT, 0);
	expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, 0);
	expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, 0);	/* nothing known */
	expect_meta(&rd, NBD_OPT_LIST_META_CONTEXT, 0);		/* listed once */
	expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, 0);
	expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_UNKNOWN, SIZE_MAX);
	run_free(&r);
	w_free(&in);
}

/* SET_META_CONTEXT selects base:allocation; a later SET replaces it. */
static void
test_set_meta(void)
{
	static const char *const alloc[] = { "x-foo:bar", "base:allocation" };
	static const char *const wild[] = { "base:" };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	/* Selected, reaches transmission. */
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r0", alloc, 2);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_TRUE(r.hs.meta_allocation);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	expect_meta(&rd, NBD_OPT_SET_META_CONTEXT, NBD_META_ALLOCATION_ID);
	expect(&rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, 0);
	run_free(&r);

	/* Replaced by an empty selection, by the "base:" wildcard (ignored in
	 * SET), and by a failing SET (unknown export). */
	for (int k = 0; k < 3; k++) {
		in.len = 0;
		c_flags(&in, CF_BOTH);
		c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r0", alloc, 2);
		if (k == 0)
			c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r0", NULL, 0);
		else if (k == 1)
			c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r0", wild, 1);
		else
			c_meta(&in, NBD_OPT_SET_META_CONTEXT, "r9", alloc, 2);
		c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
		drive_all(&r, &export_r0, &in);
		CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
		CU_ASSERT_FALSE(r.hs.meta_allocation);
		rd_start(&rd, &r);
		expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
		expect_meta(&rd, NBD_OPT_SET_META_CONTEXT, NBD_META_ALLOCATION_ID);
		expect(&rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, 0);
		expect(&rd, NBD_OPT_SET_META_CONTEXT,
		    k == 2 ? NBD_REP_ERR_UNKNOWN : NBD_REP_ACK, k == 2 ? SIZE_MAX : 0);
		run_free(&r);
	}
	w_free(&in);
}

/* Malformed meta context requests -> INVALID. */
static void
test_meta_malformed(void)
{
	static const uint8_t cases[][20] = {
		{ 0, 0, 0, 2, 'r', '0', 0, 0, 0, 1, 0, 0, 0, 9, 'b', 'a' },	/* query too long */
		{ 0, 0, 0, 2, 'r', '0', 0, 0, 0, 2, 0, 0, 0, 2, 'b', 'a' },	/* missing query */
		{ 0, 0, 0, 99, 'r', '0', 0, 0, 0, 0 },				/* name too long */
		{ 0, 0, 0, 2, 'r', '0', 0, 0, 0, 0, 'x', 'y' },			/* trailing bytes */
		{ 0, 0, 0, 2, 'r', '0', 0, 0, 0, 1, 0, 0, 0, 1, 'b', 'a' },	/* trailing bytes */
		{ 0, 0, 0, 2, 'r', 0, 0, 0, 0, 0 },				/* NUL in name */
		{ 0, 0, 0, 2, 'r', '0', 0xff, 0xff, 0xff, 0xff },		/* huge count */
	};
	static const uint32_t lens[] = { 16, 16, 10, 12, 16, 10, 10 };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		c_opt(&in, NBD_OPT_LIST_META_CONTEXT, cases[i], lens[i]);
		c_opt(&in, NBD_OPT_SET_META_CONTEXT, cases[i], lens[i]);
	}
	c_opt(&in, NBD_OPT_SET_META_CONTEXT, cases[0], 7);	/* shorter than 8 */
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_MORE);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, 0);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		expect(&rd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID, SIZE_MAX);
		expect(&rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID, SIZE_MAX);
	}
	expect(&rd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID, SIZE_MAX);
	expect_end(&rd);
	run_free(&r);
	w_free(&in);
}

/* Unknown options, STARTTLS, EXTENDED_HEADERS -> UNSUP, and we go on. */
static void
test_unknown_option(void)
{
	static const uint32_t opts[] = { 99, NBD_OPT_STARTTLS, NBD_OPT_EXTENDED_HEADERS,
	    4, 0, 0xffffffff };
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	c_flags(&in, CF_BOTH);
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		c_opt(&in, opts[i], "some data", i % 2 ? 9 : 0);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.hs.n_options, ARRAY_SIZE(opts) + 1);
	rd_start(&rd, &r);
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		expect(&rd, opts[i], NBD_REP_ERR_UNSUP, SIZE_MAX);
	expect_info(&rd, NBD_OPT_GO, NBD_INFO_EXPORT, 10);
	run_free(&r);
	w_free(&in);
}

/* Oversize option: skipped and TOO_BIG; absurd size or EXPORT_NAME: close. */
static void
test_oversize_option(void)
{
	uint32_t big = NBD_MAX_OPTION_LEN + 1;
	uint8_t *junk = calloc(1, big);
	struct wire in = { 0 };
	struct run r;
	struct rd rd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(junk);
	memset(junk, 'A', big);
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_INFO, junk, big);
	c_opt(&in, 77, junk, big);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, in.len);
	rd_start(&rd, &r);
	expect(&rd, NBD_OPT_INFO, NBD_REP_ERR_TOO_BIG, SIZE_MAX);
	expect(&rd, 77, NBD_REP_ERR_TOO_BIG, SIZE_MAX);
	expect_info(&rd, NBD_OPT_GO, NBD_INFO_EXPORT, 10);
	run_free(&r);

	/* More than 1 MiB: closed at the header, the data never read. */
	in.len = 0;
	c_flags(&in, CF_BOTH);
	w_be64(&in, NBD_IHAVEOPT);
	w_be32(&in, NBD_OPT_INFO);
	w_be32(&in, NBD_HS_MAX_SKIP + 1);
	w_put(&in, junk, 100);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.consumed, 4 + NBD_OPT_HDR_LEN);
	CU_ASSERT(strstr(r.hs.reason, "NBD_OPT_INFO") != NULL);
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN);
	run_free(&r);

	/* EXPORT_NAME cannot be answered with TOO_BIG. */
	in.len = 0;
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_EXPORT_NAME, junk, big);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN);
	run_free(&r);
	free(junk);
	w_free(&in);
}

/* At most NBD_MAX_OPTIONS options; the next one closes. */
static void
test_too_many_options(void)
{
	struct wire in = { 0 };
	struct run r;

	c_flags(&in, CF_BOTH);
	for (unsigned i = 0; i < NBD_MAX_OPTIONS; i++)
		c_opt(&in, NBD_OPT_LIST, NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_MORE);
	CU_ASSERT_EQUAL(r.hs.n_options, NBD_MAX_OPTIONS);
	run_free(&r);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT_EQUAL(r.hs.n_options, NBD_MAX_OPTIONS);
	CU_ASSERT(strstr(r.hs.reason, "too many options") != NULL);
	/* Every LIST was answered (SERVER + ACK), the GO was not. */
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN +
	    NBD_MAX_OPTIONS * (2 * NBD_OPT_REPLY_HDR_LEN + 4 + 2));
	run_free(&r);
	w_free(&in);
}

/* Wrong option magic -> close, without a reply. */
static void
test_bad_magic(void)
{
	struct wire in = { 0 };
	struct run r;

	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_LIST, NULL, 0);
	w_be64(&in, NBD_MAGIC);
	w_be32(&in, NBD_OPT_GO);
	w_be32(&in, 0);
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
	CU_ASSERT(strstr(r.hs.reason, "magic") != NULL);
	CU_ASSERT_EQUAL(r.hs.n_options, 1);
	/* Only the LIST replies. */
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN + 2 * NBD_OPT_REPLY_HDR_LEN + 6);
	run_free(&r);
	w_free(&in);
}

/* Unknown client flag or no FIXED_NEWSTYLE -> close before any option. */
static void
test_bad_client_flags(void)
{
	static const uint32_t bad[] = { 0, NBD_FLAG_C_NO_ZEROES, 4 | CF_BOTH,
	    0x80000000u | CF_FIXED, 0xffffffffu };
	struct wire in = { 0 };
	struct run r;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		in.len = 0;
		c_flags(&in, bad[i]);
		c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
		drive_all(&r, &export_r0, &in);
		CU_ASSERT_EQUAL(r.st, NBD_HS_CLOSE);
		CU_ASSERT_EQUAL(r.consumed, 4);
		CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN);
		CU_ASSERT_EQUAL(r.hs.n_options, 0);
		CU_ASSERT(r.hs.reason[0] != '\0');
		run_free(&r);
	}
	w_free(&in);
}

/* Bytes after GO / EXPORT_NAME belong to transmission: not consumed. */
static void
test_bytes_after_go(void)
{
	struct wire in = { 0 };
	struct run r;
	size_t hs_len;
	uint8_t req[NBD_REQUEST_LEN];

	memset(req, 0x5a, sizeof(req));
	put_be32(req, NBD_REQUEST_MAGIC);
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	c_info(&in, NBD_OPT_GO, "r0", NULL, 0);
	hs_len = in.len;
	w_put(&in, req, sizeof(req));
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, hs_len);
	run_free(&r);

	in.len = 0;
	c_flags(&in, CF_BOTH);
	c_opt(&in, NBD_OPT_EXPORT_NAME, "r0", 2);
	hs_len = in.len;
	w_put(&in, req, sizeof(req));
	drive_all(&r, &export_r0, &in);
	CU_ASSERT_EQUAL(r.st, NBD_HS_DONE);
	CU_ASSERT_EQUAL(r.consumed, hs_len);
	CU_ASSERT_EQUAL(r.out.len, NBD_HELLO_LEN + 10);
	run_free(&r);
	w_free(&in);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("nbd_handshake", NULL, NULL);
	CU_add_test(s, "greeting", test_greeting);
	CU_add_test(s, "export_name_zeroes", test_export_name_zeroes);
	CU_add_test(s, "export_name_no_zeroes", test_export_name_no_zeroes);
	CU_add_test(s, "export_name_fail", test_export_name_fail);
	CU_add_test(s, "go_block_size", test_go_block_size);
	CU_add_test(s, "go_plain", test_go_plain);
	CU_add_test(s, "block_size_required", test_block_size_required);
	CU_add_test(s, "info_then_go", test_info_then_go);
	CU_add_test(s, "go_errors", test_go_errors);
	CU_add_test(s, "refuse", test_refuse);
	CU_add_test(s, "list", test_list);
	CU_add_test(s, "shutdown", test_shutdown);
	CU_add_test(s, "abort", test_abort);
	CU_add_test(s, "structured_twice", test_structured_twice);
	CU_add_test(s, "set_meta_before_structured", test_set_meta_before_structured);
	CU_add_test(s, "list_meta", test_list_meta);
	CU_add_test(s, "set_meta", test_set_meta);
	CU_add_test(s, "meta_malformed", test_meta_malformed);
	CU_add_test(s, "unknown_option", test_unknown_option);
	CU_add_test(s, "oversize_option", test_oversize_option);
	CU_add_test(s, "too_many_options", test_too_many_options);
	CU_add_test(s, "bad_magic", test_bad_magic);
	CU_add_test(s, "bad_client_flags", test_bad_client_flags);
	CU_add_test(s, "bytes_after_go", test_bytes_after_go);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
