/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * NBD wire protocol: constants and decoded forms.  All wire fields are
 * big-endian; the codecs in nbd_codec.c convert at the edge and copy out
 * with memcpy after checking lengths, never casting into receive buffers.
 * Reference: the NBD protocol spec (doc/proto.md of the nbd project).
 */
#ifndef BLKMIRROR_NBD_PROTO_H
#define BLKMIRROR_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- magics ---- */
#define NBD_MAGIC			0x4e42444d41474943ull	/* "NBDMAGIC" */
#define NBD_IHAVEOPT			0x49484156454F5054ull	/* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC		0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC		0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC		0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC	0x668e33efu

/* ---- handshake flags (server, u16) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE		(1u << 0)
#define NBD_FLAG_NO_ZEROES		(1u << 1)
/* ---- client flags (u32) ---- */
#define NBD_FLAG_C_FIXED_NEWSTYLE	(1u << 0)
#define NBD_FLAG_C_NO_ZEROES		(1u << 1)

/* ---- options ---- */
#define NBD_OPT_EXPORT_NAME		1
#define NBD_OPT_ABORT			2
#define NBD_OPT_LIST			3
#define NBD_OPT_STARTTLS		5
#define NBD_OPT_INFO			6
#define NBD_OPT_GO			7
#define NBD_OPT_STRUCTURED_REPLY	8
#define NBD_OPT_LIST_META_CONTEXT	9
#define NBD_OPT_SET_META_CONTEXT	10
#define NBD_OPT_EXTENDED_HEADERS	11

/* ---- option replies ---- */
#define NBD_REP_ACK			1
#define NBD_REP_SERVER			2
#define NBD_REP_INFO			3
#define NBD_REP_META_CONTEXT		4
#define NBD_REP_ERR_BIT			(1u << 31)
#define NBD_REP_ERR_UNSUP		(NBD_REP_ERR_BIT | 1)
#define NBD_REP_ERR_POLICY		(NBD_REP_ERR_BIT | 2)
#define NBD_REP_ERR_INVALID		(NBD_REP_ERR_BIT | 3)
#define NBD_REP_ERR_PLATFORM		(NBD_REP_ERR_BIT | 4)
#define NBD_REP_ERR_TLS_REQD		(NBD_REP_ERR_BIT | 5)
#define NBD_REP_ERR_UNKNOWN		(NBD_REP_ERR_BIT | 6)
#define NBD_REP_ERR_SHUTDOWN		(NBD_REP_ERR_BIT | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD	(NBD_REP_ERR_BIT | 8)
#define NBD_REP_ERR_TOO_BIG		(NBD_REP_ERR_BIT | 9)

/* ---- NBD_REP_INFO types ---- */
#define NBD_INFO_EXPORT			0
#define NBD_INFO_NAME			1
#define NBD_INFO_DESCRIPTION		2
#define NBD_INFO_BLOCK_SIZE		3

/* ---- transmission flags (u16) ---- */
#define NBD_FLAG_HAS_FLAGS		(1u << 0)
#define NBD_FLAG_READ_ONLY		(1u << 1)
#define NBD_FLAG_SEND_FLUSH		(1u << 2)
#define NBD_FLAG_SEND_FUA		(1u << 3)
#define NBD_FLAG_ROTATIONAL		(1u << 4)
#define NBD_FLAG_SEND_TRIM		(1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES	(1u << 6)
#define NBD_FLAG_SEND_DF		(1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN		(1u << 8)
#define NBD_FLAG_SEND_RESIZE		(1u << 9)
#define NBD_FLAG_SEND_CACHE		(1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO		(1u << 11)

/* ---- commands ---- */
#define NBD_CMD_READ			0
#define NBD_CMD_WRITE			1
#define NBD_CMD_DISC			2
#define NBD_CMD_FLUSH			3
#define NBD_CMD_TRIM			4
#define NBD_CMD_CACHE			5
#define NBD_CMD_WRITE_ZEROES		6
#define NBD_CMD_BLOCK_STATUS		7

