/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: nbd_request_decode + nbd_request_validate.
 * Input: one byte choosing the export limits, then a request header.
 * Besides the sanitizers, checks the validator's promises: a request it
 * accepts lies inside the export, is aligned and within the payload bound;
 * an accepted BLOCK_STATUS has a length (a reply needs a descriptor).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_proto.h"
#include "util.h"

#define ALL_TFLAGS (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | \
	NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF | \
	NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO)

/* Export shapes the requests are checked against. */
static const struct nbd_limits limit_sets[] = {
	{ 64ull << 20, 512, NBD_MAX_PAYLOAD, ALL_TFLAGS, true, true, false },
	{ 1ull << 40, 4096, 1u << 20, ALL_TFLAGS, true, true, true },
	{ 0, 1, 0, NBD_FLAG_HAS_FLAGS, false, false, false },
	{ UINT64_MAX & ~4095ull, 4096, NBD_MAX_PAYLOAD, ALL_TFLAGS | NBD_FLAG_READ_ONLY,
	  true, false, false },
	{ 12345, 0, 7, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FUA, false, false, false },
};

/* Abort (a crash the fuzzer reports) when a promise is broken. */
static void
check(const struct nbd_request *r, const struct nbd_limits *l, int err)
{
	uint32_t align = l->min_block ? l->min_block : 1;
	uint32_t max = l->max_payload ? l->max_payload : NBD_MAX_PAYLOAD;
	bool ranged = r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE ||
	    r->type == NBD_CMD_TRIM || r->type == NBD_CMD_CACHE ||
	    r->type == NBD_CMD_WRITE_ZEROES || r->type == NBD_CMD_BLOCK_STATUS;

	if (err != 0 && err != NBD_EINVAL && err != NBD_ENOSPC && err != NBD_EPERM)
		abort();
	if (nbd_err_name((uint32_t)err) == NULL || nbd_cmd_name(r->type) == NULL)
		abort();
	if (err != 0 || r->type == NBD_CMD_DISC)
		return;
	if (r->type > NBD_CMD_BLOCK_STATUS || (r->flags & ~0x1fu) != 0)
		abort();
	if (ranged && (r->offset > l->size || r->length > l->size - r->offset ||
	    r->offset % align != 0 || r->length % align != 0))
		abort();
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->length > max)
		abort();
	if ((r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
	    r->type == NBD_CMD_WRITE_ZEROES) &&
	    (l->read_only || (l->tflags & NBD_FLAG_READ_ONLY)))
		abort();
	if ((r->flags & NBD_CMD_FLAG_FUA) && !(l->tflags & NBD_FLAG_SEND_FUA))
		abort();
	if (r->type == NBD_CMD_BLOCK_STATUS && (!l->meta_allocation || r->length == 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nbd_request r;
	const struct nbd_limits *l;
	int err;

	if (size < 1)
		return 0;
	l = &limit_sets[data[0] % ARRAY_SIZE(limit_sets)];
	err = nbd_request_decode(data + 1, size - 1, &r);
	if (size - 1 < NBD_REQUEST_LEN) {
		if (err != -EAGAIN)
			abort();
		return 0;
	}
	if (err == -EBADMSG) {
		if (get_be32(data + 1) == NBD_REQUEST_MAGIC)
			abort();
		return 0;
	}
	if (err != 0 || get_be64(data + 17) != r.offset)
		abort();
	check(&r, l, nbd_request_validate(&r, l));
	/* The same request against every other export shape too. */
	for (size_t i = 0; i < ARRAY_SIZE(limit_sets); i++)
		check(&r, &limit_sets[i], nbd_request_validate(&r, &limit_sets[i]));
	return 0;
}
