/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * On-disk metadata: layout, superblock codec, activity log, and synchronous
 * file helpers for the tools.  docs/on-disk-format.md is the reference for
 * every byte; all integers on disk are big-endian; checksums are XXH3-64
 * (libxxhash, seed 0).
 *
 * Layout (every region 4 KiB aligned):
 *
 *   internal (meta-disk = internal), on the data disk:
 *     [ data | (gap < granularity) | bitmap | activity log | sb A | sb B ]
 *                                                                 ^ end of disk
 *   external (meta-disk = PATH), at offset 0 of PATH; data is the whole disk:
 *     [ sb A | sb B | activity log | bitmap ]
 *
 * The superblocks of an external meta-disk come first (as DRBD's external
 * metadata), so they can be found whatever the size of the data disk; the
 * internal ones sit in the last 8 KiB of the disk.  Either way the slot
 * positions depend on nothing but the disk size, so the superblock can be
 * read before the granularity and AL size it records are known.
 *
 * Modules: md.c (layout, superblock), md_al.c (activity log), md_io.c
 * (pread/pwrite helpers for blkmirrorctl; the daemon does its own I/O through
 * the io engine with the codecs).
 */
#ifndef BLKMIRROR_MD_H
#define BLKMIRROR_MD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bitmap.h"
#include "uuid_decide.h"

#define MD_SB_MAGIC		0x424d4d44u	/* "BMMD" */
#define MD_SB_VERSION		1u		/* format version (history in docs) */
#define MD_SB_SIZE		MD_BLOCK_SIZE	/* one slot */
#define MD_AL_MAGIC		0x424d414cu	/* "BMAL" */
#define MD_AL_TR_SIZE		MD_BLOCK_SIZE	/* one AL transaction */
#define MD_AL_EXTENT_SHIFT	22u		/* AL extent: 4 MiB */
#define MD_AL_EXTENT_SIZE	(1ull << MD_AL_EXTENT_SHIFT)
#define MD_AL_UPDATES_PER_TR	64u		/* slot updates per transaction */
#define MD_AL_CONTEXT_PER_TR	920u		/* context slots per transaction */
#define MD_AL_EXTENTS_MIN	7u		/* al-extents bounds */
#define MD_AL_EXTENTS_MAX	65534u
#define MD_AL_EXTENTS_DEFAULT	1237u
#define MD_AL_RING_MIN		8u		/* transactions in the ring, at least */
#define MD_AL_EMPTY		UINT32_MAX	/* extent number of an empty slot */
#define MD_GRAN_DEFAULT		4096u
#define MD_DATA_MIN		(1ull << 20)	/* smallest usable data area */

/* ---- layout ---- */

/* Byte offsets are from the start of the device holding the metadata. */
struct md_layout {
	bool internal;		/* metadata at the end of the data disk */
	uint64_t disk_bytes;	/* size of the data disk */
	uint32_t granularity;	/* bitmap bytes per bit */
	uint32_t al_extents;	/* AL active set size */
	uint64_t data_bytes;	/* usable data, a multiple of granularity */
	uint64_t bitmap_offset;	/* first bitmap block */
	uint64_t bitmap_bytes;	/* bitmap blocks * 4 KiB */
	uint64_t al_offset;	/* first AL transaction */
	uint32_t al_tr_count;	/* AL ring: transactions */
	uint64_t al_bytes;	/* al_tr_count * 4 KiB */
	uint64_t sb_offset[2];	/* superblock slots A and B */
	uint64_t md_offset;	/* first byte of the metadata area */
	uint64_t md_bytes;	/* bytes of the metadata area (external: file size) */
};

/* AL ring transactions for al_extents: enough for a full context cycle plus
 * one torn transaction, at least MD_AL_RING_MIN. */
uint32_t md_al_ring_size(uint32_t al_extents);

/*
 * Where the two superblock slots are: internal, the last 8 KiB of the disk
 * (size rounded down to 4 KiB); external, offsets 0 and 4096.  -ENOSPC when
 * an internal disk is smaller than 8 KiB.
 */
int md_sb_offsets(uint64_t disk_bytes, bool internal, uint64_t off[2]);

/*
 * Compute the layout for a data disk of disk_bytes.  Internal: the data area
 * shrinks so bitmap, AL and superblocks fit at the end; external: the data
 * area is the whole disk and md_bytes is what the meta-disk must hold.  The
 * data size is rounded down to the granularity.  Returns 0, -EINVAL (bad
 * granularity or al_extents) or -ENOSPC (less than MD_DATA_MIN of data).
 */
int md_layout_compute(uint64_t disk_bytes, bool internal,
    uint32_t granularity, uint32_t al_extents, struct md_layout *out);

/* ---- superblock ---- */

