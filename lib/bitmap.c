/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The dirty bitmap (see bitmap.h): word-wise range operations with popcount,
 * per-block durability bookkeeping, the on-disk block codec and the chunked
 * run-length transfer codec.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "util.h"

#define WORD_BITS	64u

/* Bit masks in the per-block arrays (blk_dirty, blk_setpend, blk_clrpend). */
static inline bool
blk_test(const uint64_t *a, uint64_t blk)
{

	return (a[blk / WORD_BITS] >> (blk % WORD_BITS)) & 1;
}

static inline void
blk_set(uint64_t *a, uint64_t blk)
{

	a[blk / WORD_BITS] |= 1ull << (blk % WORD_BITS);
}

static inline void
blk_clear(uint64_t *a, uint64_t blk)
{

	a[blk / WORD_BITS] &= ~(1ull << (blk % WORD_BITS));
}

/* Record a change in word w; sets make the block set-pending too. */
static inline void
mark_word(struct md_bitmap *bm, uint64_t w, bool is_set)
{
	uint64_t blk = w / MD_BM_WORDS_PER_BLOCK;

	blk_set(bm->blk_dirty, blk);
	blk_set(is_set ? bm->blk_setpend : bm->blk_clrpend, blk);
	bm->blk_gen[blk]++;
	if (is_set)
		bm->blk_setgen[blk]++;
}

/* Mask of bits [lo, hi) of one word, 0 <= lo < hi <= 64. */
static inline uint64_t
word_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi - lo == WORD_BITS ? ~0ull : (1ull << (hi - lo)) - 1;

	return m << lo;
}

uint64_t
md_bitmap_disk_bytes(uint64_t data_bytes, uint32_t granularity)
{
	uint64_t nbits;

	if (granularity == 0)
		return 0;
	nbits = data_bytes / granularity + (data_bytes % granularity != 0);
	return (nbits + MD_BM_BITS_PER_BLOCK - 1) / MD_BM_BITS_PER_BLOCK *
	    MD_BLOCK_SIZE;
}

bool
md_bitmap_gran_valid(uint64_t granularity)
{

	return IS_POW2(granularity) && granularity >= MD_GRAN_MIN &&
	    granularity <= MD_GRAN_MAX;
}

int
md_bitmap_init(struct md_bitmap *bm, uint64_t data_bytes,
    uint32_t granularity)
{
	uint64_t bwords;

	memset(bm, 0, sizeof(*bm));
	if (!md_bitmap_gran_valid(granularity) || data_bytes == 0 ||
	    data_bytes > (1ull << 62))
		return -EINVAL;
	bm->data_bytes = data_bytes;
	bm->granularity = granularity;
	bm->gran_shift = (unsigned)__builtin_ctz(granularity);
	bm->nbits = (data_bytes + granularity - 1) >> bm->gran_shift;
	bm->nblocks = md_bitmap_disk_bytes(data_bytes, granularity) /
	    MD_BLOCK_SIZE;
	bm->nwords = bm->nblocks * MD_BM_WORDS_PER_BLOCK;
	bwords = (bm->nblocks + WORD_BITS - 1) / WORD_BITS;
	bm->words = calloc(bm->nwords, sizeof(uint64_t));
	bm->blk_dirty = calloc(bwords, sizeof(uint64_t));
	bm->blk_setpend = calloc(bwords, sizeof(uint64_t));
	bm->blk_clrpend = calloc(bwords, sizeof(uint64_t));
	bm->blk_gen = calloc(bm->nblocks, sizeof(uint32_t));
	bm->blk_setgen = calloc(bm->nblocks, sizeof(uint32_t));
	if (bm->words == NULL || bm->blk_dirty == NULL || bm->blk_setpend == NULL ||
	    bm->blk_clrpend == NULL || bm->blk_gen == NULL || bm->blk_setgen == NULL) {
		md_bitmap_free(bm);
		return -ENOMEM;
	}
	return 0;
}

void
md_bitmap_free(struct md_bitmap *bm)
{

	free(bm->words);
	free(bm->blk_dirty);
	free(bm->blk_setpend);
	free(bm->blk_clrpend);
	free(bm->blk_gen);
	free(bm->blk_setgen);
	memset(bm, 0, sizeof(*bm));
}

