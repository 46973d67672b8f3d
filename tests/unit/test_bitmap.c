/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/bitmap.c: ranges, counts, search, blocks, transfer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "bitmap.h"
#include "util.h"
#include "test_rng.h"
#include "cu_run.h"

#define MiB (1ull << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng(void)
{
	return test_rng_next(&rng_state);
}

/* Two bitmaps hold exactly the same bits. */
static bool
same_bits(const struct md_bitmap *a, const struct md_bitmap *b)
{

	return a->nwords == b->nwords && a->set == b->set &&
	    memcmp(a->words, b->words, a->nwords * 8) == 0;
}

static void
test_init(void)
{
	struct md_bitmap bm;

	CU_ASSERT_EQUAL(md_bitmap_init(&bm, MiB, 1000), -EINVAL);
	CU_ASSERT_EQUAL(md_bitmap_init(&bm, MiB, 2048), -EINVAL);
	CU_ASSERT_EQUAL(md_bitmap_init(&bm, MiB, 2u << 20), -EINVAL);
	CU_ASSERT_EQUAL(md_bitmap_init(&bm, 0, 4096), -EINVAL);
	CU_ASSERT_EQUAL(md_bitmap_init(&bm, MiB + 1000, 4096), 0);
	CU_ASSERT_EQUAL(bm.nbits, 257);
	CU_ASSERT_EQUAL(bm.nblocks, 1);
	CU_ASSERT_EQUAL(bm.nwords, 512);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 0);
	md_bitmap_free(&bm);
	/* 1 TiB at 4 KiB: 2^28 bits = 32 MiB of bitmap, 8192 blocks. */
	CU_ASSERT_EQUAL(md_bitmap_disk_bytes(1ull << 40, 4096), 32 * MiB);
	CU_ASSERT_EQUAL(md_bitmap_disk_bytes(1, 4096), 4096);
	CU_ASSERT_EQUAL(md_bitmap_disk_bytes(32768ull * 4096, 4096), 4096);
	CU_ASSERT_EQUAL(md_bitmap_disk_bytes(32768ull * 4096 + 1, 4096), 8192);
}

static void
test_ranges_edges(void)
{
	struct md_bitmap bm;
	uint64_t data = MiB + 1000;	/* last granule is 1000 bytes */

	CU_ASSERT_FATAL(md_bitmap_init(&bm, data, 4096) == 0);
	/* Outward rounding on set. */
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, 0, 1), 1);
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, 4095, 2), 1);	/* bits 0,1 */
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, 0, 8192), 0);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 0));
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 1));
	CU_ASSERT_FALSE(md_bitmap_test_bit(&bm, 2));
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 2);
	CU_ASSERT_EQUAL(md_bitmap_set_bytes(&bm), 8192);
	CU_ASSERT_TRUE(md_bitmap_test_range(&bm, 8191, 1));
	CU_ASSERT_FALSE(md_bitmap_test_range(&bm, 8192, 4096));
	CU_ASSERT_FALSE(md_bitmap_test_range(&bm, 8192, 0));
	/* Inward rounding on clear: [1, 8192) only covers bit 1 entirely. */
	CU_ASSERT_EQUAL(md_bitmap_clear_range(&bm, 1, 8191), 1);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 0));
	CU_ASSERT_FALSE(md_bitmap_test_bit(&bm, 1));
	CU_ASSERT_EQUAL(md_bitmap_clear_range(&bm, 1, 4094), 0);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 0));
	/* The short last granule. */
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, data - 1, 1), 1);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 256));
	CU_ASSERT_EQUAL(md_bitmap_set_bytes(&bm), 4096 + 1000);
	/* A clear reaching the end takes the short granule although it is
	 * only 1000 bytes. */
	CU_ASSERT_EQUAL(md_bitmap_clear_range(&bm, MiB, 1000), 1);
	CU_ASSERT_FALSE(md_bitmap_test_bit(&bm, 256));
	/* Clipped at the end of the data. */
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, data, 4096), 0);
	CU_ASSERT_EQUAL(md_bitmap_set_range(&bm, data - 10, 1ull << 40), 1);
	CU_ASSERT_EQUAL(md_bitmap_set_bits(&bm, 300, 5), 0);
	CU_ASSERT_FALSE(md_bitmap_test_bit(&bm, 257));
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 2);
	CU_ASSERT_EQUAL(md_bitmap_recount(&bm), 2);
	/* Everything. */
	md_bitmap_set_all(&bm);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 257);
	CU_ASSERT_EQUAL(md_bitmap_recount(&bm), 257);
	CU_ASSERT_EQUAL(md_bitmap_set_bytes(&bm), data);
	md_bitmap_clear_all(&bm);
	CU_ASSERT_EQUAL(md_bitmap_recount(&bm), 0);
	md_bitmap_free(&bm);
}

