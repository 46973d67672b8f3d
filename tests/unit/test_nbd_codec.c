/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/nbd_codec.c: decoders, request validation, encoders. */
#include <errno.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "nbd_proto.h"
#include "util.h"
#include "cu_run.h"

#define MiB (1ull << 20)

/* Transmission flags of a fully featured export. */
#define ALL_TFLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | \
	NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF | \
	NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_CAN_MULTI_CONN)

/* The export requests are checked against; reset before every test. */
static struct nbd_limits lim;

static void
reset_limits(void)
{
	memset(&lim, 0, sizeof(lim));
	lim.size = 64 * MiB;
	lim.min_block = 512;
	lim.max_payload = NBD_MAX_PAYLOAD;
	lim.tflags = ALL_TFLAGS;
	lim.structured = true;
	lim.meta_allocation = true;
}

/* Validate one request against lim. */
static int
v(uint16_t type, uint16_t flags, uint64_t offset, uint32_t length)
{
	struct nbd_request r = { .flags = flags, .type = type, .cookie = 7,
	    .offset = offset, .length = length };

	return nbd_request_validate(&r, &lim);
}

/* Build a wire request header. */
static void
put_request(uint8_t *b, uint32_t magic, uint16_t flags, uint16_t type,
    uint64_t cookie, uint64_t offset, uint32_t length)
{
	put_be32(b, magic);
	put_be16(b + 4, flags);
	put_be16(b + 6, type);
	put_be64(b + 8, cookie);
	put_be64(b + 16, offset);
	put_be32(b + 24, length);
}

static void
test_option_decode(void)
{
	uint8_t b[NBD_OPT_HDR_LEN + 4];
	struct nbd_option o;

	put_be64(b, NBD_IHAVEOPT);
	put_be32(b + 8, NBD_OPT_GO);
	put_be32(b + 12, 1234);
	for (size_t n = 0; n < NBD_OPT_HDR_LEN; n++)
		CU_ASSERT_EQUAL(nbd_option_decode(b, n, &o), -EAGAIN);
	memset(&o, 0, sizeof(o));
	CU_ASSERT_EQUAL(nbd_option_decode(b, sizeof(b), &o), 0);
	CU_ASSERT_EQUAL(o.option, NBD_OPT_GO);
	CU_ASSERT_EQUAL(o.length, 1234);
	/* Unknown options decode fine: the handshake answers ERR_UNSUP. */
	put_be32(b + 8, 0xdeadbeef);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.option, 0xdeadbeef);
	/* Length bound: exactly the maximum is fine, one more is E2BIG. */
	put_be32(b + 12, NBD_MAX_OPTION_LEN);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), 0);
	CU_ASSERT_EQUAL(o.length, NBD_MAX_OPTION_LEN);
	put_be32(b + 12, NBD_MAX_OPTION_LEN + 1);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), -E2BIG);
	CU_ASSERT_EQUAL(o.length, NBD_MAX_OPTION_LEN + 1);	/* to skip it */
	put_be32(b + 12, 0xffffffff);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), -E2BIG);
	/* Wrong magic (NBDMAGIC, one bit off). */
	put_be64(b, NBD_MAGIC);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), -EBADMSG);
	put_be64(b, NBD_IHAVEOPT ^ 1);
	CU_ASSERT_EQUAL(nbd_option_decode(b, NBD_OPT_HDR_LEN, &o), -EBADMSG);
}

