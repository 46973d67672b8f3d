/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/md.c, lib/md_al.c and lib/md_io.c: layout, superblock
 * codec and slot choice, activity log, file helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include <CUnit/Basic.h>

#include "md.h"
#include "util.h"
#include "test_rng.h"
#include "cu_run.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t
rng(void)
{
	return test_rng_next(&rng_state);
}

/* Properties every layout has. */
static void
check_layout(const struct md_layout *l)
{
	uint64_t total = l->disk_bytes & ~4095ull;

	CU_ASSERT_EQUAL(l->data_bytes % l->granularity, 0);
	CU_ASSERT(l->data_bytes >= MD_DATA_MIN);
	CU_ASSERT_EQUAL(l->bitmap_offset % 4096, 0);
	CU_ASSERT_EQUAL(l->al_offset % 4096, 0);
	CU_ASSERT_EQUAL(l->sb_offset[0] % 4096, 0);
	CU_ASSERT_EQUAL(l->bitmap_bytes,
	    md_bitmap_disk_bytes(l->data_bytes, l->granularity));
	CU_ASSERT_EQUAL(l->al_bytes, (uint64_t)l->al_tr_count * 4096);
	CU_ASSERT(l->al_tr_count >= md_al_ring_size(l->al_extents));
	CU_ASSERT_EQUAL(l->sb_offset[1], l->sb_offset[0] + 4096);
	if (l->internal) {
		CU_ASSERT(l->data_bytes <= l->bitmap_offset);
		CU_ASSERT(l->bitmap_offset - l->data_bytes < l->granularity + 4096);
		CU_ASSERT_EQUAL(l->bitmap_offset + l->bitmap_bytes, l->al_offset);
		CU_ASSERT_EQUAL(l->al_offset + l->al_bytes, l->sb_offset[0]);
		CU_ASSERT_EQUAL(l->sb_offset[1] + 4096, total);
		CU_ASSERT_EQUAL(l->md_offset + l->md_bytes, total);
	} else {
		CU_ASSERT_EQUAL(l->data_bytes,
		    l->disk_bytes & ~(uint64_t)(l->granularity - 1));
		CU_ASSERT_EQUAL(l->sb_offset[0], 0);
		CU_ASSERT_EQUAL(l->al_offset, 8192);
		CU_ASSERT_EQUAL(l->bitmap_offset, 8192 + l->al_bytes);
		CU_ASSERT_EQUAL(l->md_bytes, l->bitmap_offset + l->bitmap_bytes);
	}
}

static void
test_layout(void)
{
	struct md_layout l;

	/* Small: 64 MiB, defaults. */
	CU_ASSERT_EQUAL(md_layout_compute(64 * MiB, true, 4096, 1237, &l), 0);
	check_layout(&l);
	CU_ASSERT_EQUAL(l.al_tr_count, 8);
	CU_ASSERT_EQUAL(l.sb_offset[0], 64 * MiB - 8192);
	CU_ASSERT_EQUAL(l.al_offset, 64 * MiB - 8192 - 32768);
	CU_ASSERT_EQUAL(l.bitmap_bytes, 4096);
	CU_ASSERT_EQUAL(l.data_bytes, 64 * MiB - 44 * KiB);
	CU_ASSERT_EQUAL(l.bitmap_offset, 64 * MiB - 44 * KiB);
	/* Large: 1 TiB, the biggest AL. */
	CU_ASSERT_EQUAL(md_layout_compute(1024 * GiB, true, 4096, 65534, &l), 0);
	check_layout(&l);
	CU_ASSERT_EQUAL(l.al_tr_count, 73);
	CU_ASSERT_EQUAL(l.bitmap_bytes, 32 * MiB);
	CU_ASSERT(l.data_bytes > 1024 * GiB - 33 * MiB);
	/* Odd size, coarse granularity. */
	CU_ASSERT_EQUAL(md_layout_compute(100 * MiB + 1234, true, 65536, 7, &l), 0);
	check_layout(&l);
	CU_ASSERT_EQUAL(l.sb_offset[1], 100 * MiB + 1234 - 1234 - 4096);
	CU_ASSERT_EQUAL(l.data_bytes, 100 * MiB - 64 * KiB);
	/* External: the data area is the whole disk (rounded to granularity). */
	CU_ASSERT_EQUAL(md_layout_compute(100 * MiB + 1234, false, 4096, 1237, &l), 0);
	check_layout(&l);
	CU_ASSERT_EQUAL(l.data_bytes, 100 * MiB);
	CU_ASSERT_EQUAL(l.md_bytes, 8192 + 32768 + 4096);
	/* Just big enough, and one block too small. */
	CU_ASSERT_EQUAL(md_layout_compute(MiB + 44 * KiB, true, 4096, 1237, &l), 0);
	CU_ASSERT_EQUAL(l.data_bytes, MiB);
	CU_ASSERT_EQUAL(md_layout_compute(MiB + 40 * KiB, true, 4096, 1237, &l),
	    -ENOSPC);
	CU_ASSERT_EQUAL(md_layout_compute(MiB - 1, false, 4096, 1237, &l), -ENOSPC);
	CU_ASSERT_EQUAL(md_layout_compute(0, true, 4096, 1237, &l), -ENOSPC);
	/* Bad parameters. */
	CU_ASSERT_EQUAL(md_layout_compute(GiB, true, 3000, 1237, &l), -EINVAL);
	CU_ASSERT_EQUAL(md_layout_compute(GiB, true, 2 * MiB, 1237, &l), -EINVAL);
	CU_ASSERT_EQUAL(md_layout_compute(GiB, true, 4096, 6, &l), -EINVAL);
	CU_ASSERT_EQUAL(md_layout_compute(GiB, true, 4096, 65535, &l), -EINVAL);
	/* Node ids do not depend on the order of the [node] sections. */
	CU_ASSERT_EQUAL(md_node_id("alpha", "beta"), 0);
	CU_ASSERT_EQUAL(md_node_id("beta", "alpha"), 1);
	CU_ASSERT_EQUAL(md_node_id("beta", NULL), 0);
	/* Ring sizes: a full context cycle plus one. */
	CU_ASSERT_EQUAL(md_al_ring_size(920 * 8), 9);
	CU_ASSERT_EQUAL(md_al_ring_size(920 * 8 + 1), 10);
	CU_ASSERT_EQUAL(md_al_ring_size(7), 8);
}