/* Disk state as stored (same values as the daemon's enum disk_state). */
enum md_disk_state {
	MD_DISK_DISKLESS = 0,
	MD_DISK_INCONSISTENT = 1,
	MD_DISK_OUTDATED = 2,
	MD_DISK_CONSISTENT = 3,
	MD_DISK_UPTODATE = 4,
	MD_DISK_FAILED = 5,
	MD_DISK_MAX = MD_DISK_FAILED,
};

/* Last role as stored (same values as the daemon's enum role). */
enum md_role {
	MD_ROLE_SECONDARY = 0,
	MD_ROLE_PRIMARY = 1,
	MD_ROLE_MAX = MD_ROLE_PRIMARY,
};

/* The decoded superblock. */
struct md_sb {
	uint32_t version;		/* format version (MD_SB_VERSION) */
	uint64_t seq;			/* write sequence; the higher valid slot wins */
	uint8_t volume_uuid[16];	/* the volume (equal on both nodes) */
	uint32_t node_id;		/* this node's id (0 or 1) */
	uint32_t flags;			/* MD_FL_* (uuid_decide.h) */
	uint8_t disk_state;		/* enum md_disk_state */
	uint8_t last_role;		/* enum md_role */
	uint64_t epoch;			/* highest epoch this node took part in */
	struct md_uuids uuids;		/* generation UUIDs */
	/* layout as created; checked against md_layout_compute() on attach */
	bool internal;			/* metadata on the data disk */
	uint64_t disk_bytes;		/* data disk size at create time */
	uint64_t data_bytes;		/* usable data size */
	uint32_t granularity;		/* bitmap bytes per bit */
	uint32_t al_extents;		/* AL active set size */
	uint32_t al_tr_count;		/* AL ring size */
	uint64_t bitmap_offset;		/* as in struct md_layout */
	uint64_t al_offset;		/* as in struct md_layout */
};

/* Encode sb into buf (MD_SB_SIZE bytes), checksum included. */
void md_sb_encode(const struct md_sb *sb, void *buf);

/*
 * Decode and validate one slot.  Returns 0, or:
 *   -EMSGSIZE  len < MD_SB_SIZE
 *   -ENODATA   no magic: blank or foreign block
 *   -EBADMSG   checksum mismatch (torn or corrupt)
 *   -EPROTO    a format version this build does not know
 *   -EINVAL    a field out of range (flags, state, role, granularity,
 *              al_extents, layout inconsistent with itself)
 * The magic, version and checksum never move between versions.
 */
int md_sb_decode(const void *buf, size_t len, struct md_sb *out);

/*
 * Pick the slot to trust: the valid one with the higher sequence number
 * (*slot = 0 for A, 1 for B).  Returns 0, -EPROTO when either slot has a
 * newer format (never roll back to an older one), -ENOENT when neither
 * slot holds metadata (no magic in either), or -EUCLEAN when neither is
 * valid but one at least holds damaged metadata (torn, corrupt).  ra/rb (may be NULL) get each slot's md_sb_decode() result.
 */
int md_sb_pick(const void *slot_a, const void *slot_b, struct md_sb *out,
    int *slot, int *ra, int *rb);

/* Before writing: bump sb->seq and flip *slot to the other one. */
void md_sb_next(struct md_sb *sb, int *slot);

/* The layout a superblock describes (checks it against the disk size). */
int md_sb_layout(const struct md_sb *sb, uint64_t disk_bytes,
    struct md_layout *out);

/*
 * A node's id from the config: 0 for the node whose name sorts first
 * (strcmp), 1 for the other; 0 when standalone (peer NULL).  The same on
 * both nodes whatever the order of the [node] sections.
 */
uint32_t md_node_id(const char *self, const char *peer);

const char *md_disk_state_name(unsigned s);
const char *md_role_name(unsigned r);
/* "consistent,primary,..." into buf; returns buf. */
const char *md_flags_str(uint32_t flags, char *buf, size_t len);
/* Volume UUID as 8-4-4-4-12 hex into buf (37 bytes). */
const char *md_volume_uuid_str(const uint8_t u[16], char *buf);

/* ---- activity log ---- */

/*
 * In-memory activity log: al_extents slots, each empty or holding an extent
 * (4 MiB of data: extent = offset >> 22).  An extent is "active" once the
 * transaction that put it in a slot is durable; writes to active extents
 * need no metadata I/O.  Writes pin their extent (md_al_get/put) so it is
 * never evicted while they are in flight.  At most one transaction is in
 * flight at a time (md_al_make_tr ... md_al_commit).
 */