static void
test_request_decode(void)
{
	uint8_t b[NBD_REQUEST_LEN + 8];
	struct nbd_request r;

	put_request(b, NBD_REQUEST_MAGIC, 0x0102, NBD_CMD_WRITE,
	    0x1122334455667788ull, 0xa0b0c0d0e0f00000ull, 0x87654321);
	for (size_t n = 0; n < NBD_REQUEST_LEN; n++)
		CU_ASSERT_EQUAL(nbd_request_decode(b, n, &r), -EAGAIN);
	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(nbd_request_decode(b, sizeof(b), &r), 0);
	CU_ASSERT_EQUAL(r.flags, 0x0102);
	CU_ASSERT_EQUAL(r.type, NBD_CMD_WRITE);
	CU_ASSERT_EQUAL(r.cookie, 0x1122334455667788ull);
	CU_ASSERT_EQUAL(r.offset, 0xa0b0c0d0e0f00000ull);
	CU_ASSERT_EQUAL(r.length, 0x87654321u);
	/* Reply magics, the old request magic and extended requests are refused. */
	put_be32(b, NBD_SIMPLE_REPLY_MAGIC);
	CU_ASSERT_EQUAL(nbd_request_decode(b, NBD_REQUEST_LEN, &r), -EBADMSG);
	put_be32(b, 0x12560953);
	CU_ASSERT_EQUAL(nbd_request_decode(b, NBD_REQUEST_LEN, &r), -EBADMSG);
	put_be32(b, 0x21e41c71);
	CU_ASSERT_EQUAL(nbd_request_decode(b, NBD_REQUEST_LEN, &r), -EBADMSG);
	/* Unknown type and flags decode; validation refuses them. */
	put_request(b, NBD_REQUEST_MAGIC, 0xffff, 0xffff, 1, 0, 0);
	CU_ASSERT_EQUAL(nbd_request_decode(b, NBD_REQUEST_LEN, &r), 0);
	CU_ASSERT_EQUAL(r.type, 0xffff);
	CU_ASSERT_EQUAL(r.flags, 0xffff);
}

/* Every command accepted in its plain form. */
static void
test_validate_plain(void)
{
	reset_limits();
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 4096), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 4096, 4096), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 0, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 0, 64 * MiB), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 512, 1024), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MiB), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 64 * MiB), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_DISC, 0, 0, 0), 0);
	/* Whole export, last block. */
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 32 * MiB), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 64 * MiB - 512, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 64 * MiB - 512, 512), 0);
}

/* Unknown commands and flags -> EINVAL; DISC is never refused. */
static void
test_validate_unknown(void)
{
	reset_limits();
	CU_ASSERT_EQUAL(v(8, 0, 0, 512), NBD_EINVAL);	/* NBD_CMD_RESIZE: not ours */
	CU_ASSERT_EQUAL(v(9, 0, 0, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(0x8000, 0, 0, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(0xffff, 0, 0, 0), NBD_EINVAL);
	for (unsigned bit = 5; bit < 16; bit++) {
		CU_ASSERT_EQUAL(v(NBD_CMD_READ, 1u << bit, 0, 512), NBD_EINVAL);
		CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 1u << bit, 0, 512), NBD_EINVAL);
		CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 1u << bit, 0, 512), NBD_EINVAL);
	}
	CU_ASSERT_EQUAL(v(NBD_CMD_DISC, 0xffff, 1, 3), 0);
	lim.tflags = NBD_FLAG_HAS_FLAGS;
	CU_ASSERT_EQUAL(v(NBD_CMD_DISC, 0, 0, 0), 0);
}

/* FUA: any command when SEND_FUA is advertised, none otherwise. */
static void
test_validate_fua(void)
{
	static const uint16_t cmds[] = { NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_FLUSH,
	    NBD_CMD_TRIM, NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS };

	reset_limits();
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		uint32_t len = cmds[i] == NBD_CMD_FLUSH ? 0 : 512;

		lim.tflags = ALL_TFLAGS;
		CU_ASSERT_EQUAL(v(cmds[i], NBD_CMD_FLAG_FUA, 0, len), 0);
		lim.tflags = ALL_TFLAGS & ~NBD_FLAG_SEND_FUA;
		CU_ASSERT_EQUAL(v(cmds[i], NBD_CMD_FLAG_FUA, 0, len), NBD_EINVAL);
		CU_ASSERT_EQUAL(v(cmds[i], 0, 0, len), 0);
	}
}