/* A superblock with every field set, consistent with its layout. */
static void
sample_sb(struct md_sb *sb, uint64_t seq)
{
	struct md_layout l;
	unsigned i;

	CU_ASSERT_FATAL(md_layout_compute(10 * GiB + 555, true, 8192, 3001, &l) == 0);
	memset(sb, 0, sizeof(*sb));
	sb->version = MD_SB_VERSION;
	sb->seq = seq;
	for (i = 0; i < 16; i++)
		sb->volume_uuid[i] = (uint8_t)(0xa0 + i);
	sb->node_id = 1;
	sb->flags = MD_FL_CONSISTENT | MD_FL_PRIMARY | MD_FL_PEER_OUTDATED;
	sb->disk_state = MD_DISK_UPTODATE;
	sb->last_role = MD_ROLE_PRIMARY;
	sb->epoch = 0x0102030405060708ull;
	sb->uuids.current = 0x1111111111111111ull;
	sb->uuids.bitmap = 0x2222222222222222ull;
	for (i = 0; i < MD_UUID_HISTORY; i++)
		sb->uuids.history[i] = 0x3333333333333330ull + i;
	sb->internal = true;
	sb->disk_bytes = l.disk_bytes;
	sb->data_bytes = l.data_bytes;
	sb->granularity = l.granularity;
	sb->al_extents = l.al_extents;
	sb->al_tr_count = l.al_tr_count;
	sb->bitmap_offset = l.bitmap_offset;
	sb->al_offset = l.al_offset;
}

/* Recompute the checksum after a deliberate edit. */
static void
reseal(uint8_t *buf)
{

	put_be64(buf + 4088, XXH3_64bits(buf, 4088));
}

static void
test_sb_roundtrip(void)
{
	struct md_sb sb, back;
	uint8_t buf[MD_SB_SIZE];

	sample_sb(&sb, 42);
	md_sb_encode(&sb, buf);
	/* Big-endian on disk. */
	CU_ASSERT_EQUAL(memcmp(buf, "BMMD", 4), 0);
	CU_ASSERT_EQUAL(buf[8 + 7], 42);
	CU_ASSERT_EQUAL(buf[48], 0x01);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &back), 0);
	CU_ASSERT_EQUAL(memcmp(&sb, &back, sizeof(sb)), 0);
	CU_ASSERT_EQUAL(back.epoch, 0x0102030405060708ull);
	CU_ASSERT_EQUAL(back.uuids.history[3], 0x3333333333333333ull);
	CU_ASSERT_EQUAL(back.granularity, 8192);
	CU_ASSERT_TRUE(back.internal);
}

static void
test_sb_errors(void)
{
	struct md_sb sb, out;
	uint8_t buf[MD_SB_SIZE], z[MD_SB_SIZE];

	sample_sb(&sb, 1);
	memset(z, 0, sizeof(z));
	md_sb_encode(&sb, buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, 4095, &out), -EMSGSIZE);
	CU_ASSERT_EQUAL(md_sb_decode(z, sizeof(z), &out), -ENODATA);
	buf[100] ^= 0x40;				/* torn */
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EBADMSG);
	md_sb_encode(&sb, buf);
	buf[4090] ^= 1;					/* checksum itself */
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EBADMSG);
	md_sb_encode(&sb, buf);
	put_be32(buf + 4, 2);				/* newer format */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EPROTO);
	md_sb_encode(&sb, buf);
	put_be32(buf + 36, 1u << 20);			/* unknown flag */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	buf[40] = 6;					/* disk state */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	buf[41] = 2;					/* role */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	buf[2000] = 1;					/* reserved */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	put_be32(buf + 44, 12288);			/* granularity */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	put_be64(buf + 112, sb.data_bytes + 8192);	/* layout mismatch */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
	md_sb_encode(&sb, buf);
	put_be32(buf + 120, 5);				/* al_extents */
	reseal(buf);
	CU_ASSERT_EQUAL(md_sb_decode(buf, sizeof(buf), &out), -EINVAL);
}

