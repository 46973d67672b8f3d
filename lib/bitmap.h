/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The dirty bitmap: one bit per granule (bitmap-granularity, default 4 KiB)
 * of the data area, set when the region differs (or may differ) from the
 * peer.  In memory it is an array of 64-bit words; on disk it is a sequence
 * of 4 KiB blocks (docs/on-disk-format.md, "Bitmap blocks").
 *
 * Bit b covers data bytes [b * granularity, (b + 1) * granularity); it is
 * bit (b % 64) (least significant = 0) of word b / 64.  On disk every word is
 * big-endian, 512 words per block.
 *
 * Durability bookkeeping, per on-disk block:
 *   dirty      the block changed in memory since it was last written;
 *   set-pending   some bit of the block was SET since it was last written: a
 *              client write to a region covered by this block must wait until
 *              the block is durable (DESIGN.md, write path point 4).
 *   gen        bumped on each change, so a write that raced with a change
 *              does not mark the block clean (md_bitmap_block_written).
 *
 * The bitmap travels to the peer on connect as a series of chunks, each
 * run-length encoded or raw, whichever covers more bits in the space given
 * (md_bitmap_rle_encode / md_bitmap_rle_decode; format in the docs).
 *
 * Nothing here does I/O or allocates after md_bitmap_init().
 */
#ifndef BLKMIRROR_BITMAP_H
#define BLKMIRROR_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD_BLOCK_SIZE		4096u			/* metadata block */
#define MD_BM_BITS_PER_BLOCK	(MD_BLOCK_SIZE * 8u)	/* 32768 */
#define MD_BM_WORDS_PER_BLOCK	(MD_BLOCK_SIZE / 8u)	/* 512 */
#define MD_GRAN_MIN		4096u			/* smallest granularity */
#define MD_GRAN_MAX		(1u << 20)		/* largest granularity */
#define MD_BM_NONE		UINT64_MAX		/* "no such bit/block" */

#define MD_BM_CHUNK_HDR		20u	/* bytes of a transfer chunk header */
#define MD_BM_CHUNK_MIN		32u	/* smallest buffer the encoder accepts */
#define MD_BM_CHUNK_RLE		0u	/* chunk type: run lengths */
#define MD_BM_CHUNK_RAW		1u	/* chunk type: raw big-endian words */

struct md_bitmap {
	uint64_t data_bytes;	/* bytes of data covered */
	uint32_t granularity;	/* bytes per bit (power of 2) */
	unsigned gran_shift;	/* log2(granularity) */
	uint64_t nbits;		/* granules: ceil(data_bytes / granularity) */
	uint64_t nblocks;	/* on-disk blocks: ceil(nbits / 32768) */
	uint64_t nwords;	/* words: nblocks * 512 */
	uint64_t *words;	/* the bits; bits >= nbits are always 0 */
	uint64_t set;		/* number of bits set, kept up to date */
	uint64_t *blk_dirty;	/* bit per block: changed since last written */
	uint64_t *blk_setpend;	/* bit per block: has sets not yet durable */
	uint64_t *blk_clrpend;	/* bit per block: has clears not yet durable */
	uint32_t *blk_gen;	/* per block: change counter */
	uint32_t *blk_setgen;	/* per block: counter of sets only */
};

/* What one transfer chunk covered (filled by md_bitmap_rle_decode). */
struct md_bm_chunk {
	uint64_t start;		/* first bit */
	uint64_t nbits;		/* bits covered */
	unsigned type;		/* MD_BM_CHUNK_RLE or MD_BM_CHUNK_RAW */
};

/* Bytes the on-disk bitmap of data_bytes at granularity takes (4 KiB blocks). */
uint64_t md_bitmap_disk_bytes(uint64_t data_bytes, uint32_t granularity);

/* A valid granularity: power of 2 in [MD_GRAN_MIN, MD_GRAN_MAX]. */
bool md_bitmap_gran_valid(uint64_t granularity);

/*
 * Allocate an all-clear bitmap for data_bytes (> 0) at granularity.
 * Returns 0, -EINVAL (bad granularity or size) or -ENOMEM.
 */
int md_bitmap_init(struct md_bitmap *bm, uint64_t data_bytes,
    uint32_t granularity);
void md_bitmap_free(struct md_bitmap *bm);

/*
 * Byte ranges.  Ranges are clipped to the data area.
 * set:   every granule the range touches (rounds outward); returns the
 *        number of bits that were clear before.
 * clear: only granules entirely inside the range (rounds inward; the short
 *        last granule counts as entire when the range reaches the end of the
 *        data); returns the number of bits that were set before.
 * test:  true if any granule the range touches is set.
 */
uint64_t md_bitmap_set_range(struct md_bitmap *bm, uint64_t off, uint64_t len);
uint64_t md_bitmap_clear_range(struct md_bitmap *bm, uint64_t off,
    uint64_t len);
