/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Generation UUIDs: the operations that move them and the decision table
 * that compares two nodes' UUIDs on connect (after DRBD's drbd_uuid_compare,
 * rule numbers kept close to DRBD's for whoever compares the two).
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"
#include "uuid_decide.h"

/* A current UUID that names no data: fresh metadata or none at all. */
static bool
just_created(uint64_t u)
{

	return u == 0 || u == MD_UUID_JUST_CREATED;
}

/* v (non-zero) is one of the entries of h. */
static bool
in_history(const uint64_t h[MD_UUID_HISTORY], uint64_t v)
{
	unsigned i;

	if (v == 0)
		return false;
	for (i = 0; i < MD_UUID_HISTORY; i++)
		if (h[i] == v)
			return true;
	return false;
}

/* The lower node id is the source when both sides are otherwise equal. */
static bool
i_win_tie(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return me->node_id < peer->node_id;
}

/* ---- condition functions, one per row of the table below ---- */

typedef bool (*decide_cond_fn)(const struct md_uuid_side *me,
    const struct md_uuid_side *peer);

static bool
c_both_new(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return just_created(me->uuids.current) &&
	    just_created(peer->uuids.current);
}

static bool
c_me_new(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return just_created(me->uuids.current);
}

static bool
c_peer_new(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return just_created(peer->uuids.current);
}

static bool
c_equal(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return me->uuids.current == peer->uuids.current;
}

/* Equal current and a flag on exactly "me" (or on both and I win the tie). */
static bool
equal_flag_mine(const struct md_uuid_side *me, const struct md_uuid_side *peer,
    uint32_t flag)
{
	bool mine = (me->flags & flag) != 0, theirs = (peer->flags & flag) != 0;

	if (!c_equal(me, peer) || !(mine || theirs))
		return false;
	if (mine && theirs)
		return i_win_tie(me, peer);
	return mine;
}

/* Equal current and the flag on the peer only (or on both and it wins). */
static bool
equal_flag_theirs(const struct md_uuid_side *me,
    const struct md_uuid_side *peer, uint32_t flag)
{

	return c_equal(me, peer) && (peer->flags & flag) != 0 &&
	    !equal_flag_mine(me, peer, flag);
}

static bool
c_eq_me_crashed(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return equal_flag_mine(me, peer, MD_FL_CRASHED_PRIMARY);
}