static void
test_sb_pick(void)
{
	uint8_t a[MD_SB_SIZE], b[MD_SB_SIZE], z[MD_SB_SIZE];
	struct md_sb sb, out;
	int slot, ra, rb;

	memset(z, 0, sizeof(z));
	sample_sb(&sb, 5);
	md_sb_encode(&sb, a);
	sb.seq = 6;
	sb.epoch = 77;
	md_sb_encode(&sb, b);
	CU_ASSERT_EQUAL(md_sb_pick(a, b, &out, &slot, &ra, &rb), 0);
	CU_ASSERT_EQUAL(slot, 1);
	CU_ASSERT_EQUAL(out.seq, 6);
	CU_ASSERT_EQUAL(out.epoch, 77);
	CU_ASSERT_EQUAL(md_sb_pick(b, a, &out, &slot, NULL, NULL), 0);
	CU_ASSERT_EQUAL(slot, 0);
	/* A torn slot B (one byte corrupted): slot A wins. */
	b[1234] ^= 0xff;
	CU_ASSERT_EQUAL(md_sb_pick(a, b, &out, &slot, &ra, &rb), 0);
	CU_ASSERT_EQUAL(slot, 0);
	CU_ASSERT_EQUAL(out.seq, 5);
	CU_ASSERT_EQUAL(ra, 0);
	CU_ASSERT_EQUAL(rb, -EBADMSG);
	/* Both invalid: damaged metadata is not "no metadata". */
	a[10] ^= 1;
	CU_ASSERT_EQUAL(md_sb_pick(a, b, &out, &slot, &ra, &rb), -EUCLEAN);
	CU_ASSERT_EQUAL(md_sb_pick(a, z, &out, &slot, &ra, &rb), -EUCLEAN);
	CU_ASSERT_EQUAL(md_sb_pick(z, z, &out, &slot, &ra, &rb), -ENOENT);
	CU_ASSERT_EQUAL(ra, -ENODATA);
	/* A newer format in either slot: refuse rather than roll back. */
	md_sb_encode(&sb, a);
	put_be32(b + 4, 9);
	reseal(b);
	CU_ASSERT_EQUAL(md_sb_pick(a, b, &out, &slot, NULL, NULL), -EPROTO);
	/* Writing alternates slots and bumps the sequence. */
	slot = 1;
	md_sb_next(&sb, &slot);
	CU_ASSERT_EQUAL(slot, 0);
	CU_ASSERT_EQUAL(sb.seq, 7);
	md_sb_next(&sb, &slot);
	CU_ASSERT_EQUAL(slot, 1);
}

/* ---- activity log ---- */

/* Commit one transaction; the buffer goes into ring (may be NULL). */
static int
al_tr(struct md_al *al, uint8_t *ring)
{
	uint8_t buf[MD_AL_TR_SIZE];
	uint32_t idx;
	int n = md_al_make_tr(al, buf, &idx);

	if (n < 0)
		return n;
	if (ring != NULL)
		memcpy(ring + (size_t)idx * MD_AL_TR_SIZE, buf, sizeof(buf));
	md_al_commit(al);
	return n;
}

