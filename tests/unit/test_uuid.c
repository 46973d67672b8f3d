/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/uuid_decide.c: every row of the resync decision table
 * with a named scenario built from the UUID operations the daemon uses, the
 * mirror property, and the operations themselves.
 */
#include <errno.h>
#include <string.h>
#include <CUnit/Basic.h>

#include "uuid_decide.h"
#include "util.h"
#include "cu_run.h"

/* Generation UUIDs used in the scenarios. */
#define G1 0x1000000000000001ull
#define G2 0x2000000000000002ull
#define G3 0x3000000000000003ull
#define G4 0x4000000000000004ull
#define G5 0x5000000000000005ull

/* Two nodes that were in sync at generation g (after an initial sync). */
static void
in_sync(struct md_uuid_side *a, struct md_uuid_side *b, uint64_t g)
{

	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->uuids.current = b->uuids.current = g;
	a->node_id = 0;
	b->node_id = 1;
	a->flags = b->flags = MD_FL_CONSISTENT | MD_FL_WAS_UPTODATE;
}

static bool rules_seen[120];

/*
 * Decide both ways; check the result, the rule, and that the peer's answer
 * is the mirror image (with its own row).
 */
static void
expect(const char *scenario, const struct md_uuid_side *me,
    const struct md_uuid_side *peer, enum md_sync_decision want, int want_rule)
{
	enum md_sync_decision d, back;
	int rule = -1, back_rule = -1;

	d = md_uuid_decide(me, peer, &rule);
	back = md_uuid_decide(peer, me, &back_rule);
	if (d != want || rule != want_rule)
		fprintf(stderr, "\n  %s: got %s (rule %d), want %s (rule %d)\n",
		    scenario, md_sync_decision_name(d), rule,
		    md_sync_decision_name(want), want_rule);
	CU_ASSERT_EQUAL(d, want);
	CU_ASSERT_EQUAL(rule, want_rule);
	CU_ASSERT_EQUAL(back, md_sync_decision_mirror(d));
	if (rule >= 0 && rule < 120)
		rules_seen[rule] = true;
	if (back_rule >= 0 && back_rule < 120)
		rules_seen[back_rule] = true;
}

/* Row 10: two fresh disks; nobody has data until "primary --force". */
static void
test_row10_both_just_created(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, MD_UUID_JUST_CREATED);
	a.flags = b.flags = 0;
	expect("both just created", &a, &b, MD_NO_SYNC, 10);
}

/* Rows 20/30: "primary --force" on A, B still fresh: full sync A -> B. */
static void
test_row20_30_forced_primary_full_sync(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, MD_UUID_JUST_CREATED);
	md_uuid_new_current(&a.uuids, G1);
	CU_ASSERT_EQUAL(a.uuids.bitmap, 0);	/* nothing to track from */
	expect("forced primary (A)", &a, &b, MD_SYNC_SOURCE_FULL, 30);
	expect("fresh disk (B)", &b, &a, MD_SYNC_TARGET_FULL, 20);
	/* A replaced disk: zero UUIDs count as fresh too. */
	memset(&b.uuids, 0, sizeof(b.uuids));
	expect("replaced disk", &b, &a, MD_SYNC_TARGET_FULL, 20);
}

/* Rows 40/41: "invalidate" left a full sync pending on A. */
static void
test_row40_41_invalidate_pending(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	a.flags |= MD_FL_FULL_SYNC;
	expect("invalidated (A)", &a, &b, MD_SYNC_TARGET_FULL, 40);
	expect("peer invalidated (B)", &b, &a, MD_SYNC_SOURCE_FULL, 41);
	/* Also when A also crashed as primary: full covers the AL. */
	a.flags |= MD_FL_CRASHED_PRIMARY;
	expect("invalidated crashed primary", &a, &b, MD_SYNC_TARGET_FULL, 40);
	/* Both: the lower node id takes row 40. */
	b.flags |= MD_FL_FULL_SYNC;
	expect("both invalidated (A, id 0)", &a, &b, MD_SYNC_TARGET_FULL, 40);
}

/*
 * Rows 50/70 with "full" on the target: a disk detached after an I/O error
 * (or a full sync cut short) while the peer moved on is synced fully, not
 * from the peer's bitmap.
 */
static void
test_full_flag_beats_bitmap(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	a.flags |= MD_FL_FULL_SYNC;	/* A detached its disk */
	md_uuid_new_current(&b.uuids, G2);	/* B was promoted and wrote */
	expect("detached disk, peer moved on (A)", &a, &b, MD_SYNC_TARGET_FULL, 50);
	expect("peer of a detached disk (B)", &b, &a, MD_SYNC_SOURCE_FULL, 70);
	/* Without the flag the same UUIDs give the bitmap resync. */
	a.flags &= ~MD_FL_FULL_SYNC;
	expect("no full flag (A)", &a, &b, MD_SYNC_TARGET_BITMAP, 50);
	/* "full" on the source side changes nothing. */
	b.flags |= MD_FL_FULL_SYNC;
	expect("full flag on the source (B)", &b, &a, MD_SYNC_SOURCE_BITMAP, 70);
	/* The peer of a detached primary keeps the old generation in its
	 * history only: row 60, full, with or without the flag. */
	in_sync(&a, &b, G1);
	md_uuid_history_push(&b.uuids, b.uuids.current);
	b.uuids.current = G3;
	expect("detached primary returns (A)", &a, &b, MD_SYNC_TARGET_FULL, 60);
}