static void
test_word_boundaries(void)
{
	struct md_bitmap bm;
	uint64_t i;

	CU_ASSERT_FATAL(md_bitmap_init(&bm, 64 * MiB, 4096) == 0);
	CU_ASSERT_EQUAL(bm.nbits, 16384);
	CU_ASSERT_EQUAL(md_bitmap_set_bits(&bm, 60, 11), 11);	/* 60..70 */
	for (i = 55; i < 75; i++)
		CU_ASSERT_EQUAL(md_bitmap_test_bit(&bm, i), i >= 60 && i <= 70);
	CU_ASSERT_EQUAL(bm.words[0], 0xfull << 60);
	CU_ASSERT_EQUAL(bm.words[1], 0x7f);
	CU_ASSERT_EQUAL(md_bitmap_set_bits(&bm, 0, 200), 189);
	CU_ASSERT_EQUAL(md_bitmap_clear_bits(&bm, 64, 64), 64);
	CU_ASSERT_EQUAL(bm.words[1], 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 136);
	CU_ASSERT_EQUAL(md_bitmap_recount(&bm), 136);
	md_bitmap_free(&bm);
}

static void
test_find(void)
{
	struct md_bitmap bm;

	CU_ASSERT_FATAL(md_bitmap_init(&bm, 1024 * MiB, 4096) == 0);
	CU_ASSERT_EQUAL(bm.nbits, 262144);
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, 0), MD_BM_NONE);
	CU_ASSERT_EQUAL(md_bitmap_find_next_zero(&bm, 0), 0);
	md_bitmap_set_bits(&bm, 63, 2);
	md_bitmap_set_bits(&bm, 40000, 100);	/* second block */
	md_bitmap_set_bits(&bm, 262143, 1);	/* last bit */
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, 0), 63);
	CU_ASSERT_EQUAL(md_bitmap_find_next_zero(&bm, 63), 65);
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, 65), 40000);
	CU_ASSERT_EQUAL(md_bitmap_find_next_zero(&bm, 40000), 40100);
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, 40100), 262143);
	CU_ASSERT_EQUAL(md_bitmap_find_next_zero(&bm, 262143), 262144);
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, 262144), MD_BM_NONE);
	CU_ASSERT_EQUAL(md_bitmap_find_next_set(&bm, UINT64_MAX), MD_BM_NONE);
	md_bitmap_set_all(&bm);
	CU_ASSERT_EQUAL(md_bitmap_find_next_zero(&bm, 5), bm.nbits);
	CU_ASSERT_EQUAL(md_bitmap_bit_of(&bm, 40000ull * 4096 + 17), 40000);
	CU_ASSERT_EQUAL(md_bitmap_offset_of(&bm, 40000), 40000ull * 4096);
	md_bitmap_free(&bm);
}