static void
test_al_touch_get_put(void)
{
	struct md_al al;
	uint8_t buf[MD_AL_TR_SIZE];
	uint32_t idx;
	bool need;

	CU_ASSERT_EQUAL(md_al_init(&al, 6, 8), -EINVAL);
	CU_ASSERT_EQUAL(md_al_init(&al, 100, 7), -EINVAL);
	CU_ASSERT_FATAL(md_al_init(&al, 100, 8) == 0);
	CU_ASSERT_EQUAL(md_al_extent_of(4 * MiB - 1), 0);
	CU_ASSERT_EQUAL(md_al_extent_of(4 * MiB), 1);
	CU_ASSERT_EQUAL(md_al_touch(&al, 5, &need), 0);
	CU_ASSERT_TRUE(need);
	CU_ASSERT_EQUAL(md_al_get(&al, 5), -ENOENT);
	CU_ASSERT_TRUE(md_al_need_tr(&al));
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 1);
	CU_ASSERT_EQUAL(idx, 0);
	CU_ASSERT_FALSE(md_al_need_tr(&al));
	/* In flight: not active yet, not queued twice, one tr at a time. */
	CU_ASSERT_EQUAL(md_al_touch(&al, 5, &need), 0);
	CU_ASSERT_TRUE(need);
	CU_ASSERT_EQUAL(al.n_pending, 0);
	CU_ASSERT_FALSE(md_al_active(&al, 5));
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), -EBUSY);
	md_al_commit(&al);
	CU_ASSERT_TRUE(md_al_active(&al, 5));
	CU_ASSERT_EQUAL(md_al_touch(&al, 5, &need), 0);
	CU_ASSERT_FALSE(need);
	CU_ASSERT_EQUAL(md_al_get(&al, 5), 0);
	CU_ASSERT_EQUAL(md_al_get(&al, 5), 0);
	CU_ASSERT_EQUAL(md_al_put(&al, 5), 0);
	CU_ASSERT_EQUAL(md_al_put(&al, 5), 0);
	CU_ASSERT_EQUAL(md_al_put(&al, 5), -ENOENT);
	CU_ASSERT_EQUAL(md_al_put(&al, 6), -ENOENT);
	CU_ASSERT_EQUAL(md_al_touch(&al, MD_AL_EMPTY, &need), -ERANGE);
	/* The queue holds one transaction's worth. */
	for (uint32_t e = 1000; e < 1000 + MD_AL_UPDATES_PER_TR; e++)
		CU_ASSERT_EQUAL(md_al_touch(&al, e, &need), 0);
	CU_ASSERT_EQUAL(md_al_touch(&al, 2000, &need), -EBUSY);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 64);
	CU_ASSERT_EQUAL(idx, 1);
	/* A failed write: the extents are queued again, same ring index. */
	md_al_abort(&al);
	CU_ASSERT_FALSE(md_al_active(&al, 1000));
	CU_ASSERT_EQUAL(al.n_pending, 64);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 64);
	CU_ASSERT_EQUAL(idx, 1);
	md_al_commit(&al);
	CU_ASSERT_TRUE(md_al_active(&al, 1063));
	CU_ASSERT_EQUAL(al.n_active, 65);
	CU_ASSERT_EQUAL(al.next_tr, 3);
	md_al_free(&al);
}

static void
test_al_evict_lru(void)
{
	struct md_al al;
	uint8_t buf[MD_AL_TR_SIZE];
	uint32_t e, idx;
	bool need;

	CU_ASSERT_FATAL(md_al_init(&al, 7, 8) == 0);
	for (e = 0; e < 7; e++)
		md_al_touch(&al, e, &need);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 7);
	CU_ASSERT_EQUAL(al.evictions, 0);
	md_al_touch(&al, 0, &need);		/* 0 becomes most recent */
	CU_ASSERT_FALSE(need);
	md_al_touch(&al, 100, &need);
	CU_ASSERT_TRUE(need);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 1);
	CU_ASSERT_FALSE(md_al_active(&al, 1));	/* least recently used */
	CU_ASSERT_TRUE(md_al_active(&al, 0));
	CU_ASSERT_TRUE(md_al_active(&al, 100));
	CU_ASSERT_EQUAL(al.evictions, 1);
	/* Pinned extents are never evicted. */
	CU_ASSERT_EQUAL(md_al_get(&al, 0), 0);
	for (e = 2; e < 7; e++)
		CU_ASSERT_EQUAL(md_al_get(&al, e), 0);
	CU_ASSERT_EQUAL(md_al_get(&al, 100), 0);
	md_al_touch(&al, 200, &need);
	md_al_touch(&al, 201, &need);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), -EBUSY);
	CU_ASSERT_EQUAL(md_al_put(&al, 4), 0);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 1);	/* only one slot free */
	CU_ASSERT_FALSE(md_al_active(&al, 4));
	CU_ASSERT_TRUE(md_al_active(&al, 200));
	CU_ASSERT_FALSE(md_al_active(&al, 201));
	CU_ASSERT_EQUAL(al.n_pending, 1);
	for (e = 2; e < 7; e++)
		if (e != 4)
			CU_ASSERT_TRUE(md_al_active(&al, e));
	/* 200's write pins it; 3 and 2 are released in that order: 3 is the
	 * least recently used unpinned extent. */
	CU_ASSERT_EQUAL(md_al_get(&al, 200), 0);
	md_al_put(&al, 3);
	md_al_put(&al, 2);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 1);
	CU_ASSERT_TRUE(md_al_active(&al, 200));
	CU_ASSERT_FALSE(md_al_active(&al, 3));
	CU_ASSERT_TRUE(md_al_active(&al, 2));
	CU_ASSERT_TRUE(md_al_active(&al, 201));
	md_al_free(&al);
}