/* Rows 42/43: the primary crashed and came back; same generation. */
static void
test_row42_43_primary_crashed(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	a.flags |= MD_FL_CRASHED_PRIMARY;
	expect("crashed primary (A)", &a, &b, MD_SYNC_SOURCE_BITMAP, 42);
	expect("peer of crashed primary (B)", &b, &a, MD_SYNC_TARGET_BITMAP, 43);
	/* Dual crash: tie broken by node id. */
	b.flags |= MD_FL_CRASHED_PRIMARY;
	expect("both crashed (A, id 0)", &a, &b, MD_SYNC_SOURCE_BITMAP, 42);
	expect("both crashed (B, id 1)", &b, &a, MD_SYNC_TARGET_BITMAP, 43);
}

/* Row 44: a clean reconnect. */
static void
test_row44_clean_reconnect(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	expect("clean reconnect", &a, &b, MD_NO_SYNC, 44);
}

/* Rows 50/70: A lost B, kept writing (new current): bitmap resync A -> B. */
static void
test_row50_70_degraded_primary(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	md_uuid_new_current(&a.uuids, G2);
	CU_ASSERT_EQUAL(a.uuids.bitmap, G1);
	expect("secondary back (B)", &b, &a, MD_SYNC_TARGET_BITMAP, 50);
	expect("degraded primary (A)", &a, &b, MD_SYNC_SOURCE_BITMAP, 70);
	/* A promoted twice while B was away: still from the same bitmap. */
	md_uuid_new_current(&a.uuids, G3);
	CU_ASSERT_EQUAL(a.uuids.bitmap, G1);
	CU_ASSERT_EQUAL(a.uuids.history[0], G2);
	expect("secondary back after two promotions", &b, &a,
	    MD_SYNC_TARGET_BITMAP, 50);
	/* The resync finishes: both in sync at G3, bitmap UUIDs zero. */
	md_uuid_resync_done_source(&a.uuids);
	md_uuid_adopt(&b.uuids, &a.uuids);
	CU_ASSERT_EQUAL(memcmp(&a.uuids, &b.uuids, sizeof(a.uuids)), 0);
	CU_ASSERT_EQUAL(a.uuids.bitmap, 0);
	CU_ASSERT_EQUAL(a.uuids.history[0], G1);
	expect("after resync", &a, &b, MD_NO_SYNC, 44);
}

/* Rows 60/80: an old copy of B's disk (from before a completed resync). */
static void
test_row60_80_old_snapshot(void)
{
	struct md_uuid_side a, b, old;

	in_sync(&a, &b, G1);
	old = b;			/* snapshot of B at G1 */
	md_uuid_new_current(&a.uuids, G2);
	md_uuid_resync_done_source(&a.uuids);	/* B caught up to G2 */
	md_uuid_adopt(&b.uuids, &a.uuids);
	CU_ASSERT_EQUAL(a.uuids.history[0], G1);
	CU_ASSERT_EQUAL(a.uuids.bitmap, 0);
	/* The snapshot is attached instead of B: its G1 is history to A. */
	expect("old snapshot (B)", &old, &a, MD_SYNC_TARGET_FULL, 60);
	expect("primary vs old snapshot (A)", &a, &old, MD_SYNC_SOURCE_FULL, 80);
}

/* Row 90: both became primary while disconnected (fencing = none). */
static void
test_row90_split_brain_auto(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	md_uuid_new_current(&a.uuids, G2);
	md_uuid_new_current(&b.uuids, G3);
	expect("split brain (A)", &a, &b, MD_SPLIT_BRAIN_AUTO, 90);
	/* connect --discard-my-data on B. */
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN_AUTO, true, false),
	    MD_SYNC_TARGET_BITMAP);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN_AUTO, false, true),
	    MD_SYNC_SOURCE_BITMAP);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN_AUTO, false, false),
	    MD_SPLIT_BRAIN_AUTO);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN_AUTO, true, true),
	    MD_SPLIT_BRAIN_AUTO);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_NO_SYNC, true, false),
	    MD_NO_SYNC);
}

/*
 * Row 100: split brain without a common bitmap UUID: A and B diverged
 * from G1, then B resynced from A at one point, then both wrote again.
 */
static void
test_row100_split_brain(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	md_uuid_new_current(&a.uuids, G2);	/* A: cur G2, bm G1 */
	md_uuid_resync_done_source(&a.uuids);	/* A: cur G2, hist G1 */
	md_uuid_new_current(&a.uuids, G3);	/* A: cur G3, bm G2, hist G1 */
	md_uuid_new_current(&b.uuids, G4);	/* B: cur G4, bm G1 */
	expect("diverged twice (A)", &a, &b, MD_SPLIT_BRAIN, 100);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN, true, false),
	    MD_SYNC_TARGET_FULL);
	CU_ASSERT_EQUAL(md_split_brain_resolve(MD_SPLIT_BRAIN, false, true),
	    MD_SYNC_SOURCE_FULL);
}