uint64_t
md_bitmap_set_bits(struct md_bitmap *bm, uint64_t first, uint64_t n)
{
	uint64_t end, count = 0, w, m;
	unsigned lo, hi;

	if (first >= bm->nbits)
		return 0;
	end = n > bm->nbits - first ? bm->nbits : first + n;
	/* One word per iteration: the partial first word, whole words, the
	 * partial last word. */
	while (first < end) {
		w = first / WORD_BITS;
		lo = first % WORD_BITS;
		hi = (unsigned)MIN((uint64_t)WORD_BITS, lo + (end - first));
		m = word_mask(lo, hi) & ~bm->words[w];
		if (m != 0) {
			bm->words[w] |= m;
			count += (uint64_t)__builtin_popcountll(m);
			mark_word(bm, w, true);
		}
		first += hi - lo;
	}
	bm->set += count;
	return count;
}

uint64_t
md_bitmap_clear_bits(struct md_bitmap *bm, uint64_t first, uint64_t n)
{
	uint64_t end, count = 0, w, m;
	unsigned lo, hi;

	if (first >= bm->nbits)
		return 0;
	end = n > bm->nbits - first ? bm->nbits : first + n;
	while (first < end) {
		w = first / WORD_BITS;
		lo = first % WORD_BITS;
		hi = (unsigned)MIN((uint64_t)WORD_BITS, lo + (end - first));
		m = word_mask(lo, hi) & bm->words[w];
		if (m != 0) {
			bm->words[w] &= ~m;
			count += (uint64_t)__builtin_popcountll(m);
			mark_word(bm, w, false);
		}
		first += hi - lo;
	}
	bm->set -= count;
	return count;
}

bool
md_bitmap_test_bit(const struct md_bitmap *bm, uint64_t bit)
{

	if (bit >= bm->nbits)
		return false;
	return (bm->words[bit / WORD_BITS] >> (bit % WORD_BITS)) & 1;
}

void
md_bitmap_set_all(struct md_bitmap *bm)
{

	md_bitmap_set_bits(bm, 0, bm->nbits);
}

void
md_bitmap_clear_all(struct md_bitmap *bm)
{

	md_bitmap_clear_bits(bm, 0, bm->nbits);
}

/* Clip [off, off + len) to the data area; false when nothing is left. */
static bool
clip_range(const struct md_bitmap *bm, uint64_t off, uint64_t *len)
{

	if (off >= bm->data_bytes || *len == 0)
		return false;
	if (*len > bm->data_bytes - off)
		*len = bm->data_bytes - off;
	return true;
}

uint64_t
md_bitmap_set_range(struct md_bitmap *bm, uint64_t off, uint64_t len)
{
	uint64_t first, last;

	if (!clip_range(bm, off, &len))
		return 0;
	first = off >> bm->gran_shift;
	last = (off + len - 1) >> bm->gran_shift;
	return md_bitmap_set_bits(bm, first, last - first + 1);
}

uint64_t
md_bitmap_clear_range(struct md_bitmap *bm, uint64_t off, uint64_t len)
{
	uint64_t first, end;

	if (!clip_range(bm, off, &len))
		return 0;
	first = (off + bm->granularity - 1) >> bm->gran_shift;
	if (off + len == bm->data_bytes)
		end = bm->nbits;
	else
		end = (off + len) >> bm->gran_shift;
	if (end <= first)
		return 0;
	return md_bitmap_clear_bits(bm, first, end - first);
}

bool
md_bitmap_test_range(const struct md_bitmap *bm, uint64_t off, uint64_t len)
{
	uint64_t first, last, next;

	if (!clip_range(bm, off, &len))
		return false;
	first = off >> bm->gran_shift;
	last = (off + len - 1) >> bm->gran_shift;
	next = md_bitmap_find_next_set(bm, first);
	return next != MD_BM_NONE && next <= last;
}

uint64_t
md_bitmap_count(const struct md_bitmap *bm)
{

	return bm->set;
}

uint64_t
md_bitmap_recount(const struct md_bitmap *bm)
{
	uint64_t i, n = 0;

	for (i = 0; i < bm->nwords; i++)
		n += (uint64_t)__builtin_popcountll(bm->words[i]);
	return n;
}

uint64_t
md_bitmap_set_bytes(const struct md_bitmap *bm)
{
	uint64_t bytes = bm->set << bm->gran_shift;
	uint64_t tail = bm->data_bytes & (bm->granularity - 1);

	/* The short last granule covers only the tail of the data. */
	if (tail != 0 && md_bitmap_test_bit(bm, bm->nbits - 1))
		bytes -= bm->granularity - tail;
	return bytes;
}

