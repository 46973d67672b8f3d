/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD wire codecs: symbolic names for logs, the option and request header
 * decoders, request validation against the negotiated export, and the reply
 * header encoders.  Pure functions: no allocation, no I/O, no logging, so
 * they are the libFuzzer targets in tests/fuzz/.
 */
#include <errno.h>
#include <stdio.h>

#include "nbd_proto.h"
#include "util.h"

/* ---- names ---- */

/* One entry of a value -> name table. */
struct nbd_name {
	uint32_t value;		/* protocol value */
	const char *name;	/* its symbolic name */
};

static const struct nbd_name cmd_names[] = {
	{ NBD_CMD_READ,			"NBD_CMD_READ" },
	{ NBD_CMD_WRITE,		"NBD_CMD_WRITE" },
	{ NBD_CMD_DISC,			"NBD_CMD_DISC" },
	{ NBD_CMD_FLUSH,		"NBD_CMD_FLUSH" },
	{ NBD_CMD_TRIM,			"NBD_CMD_TRIM" },
	{ NBD_CMD_CACHE,		"NBD_CMD_CACHE" },
	{ NBD_CMD_WRITE_ZEROES,		"NBD_CMD_WRITE_ZEROES" },
	{ NBD_CMD_BLOCK_STATUS,		"NBD_CMD_BLOCK_STATUS" },
};

static const struct nbd_name opt_names[] = {
	{ NBD_OPT_EXPORT_NAME,		"NBD_OPT_EXPORT_NAME" },
	{ NBD_OPT_ABORT,		"NBD_OPT_ABORT" },
	{ NBD_OPT_LIST,			"NBD_OPT_LIST" },
	{ NBD_OPT_STARTTLS,		"NBD_OPT_STARTTLS" },
	{ NBD_OPT_INFO,			"NBD_OPT_INFO" },
	{ NBD_OPT_GO,			"NBD_OPT_GO" },
	{ NBD_OPT_STRUCTURED_REPLY,	"NBD_OPT_STRUCTURED_REPLY" },
	{ NBD_OPT_LIST_META_CONTEXT,	"NBD_OPT_LIST_META_CONTEXT" },
	{ NBD_OPT_SET_META_CONTEXT,	"NBD_OPT_SET_META_CONTEXT" },
	{ NBD_OPT_EXTENDED_HEADERS,	"NBD_OPT_EXTENDED_HEADERS" },
};

static const struct nbd_name rep_names[] = {
	{ NBD_REP_ACK,			"NBD_REP_ACK" },
	{ NBD_REP_SERVER,		"NBD_REP_SERVER" },
	{ NBD_REP_INFO,			"NBD_REP_INFO" },
	{ NBD_REP_META_CONTEXT,		"NBD_REP_META_CONTEXT" },
	{ NBD_REP_ERR_UNSUP,		"NBD_REP_ERR_UNSUP" },
	{ NBD_REP_ERR_POLICY,		"NBD_REP_ERR_POLICY" },
	{ NBD_REP_ERR_INVALID,		"NBD_REP_ERR_INVALID" },
	{ NBD_REP_ERR_PLATFORM,		"NBD_REP_ERR_PLATFORM" },
	{ NBD_REP_ERR_TLS_REQD,		"NBD_REP_ERR_TLS_REQD" },
	{ NBD_REP_ERR_UNKNOWN,		"NBD_REP_ERR_UNKNOWN" },
	{ NBD_REP_ERR_SHUTDOWN,		"NBD_REP_ERR_SHUTDOWN" },
	{ NBD_REP_ERR_BLOCK_SIZE_REQD,	"NBD_REP_ERR_BLOCK_SIZE_REQD" },
	{ NBD_REP_ERR_TOO_BIG,		"NBD_REP_ERR_TOO_BIG" },
};

static const struct nbd_name info_names[] = {
	{ NBD_INFO_EXPORT,		"NBD_INFO_EXPORT" },
	{ NBD_INFO_NAME,		"NBD_INFO_NAME" },
	{ NBD_INFO_DESCRIPTION,		"NBD_INFO_DESCRIPTION" },
	{ NBD_INFO_BLOCK_SIZE,		"NBD_INFO_BLOCK_SIZE" },
};

static const struct nbd_name err_names[] = {
	{ 0,				"OK" },
	{ NBD_EPERM,			"NBD_EPERM" },
	{ NBD_EIO,			"NBD_EIO" },
	{ NBD_ENOMEM,			"NBD_ENOMEM" },
	{ NBD_EINVAL,			"NBD_EINVAL" },
	{ NBD_ENOSPC,			"NBD_ENOSPC" },
	{ NBD_EOVERFLOW,		"NBD_EOVERFLOW" },
	{ NBD_ENOTSUP,			"NBD_ENOTSUP" },
	{ NBD_ESHUTDOWN,		"NBD_ESHUTDOWN" },
};