/* Row 110: two different volumes. */
static void
test_row110_unrelated(void)
{
	struct md_uuid_side a, b;

	in_sync(&a, &b, G1);
	b.uuids.current = G5;
	b.uuids.history[0] = G4;
	expect("unrelated", &a, &b, MD_UNRELATED, 110);
}

/* Every row of the table is exercised by some scenario above. */
static void
test_all_rows_covered(void)
{
	static const int rows[] = { 10, 20, 30, 40, 41, 42, 43, 44, 50, 60,
	    70, 80, 90, 100, 110 };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(rows); i++) {
		if (!rules_seen[rows[i]])
			fprintf(stderr, "\n  row %d not covered\n", rows[i]);
		CU_ASSERT_TRUE(rules_seen[rows[i]]);
	}
}

static void
test_ops(void)
{
	struct md_uuids u;
	uint64_t r1, r2;
	int i;

	memset(&u, 0, sizeof(u));
	for (i = 1; i <= 6; i++)
		md_uuid_history_push(&u, (uint64_t)i);
	md_uuid_history_push(&u, 0);		/* ignored */
	CU_ASSERT_EQUAL(u.history[0], 6);
	CU_ASSERT_EQUAL(u.history[3], 3);	/* 1 and 2 fell off */
	/* Clear bitmap (skip the initial sync). */
	u.bitmap = G2;
	md_uuid_clear_bitmap(&u, G3);
	CU_ASSERT_EQUAL(u.current, G3);
	CU_ASSERT_EQUAL(u.bitmap, 0);
	CU_ASSERT_EQUAL(u.history[0], 6);
	/* Random UUIDs. */
	for (i = 0; i < 100; i++) {
		CU_ASSERT_EQUAL(md_uuid_random(&r1), 0);
		CU_ASSERT_EQUAL(md_uuid_random(&r2), 0);
		CU_ASSERT_NOT_EQUAL(r1, r2);
		CU_ASSERT(r1 != 0 && r1 != MD_UUID_JUST_CREATED);
	}
	CU_ASSERT_STRING_EQUAL(md_sync_decision_name(MD_SYNC_TARGET_BITMAP),
	    "sync-target-bitmap");
	CU_ASSERT_STRING_EQUAL(md_sync_decision_name((enum md_sync_decision)99),
	    "unknown");
	CU_ASSERT_EQUAL(md_sync_decision_mirror(MD_SPLIT_BRAIN), MD_SPLIT_BRAIN);
}

static void
test_volume_check(void)
{
	struct md_uuid_side a, b;
	uint8_t va[16], vb[16];

	memset(va, 0xaa, 16);
	memset(vb, 0xbb, 16);
	in_sync(&a, &b, MD_UUID_JUST_CREATED);
	CU_ASSERT_EQUAL(md_volume_check(va, &a, va, &b), MD_VOL_SAME);
	/* Both fresh: the lower node id (a) keeps its volume UUID. */
	CU_ASSERT_EQUAL(md_volume_check(va, &a, vb, &b), MD_VOL_PEER_ADOPTS);
	CU_ASSERT_EQUAL(md_volume_check(vb, &b, va, &a), MD_VOL_ADOPT_PEER);
	a.uuids.current = G1;
	CU_ASSERT_EQUAL(md_volume_check(vb, &b, va, &a), MD_VOL_ADOPT_PEER);
	CU_ASSERT_EQUAL(md_volume_check(va, &a, vb, &b), MD_VOL_PEER_ADOPTS);
	b.uuids.current = G2;
	CU_ASSERT_EQUAL(md_volume_check(va, &a, vb, &b), MD_VOL_MISMATCH);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("uuid", NULL, NULL);
	CU_add_test(s, "row10_both_just_created", test_row10_both_just_created);
	CU_add_test(s, "row20_30_forced_primary_full_sync",
	    test_row20_30_forced_primary_full_sync);
	CU_add_test(s, "row40_41_invalidate_pending",
	    test_row40_41_invalidate_pending);
	CU_add_test(s, "full_flag_beats_bitmap", test_full_flag_beats_bitmap);
	CU_add_test(s, "row42_43_primary_crashed", test_row42_43_primary_crashed);
	CU_add_test(s, "row44_clean_reconnect", test_row44_clean_reconnect);
	CU_add_test(s, "row50_70_degraded_primary", test_row50_70_degraded_primary);
	CU_add_test(s, "row60_80_old_snapshot", test_row60_80_old_snapshot);
	CU_add_test(s, "row90_split_brain_auto", test_row90_split_brain_auto);
	CU_add_test(s, "row100_split_brain", test_row100_split_brain);
	CU_add_test(s, "row110_unrelated", test_row110_unrelated);
	CU_add_test(s, "all_rows_covered", test_all_rows_covered);
	CU_add_test(s, "ops", test_ops);
	CU_add_test(s, "volume_check", test_volume_check);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