/* ---- command flags (u16) ---- */
#define NBD_CMD_FLAG_FUA		(1u << 0)
#define NBD_CMD_FLAG_NO_HOLE		(1u << 1)
#define NBD_CMD_FLAG_DF			(1u << 2)
#define NBD_CMD_FLAG_REQ_ONE		(1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO		(1u << 4)

/* ---- structured reply ---- */
#define NBD_REPLY_FLAG_DONE		(1u << 0)
#define NBD_REPLY_TYPE_NONE		0
#define NBD_REPLY_TYPE_OFFSET_DATA	1
#define NBD_REPLY_TYPE_OFFSET_HOLE	2
#define NBD_REPLY_TYPE_BLOCK_STATUS	5
#define NBD_REPLY_TYPE_ERROR		0x8001
#define NBD_REPLY_TYPE_ERROR_OFFSET	0x8002

/* base:allocation flags */
#define NBD_STATE_HOLE			(1u << 0)
#define NBD_STATE_ZERO			(1u << 1)

/* ---- errors on the wire ---- */
#define NBD_EPERM			1
#define NBD_EIO				5
#define NBD_ENOMEM			12
#define NBD_EINVAL			22
#define NBD_ENOSPC			28
#define NBD_EOVERFLOW			75
#define NBD_ENOTSUP			95
#define NBD_ESHUTDOWN			108

/* ---- sizes and limits ---- */
#define NBD_HELLO_LEN			18	/* NBDMAGIC + IHAVEOPT + u16 flags */
#define NBD_OPT_HDR_LEN			16	/* IHAVEOPT + u32 option + u32 length */
#define NBD_OPT_REPLY_HDR_LEN		20	/* magic + option + type + length */
#define NBD_REQUEST_LEN			28	/* magic, flags, type, cookie, offset, length */
#define NBD_SIMPLE_REPLY_LEN		16	/* magic, error, cookie */
#define NBD_STRUCTURED_HDR_LEN		20	/* magic, flags, type, cookie, length */
#define NBD_MAX_PAYLOAD			(32u << 20)	/* 32 MiB: largest READ/WRITE */
#define NBD_MAX_OPTION_LEN		(64u << 10)	/* option data we accept */
#define NBD_MAX_OPTIONS			256	/* options per handshake */
#define NBD_MAX_STRING			4096	/* export name / query (spec bound) */
#define NBD_PORTABLE_MIN_BLOCK		512	/* what a client that does not ask for
						   block sizes may assume (spec) */
#define NBD_META_ALLOCATION_ID		1	/* our id for "base:allocation" */

/* A decoded option header (the data follows on the wire). */
struct nbd_option {
	uint32_t option;	/* NBD_OPT_* */
	uint32_t length;	/* bytes of option data that follow */
};

/* A decoded transmission request. */
struct nbd_request {
	uint16_t flags;		/* NBD_CMD_FLAG_* */
	uint16_t type;		/* NBD_CMD_* */
	uint64_t cookie;	/* echoed in the reply */
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes; for WRITE, the payload that follows */
};

/* What a request is checked against (the negotiated export). */
struct nbd_limits {
	uint64_t size;		/* export size in bytes */
	uint32_t min_block;	/* offsets and lengths must be multiples */
	uint32_t max_payload;	/* largest READ/WRITE */
	uint16_t tflags;	/* transmission flags advertised */
	bool structured;	/* structured replies negotiated */
	bool meta_allocation;	/* base:allocation context selected */
	bool read_only;		/* writes refused with EPERM */
};

