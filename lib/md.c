/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Metadata layout and the superblock codec (see md.h and
 * docs/on-disk-format.md).  Pure functions: no I/O.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "md.h"
#include "util.h"

/*
 * Superblock v1, 4096 bytes, all integers big-endian.  Offsets of the
 * fields; everything not listed is reserved and must be zero.
 */
#define SB_MAGIC	0	/* u32 MD_SB_MAGIC */
#define SB_VERSION	4	/* u32 format version */
#define SB_SEQ		8	/* u64 write sequence */
#define SB_VOLUME	16	/* u8[16] volume UUID */
#define SB_NODE_ID	32	/* u32 node id */
#define SB_FLAGS	36	/* u32 MD_FL_* */
#define SB_DISK_STATE	40	/* u8 enum md_disk_state */
#define SB_LAST_ROLE	41	/* u8 enum md_role */
#define SB_MD_FLAGS	42	/* u8 bit 0: internal metadata */
#define SB_RESERVED1	43	/* u8 zero */
#define SB_GRAN		44	/* u32 bitmap granularity */
#define SB_EPOCH	48	/* u64 epoch */
#define SB_UUID_CUR	56	/* u64 current UUID */
#define SB_UUID_BM	64	/* u64 bitmap UUID */
#define SB_UUID_HIST	72	/* u64[4] history UUIDs */
#define SB_DISK_BYTES	104	/* u64 data disk size at create */
#define SB_DATA_BYTES	112	/* u64 usable data size */
#define SB_AL_EXTENTS	120	/* u32 AL active set */
#define SB_AL_TR_COUNT	124	/* u32 AL ring transactions */
#define SB_BM_OFFSET	128	/* u64 bitmap offset */
#define SB_AL_OFFSET	136	/* u64 AL offset */
#define SB_END_FIELDS	144	/* first reserved byte */
#define SB_CSUM		4088	/* u64 XXH3-64 of bytes [0, 4088) */

#define SB_MDF_INTERNAL	0x01u	/* SB_MD_FLAGS bit: internal metadata */

uint32_t
md_al_ring_size(uint32_t al_extents)
{
	uint32_t n = (al_extents + MD_AL_CONTEXT_PER_TR - 1) /
	    MD_AL_CONTEXT_PER_TR + 1;

	return MAX(n, MD_AL_RING_MIN);
}

int
md_sb_offsets(uint64_t disk_bytes, bool internal, uint64_t off[2])
{
	uint64_t total = disk_bytes & ~(uint64_t)(MD_BLOCK_SIZE - 1);

	if (!internal) {
		off[0] = 0;
		off[1] = MD_SB_SIZE;
		return 0;
	}
	if (total < 2 * MD_SB_SIZE)
		return -ENOSPC;
	off[0] = total - 2 * MD_SB_SIZE;
	off[1] = total - MD_SB_SIZE;
	return 0;
}

/* Internal: everything at the end, the data area takes what is left. */
static int
layout_internal(struct md_layout *l)
{
	uint64_t total = l->disk_bytes & ~(uint64_t)(MD_BLOCK_SIZE - 1);
	uint64_t fixed = l->al_bytes + 2 * MD_SB_SIZE, avail, bm;

	if (total < fixed + MD_DATA_MIN)
		return -ENOSPC;
	avail = total - fixed;
	/* The bitmap for all of avail is an upper bound for the real one. */
	bm = md_bitmap_disk_bytes(avail, l->granularity);
	if (avail < bm + MD_DATA_MIN)
		return -ENOSPC;
	l->data_bytes = (avail - bm) & ~(uint64_t)(l->granularity - 1);
	if (l->data_bytes < MD_DATA_MIN)
		return -ENOSPC;
	l->bitmap_bytes = md_bitmap_disk_bytes(l->data_bytes, l->granularity);
	l->sb_offset[0] = total - 2 * MD_SB_SIZE;
	l->sb_offset[1] = total - MD_SB_SIZE;
	l->al_offset = l->sb_offset[0] - l->al_bytes;
	l->bitmap_offset = l->al_offset - l->bitmap_bytes;
	l->md_offset = l->bitmap_offset;
	l->md_bytes = total - l->md_offset;
	return 0;
}

/* External: superblocks, AL, bitmap from offset 0 of the meta-disk. */
static int
layout_external(struct md_layout *l)
{

	l->data_bytes = l->disk_bytes & ~(uint64_t)(l->granularity - 1);
	if (l->data_bytes < MD_DATA_MIN)
		return -ENOSPC;
	l->bitmap_bytes = md_bitmap_disk_bytes(l->data_bytes, l->granularity);
	l->sb_offset[0] = 0;
	l->sb_offset[1] = MD_SB_SIZE;
	l->al_offset = 2 * MD_SB_SIZE;
	l->bitmap_offset = l->al_offset + l->al_bytes;
	l->md_offset = 0;
	l->md_bytes = l->bitmap_offset + l->bitmap_bytes;
	return 0;
}