static void
test_blocks_durability(void)
{
	struct md_bitmap bm;
	uint8_t buf[MD_BLOCK_SIZE];
	uint64_t off2 = 32768ull * 4096;	/* first byte covered by block 1 */
	uint64_t gen, gen2;

	CU_ASSERT_FATAL(md_bitmap_init(&bm, 1024 * MiB, 4096) == 0);
	CU_ASSERT_EQUAL(bm.nblocks, 8);
	CU_ASSERT_EQUAL(md_bitmap_block_of(&bm, 0), 0);
	CU_ASSERT_EQUAL(md_bitmap_block_of(&bm, off2 - 1), 0);
	CU_ASSERT_EQUAL(md_bitmap_block_of(&bm, off2), 1);
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, 0, 1024 * MiB));
	CU_ASSERT_EQUAL(md_bitmap_next_dirty_block(&bm, 0), MD_BM_NONE);
	md_bitmap_set_range(&bm, off2 + 4096, 4096);
	CU_ASSERT_FALSE(md_bitmap_range_durable(&bm, off2, 1));
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, 0, off2));
	CU_ASSERT_FALSE(md_bitmap_range_durable(&bm, off2 - 4096, 8192));
	CU_ASSERT_EQUAL(md_bitmap_next_dirty_block(&bm, 0), 1);
	CU_ASSERT_EQUAL(md_bitmap_next_dirty_block(&bm, 2), MD_BM_NONE);
	/* A change between encode and completion keeps the block dirty. */
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_set_bits(&bm, 32768 + 5, 1);
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_TRUE(md_bitmap_block_dirty(&bm, 1));
	CU_ASSERT_FALSE(md_bitmap_range_durable(&bm, off2, 1));
	md_bitmap_encode_block(&bm, 1, buf, &gen2);
	CU_ASSERT_NOT_EQUAL(gen, gen2);
	md_bitmap_block_written(&bm, 1, gen2);
	CU_ASSERT_FALSE(md_bitmap_block_dirty(&bm, 1));
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, off2, 1));
	CU_ASSERT_FALSE(md_bitmap_block_has_clears(&bm, 1));
	/* Clearing makes the block dirty but never blocks writes; the block
	 * has clears (a flush before it) until written with them. */
	md_bitmap_clear_bits(&bm, 32768 + 5, 1);
	CU_ASSERT_TRUE(md_bitmap_block_dirty(&bm, 1));
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, off2, 1));
	CU_ASSERT_TRUE(md_bitmap_block_has_clears(&bm, 1));
	CU_ASSERT_FALSE(md_bitmap_block_has_clears(&bm, 0));
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_clear_bits(&bm, 32768 + 1, 1);	/* after the encode */
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_TRUE(md_bitmap_block_has_clears(&bm, 1));
	CU_ASSERT_TRUE(md_bitmap_block_dirty(&bm, 1));
	/* Sets pending, then only clears while the block is written: the
	 * sets are durable (the block stays dirty for the clears). */
	md_bitmap_set_bits(&bm, 32768 + 9, 1);
	CU_ASSERT_FALSE(md_bitmap_range_durable(&bm, off2 + 9 * 4096, 1));
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_clear_bits(&bm, 32768 + 9 + 1, 1);	/* not set: no change */
	md_bitmap_set_bits(&bm, 32768 + 11, 1);
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_clear_bits(&bm, 32768 + 11, 1);	/* a clear after the encode */
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, off2 + 9 * 4096, 1));
	CU_ASSERT_TRUE(md_bitmap_block_dirty(&bm, 1));
	CU_ASSERT_TRUE(md_bitmap_block_has_clears(&bm, 1));
	/* A set after the encode keeps the sets pending. */
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_set_bits(&bm, 32768 + 13, 1);
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_FALSE(md_bitmap_range_durable(&bm, off2 + 13 * 4096, 1));
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_TRUE(md_bitmap_range_durable(&bm, off2 + 13 * 4096, 1));
	md_bitmap_clear_bits(&bm, 32768 + 9, 1);
	md_bitmap_clear_bits(&bm, 32768 + 13, 1);
	md_bitmap_encode_block(&bm, 1, buf, &gen);
	md_bitmap_block_written(&bm, 1, gen);
	CU_ASSERT_FALSE(md_bitmap_block_has_clears(&bm, 1));
	/* A clear of a bit that was not set changes nothing. */
	md_bitmap_clear_bits(&bm, 32768 + 1, 1);
	CU_ASSERT_FALSE(md_bitmap_block_has_clears(&bm, 1));
	md_bitmap_free(&bm);
}