/* Each command flag only where the spec documents it. */
static void
test_validate_cmd_flags(void)
{
	reset_limits();
	/* NO_HOLE: WRITE_ZEROES only. */
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512), NBD_EINVAL);
	/* FAST_ZERO: WRITE_ZEROES only, and only when advertised. */
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES,
	    NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, NBD_CMD_FLAG_FAST_ZERO, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0, 512), NBD_EINVAL);
	lim.tflags &= ~NBD_FLAG_SEND_FAST_ZERO;
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512), 0);
	reset_limits();
	/* REQ_ONE: BLOCK_STATUS only. */
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, NBD_CMD_FLAG_REQ_ONE, 0, 512), NBD_EINVAL);
	/* DF: READ only, with SEND_DF and structured replies. */
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_DF | NBD_CMD_FLAG_FUA, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, 0, 512), NBD_EINVAL);
	lim.structured = false;
	lim.meta_allocation = false;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 512), 0);
	lim.structured = true;
	lim.tflags &= ~NBD_FLAG_SEND_DF;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512), NBD_EINVAL);
}

/* Commands behind a transmission flag; BLOCK_STATUS behind a context. */
static void
test_validate_advertised(void)
{
	reset_limits();
	lim.tflags = NBD_FLAG_HAS_FLAGS;
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 0, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, 512), 0);
	lim.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_TRIM;
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 0, 512), 0);
	lim.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_WRITE_ZEROES;
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 0, 512), 0);
	lim.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_CACHE;
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 0, 512), 0);
	lim.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH;
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 0, 0), 0);
	/* FLUSH: offset and length are reserved, must be zero. */
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 512, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 0, 512), NBD_EINVAL);
	reset_limits();
	lim.meta_allocation = false;
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 512), NBD_EINVAL);
	lim.meta_allocation = true;
	lim.structured = false;
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 512), NBD_EINVAL);
}

/* Writes (WRITE, TRIM, WRITE_ZEROES) on a read-only export -> EPERM. */
static void
test_validate_read_only(void)
{
	reset_limits();
	lim.read_only = true;
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, 512), NBD_EPERM);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 0, 512), NBD_EPERM);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 0, 512), NBD_EPERM);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_FLUSH, 0, 0, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 0, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 512), 0);
	/* EPERM wins over the range checks. */
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 128 * MiB, 512), NBD_EPERM);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 1, 512), NBD_EPERM);
	/* The advertised flag alone is enough. */
	lim.read_only = false;
	lim.tflags |= NBD_FLAG_READ_ONLY;
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, 512), NBD_EPERM);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512), NBD_EPERM);
	/* Still EINVAL first for a malformed request. */
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512), NBD_EINVAL);
}

/* Past the end: ENOSPC for WRITE/WRITE_ZEROES, EINVAL for the rest. */
static void
test_validate_bounds(void)
{
	uint64_t end = 64 * MiB;

	reset_limits();
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, end, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, end - 512, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, end - 512, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, end - 512, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, end - 512, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, end - 512, 1024), NBD_ENOSPC);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, end, 512), NBD_ENOSPC);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, end - 512, 1024), NBD_ENOSPC);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 1ull << 62, 512), NBD_ENOSPC);
	/* Zero-length past the end is still out of range. */
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, end + 512, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, end + 512, 0), NBD_ENOSPC);
	/* An empty export accepts only zero-length requests at 0. */
	lim.size = 0;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, 512), NBD_ENOSPC);
}

/* offset + length wrapping past 2^64 -> EINVAL for every command. */
static void
test_validate_overflow(void)
{
	uint64_t top = UINT64_MAX - 511;	/* aligned to 512 */

	reset_limits();
	lim.size = UINT64_MAX & ~511ull;	/* so only the wrap is wrong */
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, top - 512, 512), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, top, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, top, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, top, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, top, 0xfffffe00u), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, top, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, top, 1024), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, top, 0), 0);	/* at the very end */
	/* Without wrapping, the same offset past a smaller size is ENOSPC. */
	lim.size = top - 512;
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, top, 0), NBD_ENOSPC);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, top, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, top, 512), NBD_EINVAL);	/* = 2^64 */
	lim.min_block = 1;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, UINT64_MAX, 1), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, UINT64_MAX, 1), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, UINT64_MAX, 0xffffffffu), NBD_EINVAL);
}