int
md_layout_compute(uint64_t disk_bytes, bool internal, uint32_t granularity,
    uint32_t al_extents, struct md_layout *out)
{

	memset(out, 0, sizeof(*out));
	if (!md_bitmap_gran_valid(granularity) ||
	    al_extents < MD_AL_EXTENTS_MIN || al_extents > MD_AL_EXTENTS_MAX)
		return -EINVAL;
	if (disk_bytes > (1ull << 60))
		return -EINVAL;
	out->internal = internal;
	out->disk_bytes = disk_bytes;
	out->granularity = granularity;
	out->al_extents = al_extents;
	out->al_tr_count = md_al_ring_size(al_extents);
	out->al_bytes = (uint64_t)out->al_tr_count * MD_AL_TR_SIZE;
	return internal ? layout_internal(out) : layout_external(out);
}

void
md_sb_encode(const struct md_sb *sb, void *buf)
{
	uint8_t *p = buf;
	unsigned i;

	memset(p, 0, MD_SB_SIZE);
	put_be32(p + SB_MAGIC, MD_SB_MAGIC);
	put_be32(p + SB_VERSION, MD_SB_VERSION);
	put_be64(p + SB_SEQ, sb->seq);
	memcpy(p + SB_VOLUME, sb->volume_uuid, 16);
	put_be32(p + SB_NODE_ID, sb->node_id);
	put_be32(p + SB_FLAGS, sb->flags);
	p[SB_DISK_STATE] = sb->disk_state;
	p[SB_LAST_ROLE] = sb->last_role;
	p[SB_MD_FLAGS] = sb->internal ? SB_MDF_INTERNAL : 0;
	put_be32(p + SB_GRAN, sb->granularity);
	put_be64(p + SB_EPOCH, sb->epoch);
	put_be64(p + SB_UUID_CUR, sb->uuids.current);
	put_be64(p + SB_UUID_BM, sb->uuids.bitmap);
	for (i = 0; i < MD_UUID_HISTORY; i++)
		put_be64(p + SB_UUID_HIST + 8 * i, sb->uuids.history[i]);
	put_be64(p + SB_DISK_BYTES, sb->disk_bytes);
	put_be64(p + SB_DATA_BYTES, sb->data_bytes);
	put_be32(p + SB_AL_EXTENTS, sb->al_extents);
	put_be32(p + SB_AL_TR_COUNT, sb->al_tr_count);
	put_be64(p + SB_BM_OFFSET, sb->bitmap_offset);
	put_be64(p + SB_AL_OFFSET, sb->al_offset);
	put_be64(p + SB_CSUM, XXH3_64bits(p, SB_CSUM));
}