static void
test_block_codec(void)
{
	struct md_bitmap a, b;
	uint8_t buf[MD_BLOCK_SIZE];
	uint64_t gen;
	uint64_t blk;

	CU_ASSERT_FATAL(md_bitmap_init(&a, 200 * MiB + 12288, 4096) == 0);
	CU_ASSERT_FATAL(md_bitmap_init(&b, 200 * MiB + 12288, 4096) == 0);
	CU_ASSERT_EQUAL(a.nbits, 51203);
	md_bitmap_set_bits(&a, 0, 1);
	md_bitmap_set_bits(&a, 63, 1);
	md_bitmap_set_bits(&a, 40000, 11203);	/* up to the very end */
	/* Format: word 0 big-endian, bit 0 = least significant. */
	md_bitmap_encode_block(&a, 0, buf, &gen);
	CU_ASSERT_EQUAL(buf[0], 0x80);
	CU_ASSERT_EQUAL(buf[7], 0x01);
	for (blk = 0; blk < a.nblocks; blk++) {
		md_bitmap_encode_block(&a, blk, buf, &gen);
		CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, blk, buf, sizeof(buf)), 0);
	}
	CU_ASSERT_TRUE(same_bits(&a, &b));
	CU_ASSERT_EQUAL(md_bitmap_count(&b), 11205);
	CU_ASSERT_EQUAL(md_bitmap_next_dirty_block(&b, 0), MD_BM_NONE);
	/* Decoding replaces: an all-zero block clears what was there. */
	memset(buf, 0, sizeof(buf));
	CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, 0, buf, sizeof(buf)), 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&b), 11203);
	CU_ASSERT_EQUAL(md_bitmap_recount(&b), 11203);
	/* A bit beyond the end of the data (bit 51203, in block 1). */
	md_bitmap_encode_block(&a, 1, buf, &gen);
	buf[((51203 - 32768) / 64) * 8 + 7] |= 0x08;
	CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, 1, buf, sizeof(buf)), -EBADMSG);
	memset(buf, 0, sizeof(buf));
	buf[4000] = 1;				/* a whole word past the end */
	CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, 1, buf, sizeof(buf)), -EBADMSG);
	CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, 2, buf, sizeof(buf)), -ERANGE);
	CU_ASSERT_EQUAL(md_bitmap_decode_block(&b, 0, buf, 100), -EMSGSIZE);
	CU_ASSERT_EQUAL(md_bitmap_count(&b), 11203);
	md_bitmap_free(&a);
	md_bitmap_free(&b);
}

static void
test_merge(void)
{
	struct md_bitmap a, b, c;

	CU_ASSERT_FATAL(md_bitmap_init(&a, 64 * MiB, 4096) == 0);
	CU_ASSERT_FATAL(md_bitmap_init(&b, 64 * MiB, 4096) == 0);
	CU_ASSERT_FATAL(md_bitmap_init(&c, 64 * MiB, 8192) == 0);
	md_bitmap_set_bits(&a, 0, 100);
	md_bitmap_set_bits(&b, 50, 100);
	md_bitmap_set_bits(&b, 10000, 1);
	CU_ASSERT_EQUAL(md_bitmap_merge(&a, &b), 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&a), 151);
	CU_ASSERT_EQUAL(md_bitmap_recount(&a), 151);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&a, 10000));
	CU_ASSERT_FALSE(md_bitmap_range_durable(&a, 0, 1));
	CU_ASSERT_EQUAL(md_bitmap_count(&b), 101);
	CU_ASSERT_EQUAL(md_bitmap_merge(&a, &c), -EINVAL);
	md_bitmap_free(&a);
	md_bitmap_free(&b);
	md_bitmap_free(&c);
}