bool md_bitmap_test_range(const struct md_bitmap *bm, uint64_t off,
    uint64_t len);

/* Bit ranges [first, first + n) (clipped to nbits); same return values. */
uint64_t md_bitmap_set_bits(struct md_bitmap *bm, uint64_t first, uint64_t n);
uint64_t md_bitmap_clear_bits(struct md_bitmap *bm, uint64_t first,
    uint64_t n);
bool md_bitmap_test_bit(const struct md_bitmap *bm, uint64_t bit);
void md_bitmap_set_all(struct md_bitmap *bm);
void md_bitmap_clear_all(struct md_bitmap *bm);

/* Bits set (O(1)), and the same recomputed with popcount (O(n)). */
uint64_t md_bitmap_count(const struct md_bitmap *bm);
uint64_t md_bitmap_recount(const struct md_bitmap *bm);
/* Data bytes the set bits cover (the short last granule counts its length). */
uint64_t md_bitmap_set_bytes(const struct md_bitmap *bm);

/*
 * First set bit >= from, or MD_BM_NONE; first clear bit >= from, or nbits.
 * A resync walks runs with these two.
 */
uint64_t md_bitmap_find_next_set(const struct md_bitmap *bm, uint64_t from);
uint64_t md_bitmap_find_next_zero(const struct md_bitmap *bm, uint64_t from);

/* Byte offset <-> bit. */
uint64_t md_bitmap_bit_of(const struct md_bitmap *bm, uint64_t off);
uint64_t md_bitmap_offset_of(const struct md_bitmap *bm, uint64_t bit);

/* The on-disk block holding the bit of data byte off. */
uint64_t md_bitmap_block_of(const struct md_bitmap *bm, uint64_t off);

/*
 * True when every block holding a bit of [off, off + len) has no set that is
 * not yet durable: a write to the range may go ahead (its bits, if set, are
 * on disk).  False: write the blocks of the range (md_bitmap_block_of) and
 * wait for them first.
 */
bool md_bitmap_range_durable(const struct md_bitmap *bm, uint64_t off,
    uint64_t len);

/* Next block >= from changed since last written, or MD_BM_NONE. */
uint64_t md_bitmap_next_dirty_block(const struct md_bitmap *bm, uint64_t from);
bool md_bitmap_block_dirty(const struct md_bitmap *bm, uint64_t blk);
/* Has block blk clears not yet durable?  Writing it then needs the data
 * the clears vouch for on stable storage first (a flush). */
bool md_bitmap_block_has_clears(const struct md_bitmap *bm, uint64_t blk);

/*
 * Encode block blk (< nblocks) into buf (MD_BLOCK_SIZE bytes) and return its
 * change counters in *gen.  After the write is durable call
 * md_bitmap_block_written(bm, blk, gen): the block becomes clean unless it
 * changed again in between; its sets are durable unless bits were set again
 * in between (clears since leave it dirty, but do not make the ranges of
 * its set bits wait: md_bitmap_range_durable).
 */
void md_bitmap_encode_block(const struct md_bitmap *bm, uint64_t blk,
    void *buf, uint64_t *gen);
void md_bitmap_block_written(struct md_bitmap *bm, uint64_t blk, uint64_t gen);

/*
 * Load block blk from its on-disk form (attach).  Replaces the block's bits;
 * the block is clean afterwards.  Returns 0, -EMSGSIZE (len is not
 * MD_BLOCK_SIZE), -ERANGE (blk >= nblocks) or -EBADMSG (bits beyond the end
 * of the data are set); nothing changes on error.
 */
int md_bitmap_decode_block(struct md_bitmap *bm, uint64_t blk,
    const void *buf, size_t len);

/*
 * OR other into bm (same size and granularity, else -EINVAL).  Changed
 * blocks become dirty and set-pending.
 */
int md_bitmap_merge(struct md_bitmap *bm, const struct md_bitmap *other);

/*
 * Encode the next transfer chunk starting at bit *pos into buf (cap bytes,
 * at least MD_BM_CHUNK_MIN); *outlen gets its length and *pos advances past
 * the bits it covers.  *outlen is 0 when *pos == nbits (done).  Returns 0,
 * -ENOSPC (cap too small) or -ERANGE (*pos > nbits).
 */
int md_bitmap_rle_encode(const struct md_bitmap *bm, uint64_t *pos,
    void *buf, size_t cap, size_t *outlen);

/*
 * Decode one transfer chunk (network input) and OR its bits into bm.  The
 * whole chunk is validated before bm changes: unknown type or reserved bits,
 * a range beyond the bitmap (with overflow checks), zero or over-long runs,
 * non-minimal varints, runs that do not add up, padding bits set, a length
 * that does not match.  Returns 0 and fills *info (may be NULL), -EBADMSG
 * (malformed) or -ERANGE (outside the bitmap).
 */
int md_bitmap_rle_decode(const void *buf, size_t len, struct md_bitmap *bm,
    struct md_bm_chunk *info);

#endif
