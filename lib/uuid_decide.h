/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Generation UUIDs and the resync decision (as DRBD's drbd_uuid_compare).
 *
 * Every node keeps a set of 64-bit generation UUIDs in its superblock:
 *
 *   current    names the data generation on this disk; a new one is taken
 *              when a primary starts writing without its peer;
 *   bitmap     the current UUID at the moment this node started tracking
 *              changes in its bitmap without the peer (zero while in sync);
 *   history[]  older current/bitmap UUIDs, newest first.
 *
 * On connect both sides exchange their UUIDs and flags and each calls
 * md_uuid_decide(); the two answers are mirror images (SOURCE <-> TARGET).
 * The decision table itself is in uuid_decide.c, as a table, in DRBD's order.
 *
 * Everything here is pure except md_uuid_random() (getrandom(2)).
 */
#ifndef BLKMIRROR_UUID_DECIDE_H
#define BLKMIRROR_UUID_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#define MD_UUID_HISTORY		4	/* history entries kept */
#define MD_UUID_JUST_CREATED	4ull	/* current UUID of fresh metadata (as DRBD) */

/*
 * Superblock flags (MD_FL_*).  They are on disk (struct md_sb.flags) and are
 * exchanged with the peer together with the UUIDs.
 */
#define MD_FL_CONSISTENT	(1u << 0)  /* data is consistent (not mid-resync) */
#define MD_FL_WAS_UPTODATE	(1u << 1)  /* disk was uptodate when last written */
#define MD_FL_PRIMARY		(1u << 2)  /* primary indicator: set durably before
					      the first write as primary, cleared
					      on demote / clean shutdown */
#define MD_FL_CRASHED_PRIMARY	(1u << 3)  /* found MD_FL_PRIMARY set at attach:
					      AL extents are out of sync; cleared
					      when the resync is done */
#define MD_FL_CLEAN_SHUTDOWN	(1u << 4)  /* daemon stopped cleanly, bitmap flushed */
#define MD_FL_FULL_SYNC		(1u << 5)  /* whole disk must be resynced */
#define MD_FL_PEER_OUTDATED	(1u << 6)  /* peer was marked outdated (fencing) */
#define MD_FL_ALL		0x7fu	   /* every defined flag */

/* The generation UUIDs of one node. */
struct md_uuids {
	uint64_t current;			/* data generation on this disk */
	uint64_t bitmap;			/* generation the bitmap tracks from, or 0 */
	uint64_t history[MD_UUID_HISTORY];	/* older generations, newest first */
};

/* What the decision needs to know about one side. */
struct md_uuid_side {
	struct md_uuids uuids;		/* its generation UUIDs */
	uint32_t flags;			/* its MD_FL_* flags */
	uint32_t node_id;		/* its node id (tie-break: lower is source) */
};

/*
 * The result of the comparison, from the point of view of "me".  Never
 * renumbered (logged and sent on the wire).
 */
enum md_sync_decision {
	MD_NO_SYNC = 0,			/* same data generation, nothing to do */
	MD_SYNC_SOURCE_BITMAP,		/* I send the regions set in the OR-ed bitmaps */
	MD_SYNC_TARGET_BITMAP,		/* I receive the regions set in the OR-ed bitmaps */
	MD_SYNC_SOURCE_FULL,		/* I send the whole disk */
	MD_SYNC_TARGET_FULL,		/* I receive the whole disk */
	MD_SPLIT_BRAIN_AUTO,		/* both wrote since a common bitmap UUID:
					   both bitmaps cover every change */
	MD_SPLIT_BRAIN,			/* both wrote, only a common history */
	MD_UNRELATED,			/* no common generation: refuse */
};

/*
 * Compare my UUIDs with the peer's; returns the decision and, when rule is
 * not NULL, the number of the table row that matched (10, 20, ..., for
 * logs).  md_uuid_decide(a, b) and md_uuid_decide(b, a) are mirror images.
 */
enum md_sync_decision md_uuid_decide(const struct md_uuid_side *me,
    const struct md_uuid_side *peer, int *rule);

/* Symbolic name of a decision ("sync-target-bitmap"), for logs and JSON. */
const char *md_sync_decision_name(enum md_sync_decision d);

/* The mirror image of d (SOURCE <-> TARGET); others unchanged. */
enum md_sync_decision md_sync_decision_mirror(enum md_sync_decision d);

/*
 * Resolve a split brain by hand ("connect --discard-my-data" on the loser):
 * given a split-brain decision d and which side discards its data, returns
 * the resync to run: MD_SPLIT_BRAIN_AUTO -> bitmap resync (both bitmaps
 * track every change since the common bitmap UUID), MD_SPLIT_BRAIN -> full
 * resync (the bitmaps may not cover the divergence).  If neither or both
 * sides discard, or d is not a split brain, d is returned unchanged.
 */
enum md_sync_decision md_split_brain_resolve(enum md_sync_decision d,
    bool i_discard, bool peer_discards);

/*
 * A fresh random generation UUID from getrandom(2): never 0, never
 * MD_UUID_JUST_CREATED.  Returns 0 on success or a negative errno.
 */
int md_uuid_random(uint64_t *out);

/* Push v on the front of the history (oldest entry falls off); 0 is skipped. */
void md_uuid_history_push(struct md_uuids *u, uint64_t v);

/*
 * A primary starts writing without its peer (promote while disconnected, or
 * the peer was lost while primary).  Before the first such write:
 *   bitmap == 0: bitmap = current (the bitmap tracks changes from here);
 *   else:        current goes into the history (the bitmap keeps tracking
 *                from the older point);
 *   current = new_current.
 * A just-created or zero current is dropped (it names no data).
 */
void md_uuid_new_current(struct md_uuids *u, uint64_t new_current);

/*
 * Skip the initial sync of two disks known identical (DRBD's
 * "new-current-uuid --clear-bitmap"): current = new_current, bitmap = 0,
 * history unchanged.  The peer then calls md_uuid_adopt() with our UUIDs.
 */
void md_uuid_clear_bitmap(struct md_uuids *u, uint64_t new_current);

/* On the sync source, when a resync completed: bitmap -> history, bitmap = 0. */
void md_uuid_resync_done_source(struct md_uuids *u);

/*
 * On the sync target, when a resync completed: take the source's UUIDs as
 * they are once the source ran md_uuid_resync_done_source() (current equal,
 * bitmap 0, the source's bitmap UUID first in the history).
 */
void md_uuid_adopt(struct md_uuids *u, const struct md_uuids *source);

/* What to do about differing volume UUIDs at the handshake. */
enum md_volume_check {
	MD_VOL_SAME = 0,	/* equal: go on */
	MD_VOL_ADOPT_PEER,	/* I am just created: take the peer's volume UUID */
	MD_VOL_PEER_ADOPTS,	/* the peer is just created: it takes mine */
	MD_VOL_MISMATCH,	/* two different volumes with data: reject */
};

/*
 * Volume UUIDs are random per create-md, so two fresh nodes differ.  The rule:
 * a just-created side (current UUID 0 or MD_UUID_JUST_CREATED) takes the
 * other side's volume UUID; when both are just created, the node with the
 * lower node id keeps its own.  Two sides with data and different volume
 * UUIDs mismatch.
 */
enum md_volume_check md_volume_check(const uint8_t my_vol[16],
    const struct md_uuid_side *me, const uint8_t peer_vol[16],
    const struct md_uuid_side *peer);

#endif