/*
 * Look value up in a table; an unknown value is formatted as
 * "<prefix><decimal>" into one of a few per-thread slots, so one log line
 * may name up to four unknown values.
 */
static const char *
name_lookup(const struct nbd_name *t, size_t n, uint32_t value, const char *prefix)
{
	static __thread char slots[4][40];
	static __thread unsigned next;
	char *s;

	for (size_t i = 0; i < n; i++)
		if (t[i].value == value)
			return t[i].name;
	s = slots[next++ % ARRAY_SIZE(slots)];
	snprintf(s, sizeof(slots[0]), "%s%u", prefix, value);
	return s;
}

const char *
nbd_cmd_name(uint32_t type)
{
	return name_lookup(cmd_names, ARRAY_SIZE(cmd_names), type, "NBD_CMD_");
}

const char *
nbd_opt_name(uint32_t opt)
{
	return name_lookup(opt_names, ARRAY_SIZE(opt_names), opt, "NBD_OPT_");
}

const char *
nbd_rep_name(uint32_t rep)
{
	return name_lookup(rep_names, ARRAY_SIZE(rep_names), rep, "NBD_REP_");
}

const char *
nbd_info_name(uint32_t info)
{
	return name_lookup(info_names, ARRAY_SIZE(info_names), info, "NBD_INFO_");
}

const char *
nbd_err_name(uint32_t err)
{
	return name_lookup(err_names, ARRAY_SIZE(err_names), err, "NBD_E");
}

/* ---- decoders ---- */

int
nbd_option_decode(const void *buf, size_t len, struct nbd_option *out)
{
	const uint8_t *p = buf;

	if (len < NBD_OPT_HDR_LEN)
		return -EAGAIN;
	if (get_be64(p) != NBD_IHAVEOPT)
		return -EBADMSG;
	out->option = get_be32(p + 8);
	out->length = get_be32(p + 12);
	if (out->length > NBD_MAX_OPTION_LEN)
		return -E2BIG;
	return 0;
}

int
nbd_request_decode(const void *buf, size_t len, struct nbd_request *out)
{
	const uint8_t *p = buf;

	if (len < NBD_REQUEST_LEN)
		return -EAGAIN;
	if (get_be32(p) != NBD_REQUEST_MAGIC)
		return -EBADMSG;
	out->flags = get_be16(p + 4);
	out->type = get_be16(p + 6);
	out->cookie = get_be64(p + 8);
	out->offset = get_be64(p + 16);
	out->length = get_be32(p + 24);
	return 0;
}

/* ---- validation ---- */

/*
 * Per-command rules: the flags the command accepts (FUA is handled apart:
 * valid on every command when SEND_FUA is advertised), the transmission
 * flag that must have been advertised for the command to be used (0: none),
 * and what the request's byte range means.
 */
struct cmd_rule {
	uint16_t flags;		/* NBD_CMD_FLAG_* allowed besides FUA */
	uint16_t needs_tflag;	/* NBD_FLAG_SEND_* required, or 0 */
	bool ranged;		/* offset/length address the export */
	bool writes;		/* modifies data: EPERM when read-only */
	bool payload;		/* length limited by max_payload */
	bool enospc;		/* past the end -> ENOSPC (else EINVAL) */
};

static const struct cmd_rule cmd_rules[] = {
	[NBD_CMD_READ] = { NBD_CMD_FLAG_DF, 0, true, false, true, false },
	[NBD_CMD_WRITE] = { 0, 0, true, true, true, true },
	[NBD_CMD_DISC] = { 0, 0, false, false, false, false },
	[NBD_CMD_FLUSH] = { 0, NBD_FLAG_SEND_FLUSH, false, false, false, false },
	[NBD_CMD_TRIM] = { 0, NBD_FLAG_SEND_TRIM, true, true, false, false },
	[NBD_CMD_CACHE] = { 0, NBD_FLAG_SEND_CACHE, true, false, false, false },
	[NBD_CMD_WRITE_ZEROES] = { NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
	    NBD_FLAG_SEND_WRITE_ZEROES, true, true, false, true },
	[NBD_CMD_BLOCK_STATUS] = { NBD_CMD_FLAG_REQ_ONE, 0, true, false, false, false },
};

/*
 * Flags: unknown, not documented for the command, or depending on a
 * feature that was not negotiated -> EINVAL.
 */
