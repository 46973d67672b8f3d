/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD fixed-newstyle handshake, sans-IO (see nbd_handshake.h).
 *
 * The client's byte stream is parsed in phases:
 *
 *   phase      needs                 then
 *   CFLAGS     4 bytes client flags  unknown bit / no FIXED_NEWSTYLE -> CLOSED
 *                                    else OPT_HDR
 *   OPT_HDR    16 bytes              bad magic -> CLOSED
 *                                    NBD_MAX_OPTIONS already seen -> CLOSED
 *                                    length > NBD_MAX_OPTION_LEN:
 *                                      EXPORT_NAME or > NBD_HS_MAX_SKIP -> CLOSED
 *                                      else OPT_SKIP
 *                                    length 0 -> run the option
 *                                    else OPT_DATA
 *   OPT_DATA   length bytes          run the option: OPT_HDR, DONE or CLOSED
 *   OPT_SKIP   length bytes dropped  NBD_REP_ERR_TOO_BIG, OPT_HDR
 *
 * Each option has one handler in opt_handlers[]; a handler queues its
 * replies on hs->out and returns the status.  Once the server shuts down
 * (nbd_hs_shutdown), every option but ABORT runs opt_shutdown instead.  Error replies carry a short
 * message as data; client-supplied strings never appear in replies.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_handshake.h"
#include "util.h"

#define CFLAGS_LEN		4	/* client flags on the wire */
#define EXPORT_NAME_ZEROES	124	/* reserved bytes after EXPORT_NAME reply */
#define META_ALLOCATION		"base:allocation"

/* ---- output buffer ---- */

/* Append n bytes to out and return them, or NULL (hs->oom set). */
static uint8_t *
out_reserve(struct nbd_hs *hs, size_t n)
{
	uint8_t *p;
	size_t cap;

	if (hs->oom)
		return NULL;
	if (hs->out_len + n > hs->out_cap) {
		cap = hs->out_cap ? hs->out_cap : 256;
		while (cap < hs->out_len + n)
			cap *= 2;
		p = realloc(hs->out, cap);
		if (p == NULL) {
			hs->oom = true;
			return NULL;
		}
		hs->out = p;
		hs->out_cap = cap;
	}
	p = hs->out + hs->out_len;
	hs->out_len += n;
	return p;
}

/* Queue an option reply to the current option with len bytes of data. */
static void
queue_reply(struct nbd_hs *hs, uint32_t type, const void *data, size_t len)
{
	uint8_t *p = out_reserve(hs, NBD_OPT_REPLY_HDR_LEN + len);

	if (p == NULL)
		return;
	nbd_opt_reply_encode(p, hs->opt, type, (uint32_t)len);
	if (len > 0)
		memcpy(p + NBD_OPT_REPLY_HDR_LEN, data, len);
}

/* Queue an error reply; msg (a human-readable text) is its data. */
static void
queue_error(struct nbd_hs *hs, uint32_t type, const char *msg)
{
	/* Remembered for the caller's one log line per refused option. */
	snprintf(hs->note, sizeof(hs->note), "%s refused with %s: %s",
	    nbd_opt_name(hs->opt), nbd_rep_name(type), msg);
	hs->notes++;
	queue_reply(hs, type, msg, MIN(strlen(msg), (size_t)NBD_MAX_STRING));
}

/* Queue NBD_REP_INFO of type info whose payload is data[0..len). */
static void
queue_info(struct nbd_hs *hs, uint16_t info, const void *data, size_t len)
{
	uint8_t *p = out_reserve(hs, NBD_OPT_REPLY_HDR_LEN + 2 + len);

	if (p == NULL)
		return;
	nbd_opt_reply_encode(p, hs->opt, NBD_REP_INFO, (uint32_t)(2 + len));
	put_be16(p + NBD_OPT_REPLY_HDR_LEN, info);
	if (len > 0)
		memcpy(p + NBD_OPT_REPLY_HDR_LEN + 2, data, len);
}

/* ---- helpers ---- */

/* Enter the closed phase with a reason for the log line. */
static enum nbd_hs_status __attribute__((format(printf, 2, 3)))
hs_close(struct nbd_hs *hs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(hs->reason, sizeof(hs->reason), fmt, ap);
	va_end(ap);
	hs->phase = NBD_HS_PH_CLOSED;
	return NBD_HS_CLOSE;
}