uint64_t
md_bitmap_find_next_set(const struct md_bitmap *bm, uint64_t from)
{
	uint64_t w, x;

	if (from >= bm->nbits)
		return MD_BM_NONE;
	w = from / WORD_BITS;
	x = bm->words[w] & (~0ull << (from % WORD_BITS));
	/* Bits beyond nbits are always clear, so any hit is < nbits. */
	while (x == 0) {
		if (++w >= bm->nwords)
			return MD_BM_NONE;
		x = bm->words[w];
	}
	return w * WORD_BITS + (uint64_t)__builtin_ctzll(x);
}

uint64_t
md_bitmap_find_next_zero(const struct md_bitmap *bm, uint64_t from)
{
	uint64_t w, x;

	if (from >= bm->nbits)
		return bm->nbits;
	w = from / WORD_BITS;
	x = ~bm->words[w] & (~0ull << (from % WORD_BITS));
	while (x == 0) {
		if (++w >= bm->nwords)
			return bm->nbits;
		x = ~bm->words[w];
	}
	return MIN(w * WORD_BITS + (uint64_t)__builtin_ctzll(x), bm->nbits);
}

uint64_t
md_bitmap_bit_of(const struct md_bitmap *bm, uint64_t off)
{

	return off >> bm->gran_shift;
}

uint64_t
md_bitmap_offset_of(const struct md_bitmap *bm, uint64_t bit)
{

	return bit << bm->gran_shift;
}

uint64_t
md_bitmap_block_of(const struct md_bitmap *bm, uint64_t off)
{

	return (off >> bm->gran_shift) / MD_BM_BITS_PER_BLOCK;
}

bool
md_bitmap_range_durable(const struct md_bitmap *bm, uint64_t off,
    uint64_t len)
{
	uint64_t blk, last;

	if (!clip_range(bm, off, &len))
		return true;
	last = md_bitmap_block_of(bm, off + len - 1);
	for (blk = md_bitmap_block_of(bm, off); blk <= last; blk++)
		if (blk_test(bm->blk_setpend, blk))
			return false;
	return true;
}

bool
md_bitmap_block_dirty(const struct md_bitmap *bm, uint64_t blk)
{

	return blk < bm->nblocks && blk_test(bm->blk_dirty, blk);
}

uint64_t
md_bitmap_next_dirty_block(const struct md_bitmap *bm, uint64_t from)
{
	uint64_t w, x, nw = (bm->nblocks + WORD_BITS - 1) / WORD_BITS;

	if (from >= bm->nblocks)
		return MD_BM_NONE;
	w = from / WORD_BITS;
	x = bm->blk_dirty[w] & (~0ull << (from % WORD_BITS));
	while (x == 0) {
		if (++w >= nw)
			return MD_BM_NONE;
		x = bm->blk_dirty[w];
	}
	return w * WORD_BITS + (uint64_t)__builtin_ctzll(x);
}

void
md_bitmap_encode_block(const struct md_bitmap *bm, uint64_t blk, void *buf,
    uint64_t *gen)
{
	const uint64_t *src = bm->words + blk * MD_BM_WORDS_PER_BLOCK;
	uint8_t *p = buf;
	unsigned i;

	for (i = 0; i < MD_BM_WORDS_PER_BLOCK; i++)
		put_be64(p + i * 8, src[i]);
	*gen = (uint64_t)bm->blk_setgen[blk] << 32 | bm->blk_gen[blk];
}

void
md_bitmap_block_written(struct md_bitmap *bm, uint64_t blk, uint64_t gen)
{

	if (blk >= bm->nblocks)
		return;
	/* Only clears since the encode: every bit set now was set then, and
	 * is on disk (a replicated write or a resync range clearing bits
	 * meanwhile must not keep the block's sets pending for ever). */
	if (bm->blk_setgen[blk] == (uint32_t)(gen >> 32))
		blk_clear(bm->blk_setpend, blk);
	if (bm->blk_gen[blk] != (uint32_t)gen)
		return;
	blk_clear(bm->blk_dirty, blk);
	blk_clear(bm->blk_clrpend, blk);
}

bool
md_bitmap_block_has_clears(const struct md_bitmap *bm, uint64_t blk)
{

	return blk < bm->nblocks && blk_test(bm->blk_clrpend, blk);
}