static bool
c_eq_peer_crashed(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{

	return equal_flag_theirs(me, peer, MD_FL_CRASHED_PRIMARY);
}

/* FULL_SYNC (invalidate) on me: I am the one that needs the data. */
static bool
c_eq_me_full(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return equal_flag_mine(me, peer, MD_FL_FULL_SYNC);
}

static bool
c_eq_peer_full(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return equal_flag_theirs(me, peer, MD_FL_FULL_SYNC);
}

static bool
c_peer_bm_is_my_cur(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{

	return peer->uuids.bitmap != 0 &&
	    peer->uuids.bitmap == me->uuids.current;
}

static bool
c_my_cur_in_peer_hist(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{

	return in_history(peer->uuids.history, me->uuids.current);
}

static bool
c_my_bm_is_peer_cur(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{

	return c_peer_bm_is_my_cur(peer, me);
}

static bool
c_peer_cur_in_my_hist(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{

	return c_my_cur_in_peer_hist(peer, me);
}

static bool
c_equal_bitmaps(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return me->uuids.bitmap != 0 && me->uuids.bitmap == peer->uuids.bitmap;
}

/* Any non-zero bitmap or history UUID of mine among the peer's. */
static bool
c_common_history(const struct md_uuid_side *me,
    const struct md_uuid_side *peer)
{
	uint64_t theirs[MD_UUID_HISTORY + 1], mine[MD_UUID_HISTORY + 1];
	unsigned i, j;

	theirs[0] = peer->uuids.bitmap;
	mine[0] = me->uuids.bitmap;
	memcpy(theirs + 1, peer->uuids.history, sizeof(peer->uuids.history));
	memcpy(mine + 1, me->uuids.history, sizeof(me->uuids.history));
	for (i = 0; i < ARRAY_SIZE(mine); i++)
		for (j = 0; j < ARRAY_SIZE(theirs); j++)
			if (mine[i] != 0 && mine[i] == theirs[j])
				return true;
	return false;
}

static bool
c_always(const struct md_uuid_side *me, const struct md_uuid_side *peer)
{

	return true;
}

/*
 * The decision table, evaluated top to bottom; the first row whose condition
 * holds decides.  "cur", "bm", "hist" are the current, bitmap and history
 * UUIDs; "new" means current is 0 or MD_UUID_JUST_CREATED; "crashed" is
 * MD_FL_CRASHED_PRIMARY, "full" is MD_FL_FULL_SYNC; a tie goes to the lower
 * node id.
 *
 *  rule  condition                          result               why
 *  ----  ---------------------------------  -------------------  -----------------------------
 *   10   both new                           NO_SYNC              nobody has data; wait for
 *                                                                "primary --force" on one
 *   20   my cur new                         SYNC_TARGET_FULL     fresh disk gets everything
 *   30   peer cur new                       SYNC_SOURCE_FULL     mirror of 20
 *   40   cur equal, I have full (tie)       SYNC_TARGET_FULL     invalidate pending on me
 *                                                                (before 42: full covers all)
 *   41   cur equal, peer has full           SYNC_SOURCE_FULL     mirror of 40
 *   42   cur equal, I crashed (tie)         SYNC_SOURCE_BITMAP   my AL extents are in my
 *                                                                bitmap; I had the newest data
 *   43   cur equal, peer crashed            SYNC_TARGET_BITMAP   mirror of 42
 *   44   cur equal                          NO_SYNC              same generation
 *   50   peer bm == my cur                  SYNC_TARGET_BITMAP   peer moved on from my data
 *                                                                and tracked every change
 *   60   my cur in peer hist                SYNC_TARGET_FULL     peer moved on further than
 *                                                                its bitmap reaches
 *   70   my bm == peer cur                  SYNC_SOURCE_BITMAP   mirror of 50
 *   80   peer cur in my hist                SYNC_SOURCE_FULL     mirror of 60
 *   90   my bm == peer bm != 0              SPLIT_BRAIN_AUTO     both moved on from the same
 *                                                                point: bitmaps cover it all
 *  100   common bm/hist entry               SPLIT_BRAIN          both moved on, no common bm
 *  110   otherwise                          UNRELATED            different data sets
 *
 * After the table: a bitmap-based result whose target has "full" becomes
 * full (the same row number is reported).
 */
static const struct decide_row {
	int rule;			/* row number, for logs */
	decide_cond_fn cond;		/* the row applies when this holds */
	enum md_sync_decision result;	/* decision of the row */
	const char *comment;		/* why (for the reader, and tests) */
} decide_table[] = {
	{ 10, c_both_new, MD_NO_SYNC, "both just created" },
	{ 20, c_me_new, MD_SYNC_TARGET_FULL, "I am just created" },
	{ 30, c_peer_new, MD_SYNC_SOURCE_FULL, "peer is just created" },
	{ 40, c_eq_me_full, MD_SYNC_TARGET_FULL, "full sync pending on me" },
	{ 41, c_eq_peer_full, MD_SYNC_SOURCE_FULL, "full sync pending on peer" },
	{ 42, c_eq_me_crashed, MD_SYNC_SOURCE_BITMAP, "I crashed as primary" },
	{ 43, c_eq_peer_crashed, MD_SYNC_TARGET_BITMAP, "peer crashed as primary" },
	{ 44, c_equal, MD_NO_SYNC, "same generation" },
	{ 50, c_peer_bm_is_my_cur, MD_SYNC_TARGET_BITMAP, "peer's bitmap UUID is my current" },
	{ 60, c_my_cur_in_peer_hist, MD_SYNC_TARGET_FULL, "my current is in the peer's history" },
	{ 70, c_my_bm_is_peer_cur, MD_SYNC_SOURCE_BITMAP, "my bitmap UUID is the peer's current" },
	{ 80, c_peer_cur_in_my_hist, MD_SYNC_SOURCE_FULL, "the peer's current is in my history" },
	{ 90, c_equal_bitmaps, MD_SPLIT_BRAIN_AUTO, "equal bitmap UUIDs" },
	{ 100, c_common_history, MD_SPLIT_BRAIN, "common history" },
	{ 110, c_always, MD_UNRELATED, "no common generation" },
};

enum md_sync_decision
md_uuid_decide(const struct md_uuid_side *me, const struct md_uuid_side *peer,
    int *rule)
{
	size_t i;

	enum md_sync_decision d;

	/* The last row always matches, so the loop always returns. */
	for (i = 0; i < ARRAY_SIZE(decide_table) - 1; i++) {
		if (decide_table[i].cond(me, peer))
			break;
	}
	if (rule != NULL)
		*rule = decide_table[i].rule;
	d = decide_table[i].result;
	/*
	 * A target that carries "full" (a disk detached after an I/O error, a
	 * full sync cut short) is never brought up to date from a bitmap:
	 * the bitmaps track what changed since a generation, not what that
	 * disk lacks.  Rows 40/41 see the flag only when the generations are
	 * equal; after the peer moved on (rows 50/70) it is applied here.
	 */
	if (d == MD_SYNC_TARGET_BITMAP && (me->flags & MD_FL_FULL_SYNC))
		d = MD_SYNC_TARGET_FULL;
	else if (d == MD_SYNC_SOURCE_BITMAP && (peer->flags & MD_FL_FULL_SYNC))
		d = MD_SYNC_SOURCE_FULL;
	return d;
}

const char *
md_sync_decision_name(enum md_sync_decision d)
{
	static const char *const names[] = {
		[MD_NO_SYNC] = "no-sync",
		[MD_SYNC_SOURCE_BITMAP] = "sync-source-bitmap",
		[MD_SYNC_TARGET_BITMAP] = "sync-target-bitmap",
		[MD_SYNC_SOURCE_FULL] = "sync-source-full",
		[MD_SYNC_TARGET_FULL] = "sync-target-full",
		[MD_SPLIT_BRAIN_AUTO] = "split-brain-auto-recoverable",
		[MD_SPLIT_BRAIN] = "split-brain",
		[MD_UNRELATED] = "unrelated",
	};

	if ((unsigned)d >= ARRAY_SIZE(names))
		return "unknown";
	return names[d];
}

enum md_sync_decision
md_sync_decision_mirror(enum md_sync_decision d)
{

	switch (d) {
	case MD_SYNC_SOURCE_BITMAP: return MD_SYNC_TARGET_BITMAP;
	case MD_SYNC_TARGET_BITMAP: return MD_SYNC_SOURCE_BITMAP;
	case MD_SYNC_SOURCE_FULL: return MD_SYNC_TARGET_FULL;
	case MD_SYNC_TARGET_FULL: return MD_SYNC_SOURCE_FULL;
	default: return d;
	}
}

enum md_sync_decision
md_split_brain_resolve(enum md_sync_decision d, bool i_discard,
    bool peer_discards)
{

	if (d != MD_SPLIT_BRAIN && d != MD_SPLIT_BRAIN_AUTO)
		return d;
	if (i_discard == peer_discards)
		return d;
	if (d == MD_SPLIT_BRAIN_AUTO)
		return i_discard ? MD_SYNC_TARGET_BITMAP : MD_SYNC_SOURCE_BITMAP;
	return i_discard ? MD_SYNC_TARGET_FULL : MD_SYNC_SOURCE_FULL;
}

int
md_uuid_random(uint64_t *out)
{
	uint64_t v;
	ssize_t n;
	int tries;

	/* Bounded: two bad values in a row are astronomically unlikely. */
	for (tries = 0; tries < 8; tries++) {
		n = getrandom(&v, sizeof(v), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n != (ssize_t)sizeof(v))
			continue;
		if (!just_created(v)) {
			*out = v;
			return 0;
		}
	}
	return -EIO;
}

void
md_uuid_history_push(struct md_uuids *u, uint64_t v)
{

	if (v == 0)
		return;
	memmove(&u->history[1], &u->history[0],
	    sizeof(u->history) - sizeof(u->history[0]));
	u->history[0] = v;
}

void
md_uuid_new_current(struct md_uuids *u, uint64_t new_current)
{

	if (!just_created(u->current)) {
		if (u->bitmap == 0)
			u->bitmap = u->current;
		else
			md_uuid_history_push(u, u->current);
	}
	u->current = new_current;
}

void
md_uuid_clear_bitmap(struct md_uuids *u, uint64_t new_current)
{

	u->current = new_current;
	u->bitmap = 0;
}

void
md_uuid_resync_done_source(struct md_uuids *u)
{

	md_uuid_history_push(u, u->bitmap);
	u->bitmap = 0;
}

void
md_uuid_adopt(struct md_uuids *u, const struct md_uuids *source)
{
	struct md_uuids s = *source;

	md_uuid_resync_done_source(&s);
	*u = s;
}

enum md_volume_check
md_volume_check(const uint8_t my_vol[16], const struct md_uuid_side *me,
    const uint8_t peer_vol[16], const struct md_uuid_side *peer)
{
	bool me_new = just_created(me->uuids.current);
	bool peer_new = just_created(peer->uuids.current);

	if (memcmp(my_vol, peer_vol, 16) == 0)
		return MD_VOL_SAME;
	if (me_new && peer_new)
		return i_win_tie(me, peer) ? MD_VOL_PEER_ADOPTS :
		    MD_VOL_ADOPT_PEER;
	if (me_new)
		return MD_VOL_ADOPT_PEER;
	if (peer_new)
		return MD_VOL_PEER_ADOPTS;
	return MD_VOL_MISMATCH;
}