/* Offsets and lengths must be multiples of the advertised minimum block. */
static void
test_validate_alignment(void)
{
	static const uint16_t cmds[] = { NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM,
	    NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS };

	reset_limits();
	lim.min_block = 4096;
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		CU_ASSERT_EQUAL(v(cmds[i], 0, 4096, 8192), 0);
		CU_ASSERT_EQUAL(v(cmds[i], 0, 512, 4096), NBD_EINVAL);
		CU_ASSERT_EQUAL(v(cmds[i], 0, 4096, 512), NBD_EINVAL);
		CU_ASSERT_EQUAL(v(cmds[i], 0, 1, 1), NBD_EINVAL);
	}
	/* Misaligned and past the end: alignment is reported first. */
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 64 * MiB + 1, 4096), NBD_EINVAL);
	/* min_block 1 (or unset) allows any byte. */
	lim.min_block = 1;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 1, 3), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 7, 1), 0);
	lim.min_block = 0;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 1, 3), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 64 * MiB - 1, 1), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 64 * MiB - 1, 2), NBD_ENOSPC);
}

/* READ/WRITE payload bound; commands without payload are not bound. */
static void
test_validate_payload(void)
{
	reset_limits();
	lim.size = 1ull << 40;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, NBD_MAX_PAYLOAD + 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, 0xfffffe00u), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 0, 0xfffffe00u), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 0, 0xfffffe00u), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 0xfffffe00u), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 0, 0xfffffe00u), 0);
	/* A smaller advertised maximum. */
	lim.max_payload = 1 << 20;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 1 << 20), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, (1 << 20) + 512), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 0, (1 << 20) + 512), NBD_EINVAL);
	/* 0 means the protocol default of 32 MiB. */
	lim.max_payload = 0;
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, NBD_MAX_PAYLOAD + 512), NBD_EINVAL);
}

/* Zero-length requests are valid anywhere inside the export (but one). */
static void
test_validate_zero_length(void)
{
	reset_limits();
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 0, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 64 * MiB, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 4096, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE, 0, 64 * MiB, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_TRIM, 0, 512, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_WRITE_ZEROES, 0, 512, 0), 0);
	CU_ASSERT_EQUAL(v(NBD_CMD_CACHE, 0, 512, 0), 0);
	/* Except BLOCK_STATUS: a reply must carry at least one descriptor,
	 * and a zero-length range has none to describe. */
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 512, 0), NBD_EINVAL);
	CU_ASSERT_EQUAL(v(NBD_CMD_BLOCK_STATUS, 0, 0, 0), NBD_EINVAL);
	/* Still aligned. */
	CU_ASSERT_EQUAL(v(NBD_CMD_READ, 0, 100, 0), NBD_EINVAL);
}

