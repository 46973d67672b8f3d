/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the metadata decoders that read untrusted bytes.
 *   md_sb_decode          superblock slots (disk)
 *   md_bitmap_rle_decode  bitmap transfer chunks (network)
 *   md_al_tr_decode       activity log transactions (disk)
 *   md_al_recover         replay of a whole AL ring (disk)
 * Input: one byte choosing the decoder (and, for the checksummed formats,
 * whether the checksum is recomputed first so the fuzzer gets past it to
 * the field checks), then the decoder's input.  Besides the sanitizers, it
 * checks the decoders' promises and aborts when one is broken.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "bitmap.h"
#include "md.h"
#include "util.h"

/* Copy in into a zero-padded block of len bytes and fix its checksum. */
static void
seal_block(uint8_t *blk, size_t len, const uint8_t *in, size_t n)
{

	memset(blk, 0, len);
	memcpy(blk, in, MIN(n, len));
	put_be64(blk + len - 8, XXH3_64bits(blk, len - 8));
}

/* A decoded superblock re-encodes to the very same bytes. */
static void
fuzz_sb(const uint8_t *data, size_t size, bool seal)
{
	uint8_t blk[MD_SB_SIZE], again[MD_SB_SIZE];
	struct md_sb sb;
	const uint8_t *in = data;
	int r;

	if (seal) {
		seal_block(blk, sizeof(blk), data, size);
		in = blk;
		size = sizeof(blk);
	}
	r = md_sb_decode(in, size, &sb);
	if (r != 0 && r != -EMSGSIZE && r != -ENODATA && r != -EBADMSG &&
	    r != -EPROTO && r != -EINVAL)
		abort();
	if (r != 0)
		return;
	md_sb_encode(&sb, again);
	if (memcmp(again, in, MD_SB_SIZE) != 0)
		abort();
}

/* A chunk is applied entirely, inside its range, or not at all. */
static void
fuzz_rle(const uint8_t *data, size_t size)
{
	struct md_bitmap bm;
	struct md_bm_chunk c;
	uint64_t data_bytes, first;
	uint32_t gran;
	int r;

	if (size < 3)
		return;
	gran = MD_GRAN_MIN << (data[0] % 9);
	data_bytes = ((uint64_t)get_be16(data + 1) + 1) * gran - (data[0] >> 4);
	if (md_bitmap_init(&bm, data_bytes, gran) != 0)
		abort();
	r = md_bitmap_rle_decode(data + 3, size - 3, &bm, &c);
	if (r != 0 && r != -EBADMSG && r != -ERANGE)
		abort();
	if (md_bitmap_recount(&bm) != md_bitmap_count(&bm))
		abort();
	if (r != 0 && md_bitmap_count(&bm) != 0)
		abort();
	if (r == 0) {
		if (c.nbits == 0 || c.start + c.nbits > bm.nbits)
			abort();
		first = md_bitmap_find_next_set(&bm, 0);
		if (first != MD_BM_NONE && (first < c.start ||
		    md_bitmap_find_next_set(&bm, c.start + c.nbits) != MD_BM_NONE))
			abort();
	}
	md_bitmap_free(&bm);
}

/* A decoded transaction only names slots of the AL it was decoded for. */
static void
fuzz_al_tr(const uint8_t *data, size_t size, bool seal)
{
	uint8_t blk[MD_AL_TR_SIZE];
	struct md_al_tr tr;
	uint32_t nr, i;
	int r;

	if (size < 2)
		return;
	nr = MD_AL_EXTENTS_MIN + get_be16(data) % (MD_AL_EXTENTS_MAX - 6);
	data += 2;
	size -= 2;
	if (seal) {
		seal_block(blk, sizeof(blk), data, size);
		data = blk;
		size = sizeof(blk);
	}
	r = md_al_tr_decode(data, size, nr, &tr);
	if (r != 0 && r != -EMSGSIZE && r != -ENODATA && r != -EBADMSG &&
	    r != -EINVAL)
		abort();
	if (r != 0)
		return;
	if (tr.n_updates > MD_AL_UPDATES_PER_TR ||
	    tr.ctx_start + tr.ctx_count > nr || tr.tr_number == 0)
		abort();
	for (i = 0; i < tr.n_updates; i++)
		if (tr.upd_slot[i] >= nr || tr.upd_ext[i] == MD_AL_EMPTY)
			abort();
}

/* Replay a ring of up to 9 sealed transactions: a sorted, unique set. */
static void
fuzz_al_ring(const uint8_t *data, size_t size)
{
	const uint32_t nr = 2000, ntr = 9;
	static uint8_t ring[9 * MD_AL_TR_SIZE];
	static uint32_t ext[2000];
	struct md_al_recovery rec;
	size_t per = size / ntr, i;

	for (i = 0; i < ntr; i++)
		seal_block(ring + i * MD_AL_TR_SIZE, MD_AL_TR_SIZE,
		    data + i * per, per);
	if (md_al_recover(ring, ntr, nr, ext, &rec) != 0)
		abort();
	if (rec.n_extents > nr || rec.n_valid + rec.n_invalid > ntr ||
	    rec.next_index >= ntr)
		abort();
	for (i = 1; i < rec.n_extents; i++)
		if (ext[i - 1] >= ext[i])
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{

	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0: fuzz_sb(data + 1, size - 1, false); break;
	case 1: fuzz_sb(data + 1, size - 1, true); break;
	case 2: fuzz_rle(data + 1, size - 1); break;
	case 3: fuzz_al_tr(data + 1, size - 1, false); break;
	case 4: fuzz_al_tr(data + 1, size - 1, true); break;
	case 5: fuzz_al_ring(data + 1, size - 1); break;
	}
	return 0;
}