static int
validate_flags(const struct nbd_request *req, const struct cmd_rule *r,
    const struct nbd_limits *lim)
{
	uint16_t allowed = r->flags;

	if (lim->tflags & NBD_FLAG_SEND_FUA)
		allowed |= NBD_CMD_FLAG_FUA;
	/* DF needs SEND_DF advertised, which needs structured replies. */
	if (!(lim->tflags & NBD_FLAG_SEND_DF) || !lim->structured)
		allowed &= ~NBD_CMD_FLAG_DF;
	if (!(lim->tflags & NBD_FLAG_SEND_FAST_ZERO))
		allowed &= ~NBD_CMD_FLAG_FAST_ZERO;
	if (req->flags & ~allowed)
		return NBD_EINVAL;
	return 0;
}

/*
 * The byte range: length limit, alignment, then bounds.  A range wrapping
 * past 2^64 is malformed (EINVAL) for every command; a well-formed range
 * past the end is ENOSPC for writes and EINVAL for the rest.
 */
static int
validate_range(const struct nbd_request *req, const struct cmd_rule *r,
    const struct nbd_limits *lim)
{
	uint32_t max = lim->max_payload ? lim->max_payload : NBD_MAX_PAYLOAD;
	uint32_t align = lim->min_block ? lim->min_block : 1;
	uint64_t end;

	if (r->payload && req->length > max)
		return NBD_EINVAL;
	if (req->offset % align != 0 || req->length % align != 0)
		return NBD_EINVAL;
	if (__builtin_add_overflow(req->offset, (uint64_t)req->length, &end))
		return NBD_EINVAL;
	if (end > lim->size)
		return r->enospc ? NBD_ENOSPC : NBD_EINVAL;
	return 0;
}

/*
 * Order of the checks (first failure wins):
 *   DISC                          -> 0 (no reply exists to carry an error)
 *   unknown command               -> EINVAL
 *   flag not allowed              -> EINVAL   (validate_flags)
 *   command not advertised        -> EINVAL
 *   BLOCK_STATUS w/o context      -> EINVAL
 *   BLOCK_STATUS of length 0      -> EINVAL   (its reply would carry no
 *                                              descriptor, which the spec
 *                                              forbids)
 *   FLUSH with offset or length   -> EINVAL
 *   write on read-only export     -> EPERM
 *   range                         -> EINVAL / ENOSPC (validate_range)
 */
int
nbd_request_validate(const struct nbd_request *req, const struct nbd_limits *lim)
{
	const struct cmd_rule *r;
	int err;

	if (req->type == NBD_CMD_DISC)
		return 0;
	if (req->type >= ARRAY_SIZE(cmd_rules))
		return NBD_EINVAL;
	r = &cmd_rules[req->type];
	if ((err = validate_flags(req, r, lim)) != 0)
		return err;
	if (r->needs_tflag && !(lim->tflags & r->needs_tflag))
		return NBD_EINVAL;
	if (req->type == NBD_CMD_BLOCK_STATUS &&
	    (!lim->structured || !lim->meta_allocation))
		return NBD_EINVAL;
	if (req->type == NBD_CMD_BLOCK_STATUS && req->length == 0)
		return NBD_EINVAL;
	if (req->type == NBD_CMD_FLUSH && (req->offset != 0 || req->length != 0))
		return NBD_EINVAL;
	if (r->writes && (lim->read_only || (lim->tflags & NBD_FLAG_READ_ONLY)))
		return NBD_EPERM;
	if (r->ranged)
		return validate_range(req, r, lim);
	return 0;
}

/* ---- encoders ---- */

size_t
nbd_simple_reply_encode(void *buf, uint32_t error, uint64_t cookie)
{
	uint8_t *p = buf;

	put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(p + 4, error);
	put_be64(p + 8, cookie);
	return NBD_SIMPLE_REPLY_LEN;
}

size_t
nbd_structured_hdr_encode(void *buf, uint16_t flags, uint16_t type,
    uint64_t cookie, uint32_t length)
{
	uint8_t *p = buf;

	put_be32(p, NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(p + 4, flags);
	put_be16(p + 6, type);
	put_be64(p + 8, cookie);
	put_be32(p + 16, length);
	return NBD_STRUCTURED_HDR_LEN;
}

size_t
nbd_opt_reply_encode(void *buf, uint32_t option, uint32_t type, uint32_t length)
{
	uint8_t *p = buf;

	put_be64(p, NBD_OPT_REPLY_MAGIC);
	put_be32(p + 8, option);
	put_be32(p + 12, type);
	put_be32(p + 16, length);
	return NBD_OPT_REPLY_HDR_LEN;
}