/* Name of an NBD_CMD_ / NBD_OPT_ / NBD_REP_ / NBD_INFO_ value for logs. */
const char *nbd_cmd_name(uint32_t type);
const char *nbd_opt_name(uint32_t opt);
const char *nbd_rep_name(uint32_t rep);
const char *nbd_info_name(uint32_t info);
/* Name of an NBD_E* transmission error (0 gives "OK"). */
const char *nbd_err_name(uint32_t err);
/*
 * Unknown values give "NBD_CMD_<n>" etc., formatted into one of four
 * per-thread slots: valid until four more unknown values are named.
 */

/*
 * Decode a 16-byte option header.  Returns 0, -EAGAIN when len < 16,
 * -EBADMSG for a wrong magic, -E2BIG when length > NBD_MAX_OPTION_LEN.
 */
int nbd_option_decode(const void *buf, size_t len, struct nbd_option *out);
/*
 * Decode a 28-byte request header.  Returns 0, -EAGAIN when len < 28,
 * -EBADMSG for a wrong magic (the connection must then be dropped).
 */
int nbd_request_decode(const void *buf, size_t len, struct nbd_request *out);
/*
 * Check a decoded request against the export before any side effect.
 * Returns 0 or the NBD error to reply with (NBD_EINVAL, NBD_ENOSPC,
 * NBD_EPERM, NBD_EOVERFLOW, NBD_ENOTSUP), following the spec: unknown
 * command or flag -> EINVAL; read/trim/cache/block-status past the end or
 * offset+length wrapping -> EINVAL; write/write-zeroes past the end ->
 * ENOSPC; misaligned -> EINVAL; payload over max_payload -> EINVAL (for
 * WRITE the caller decides whether to drain or disconnect); write on a
 * read-only export -> EPERM; BLOCK_STATUS without meta_allocation -> EINVAL;
 * DF without structured replies -> EINVAL.
 */
int nbd_request_validate(const struct nbd_request *req, const struct nbd_limits *lim);
/*
 * Details of nbd_request_validate (nbd_codec.c has the check order):
 * - DISC is always accepted (0): it has no reply to carry an error.
 * - FUA is accepted on every command when NBD_FLAG_SEND_FUA is in tflags;
 *   NO_HOLE and FAST_ZERO only on WRITE_ZEROES (FAST_ZERO only with
 *   SEND_FAST_ZERO); REQ_ONE only on BLOCK_STATUS; DF only on READ with
 *   SEND_DF advertised and structured replies negotiated.
 * - FLUSH, TRIM, WRITE_ZEROES, CACHE need SEND_FLUSH, SEND_TRIM,
 *   SEND_WRITE_ZEROES, SEND_CACHE in tflags; FLUSH needs offset = length = 0.
 * - BLOCK_STATUS needs structured and meta_allocation.
 * - WRITE, TRIM, WRITE_ZEROES with read_only or NBD_FLAG_READ_ONLY -> EPERM.
 * - Ranges: READ/WRITE length > max_payload (0 means NBD_MAX_PAYLOAD) ->
 *   EINVAL; offset or length not a multiple of min_block (0 means 1) ->
 *   EINVAL; offset + length wrapping past 2^64 -> EINVAL for every command;
 *   past the export size -> ENOSPC for WRITE/WRITE_ZEROES, else EINVAL.
 *   Zero-length requests inside the export are valid.
 * - A refused WRITE's payload still follows on the wire: the caller reads
 *   and discards it when length <= NBD_MAX_PAYLOAD, and drops the
 *   connection when it is larger (the spec allows a hard disconnect there).
 */

/* Encoders return the bytes written into buf (which must be large enough). */
size_t nbd_simple_reply_encode(void *buf, uint32_t error, uint64_t cookie);
/* Structured chunk header; length is the payload bytes following it. */
size_t nbd_structured_hdr_encode(void *buf, uint16_t flags, uint16_t type,
    uint64_t cookie, uint32_t length);
/* Option reply header; length is the data bytes following it. */
size_t nbd_opt_reply_encode(void *buf, uint32_t option, uint32_t type, uint32_t length);

#endif