/* Encode a in chunks of cap bytes, decode into a fresh bitmap, compare. */
static unsigned
transfer(const struct md_bitmap *a, size_t cap, unsigned *raw_chunks)
{
	struct md_bitmap b;
	struct md_bm_chunk info;
	uint8_t *buf = malloc(cap);
	uint64_t pos = 0, expect = 0;
	size_t len;
	unsigned chunks = 0;

	*raw_chunks = 0;
	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_FATAL(md_bitmap_init(&b, a->data_bytes, a->granularity) == 0);
	/* Bounded: every chunk covers at least one bit. */
	while (chunks <= a->nbits) {
		CU_ASSERT_EQUAL_FATAL(md_bitmap_rle_encode(a, &pos, buf, cap,
		    &len), 0);
		if (len == 0)
			break;
		CU_ASSERT(len <= cap);
		CU_ASSERT_EQUAL_FATAL(md_bitmap_rle_decode(buf, len, &b, &info), 0);
		CU_ASSERT_EQUAL(info.start, expect);
		expect += info.nbits;
		*raw_chunks += info.type == MD_BM_CHUNK_RAW;
		chunks++;
	}
	CU_ASSERT_EQUAL(pos, a->nbits);
	CU_ASSERT_EQUAL(expect, a->nbits);
	CU_ASSERT_TRUE(same_bits(a, &b));
	md_bitmap_free(&b);
	free(buf);
	return chunks;
}

static void
test_rle_roundtrip(void)
{
	struct md_bitmap a;
	unsigned chunks, raw, i;

	CU_ASSERT_FATAL(md_bitmap_init(&a, 4096 * MiB + 4096, 4096) == 0);
	/* All clear: one run, one chunk of a few bytes. */
	chunks = transfer(&a, 64, &raw);
	CU_ASSERT_EQUAL(chunks, 1);
	CU_ASSERT_EQUAL(raw, 0);
	/* All set. */
	md_bitmap_set_all(&a);
	CU_ASSERT_EQUAL(transfer(&a, 64, &raw), 1);
	md_bitmap_clear_all(&a);
	/* Sparse: RLE, several chunks when the buffer is small. */
	for (i = 0; i < 500; i++)
		md_bitmap_set_bits(&a, rng() % a.nbits, 1 + rng() % 300);
	CU_ASSERT_EQUAL(transfer(&a, 1 << 16, &raw), 1);
	CU_ASSERT_EQUAL(raw, 0);
	CU_ASSERT(transfer(&a, 64, &raw) > 20);
	md_bitmap_free(&a);
	/* Dense alternating bits: raw chunks cover more. */
	CU_ASSERT_FATAL(md_bitmap_init(&a, 64 * MiB + 12345, 4096) == 0);
	for (i = 0; i < a.nbits; i += 2)
		md_bitmap_set_bits(&a, i, 1);
	CU_ASSERT_EQUAL(a.nbits, 16388);
	/* 1004 payload bytes: raw 8000 bits, 8000 bits, then the last 388
	 * bits fit as 388 one-byte runs (RLE wins ties). */
	chunks = transfer(&a, 1024, &raw);
	CU_ASSERT_EQUAL(raw, 2);
	CU_ASSERT_EQUAL(chunks, 3);
	md_bitmap_free(&a);
}

/* Build a chunk header into p. */
static void
hdr(uint8_t *p, uint8_t type, uint8_t first_set, uint64_t start,
    uint64_t nbits)
{

	p[0] = type;
	p[1] = first_set;
	p[2] = p[3] = 0;
	put_be64(p + 4, start);
	put_be64(p + 12, nbits);
}