int
md_bitmap_decode_block(struct md_bitmap *bm, uint64_t blk, const void *buf,
    size_t len)
{
	uint64_t *dst, first_bit, v, old = 0, new = 0;
	const uint8_t *p = buf;
	unsigned i;

	if (len != MD_BLOCK_SIZE)
		return -EMSGSIZE;
	if (blk >= bm->nblocks)
		return -ERANGE;
	first_bit = blk * MD_BM_BITS_PER_BLOCK;
	/* Validate first: no bit at or beyond nbits may be set. */
	for (i = 0; i < MD_BM_WORDS_PER_BLOCK; i++) {
		uint64_t wbit = first_bit + (uint64_t)i * WORD_BITS;

		v = get_be64(p + i * 8);
		if (wbit >= bm->nbits ? v != 0 :
		    (bm->nbits - wbit < WORD_BITS &&
		    (v >> (bm->nbits - wbit)) != 0))
			return -EBADMSG;
	}
	dst = bm->words + blk * MD_BM_WORDS_PER_BLOCK;
	for (i = 0; i < MD_BM_WORDS_PER_BLOCK; i++) {
		v = get_be64(p + i * 8);
		old += (uint64_t)__builtin_popcountll(dst[i]);
		new += (uint64_t)__builtin_popcountll(v);
		dst[i] = v;
	}
	bm->set = bm->set - old + new;
	blk_clear(bm->blk_dirty, blk);
	blk_clear(bm->blk_setpend, blk);
	blk_clear(bm->blk_clrpend, blk);
	return 0;
}

int
md_bitmap_merge(struct md_bitmap *bm, const struct md_bitmap *other)
{
	uint64_t w, m;

	if (bm->nbits != other->nbits || bm->granularity != other->granularity)
		return -EINVAL;
	for (w = 0; w < bm->nwords; w++) {
		m = other->words[w] & ~bm->words[w];
		if (m == 0)
			continue;
		bm->words[w] |= m;
		bm->set += (uint64_t)__builtin_popcountll(m);
		mark_word(bm, w, true);
	}
	return 0;
}

/* ---- transfer chunks ---- */

/* Unsigned LEB128: 7 bits a byte, low first, high bit = more follows. */
static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/*
 * Read one varint from p[0..len); returns the bytes used, or 0 for a
 * truncated, over-long (> 10 bytes, > 64 bits) or non-minimal encoding.
 */
static size_t
get_varint(const uint8_t *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && i < 10; i++) {
		uint64_t b = p[i] & 0x7f;

		if (i == 9 && b > 1)
			return 0;		/* more than 64 bits */
		v |= b << (7 * i);
		if (!(p[i] & 0x80)) {
			if (i > 0 && p[i] == 0)
				return 0;	/* non-minimal */
			*out = v;
			return i + 1;
		}
	}
	return 0;
}

static void
put_chunk_hdr(uint8_t *p, unsigned type, bool first_set, uint64_t start,
    uint64_t nbits)
{

	p[0] = (uint8_t)type;
	p[1] = first_set;
	put_be16(p + 2, 0);
	put_be64(p + 4, start);
	put_be64(p + 12, nbits);
}

/* Runs from pos into p[0..cap); returns bytes, *covered gets the bits. */
static size_t
encode_runs(const struct md_bitmap *bm, uint64_t pos, uint8_t *p, size_t cap,
    uint64_t *covered)
{
	uint64_t at = pos, end;
	bool set = md_bitmap_test_bit(bm, pos);
	size_t n = 0;

	/* Whole runs only; stop when the next run's varint does not fit. */
	while (at < bm->nbits) {
		end = set ? md_bitmap_find_next_zero(bm, at) :
		    md_bitmap_find_next_set(bm, at);
		if (end == MD_BM_NONE)
			end = bm->nbits;
		if (varint_len(end - at) > cap - n)
			break;
		n += put_varint(p + n, end - at);
		at = end;
		set = !set;
	}
	*covered = at - pos;
	return n;
}