/* md_al_victims names exactly the extents the next transaction evicts. */
static void
test_al_victims(void)
{
	struct md_al al;
	uint32_t v[MD_AL_UPDATES_PER_TR], e;
	bool need;

	CU_ASSERT_FATAL(md_al_init(&al, 7, 8) == 0);
	for (e = 0; e < 5; e++)
		md_al_touch(&al, e, &need);
	CU_ASSERT_EQUAL(md_al_victims(&al, v, MD_AL_UPDATES_PER_TR), 0);	/* free slots */
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 5);
	for (e = 10; e < 14; e++)
		md_al_touch(&al, e, &need);
	/* Two free slots first, then the two least recently used. */
	CU_ASSERT_EQUAL(md_al_victims(&al, v, MD_AL_UPDATES_PER_TR), 2);
	CU_ASSERT_EQUAL(v[0], 0);
	CU_ASSERT_EQUAL(v[1], 1);
	CU_ASSERT_EQUAL(md_al_victims(&al, v, 1), 1);
	/* A pinned extent is no victim; the next least recently used is. */
	CU_ASSERT_EQUAL(md_al_get(&al, 0), 0);
	CU_ASSERT_EQUAL(md_al_victims(&al, v, MD_AL_UPDATES_PER_TR), 2);
	CU_ASSERT_EQUAL(v[0], 1);
	CU_ASSERT_EQUAL(v[1], 2);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 4);
	CU_ASSERT_FALSE(md_al_active(&al, 1));
	CU_ASSERT_FALSE(md_al_active(&al, 2));
	CU_ASSERT_TRUE(md_al_active(&al, 0));
	CU_ASSERT_TRUE(md_al_active(&al, 3));
	CU_ASSERT_EQUAL(al.evictions, 2);
	md_al_free(&al);
}

/* The put clock: when the victims' last writes finished (eviction flush). */
static void
test_al_victims_last_put(void)
{
	struct md_al al;
	uint32_t e;
	bool need;

	CU_ASSERT_FATAL(md_al_init(&al, 7, 8) == 0);
	CU_ASSERT_EQUAL(md_al_put_clock(&al), 0);
	for (e = 0; e < 7; e++)
		md_al_touch(&al, e, &need);
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 7);
	/* Extent e written once, finishing at clock e + 1. */
	for (e = 0; e < 7; e++) {
		CU_ASSERT_EQUAL(md_al_get(&al, e), 0);
		CU_ASSERT_EQUAL(md_al_put(&al, e), 0);
	}
	CU_ASSERT_EQUAL(md_al_put_clock(&al), 7);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 0);	/* nothing queued */
	md_al_touch(&al, 100, &need);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 1);	/* victim 0 */
	md_al_touch(&al, 101, &need);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 2);	/* victims 0, 1 */
	/* Two writes in flight on 0: its clock moves only when both end. */
	CU_ASSERT_EQUAL(md_al_get(&al, 0), 0);
	CU_ASSERT_EQUAL(md_al_get(&al, 0), 0);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 3);	/* pinned: 1, 2 */
	CU_ASSERT_EQUAL(md_al_put(&al, 0), 0);
	CU_ASSERT_EQUAL(md_al_put_clock(&al), 7);
	CU_ASSERT_EQUAL(md_al_put(&al, 0), 0);
	CU_ASSERT_EQUAL(md_al_put_clock(&al), 8);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 3);	/* 0 is now the newest */
	CU_ASSERT_EQUAL(al_tr(&al, NULL), 2);
	CU_ASSERT_FALSE(md_al_active(&al, 1));
	CU_ASSERT_FALSE(md_al_active(&al, 2));
	/* A slot taking another extent keeps its clock (never too early). */
	md_al_touch(&al, 102, &need);
	CU_ASSERT_EQUAL(md_al_victims_last_put(&al), 4);	/* victim 3 */
	md_al_free(&al);
}

/* The extents active in memory, sorted (all candidates are < limit). */
static uint32_t
active_set(const struct md_al *al, uint32_t limit, uint32_t *out)
{
	uint32_t e, n = 0;

	for (e = 0; e < limit; e++)
		if (md_al_active(al, e))
			out[n++] = e;
	return n;
}

/* Random writes: touch, transaction when needed; pins come and go. */
static void
al_workload(struct md_al *al, uint8_t *ring, unsigned rounds, uint32_t limit)
{
	unsigned i;
	uint32_t e;
	bool need;

	for (i = 0; i < rounds; i++) {
		e = (uint32_t)(rng() % limit);
		if (md_al_touch(al, e, &need) == -EBUSY || md_al_need_tr(al))
			CU_ASSERT_FATAL(al_tr(al, ring) >= 0);
	}
	if (md_al_need_tr(al))
		CU_ASSERT_FATAL(al_tr(al, ring) >= 0);
}