static void
test_rle_malicious(void)
{
	struct md_bitmap bm;
	uint8_t b[128], junk[256];
	size_t len;
	uint64_t pos;
	int i, j;

	CU_ASSERT_FATAL(md_bitmap_init(&bm, 4 * MiB, 4096) == 0);
	CU_ASSERT_EQUAL(bm.nbits, 1024);
	/* A good one first: 10 clear, 5 set, 1009 clear. */
	hdr(b, 0, 0, 0, 1024);
	b[20] = 10; b[21] = 5; b[22] = 0xf1; b[23] = 0x07;
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 5);
	CU_ASSERT_TRUE(md_bitmap_test_bit(&bm, 10));
	md_bitmap_clear_all(&bm);
	/* Header problems. */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 19, &bm, NULL), -EBADMSG);
	hdr(b, 2, 0, 0, 1024);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -EBADMSG);
	hdr(b, 0, 2, 0, 1024);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -EBADMSG);
	hdr(b, 0, 0, 0, 1024);
	b[3] = 1;
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -EBADMSG);
	hdr(b, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 20, &bm, NULL), -EBADMSG);
	hdr(b, 0, 0, UINT64_MAX - 1, 10);		/* overflow */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -ERANGE);
	hdr(b, 0, 0, 1000, 25);				/* past the end */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -ERANGE);
	hdr(b, 0, 0, 5, UINT64_MAX);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 24, &bm, NULL), -ERANGE);
	/* Runs that do not add up, zero runs, bad varints. */
	hdr(b, 0, 1, 0, 100);
	b[20] = 50; b[21] = 49;				/* 99 */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 22, &bm, NULL), -EBADMSG);
	b[21] = 51;					/* 101 */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 22, &bm, NULL), -EBADMSG);
	b[20] = 0; b[21] = 100;				/* zero run */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 22, &bm, NULL), -EBADMSG);
	b[20] = 0xe4; b[21] = 0x00;			/* 100, non-minimal */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 22, &bm, NULL), -EBADMSG);
	b[20] = 0xe4;					/* truncated */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 21, &bm, NULL), -EBADMSG);
	for (i = 0; i < 11; i++)
		b[20 + i] = 0xff;			/* > 64 bits */
	b[31] = 0x01;
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 32, &bm, NULL), -EBADMSG);
	b[20] = 100; b[21] = 1;				/* trailing run */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 22, &bm, NULL), -EBADMSG);
	/* Raw chunks. */
	hdr(b, 1, 0, 64, 64);
	memset(b + 20, 0xff, 8);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 28, &bm, NULL), 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 64);
	md_bitmap_clear_all(&bm);
	hdr(b, 1, 1, 64, 64);				/* first_set on raw */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 28, &bm, NULL), -EBADMSG);
	hdr(b, 1, 0, 65, 64);				/* unaligned start */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 28, &bm, NULL), -EBADMSG);
	hdr(b, 1, 0, 64, 64);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 27, &bm, NULL), -EBADMSG);
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 36, &bm, NULL), -EBADMSG);
	hdr(b, 1, 0, 64, 60);				/* padding bits set */
	CU_ASSERT_EQUAL(md_bitmap_rle_decode(b, 28, &bm, NULL), -EBADMSG);
	/* Nothing of the rejected chunks got in. */
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 0);
	CU_ASSERT_EQUAL(md_bitmap_recount(&bm), 0);
	/* Random garbage and bit flips of a valid chunk: no crash, and a
	 * rejected chunk changes nothing. */
	md_bitmap_set_bits(&bm, 100, 50);
	pos = 0;
	CU_ASSERT_EQUAL(md_bitmap_rle_encode(&bm, &pos, b, sizeof(b), &len), 0);
	md_bitmap_clear_all(&bm);
	for (i = 0; i < 20000; i++) {
		size_t n = 1 + rng() % sizeof(junk);

		if (i % 2) {
			for (j = 0; j < (int)n; j++)
				junk[j] = (uint8_t)rng();
		} else {
			n = len;
			memcpy(junk, b, len);
			junk[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
		}
		if (md_bitmap_rle_decode(junk, n, &bm, NULL) != 0)
			CU_ASSERT_EQUAL_FATAL(md_bitmap_recount(&bm), 0);
		md_bitmap_clear_all(&bm);
	}
	CU_ASSERT_EQUAL(md_bitmap_rle_encode(&bm, &pos, b, 31, &len), -ENOSPC);
	pos = bm.nbits + 1;
	CU_ASSERT_EQUAL(md_bitmap_rle_encode(&bm, &pos, b, 64, &len), -ERANGE);
	md_bitmap_free(&bm);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("bitmap", NULL, NULL);
	CU_add_test(s, "init", test_init);
	CU_add_test(s, "ranges_edges", test_ranges_edges);
	CU_add_test(s, "word_boundaries", test_word_boundaries);
	CU_add_test(s, "find", test_find);
	CU_add_test(s, "blocks_durability", test_blocks_durability);
	CU_add_test(s, "block_codec", test_block_codec);
	CU_add_test(s, "merge", test_merge);
	CU_add_test(s, "rle_roundtrip", test_rle_roundtrip);
	CU_add_test(s, "rle_malicious", test_rle_malicious);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