static void
test_names(void)
{
	const char *a, *b;

	CU_ASSERT_STRING_EQUAL(nbd_cmd_name(NBD_CMD_WRITE_ZEROES), "NBD_CMD_WRITE_ZEROES");
	CU_ASSERT_STRING_EQUAL(nbd_cmd_name(NBD_CMD_READ), "NBD_CMD_READ");
	CU_ASSERT_STRING_EQUAL(nbd_cmd_name(NBD_CMD_BLOCK_STATUS), "NBD_CMD_BLOCK_STATUS");
	CU_ASSERT_STRING_EQUAL(nbd_cmd_name(42), "NBD_CMD_42");
	CU_ASSERT_STRING_EQUAL(nbd_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
	CU_ASSERT_STRING_EQUAL(nbd_opt_name(NBD_OPT_SET_META_CONTEXT), "NBD_OPT_SET_META_CONTEXT");
	CU_ASSERT_STRING_EQUAL(nbd_opt_name(4), "NBD_OPT_4");
	CU_ASSERT_STRING_EQUAL(nbd_rep_name(NBD_REP_ERR_TOO_BIG), "NBD_REP_ERR_TOO_BIG");
	CU_ASSERT_STRING_EQUAL(nbd_rep_name(NBD_REP_META_CONTEXT), "NBD_REP_META_CONTEXT");
	CU_ASSERT_STRING_EQUAL(nbd_rep_name(NBD_REP_ERR_BIT | 99), "NBD_REP_2147483747");
	CU_ASSERT_STRING_EQUAL(nbd_info_name(NBD_INFO_BLOCK_SIZE), "NBD_INFO_BLOCK_SIZE");
	CU_ASSERT_STRING_EQUAL(nbd_info_name(77), "NBD_INFO_77");
	CU_ASSERT_STRING_EQUAL(nbd_err_name(NBD_ENOSPC), "NBD_ENOSPC");
	CU_ASSERT_STRING_EQUAL(nbd_err_name(0), "OK");
	/* Two unknown values in one log line stay distinct. */
	a = nbd_cmd_name(100);
	b = nbd_opt_name(200);
	CU_ASSERT_STRING_EQUAL(a, "NBD_CMD_100");
	CU_ASSERT_STRING_EQUAL(b, "NBD_OPT_200");
}

static void
test_encoders(void)
{
	static const uint8_t simple[] = { 0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28,
	    1, 2, 3, 4, 5, 6, 7, 8 };
	static const uint8_t structured[] = { 0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 5,
	    0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1, 0 };
	static const uint8_t opt[] = { 0, 3, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,
	    0, 0, 0, 7, 0x80, 0, 0, 2, 0, 0, 0, 12 };
	uint8_t b[32];

	memset(b, 0xaa, sizeof(b));
	CU_ASSERT_EQUAL(nbd_simple_reply_encode(b, NBD_ENOSPC, 0x0102030405060708ull),
	    NBD_SIMPLE_REPLY_LEN);
	CU_ASSERT_EQUAL(memcmp(b, simple, sizeof(simple)), 0);
	CU_ASSERT_EQUAL(b[NBD_SIMPLE_REPLY_LEN], 0xaa);	/* nothing past the end */
	memset(b, 0xaa, sizeof(b));
	CU_ASSERT_EQUAL(nbd_structured_hdr_encode(b, NBD_REPLY_FLAG_DONE,
	    NBD_REPLY_TYPE_BLOCK_STATUS, 9, 256), NBD_STRUCTURED_HDR_LEN);
	CU_ASSERT_EQUAL(memcmp(b, structured, sizeof(structured)), 0);
	CU_ASSERT_EQUAL(b[NBD_STRUCTURED_HDR_LEN], 0xaa);
	memset(b, 0xaa, sizeof(b));
	CU_ASSERT_EQUAL(nbd_opt_reply_encode(b, NBD_OPT_GO, NBD_REP_ERR_POLICY, 12),
	    NBD_OPT_REPLY_HDR_LEN);
	CU_ASSERT_EQUAL(memcmp(b, opt, sizeof(opt)), 0);
	CU_ASSERT_EQUAL(b[NBD_OPT_REPLY_HDR_LEN], 0xaa);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("nbd_codec", NULL, NULL);
	CU_add_test(s, "option_decode", test_option_decode);
	CU_add_test(s, "request_decode", test_request_decode);
	CU_add_test(s, "validate_plain", test_validate_plain);
	CU_add_test(s, "validate_unknown", test_validate_unknown);
	CU_add_test(s, "validate_fua", test_validate_fua);
	CU_add_test(s, "validate_cmd_flags", test_validate_cmd_flags);
	CU_add_test(s, "validate_advertised", test_validate_advertised);
	CU_add_test(s, "validate_read_only", test_validate_read_only);
	CU_add_test(s, "validate_bounds", test_validate_bounds);
	CU_add_test(s, "validate_overflow", test_validate_overflow);
	CU_add_test(s, "validate_alignment", test_validate_alignment);
	CU_add_test(s, "validate_payload", test_validate_payload);
	CU_add_test(s, "validate_zero_length", test_validate_zero_length);
	CU_add_test(s, "names", test_names);
	CU_add_test(s, "encoders", test_encoders);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