struct md_al {
	uint32_t nr;		/* slots (al_extents) */
	uint32_t tr_count;	/* ring size in transactions */
	uint32_t *ext;		/* slot -> extent, or MD_AL_EMPTY */
	uint32_t *refs;		/* slot -> writes in flight */
	uint64_t *put_seq;	/* slot -> value of puts when its last
				 * write finished (md_al_put), or 0 */
	uint64_t puts;		/* writes finished so far: a clock for
				 * put_seq */
	uint32_t n_pinned;	/* slots with refs > 0 */
	uint8_t *state;		/* slot -> SLOT_* (md_al.c) */
	uint32_t *lru_prev;	/* LRU list of unpinned slots (head = oldest) */
	uint32_t *lru_next;	/*   links; nr = none */
	uint32_t lru_head;	/* least recently used unpinned slot, or nr */
	uint32_t lru_tail;	/* most recently used unpinned slot, or nr */
	uint32_t *hash;		/* extent hash buckets -> slot, or nr */
	uint32_t *hnext;	/* slot -> next slot in its bucket */
	uint32_t hmask;		/* buckets - 1 */
	uint32_t pending[MD_AL_UPDATES_PER_TR];	/* extents waiting for a tr */
	uint32_t n_pending;	/* entries used */
	uint32_t inflight[MD_AL_UPDATES_PER_TR];	/* slots of the tr in flight */
	uint32_t n_inflight;	/* entries used */
	bool tr_busy;		/* a transaction is being written */
	uint64_t next_tr;	/* tr_number of the next transaction */
	uint32_t next_index;	/* ring index of the next transaction */
	uint32_t ctx_start;	/* first slot of the next context slice */
	uint32_t ctx_prev;	/* ctx_start before the tr in flight (abort) */
	uint32_t n_active;	/* slots holding a committed extent */
	uint64_t evictions;	/* extents evicted (stats) */
	uint64_t transactions;	/* transactions committed (stats) */
};

/* Allocate an empty AL of al_extents slots over a ring of tr_count. */
int md_al_init(struct md_al *al, uint32_t al_extents, uint32_t tr_count);
void md_al_free(struct md_al *al);

/* Continue the ring after recovery (struct md_al_recovery next_*). */
void md_al_set_position(struct md_al *al, uint64_t next_tr,
    uint32_t next_index);

/* Extent of a data byte offset. */
static inline uint32_t
md_al_extent_of(uint64_t off)
{

	return (uint32_t)(off >> MD_AL_EXTENT_SHIFT);
}

/*
 * A write is about to touch extent.  Active: *need_tr = false and the
 * extent becomes most recently used.  Not active: it is queued for the next
 * transaction (once) and *need_tr = true; the write waits until that
 * transaction commits.  Returns 0, or -EBUSY when the queue of the next
 * transaction is full (retry after the next commit), -ERANGE for an extent
 * number that cannot be stored.
 */
int md_al_touch(struct md_al *al, uint32_t extent, bool *need_tr);

/* Pin an active extent for a write in flight: 0, or -ENOENT if not active. */
int md_al_get(struct md_al *al, uint32_t extent);
/*
 * Unpin when the write is finished everywhere (local disk and peer, or
 * recorded in the bitmap).  -ENOENT if not pinned.
 */
int md_al_put(struct md_al *al, uint32_t extent);
/*
 * The clock md_al_put() advances once per extent whose last write in
 * flight finished, and the latest such time among the extents the next
 * transaction would evict (md_al_victims()); 0 if none.  A data flush
 * submitted at clock t covers every eviction whose victims' time is <= t.
 */
uint64_t md_al_put_clock(const struct md_al *al);
/* Slots pinned by writes in flight (or other holds). */
uint32_t md_al_pinned(const struct md_al *al);
uint64_t md_al_victims_last_put(const struct md_al *al);
bool md_al_active(const struct md_al *al, uint32_t extent);

/* Transactions waiting: queued extents and no transaction in flight. */
bool md_al_need_tr(const struct md_al *al);

/*
 * Encode the next transaction into buf (MD_AL_TR_SIZE bytes) to be written at
 * ring index *index (offset al_offset + index * 4096).  It places up to 64
 * queued extents in empty slots or evicts the least recently used unpinned
 * extents, and carries the next slice of the whole slot table ("context").
 * Returns the number of extents placed (0 is a valid context-only
 * transaction), -EBUSY if a transaction is in flight or nothing queued could
 * be placed because every slot is pinned.
 */
int md_al_make_tr(struct md_al *al, void *buf, uint32_t *index);
/* The extents (up to max) that the next md_al_make_tr() would evict to
 * make room for the queued ones; returns how many. */
uint32_t md_al_victims(const struct md_al *al, uint32_t *ext, uint32_t max);

/* The transaction from md_al_make_tr() is durable: its extents are active. */
void md_al_commit(struct md_al *al);

/*
 * The transaction write failed: its extents go back to the queue and their
 * slots are freed (nothing was evicted for good: the evicted extents were
 * unpinned and need a new transaction anyway).
 */