static void
test_al_recover(void)
{
	const uint32_t nr = 920 * 8, limit = 20000;	/* ring = 9 */
	struct md_al al, al2;
	struct md_al_recovery rec;
	uint32_t *want = calloc(limit, 4), *got = calloc(nr, 4), n, idx;
	uint8_t *ring, buf[MD_AL_TR_SIZE];
	bool need;

	CU_ASSERT_FATAL(want != NULL && got != NULL);
	CU_ASSERT_FATAL(md_al_init(&al, nr, md_al_ring_size(nr)) == 0);
	CU_ASSERT_EQUAL(al.tr_count, 9);
	ring = calloc(al.tr_count, MD_AL_TR_SIZE);
	/* Empty ring. */
	CU_ASSERT_EQUAL(md_al_recover(ring, al.tr_count, nr, got, &rec), 0);
	CU_ASSERT_EQUAL(rec.n_extents, 0);
	CU_ASSERT_EQUAL(rec.next_tr, 1);
	/* Many transactions, the ring wraps many times, evictions happen. */
	al_workload(&al, ring, 200000, limit);
	CU_ASSERT(al.transactions > 50);
	CU_ASSERT(al.evictions > 1000);
	n = active_set(&al, limit, want);
	CU_ASSERT_EQUAL(n, nr);
	CU_ASSERT_EQUAL(md_al_recover(ring, al.tr_count, nr, got, &rec), 0);
	CU_ASSERT_EQUAL(rec.n_extents, n);
	CU_ASSERT_EQUAL(memcmp(got, want, n * 4), 0);
	CU_ASSERT_EQUAL(rec.next_tr, al.next_tr);
	CU_ASSERT_EQUAL(rec.next_index, al.next_index);
	CU_ASSERT_EQUAL(rec.n_valid, 9);
	/* A torn transaction (crash mid-write): ignored, the rest stands. */
	md_al_touch(&al, limit + 1, &need);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 1);
	buf[3000] ^= 0x10;
	memcpy(ring + (size_t)idx * MD_AL_TR_SIZE, buf, sizeof(buf));
	CU_ASSERT_EQUAL(md_al_recover(ring, al.tr_count, nr, got, &rec), 0);
	CU_ASSERT_EQUAL(rec.n_invalid, 1);
	CU_ASSERT_EQUAL(rec.n_valid, 8);
	CU_ASSERT_EQUAL(rec.n_extents, n);
	CU_ASSERT_EQUAL(memcmp(got, want, n * 4), 0);
	CU_ASSERT_EQUAL(rec.next_index, idx);
	CU_ASSERT_EQUAL(rec.next_tr, al.next_tr);
	/* Restart: an empty AL continues the ring; after more writes and
	 * another crash the replay still covers every active extent. */
	CU_ASSERT_FATAL(md_al_init(&al2, nr, al.tr_count) == 0);
	md_al_set_position(&al2, rec.next_tr, rec.next_index);
	al_workload(&al2, ring, 3000, limit);
	n = active_set(&al2, limit, want);
	CU_ASSERT_EQUAL(md_al_recover(ring, al.tr_count, nr, got, &rec), 0);
	CU_ASSERT(rec.n_extents >= n);
	for (uint32_t i = 0, j = 0; i < n; i++) {
		while (j < rec.n_extents && got[j] < want[i])
			j++;
		CU_ASSERT_FATAL(j < rec.n_extents && got[j] == want[i]);
	}
	CU_ASSERT_EQUAL(rec.n_invalid, 0);
	md_al_free(&al);
	md_al_free(&al2);
	free(ring);
	free(want);
	free(got);
}

static void
test_al_tr_decode(void)
{
	struct md_al al;
	struct md_al_tr tr;
	uint8_t buf[MD_AL_TR_SIZE];
	uint32_t idx;
	bool need;

	CU_ASSERT_FATAL(md_al_init(&al, 1237, 8) == 0);
	md_al_touch(&al, 77, &need);
	md_al_touch(&al, 78, &need);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 2);
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, sizeof(buf), 1237, &tr), 0);
	CU_ASSERT_EQUAL(tr.tr_number, 1);
	CU_ASSERT_EQUAL(tr.n_updates, 2);
	CU_ASSERT_EQUAL(tr.upd_ext[1], 78);
	CU_ASSERT_EQUAL(tr.ctx_start, 0);
	CU_ASSERT_EQUAL(tr.ctx_count, 920);
	CU_ASSERT_EQUAL(tr.ctx[tr.upd_slot[0]], 77);
	CU_ASSERT_EQUAL(memcmp(buf, "BMAL", 4), 0);
	md_al_commit(&al);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 0);	/* context only */
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, sizeof(buf), 1237, &tr), 0);
	CU_ASSERT_EQUAL(tr.ctx_start, 920);
	CU_ASSERT_EQUAL(tr.ctx_count, 317);
	/* The same bytes are out of range for a smaller AL. */
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, sizeof(buf), 1000, &tr), -EINVAL);
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, 100, 1237, &tr), -EMSGSIZE);
	buf[500] ^= 1;
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, sizeof(buf), 1237, &tr), -EBADMSG);
	memset(buf, 0, sizeof(buf));
	CU_ASSERT_EQUAL(md_al_tr_decode(buf, sizeof(buf), 1237, &tr), -ENODATA);
	md_al_free(&al);
}