/* Does the client's name[0..len) select our export? */
static bool
name_matches(const struct nbd_hs *hs, const uint8_t *name, size_t len)
{
	const char *ours = hs->exp->name ? hs->exp->name : "";

	return len == 0 || (len == strlen(ours) && memcmp(name, ours, len) == 0);
}

/* A client string is usable: within the spec's bound and without NUL.
 * s may be NULL when len is 0 (an option without data). */
static bool
string_ok(const uint8_t *s, size_t len)
{
	return len == 0 || (len <= NBD_MAX_STRING && memchr(s, 0, len) == NULL);
}

/* Transmission flags to advertise now: DF needs structured replies. */
static uint16_t
current_tflags(const struct nbd_hs *hs)
{
	uint16_t f = hs->exp->tflags | NBD_FLAG_HAS_FLAGS;

	if (!hs->structured)
		f &= ~NBD_FLAG_SEND_DF;
	return f;
}

/* Fill in the results and enter transmission. */
static enum nbd_hs_status
hs_done(struct nbd_hs *hs)
{
	hs->tflags = current_tflags(hs);
	hs->meta_allocation = hs->structured && hs->meta_selected;
	hs->phase = NBD_HS_PH_DONE;
	return NBD_HS_DONE;
}

/* ---- option handlers: hs->data[0..hs->opt_len) is the option data ---- */

/* EXPORT_NAME: no error reply exists; anything but success closes. */
static enum nbd_hs_status
opt_export_name(struct nbd_hs *hs)
{
	uint8_t *p;
	size_t n;

	if (!string_ok(hs->data, hs->opt_len) ||
	    !name_matches(hs, hs->data, hs->opt_len))
		return hs_close(hs, "NBD_OPT_EXPORT_NAME: unknown export");
	if (hs->exp->refuse != NULL)
		return hs_close(hs, "NBD_OPT_EXPORT_NAME refused: %s", hs->exp->refuse);
	n = 10 + (hs->no_zeroes ? 0 : EXPORT_NAME_ZEROES);	/* size, flags */
	if ((p = out_reserve(hs, n)) == NULL)
		return hs_close(hs, "out of memory");
	memset(p, 0, n);
	put_be64(p, hs->exp->size);
	put_be16(p + 8, current_tflags(hs));
	return hs_done(hs);
}

/* ABORT: acknowledge, then close cleanly (empty reason); data ignored. */
static enum nbd_hs_status
opt_abort(struct nbd_hs *hs)
{
	queue_reply(hs, NBD_REP_ACK, NULL, 0);
	hs->reason[0] = '\0';
	hs->phase = NBD_HS_PH_CLOSED;
	return NBD_HS_CLOSE;
}