void md_al_abort(struct md_al *al);

/* Decoded AL transaction (md_al_tr_decode). */
struct md_al_tr {
	uint64_t tr_number;			/* increasing */
	uint16_t n_updates;			/* updates used */
	uint16_t ctx_count;			/* context slots carried */
	uint32_t ctx_start;			/* first context slot */
	uint16_t upd_slot[MD_AL_UPDATES_PER_TR];	/* update: slot */
	uint32_t upd_ext[MD_AL_UPDATES_PER_TR];	/* update: extent */
	uint32_t ctx[MD_AL_CONTEXT_PER_TR];	/* slot table slice */
};

/*
 * Decode one transaction for an AL of al_extents slots.  Returns 0,
 * -EMSGSIZE, -ENODATA (no magic: never written), -EBADMSG (checksum: torn),
 * -EINVAL (counts or slot numbers out of range).
 */
int md_al_tr_decode(const void *buf, size_t len, uint32_t al_extents,
    struct md_al_tr *out);

/* What md_al_recover() found. */
struct md_al_recovery {
	uint32_t n_extents;	/* active extents written to the caller's array */
	uint64_t next_tr;	/* tr_number for the next transaction */
	uint32_t next_index;	/* ring index for the next transaction */
	uint32_t n_valid;	/* valid transactions in the ring */
	uint32_t n_invalid;	/* written but invalid (torn, corrupt) */
	uint64_t last_tr;	/* highest valid tr_number (0: none) */
};

/*
 * Replay a ring of n_tr transactions (ring: n_tr * 4096 bytes) oldest to
 * newest and write the extents that were active into extents[] (capacity
 * al_extents), sorted and unique.  Invalid transactions are skipped.  After a
 * primary crash these extents are marked out of sync.  The in-memory AL
 * starts empty afterwards (md_al_init + md_al_set_position): that is safe
 * because the old transactions stay in the ring until newer ones cover them.
 * Returns 0 or -EINVAL (bad arguments).
 */
int md_al_recover(const void *ring, uint32_t n_tr, uint32_t al_extents,
    uint32_t *extents, struct md_al_recovery *out);

/* ---- synchronous helpers for the tools (md_io.c) ---- */

/* Where the metadata lives. */
struct md_loc {
	int fd;			/* data disk (internal) or meta-disk (external) */
	bool internal;		/* metadata at the end of the data disk */
	uint64_t disk_bytes;	/* size of the data disk */
};

/* Options of md_create(). */
struct md_create_opts {
	uint32_t granularity;	/* bitmap bytes per bit (0: 4 KiB) */
	uint32_t al_extents;	/* AL active set (0: 1237) */
	uint32_t node_id;	/* this node's id */
	const uint8_t *volume_uuid;	/* 16 bytes, or NULL for a random one */
};

/* Size of a regular file or block device. */
int md_fd_size(int fd, uint64_t *bytes);

/* Read both slots and pick one (md_sb_pick); *slot and ra/rb as there. */
int md_read_sb(const struct md_loc *loc, struct md_sb *sb, int *slot,
    int *ra, int *rb);

/*
 * Write sb durably into the slot after *slot (md_sb_next: seq+1, other
 * slot), then fdatasync.  *slot is updated on success.
 */
int md_write_sb(const struct md_loc *loc, struct md_sb *sb, int *slot);

/*
 * Read everything: superblock (picked), its layout, the bitmap (bm, may be
 * NULL; initialized here, free with md_bitmap_free) and the AL replay (al,
 * may be NULL; extents must hold sb.al_extents entries, allocated here and
 * returned in *extents, free() it).
 */
int md_read(const struct md_loc *loc, struct md_sb *sb, int *slot,
    struct md_layout *layout, struct md_bitmap *bm,
    struct md_al_recovery *al, uint32_t **extents);

/* Write every dirty bitmap block, then fdatasync. */
int md_write_bitmap(const struct md_loc *loc, const struct md_layout *l,
    struct md_bitmap *bm);

/*
 * Initialize metadata for data disk `disk` (metadata internal when meta_disk
 * is NULL, else in the file or device meta_disk, created/extended when it is
 * a regular file).  Refuses with -EEXIST when a valid superblock (or one of
 * a newer format) is there, unless force.  Writes: both slots cleared, AL
 * and bitmap zeroed, then slot A (seq 1, current UUID just-created, disk
 * inconsistent, clean shutdown).  *out (may be NULL) gets the superblock.
 */
int md_create(const char *disk, const char *meta_disk,
    const struct md_create_opts *opts, bool force, struct md_sb *out);

/* Print a readable dump of the metadata at loc to out. */
int md_dump(const struct md_loc *loc, FILE *out);

#endif