/* ---- file helpers ---- */

static char tmpdir[64];

static void
tmp_path(char *buf, size_t len, const char *name)
{

	snprintf(buf, len, "%s/%s", tmpdir, name);
}

/* A sparse file of size bytes. */
static void
make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(ftruncate(fd, (off_t)size) == 0);
	close(fd);
}

static void
test_io_internal(void)
{
	struct md_create_opts o = { .granularity = 4096, .al_extents = 127,
	    .node_id = 1 };
	struct md_sb sb, sb2;
	struct md_loc loc = { .internal = true, .disk_bytes = 64 * MiB };
	struct md_layout l;
	struct md_bitmap bm, bm2;
	struct md_al_recovery rec;
	uint32_t *ext;
	char disk[128];
	int slot, ra, rb;

	tmp_path(disk, sizeof(disk), "disk");
	make_file(disk, 64 * MiB);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, false, &sb), 0);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, false, NULL), -EEXIST);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, true, &sb2), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(sb.volume_uuid, sb2.volume_uuid, 16), 0);
	loc.fd = open(disk, O_RDWR);
	CU_ASSERT_FATAL(loc.fd >= 0);
	CU_ASSERT_EQUAL(md_read(&loc, &sb, &slot, &l, &bm, &rec, &ext), 0);
	CU_ASSERT_EQUAL(slot, 0);
	CU_ASSERT_EQUAL(sb.seq, 1);
	CU_ASSERT_EQUAL(sb.node_id, 1);
	CU_ASSERT_EQUAL(sb.uuids.current, MD_UUID_JUST_CREATED);
	CU_ASSERT_EQUAL(sb.disk_state, MD_DISK_INCONSISTENT);
	CU_ASSERT_EQUAL(sb.flags, MD_FL_CLEAN_SHUTDOWN);
	CU_ASSERT_EQUAL(memcmp(sb.volume_uuid, sb2.volume_uuid, 16), 0);
	CU_ASSERT_EQUAL(l.al_extents, 127);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm), 0);
	CU_ASSERT_EQUAL(rec.n_extents, 0);
	free(ext);
	/* Superblock writes alternate: B (seq 2), then A (seq 3). */
	sb.epoch = 9;
	CU_ASSERT_EQUAL(md_write_sb(&loc, &sb, &slot), 0);
	CU_ASSERT_EQUAL(slot, 1);
	sb.epoch = 10;
	CU_ASSERT_EQUAL(md_write_sb(&loc, &sb, &slot), 0);
	CU_ASSERT_EQUAL(slot, 0);
	CU_ASSERT_EQUAL(md_read_sb(&loc, &sb2, &slot, NULL, NULL), 0);
	CU_ASSERT_EQUAL(sb2.seq, 3);
	CU_ASSERT_EQUAL(sb2.epoch, 10);
	/* Corrupt one byte of the newest slot on disk: the older one wins. */
	uint8_t byte;
	CU_ASSERT_FATAL(pread(loc.fd, &byte, 1, (off_t)l.sb_offset[0] + 60) == 1);
	byte ^= 0xff;
	CU_ASSERT_FATAL(pwrite(loc.fd, &byte, 1, (off_t)l.sb_offset[0] + 60) == 1);
	CU_ASSERT_EQUAL(md_read_sb(&loc, &sb2, &slot, &ra, &rb), 0);
	CU_ASSERT_EQUAL(slot, 1);
	CU_ASSERT_EQUAL(sb2.epoch, 9);
	CU_ASSERT_EQUAL(ra, -EBADMSG);
	/* Bitmap to disk and back. */
	md_bitmap_set_range(&bm, 0, 4096);
	md_bitmap_set_range(&bm, 40 * MiB, 3 * MiB);
	CU_ASSERT_EQUAL(md_write_bitmap(&loc, &l, &bm), 0);
	CU_ASSERT_EQUAL(md_bitmap_next_dirty_block(&bm, 0), MD_BM_NONE);
	CU_ASSERT_EQUAL(md_read(&loc, &sb2, &slot, &l, &bm2, NULL, NULL), 0);
	CU_ASSERT_EQUAL(md_bitmap_count(&bm2), 1 + 768);
	CU_ASSERT_EQUAL(memcmp(bm.words, bm2.words, bm.nwords * 8), 0);
	md_bitmap_free(&bm);
	md_bitmap_free(&bm2);
	/* A resized disk is refused. */
	loc.disk_bytes = 64 * MiB + 4096;
	CU_ASSERT_NOT_EQUAL(md_read(&loc, &sb2, &slot, &l, NULL, NULL, NULL), 0);
	close(loc.fd);
	unlink(disk);
}