/* LIST: one NBD_REP_SERVER with our name, then ACK; takes no data. */
static enum nbd_hs_status
opt_list(struct nbd_hs *hs)
{
	const char *name = hs->exp->name ? hs->exp->name : "";
	size_t len = strnlen(name, NBD_MAX_STRING);
	uint8_t *p;

	if (hs->opt_len != 0) {
		queue_error(hs, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
		return NBD_HS_MORE;
	}
	if ((p = out_reserve(hs, NBD_OPT_REPLY_HDR_LEN + 4 + len)) != NULL) {
		nbd_opt_reply_encode(p, hs->opt, NBD_REP_SERVER, (uint32_t)(4 + len));
		put_be32(p + NBD_OPT_REPLY_HDR_LEN, (uint32_t)len);
		memcpy(p + NBD_OPT_REPLY_HDR_LEN + 4, name, len);
	}
	queue_reply(hs, NBD_REP_ACK, NULL, 0);
	return NBD_HS_MORE;
}

/* What an INFO/GO request asked for. */
struct info_req {
	const uint8_t *name;	/* export name (not NUL-terminated) */
	uint32_t name_len;	/* its length */
	bool want_name;		/* NBD_INFO_NAME requested */
	bool want_desc;		/* NBD_INFO_DESCRIPTION requested */
	bool want_bs;		/* NBD_INFO_BLOCK_SIZE requested */
};

/*
 * Parse INFO/GO data: u32 name length, name, u16 count, count x u16.
 * The lengths must add up exactly.  Returns false when malformed.
 */
static bool
parse_info_req(const struct nbd_hs *hs, struct info_req *r)
{
	const uint8_t *d = hs->data;
	size_t len = hs->opt_len, n;

	memset(r, 0, sizeof(*r));
	if (len < 6)
		return false;
	r->name_len = get_be32(d);
	if (r->name_len > len - 6)
		return false;
	r->name = d + 4;
	n = get_be16(d + 4 + r->name_len);
	if (len != 6 + (size_t)r->name_len + 2 * n)
		return false;
	if (!string_ok(r->name, r->name_len))
		return false;
	/* Each request type: unknown ones ignored, repeats harmless. */
	for (size_t i = 0; i < n; i++) {
		switch (get_be16(d + 6 + r->name_len + 2 * i)) {
		case NBD_INFO_NAME:		r->want_name = true; break;
		case NBD_INFO_DESCRIPTION:	r->want_desc = true; break;
		case NBD_INFO_BLOCK_SIZE:	r->want_bs = true; break;
		default:			break;
		}
	}
	return true;
}

/* Queue the NBD_REP_INFO replies of a successful INFO/GO. */
static void
queue_export_infos(struct nbd_hs *hs, const struct info_req *r)
{
	const struct nbd_export *e = hs->exp;
	uint8_t b[12];

	put_be64(b, e->size);
	put_be16(b + 8, current_tflags(hs));
	queue_info(hs, NBD_INFO_EXPORT, b, 10);
	put_be32(b, e->min_block);
	put_be32(b + 4, e->pref_block);
	put_be32(b + 8, e->max_block);
	queue_info(hs, NBD_INFO_BLOCK_SIZE, b, 12);
	if (r->want_name && e->name != NULL)
		queue_info(hs, NBD_INFO_NAME, e->name, strnlen(e->name, NBD_MAX_STRING));
	if (r->want_desc && e->description != NULL)
		queue_info(hs, NBD_INFO_DESCRIPTION, e->description,
		    strnlen(e->description, NBD_MAX_STRING));
}

/*
 * INFO and GO share one path, so with the same parameters they give the
 * same answers: EXPORT and BLOCK_SIZE always, NAME and DESCRIPTION when
 * asked, then ACK.  GO then enters transmission.
 */
static enum nbd_hs_status
opt_info_go(struct nbd_hs *hs)
{
	struct info_req r;

	if (!parse_info_req(hs, &r)) {
		queue_error(hs, NBD_REP_ERR_INVALID, "malformed NBD_OPT_INFO/GO request");
		return NBD_HS_MORE;
	}
	if (!name_matches(hs, r.name, r.name_len)) {
		queue_error(hs, NBD_REP_ERR_UNKNOWN, "no such export");
		return NBD_HS_MORE;
	}
	if (hs->exp->refuse != NULL) {
		queue_error(hs, NBD_REP_ERR_POLICY, hs->exp->refuse);
		return NBD_HS_MORE;
	}
	queue_export_infos(hs, &r);
	if (!r.want_bs && hs->exp->min_block > NBD_PORTABLE_MIN_BLOCK) {
		/*
		 * A client that does not ask for block sizes may send requests
		 * aligned to 512 bytes only (the spec's advice for portable
		 * clients); this export rejects those.  Refuse before
		 * transmission, after the BLOCK_SIZE info above tells the client
		 * what to ask for.  INFO gets the same answer as GO.
		 */
		char msg[96];

		snprintf(msg, sizeof(msg), "this export needs block size negotiation "
		    "(minimum block %u bytes)", hs->exp->min_block);
		queue_error(hs, NBD_REP_ERR_BLOCK_SIZE_REQD, msg);
		return NBD_HS_MORE;
	}
	queue_reply(hs, NBD_REP_ACK, NULL, 0);
	if (hs->opt != NBD_OPT_GO)
		return NBD_HS_MORE;
	hs->block_size_negotiated = r.want_bs;
	return hs_done(hs);
}

/* STRUCTURED_REPLY: no data, once. */
static enum nbd_hs_status
opt_structured_reply(struct nbd_hs *hs)
{
	if (hs->opt_len != 0)
		queue_error(hs, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
	else if (hs->structured)
		queue_error(hs, NBD_REP_ERR_INVALID, "structured replies already negotiated");
	else {
		hs->structured = true;
		queue_reply(hs, NBD_REP_ACK, NULL, 0);
	}
	return NBD_HS_MORE;
}

/*
 * Check LIST/SET_META_CONTEXT data: u32 name length, name, u32 query count,
 * then count x (u32 length, query), ending exactly at the option's end.
 * Returns the offset of the first query, or 0 when malformed.
 */
static size_t
parse_meta_req(const struct nbd_hs *hs, uint32_t *name_len, uint32_t *nq)
{
	const uint8_t *d = hs->data;
	size_t len = hs->opt_len, p, q, qlen;

	if (len < 8)
		return 0;
	*name_len = get_be32(d);
	if (*name_len > len - 8 || !string_ok(d + 4, *name_len))
		return 0;
	*nq = get_be32(d + 4 + *name_len);
	p = 8 + *name_len;
	if (*nq > (len - p) / 4)
		return 0;
	/* Every query fits in what is left and within the string bound. */
	q = p;
	for (uint32_t i = 0; i < *nq; i++) {
		if (len - q < 4)
			return 0;
		qlen = get_be32(d + q);
		if (qlen > len - q - 4 || qlen > NBD_MAX_STRING)
			return 0;
		q += 4 + qlen;
		if (i + 1 == *nq && q != len)
			return 0;
	}
	if (*nq == 0 && p != len)
		return 0;
	return p;
}

/* Does the (validated) query list select base:allocation? */
static bool
meta_query_selects(const struct nbd_hs *hs, size_t p, uint32_t nq, bool set)
{
	const uint8_t *d = hs->data;
	size_t qlen;

	if (nq == 0)
		return !set;	/* LIST with no query lists everything */
	for (uint32_t i = 0; i < nq; i++) {
		qlen = get_be32(d + p);
		p += 4;
		if (qlen == strlen(META_ALLOCATION) &&
		    memcmp(d + p, META_ALLOCATION, qlen) == 0)
			return true;
		/* "base:" is a wildcard in LIST, ignored in SET. */
		if (!set && qlen == 5 && memcmp(d + p, "base:", 5) == 0)
			return true;
		p += qlen;	/* unknown namespaces: silently not selected */
	}
	return false;
}

/*
 * LIST_META_CONTEXT and SET_META_CONTEXT.  SET replaces the selection even
 * when it fails, and needs structured replies first.  One context exists:
 * base:allocation (id NBD_META_ALLOCATION_ID in SET, 0 in LIST).
 */
static enum nbd_hs_status
opt_meta_context(struct nbd_hs *hs)
{
	bool set = hs->opt == NBD_OPT_SET_META_CONTEXT;
	uint32_t name_len = 0, nq = 0;
	size_t p;
	uint8_t b[4 + sizeof(META_ALLOCATION)];

	if (set)
		hs->meta_selected = false;
	if (set && !hs->structured) {
		queue_error(hs, NBD_REP_ERR_INVALID,
		    "NBD_OPT_SET_META_CONTEXT needs structured replies first");
		return NBD_HS_MORE;
	}
	if ((p = parse_meta_req(hs, &name_len, &nq)) == 0) {
		queue_error(hs, NBD_REP_ERR_INVALID, "malformed meta context request");
		return NBD_HS_MORE;
	}
	if (!name_matches(hs, hs->data + 4, name_len)) {
		queue_error(hs, NBD_REP_ERR_UNKNOWN, "no such export");
		return NBD_HS_MORE;
	}
	if (meta_query_selects(hs, p, nq, set)) {
		put_be32(b, set ? NBD_META_ALLOCATION_ID : 0);
		memcpy(b + 4, META_ALLOCATION, strlen(META_ALLOCATION));
		queue_reply(hs, NBD_REP_META_CONTEXT, b, 4 + strlen(META_ALLOCATION));
		hs->meta_selected |= set;
	}
	queue_reply(hs, NBD_REP_ACK, NULL, 0);
	return NBD_HS_MORE;
}

/* Anything we do not implement: STARTTLS, EXTENDED_HEADERS, unknown. */
static enum nbd_hs_status
opt_unsupported(struct nbd_hs *hs)
{
	char msg[80];

	snprintf(msg, sizeof(msg), "%s is not supported", nbd_opt_name(hs->opt));
	queue_error(hs, NBD_REP_ERR_UNSUP, msg);
	return NBD_HS_MORE;
}

/* Any option but ABORT once the server shuts down (nbd_hs_shutdown). */
static enum nbd_hs_status
opt_shutdown(struct nbd_hs *hs)
{
	if (hs->opt == NBD_OPT_EXPORT_NAME)
		return hs_close(hs, "NBD_OPT_EXPORT_NAME refused: server shutting down");
	queue_error(hs, NBD_REP_ERR_SHUTDOWN, "server shutting down");
	hs->shutdown_refused++;
	return NBD_HS_MORE;
}

/* Option -> handler; options not listed get opt_unsupported. */
static const struct {
	uint32_t opt;				/* NBD_OPT_* */
	enum nbd_hs_status (*fn)(struct nbd_hs *);	/* its handler */
} opt_handlers[] = {
	{ NBD_OPT_EXPORT_NAME,		opt_export_name },
	{ NBD_OPT_ABORT,		opt_abort },
	{ NBD_OPT_LIST,			opt_list },
	{ NBD_OPT_INFO,			opt_info_go },
	{ NBD_OPT_GO,			opt_info_go },
	{ NBD_OPT_STRUCTURED_REPLY,	opt_structured_reply },
	{ NBD_OPT_LIST_META_CONTEXT,	opt_meta_context },
	{ NBD_OPT_SET_META_CONTEXT,	opt_meta_context },
};

/* Run the handler of the fully received option, then expect the next. */
static enum nbd_hs_status
run_option(struct nbd_hs *hs)
{
	enum nbd_hs_status st = NBD_HS_MORE;
	bool found = false;

	if (hs->shutting_down && hs->opt != NBD_OPT_ABORT) {
		st = opt_shutdown(hs);
		found = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(opt_handlers) && !found; i++) {
		if (opt_handlers[i].opt == hs->opt) {
			st = opt_handlers[i].fn(hs);
			found = true;
		}
	}
	if (!found)
		st = opt_unsupported(hs);
	free(hs->data);
	hs->data = NULL;
	hs->data_have = 0;
	if (hs->oom)
		return hs_close(hs, "out of memory");
	if (st == NBD_HS_MORE)
		hs->phase = NBD_HS_PH_OPT_HDR;
	return st;
}

/* ---- stream parsing ---- */

/* The 4 client flags bytes are in hs->hdr. */
static enum nbd_hs_status
got_client_flags(struct nbd_hs *hs)
{
	uint32_t f = get_be32(hs->hdr);

	if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return hs_close(hs, "unknown client flags 0x%x", f);
	if (!(f & NBD_FLAG_C_FIXED_NEWSTYLE))
		return hs_close(hs, "client does not speak fixed newstyle (flags 0x%x)", f);
	hs->no_zeroes = (f & NBD_FLAG_C_NO_ZEROES) != 0;
	hs->phase = NBD_HS_PH_OPT_HDR;
	return NBD_HS_MORE;
}

/* A whole option header is in hs->hdr: decide how to take its data. */
static enum nbd_hs_status
got_option_header(struct nbd_hs *hs)
{
	struct nbd_option o;
	int err = nbd_option_decode(hs->hdr, NBD_OPT_HDR_LEN, &o);

	if (err == -EBADMSG)
		return hs_close(hs, "bad option magic 0x%016llx",
		    (unsigned long long)get_be64(hs->hdr));
	if (hs->n_options >= NBD_MAX_OPTIONS)
		return hs_close(hs, "too many options (more than %u)", NBD_MAX_OPTIONS);
	hs->n_options++;
	hs->opt = get_be32(hs->hdr + 8);
	hs->opt_len = get_be32(hs->hdr + 12);
	if (err == -E2BIG) {
		if (hs->opt == NBD_OPT_EXPORT_NAME || hs->opt_len > NBD_HS_MAX_SKIP)
			return hs_close(hs, "%s with %u bytes of data",
			    nbd_opt_name(hs->opt), hs->opt_len);
		hs->skip_left = hs->opt_len;
		hs->phase = NBD_HS_PH_OPT_SKIP;
		return NBD_HS_MORE;
	}
	if (hs->opt_len == 0)
		return run_option(hs);
	if ((hs->data = malloc(hs->opt_len)) == NULL)
		return hs_close(hs, "out of memory");
	hs->data_have = 0;
	hs->phase = NBD_HS_PH_OPT_DATA;
	return NBD_HS_MORE;
}

/* Copy up to want - *have bytes from buf into dst; returns bytes taken. */
static size_t
fill(uint8_t *dst, size_t *have, size_t want, const uint8_t *buf, size_t len)
{
	size_t n = MIN(want - *have, len);

	memcpy(dst + *have, buf, n);
	*have += n;
	return n;
}

/* Take bytes for the current phase; returns bytes used, sets *st. */
static size_t
step(struct nbd_hs *hs, const uint8_t *buf, size_t len, enum nbd_hs_status *st)
{
	size_t n = 0;

	*st = NBD_HS_MORE;
	switch (hs->phase) {
	case NBD_HS_PH_CFLAGS:
		n = fill(hs->hdr, &hs->hdr_have, CFLAGS_LEN, buf, len);
		if (hs->hdr_have == CFLAGS_LEN) {
			hs->hdr_have = 0;
			*st = got_client_flags(hs);
		}
		break;
	case NBD_HS_PH_OPT_HDR:
		n = fill(hs->hdr, &hs->hdr_have, NBD_OPT_HDR_LEN, buf, len);
		if (hs->hdr_have == NBD_OPT_HDR_LEN) {
			hs->hdr_have = 0;
			*st = got_option_header(hs);
		}
		break;
	case NBD_HS_PH_OPT_DATA:
		n = fill(hs->data, &hs->data_have, hs->opt_len, buf, len);
		if (hs->data_have == hs->opt_len)
			*st = run_option(hs);
		break;
	case NBD_HS_PH_OPT_SKIP:
		n = (size_t)MIN(hs->skip_left, (uint64_t)len);
		hs->skip_left -= n;
		if (hs->skip_left == 0) {
			queue_error(hs, NBD_REP_ERR_TOO_BIG, "option data too long");
			hs->phase = NBD_HS_PH_OPT_HDR;
			if (hs->oom)
				*st = hs_close(hs, "out of memory");
		}
		break;
	case NBD_HS_PH_DONE:
	case NBD_HS_PH_CLOSED:
		break;
	}
	return n;
}

/* ---- public API ---- */

void
nbd_hs_init(struct nbd_hs *hs, const struct nbd_export *exp)
{
	uint8_t *p;

	memset(hs, 0, sizeof(*hs));
	hs->exp = exp;
	hs->phase = NBD_HS_PH_CFLAGS;
	if ((p = out_reserve(hs, NBD_HELLO_LEN)) == NULL) {
		hs_close(hs, "out of memory");
		return;
	}
	put_be64(p, NBD_MAGIC);
	put_be64(p + 8, NBD_IHAVEOPT);
	put_be16(p + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

enum nbd_hs_status
nbd_hs_feed(struct nbd_hs *hs, const void *buf, size_t len, size_t *consumed)
{
	const uint8_t *b = buf;
	enum nbd_hs_status st = NBD_HS_MORE;
	size_t used = 0;

	/* Loop until the input is used up or the phase is final; a zero-length
	 * option is run as soon as its header is complete. */
	while (hs->phase != NBD_HS_PH_DONE && hs->phase != NBD_HS_PH_CLOSED &&
	    used < len) {
		used += step(hs, b + used, len - used, &st);
		if (st != NBD_HS_MORE)
			break;
	}
	*consumed = used;
	if (hs->phase == NBD_HS_PH_DONE)
		return NBD_HS_DONE;
	if (hs->phase == NBD_HS_PH_CLOSED)
		return NBD_HS_CLOSE;
	return st;
}

void
nbd_hs_shutdown(struct nbd_hs *hs)
{
	hs->shutting_down = true;
}

void
nbd_hs_out_sent(struct nbd_hs *hs)
{
	hs->out_len = 0;
}

void
nbd_hs_free(struct nbd_hs *hs)
{
	free(hs->out);
	free(hs->data);
	hs->out = hs->data = NULL;
	hs->out_len = hs->out_cap = 0;
}