int
md_bitmap_rle_encode(const struct md_bitmap *bm, uint64_t *pos, void *buf,
    size_t cap, size_t *outlen)
{
	uint8_t *p = buf;
	uint64_t start = *pos, rle_bits, raw_bits, i;
	size_t n, raw_words;

	*outlen = 0;
	if (cap < MD_BM_CHUNK_MIN)
		return -ENOSPC;
	if (start > bm->nbits)
		return -ERANGE;
	if (start == bm->nbits)
		return 0;
	n = encode_runs(bm, start, p + MD_BM_CHUNK_HDR, cap - MD_BM_CHUNK_HDR,
	    &rle_bits);
	/* A raw chunk (word-aligned start only) when it covers more bits. */
	raw_words = (cap - MD_BM_CHUNK_HDR) / 8;
	raw_bits = MIN(bm->nbits - start, (uint64_t)raw_words * WORD_BITS);
	if (start % WORD_BITS == 0 && raw_bits > rle_bits) {
		raw_words = (size_t)((raw_bits + WORD_BITS - 1) / WORD_BITS);
		for (i = 0; i < raw_words; i++)
			put_be64(p + MD_BM_CHUNK_HDR + i * 8,
			    bm->words[start / WORD_BITS + i] &
			    (i == raw_words - 1 && raw_bits % WORD_BITS ?
			    word_mask(0, raw_bits % WORD_BITS) : ~0ull));
		put_chunk_hdr(p, MD_BM_CHUNK_RAW, false, start, raw_bits);
		*outlen = MD_BM_CHUNK_HDR + raw_words * 8;
		*pos = start + raw_bits;
		return 0;
	}
	put_chunk_hdr(p, MD_BM_CHUNK_RLE, md_bitmap_test_bit(bm, start), start,
	    rle_bits);
	*outlen = MD_BM_CHUNK_HDR + n;
	*pos = start + rle_bits;
	return 0;
}

/* Pass over the runs of an RLE payload; apply == NULL only validates. */
static int
walk_runs(const uint8_t *p, size_t len, const struct md_bm_chunk *c,
    bool set, struct md_bitmap *apply)
{
	uint64_t at = 0, run;
	size_t off = 0, used;

	/* Each iteration consumes one run; every run is >= 1 bit, so the loop
	 * ends after at most c->nbits runs, and when the payload runs out. */
	while (off < len) {
		used = get_varint(p + off, len - off, &run);
		if (used == 0 || run == 0 || run > c->nbits - at)
			return -EBADMSG;
		if (apply != NULL && set)
			md_bitmap_set_bits(apply, c->start + at, run);
		off += used;
		at += run;
		set = !set;
	}
	return at == c->nbits ? 0 : -EBADMSG;
}

/* Validate (apply == NULL) or apply a raw payload. */
static int
walk_raw(const uint8_t *p, size_t len, const struct md_bm_chunk *c,
    struct md_bitmap *apply)
{
	uint64_t nwords = (c->nbits + WORD_BITS - 1) / WORD_BITS, i, v;
	unsigned tail = c->nbits % WORD_BITS;

	if (c->start % WORD_BITS != 0 || len / 8 != nwords || len % 8 != 0)
		return -EBADMSG;
	if (tail != 0 && (get_be64(p + (nwords - 1) * 8) >> tail) != 0)
		return -EBADMSG;
	if (apply == NULL)
		return 0;
	for (i = 0; i < nwords; i++) {
		uint64_t w = c->start / WORD_BITS + i, m;

		v = get_be64(p + i * 8);
		m = v & ~apply->words[w];
		if (m == 0)
			continue;
		apply->words[w] |= m;
		apply->set += (uint64_t)__builtin_popcountll(m);
		mark_word(apply, w, true);
	}
	return 0;
}

int
md_bitmap_rle_decode(const void *buf, size_t len, struct md_bitmap *bm,
    struct md_bm_chunk *info)
{
	const uint8_t *p = buf;
	struct md_bm_chunk c;
	bool first_set;
	int r;

	if (len < MD_BM_CHUNK_HDR)
		return -EBADMSG;
	c.type = p[0];
	first_set = p[1] != 0;
	c.start = get_be64(p + 4);
	c.nbits = get_be64(p + 12);
	if (c.type > MD_BM_CHUNK_RAW || p[1] > 1 || get_be16(p + 2) != 0 ||
	    (c.type == MD_BM_CHUNK_RAW && first_set) || c.nbits == 0)
		return -EBADMSG;
	if (c.start >= bm->nbits || c.nbits > bm->nbits - c.start)
		return -ERANGE;
	p += MD_BM_CHUNK_HDR;
	len -= MD_BM_CHUNK_HDR;
	if (c.type == MD_BM_CHUNK_RAW) {
		if ((r = walk_raw(p, len, &c, NULL)) == 0)
			walk_raw(p, len, &c, bm);
	} else {
		if ((r = walk_runs(p, len, &c, first_set, NULL)) == 0)
			walk_runs(p, len, &c, first_set, bm);
	}
	if (r == 0 && info != NULL)
		*info = c;
	return r;
}