static void
test_io_external_dump(void)
{
	struct md_create_opts o = { 0 };
	struct md_loc loc = { .internal = false, .disk_bytes = 32 * MiB };
	struct md_layout l;
	struct md_al al;
	struct md_sb sb;
	uint8_t buf[MD_AL_TR_SIZE];
	uint64_t size;
	uint32_t idx;
	char disk[128], meta[128], *text = NULL;
	size_t tlen = 0;
	FILE *f;
	bool need;
	int slot;

	tmp_path(disk, sizeof(disk), "disk2");
	tmp_path(meta, sizeof(meta), "meta2");
	make_file(disk, 32 * MiB);
	unlink(meta);
	CU_ASSERT_EQUAL(md_create(disk, meta, &o, false, &sb), 0);
	CU_ASSERT_FALSE(sb.internal);
	CU_ASSERT_EQUAL(sb.data_bytes, 32 * MiB);
	CU_ASSERT_EQUAL(sb.al_extents, MD_AL_EXTENTS_DEFAULT);
	CU_ASSERT_EQUAL(sb.granularity, MD_GRAN_DEFAULT);
	CU_ASSERT_EQUAL(md_create(disk, meta, &o, false, &sb), -EEXIST);
	loc.fd = open(meta, O_RDWR);
	CU_ASSERT_FATAL(loc.fd >= 0);
	CU_ASSERT_EQUAL(md_fd_size(loc.fd, &size), 0);
	CU_ASSERT_EQUAL(size, 8192 + 32768 + 4096);
	CU_ASSERT_EQUAL(md_read(&loc, &sb, &slot, &l, NULL, NULL, NULL), 0);
	/* Two AL transactions naming extents 0-2 and 7, and a dirty bitmap. */
	CU_ASSERT_FATAL(md_al_init(&al, l.al_extents, l.al_tr_count) == 0);
	md_al_touch(&al, 0, &need);
	md_al_touch(&al, 1, &need);
	md_al_touch(&al, 2, &need);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 3);
	CU_ASSERT_FATAL(pwrite(loc.fd, buf, sizeof(buf),
	    (off_t)(l.al_offset + idx * 4096ull)) == (ssize_t)sizeof(buf));
	md_al_commit(&al);
	md_al_touch(&al, 7, &need);
	CU_ASSERT_EQUAL(md_al_make_tr(&al, buf, &idx), 1);
	CU_ASSERT_FATAL(pwrite(loc.fd, buf, sizeof(buf),
	    (off_t)(l.al_offset + idx * 4096ull)) == (ssize_t)sizeof(buf));
	md_al_free(&al);
	struct md_bitmap bm;
	CU_ASSERT_FATAL(md_bitmap_init(&bm, l.data_bytes, l.granularity) == 0);
	md_bitmap_set_range(&bm, 8192, 8192);
	CU_ASSERT_EQUAL(md_write_bitmap(&loc, &l, &bm), 0);
	md_bitmap_free(&bm);
	/* The dump shows all of it. */
	f = open_memstream(&text, &tlen);
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(md_dump(&loc, f), 0);
	fclose(f);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "slot-a: valid\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "slot-b: empty (no magic)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "meta-disk: external\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "disk-state: inconsistent\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "uuid-current: 0000000000000004\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "al-active-extents: 4\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "al-extent-list: 0-2 7\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "bitmap-set-bits: 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "out-of-sync-ranges: 8192-16384\n"));
	free(text);
	close(loc.fd);
	unlink(disk);
	unlink(meta);
}

static void
test_io_errors(void)
{
	struct md_create_opts o = { 0 };
	char disk[128];

	tmp_path(disk, sizeof(disk), "tiny");
	make_file(disk, 512 * KiB);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, false, NULL), -ENOSPC);
	unlink(disk);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, false, NULL), -ENOENT);
	o.granularity = 1000;
	make_file(disk, 64 * MiB);
	CU_ASSERT_EQUAL(md_create(disk, NULL, &o, false, NULL), -EINVAL);
	unlink(disk);
}

static int
suite_init(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_md.XXXXXX", t ? t : "/tmp");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
suite_clean(void)
{

	return rmdir(tmpdir);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("md", suite_init, suite_clean);
	CU_add_test(s, "layout", test_layout);
	CU_add_test(s, "sb_roundtrip", test_sb_roundtrip);
	CU_add_test(s, "sb_errors", test_sb_errors);
	CU_add_test(s, "sb_pick", test_sb_pick);
	CU_add_test(s, "al_touch_get_put", test_al_touch_get_put);
	CU_add_test(s, "al_evict_lru", test_al_evict_lru);
	CU_add_test(s, "al_victims", test_al_victims);
	CU_add_test(s, "al_victims_last_put", test_al_victims_last_put);
	CU_add_test(s, "al_recover", test_al_recover);
	CU_add_test(s, "al_tr_decode", test_al_tr_decode);
	CU_add_test(s, "io_internal", test_io_internal);
	CU_add_test(s, "io_external_dump", test_io_external_dump);
	CU_add_test(s, "io_errors", test_io_errors);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