/* All bytes of p[from, to) are zero. */
static bool
all_zero(const uint8_t *p, size_t from, size_t to)
{
	size_t i;

	for (i = from; i < to; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Field ranges, and the recorded layout against a recomputed one. */
static int
sb_check_fields(const struct md_sb *sb)
{
	struct md_layout l;

	if ((sb->flags & ~MD_FL_ALL) != 0 || sb->disk_state > MD_DISK_MAX ||
	    sb->last_role > MD_ROLE_MAX)
		return -EINVAL;
	if (md_layout_compute(sb->disk_bytes, sb->internal, sb->granularity,
	    sb->al_extents, &l) != 0)
		return -EINVAL;
	if (l.data_bytes != sb->data_bytes || l.al_tr_count != sb->al_tr_count ||
	    l.bitmap_offset != sb->bitmap_offset || l.al_offset != sb->al_offset)
		return -EINVAL;
	return 0;
}

int
md_sb_decode(const void *buf, size_t len, struct md_sb *out)
{
	const uint8_t *p = buf;
	struct md_sb sb;
	unsigned i;

	if (len < MD_SB_SIZE)
		return -EMSGSIZE;
	if (get_be32(p + SB_MAGIC) != MD_SB_MAGIC)
		return -ENODATA;
	if (get_be64(p + SB_CSUM) != XXH3_64bits(p, SB_CSUM))
		return -EBADMSG;
	memset(&sb, 0, sizeof(sb));
	sb.version = get_be32(p + SB_VERSION);
	if (sb.version != MD_SB_VERSION)
		return -EPROTO;
	if ((p[SB_MD_FLAGS] & ~SB_MDF_INTERNAL) != 0 || p[SB_RESERVED1] != 0 ||
	    !all_zero(p, SB_END_FIELDS, SB_CSUM))
		return -EINVAL;
	sb.seq = get_be64(p + SB_SEQ);
	memcpy(sb.volume_uuid, p + SB_VOLUME, 16);
	sb.node_id = get_be32(p + SB_NODE_ID);
	sb.flags = get_be32(p + SB_FLAGS);
	sb.disk_state = p[SB_DISK_STATE];
	sb.last_role = p[SB_LAST_ROLE];
	sb.internal = (p[SB_MD_FLAGS] & SB_MDF_INTERNAL) != 0;
	sb.granularity = get_be32(p + SB_GRAN);
	sb.epoch = get_be64(p + SB_EPOCH);
	sb.uuids.current = get_be64(p + SB_UUID_CUR);
	sb.uuids.bitmap = get_be64(p + SB_UUID_BM);
	for (i = 0; i < MD_UUID_HISTORY; i++)
		sb.uuids.history[i] = get_be64(p + SB_UUID_HIST + 8 * i);
	sb.disk_bytes = get_be64(p + SB_DISK_BYTES);
	sb.data_bytes = get_be64(p + SB_DATA_BYTES);
	sb.al_extents = get_be32(p + SB_AL_EXTENTS);
	sb.al_tr_count = get_be32(p + SB_AL_TR_COUNT);
	sb.bitmap_offset = get_be64(p + SB_BM_OFFSET);
	sb.al_offset = get_be64(p + SB_AL_OFFSET);
	if (sb_check_fields(&sb) != 0)
		return -EINVAL;
	*out = sb;
	return 0;
}

int
md_sb_pick(const void *slot_a, const void *slot_b, struct md_sb *out,
    int *slot, int *ra, int *rb)
{
	struct md_sb a, b;
	int r0 = md_sb_decode(slot_a, MD_SB_SIZE, &a);
	int r1 = md_sb_decode(slot_b, MD_SB_SIZE, &b);

	if (ra != NULL)
		*ra = r0;
	if (rb != NULL)
		*rb = r1;
	if (r0 == -EPROTO || r1 == -EPROTO)
		return -EPROTO;
	/* Neither valid: no metadata at all, or metadata both of whose
	 * slots are damaged (which must not pass for "none"). */
	if (r0 != 0 && r1 != 0)
		return r0 == -ENODATA && r1 == -ENODATA ? -ENOENT : -EUCLEAN;
	/* Equal sequence numbers: A (only md_create writes seq 1 to A). */
	if (r1 != 0 || (r0 == 0 && a.seq >= b.seq)) {
		*out = a;
		*slot = 0;
	} else {
		*out = b;
		*slot = 1;
	}
	return 0;
}

void
md_sb_next(struct md_sb *sb, int *slot)
{

	sb->seq++;
	*slot = *slot == 0 ? 1 : 0;
}

int
md_sb_layout(const struct md_sb *sb, uint64_t disk_bytes,
    struct md_layout *out)
{
	int r;

	r = md_layout_compute(disk_bytes, sb->internal, sb->granularity,
	    sb->al_extents, out);
	if (r != 0)
		return r;
	/* A resized disk moves or reshapes the metadata: not supported. */
	if (out->data_bytes != sb->data_bytes ||
	    out->bitmap_offset != sb->bitmap_offset ||
	    out->al_offset != sb->al_offset)
		return -ESTALE;
	return 0;
}

uint32_t
md_node_id(const char *self, const char *peer)
{

	return peer != NULL && strcmp(self, peer) > 0 ? 1 : 0;
}

const char *
md_disk_state_name(unsigned s)
{
	static const char *const names[] = {
		"diskless", "inconsistent", "outdated", "consistent",
		"uptodate", "failed",
	};

	return s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

const char *
md_role_name(unsigned r)
{

	return r == MD_ROLE_PRIMARY ? "primary" :
	    r == MD_ROLE_SECONDARY ? "secondary" : "unknown";
}

const char *
md_flags_str(uint32_t flags, char *buf, size_t len)
{
	static const char *const names[] = {
		"consistent", "was-uptodate", "primary", "crashed-primary",
		"clean-shutdown", "full-sync", "peer-outdated",
	};
	size_t used = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; i < ARRAY_SIZE(names) && used < len; i++) {
		if (!(flags & (1u << i)))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		    used ? "," : "", names[i]);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "none");
	return buf;
}

const char *
md_volume_uuid_str(const uint8_t u[16], char *buf)
{

	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	return buf;
}
