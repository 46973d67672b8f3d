/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/rangeidx.c: overlap rules, walks, the newest older
 * overlap, tree invariants, and random operations against a linear scan. */
#include <stdbool.h>
#include <stdlib.h>
#include <CUnit/Basic.h>

#include "rangeidx.h"
#include "util.h"
#include "test_rng.h"
#include "cu_run.h"

#define POOL 512

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t
rng(void)
{
	return test_rng_next(&rng_state);
}

/*
 * Check the subtree at n: order, AVL balance and the augmented fields;
 * returns its node count and updates *prev (the last node seen in order).
 * Any violation fails the current test.
 */
static size_t
check_tree(const struct rangeidx_node *n, const struct rangeidx_node **prev)
{
	size_t count;
	int hl, hr;
	uint64_t max_end, min_key, max_key;

	if (n == NULL)
		return 0;
	count = check_tree(n->left, prev);
	if (*prev != NULL)
		CU_ASSERT_TRUE((*prev)->start < n->start ||
		    ((*prev)->start == n->start && (*prev)->key <= n->key));
	*prev = n;
	count += 1 + check_tree(n->right, prev);
	hl = n->left ? n->left->height : 0;
	hr = n->right ? n->right->height : 0;
	CU_ASSERT_EQUAL(n->height, 1 + MAX(hl, hr));
	CU_ASSERT_TRUE(hl - hr <= 1 && hr - hl <= 1);
	max_end = n->end;
	min_key = max_key = n->key;
	for (int side = 0; side < 2; side++) {
		const struct rangeidx_node *c = side == 0 ? n->left : n->right;

		if (c == NULL)
			continue;
		max_end = MAX(max_end, c->max_end);
		min_key = MIN(min_key, c->min_key);
		max_key = MAX(max_key, c->max_key);
	}
	CU_ASSERT_EQUAL(n->max_end, max_end);
	CU_ASSERT_EQUAL(n->min_key, min_key);
	CU_ASSERT_EQUAL(n->max_key, max_key);
	return count;
}

static void
check(const struct rangeidx *ri)
{
	const struct rangeidx_node *prev = NULL;

	CU_ASSERT_EQUAL(check_tree(ri->root, &prev), ri->count);
}

/* All nodes overlapping [s, e) by walking first/next, into out[]. */
static size_t
walk(const struct rangeidx *ri, uint64_t s, uint64_t e,
    struct rangeidx_node **out, size_t cap)
{
	size_t n = 0;

	for (struct rangeidx_node *x = rangeidx_first(ri, s, e); x != NULL;
	    x = rangeidx_next(ri, x, s, e))
		if (n < cap)
			out[n++] = x;
		else
			return cap + 1;
	return n;
}

static void
test_empty(void)
{
	struct rangeidx ri;

	rangeidx_init(&ri);
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 0, UINT64_MAX));
	CU_ASSERT_PTR_NULL(rangeidx_last_before(&ri, 0, UINT64_MAX, UINT64_MAX));
	CU_ASSERT_EQUAL(ri.count, 0);
}

static void
test_overlap_rules(void)
{
	struct rangeidx ri;
	struct rangeidx_node a, b, z;

	rangeidx_init(&ri);
	rangeidx_insert(&ri, &a, 4096, 4096, 1);	/* [4096, 8192) */
	/* Adjacent ranges do not overlap, on either side. */
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 0, 4096));
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 8192, 12288));
	CU_ASSERT_PTR_NULL(rangeidx_last_before(&ri, 8192, 12288, 10));
	/* One byte in is enough, and containing or contained counts. */
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 0, 4097), &a);
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 8191, 8192), &a);
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 0, 1 << 20), &a);
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 5000, 5001), &a);
	/* An empty query overlaps only ranges strictly containing its point. */
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 5000, 5000), &a);
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 4096, 4096));
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 8192, 8192));
	/* The same for an empty range in the index. */
	rangeidx_insert(&ri, &z, 100, 0, 2);
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 0, 101), &z);
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 0, 100));
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 100, 200));
	rangeidx_remove(&ri, &z);
	/* Nested: the inner range inside a. */
	rangeidx_insert(&ri, &b, 6000, 100, 2);
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 6050, 6051), &a);
	CU_ASSERT_PTR_EQUAL(rangeidx_next(&ri, &a, 6050, 6051), &b);
	CU_ASSERT_PTR_NULL(rangeidx_next(&ri, &b, 6050, 6051));
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 7000, 7001), &a);
	CU_ASSERT_PTR_NULL(rangeidx_next(&ri, &a, 7000, 7001));
	check(&ri);
	rangeidx_remove(&ri, &a);
	CU_ASSERT_PTR_NULL(rangeidx_first(&ri, 7000, 7001));
	CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, 0, 1 << 20), &b);
	rangeidx_remove(&ri, &b);
	CU_ASSERT_PTR_NULL(ri.root);
	CU_ASSERT_EQUAL(ri.count, 0);
}

/* Walks come in index order: by start, then by key; identical ranges too. */
static void
test_walk_order(void)
{
	struct rangeidx ri;
	struct rangeidx_node n[6], *out[8];

	rangeidx_init(&ri);
	rangeidx_insert(&ri, &n[0], 8192, 4096, 5);
	rangeidx_insert(&ri, &n[1], 0, 16384, 9);
	rangeidx_insert(&ri, &n[2], 8192, 4096, 3);	/* same range, older */
	rangeidx_insert(&ri, &n[3], 4096, 4096, 7);
	rangeidx_insert(&ri, &n[4], 12288, 4096, 1);	/* touches n[0] and n[2] */
	rangeidx_insert(&ri, &n[5], 1 << 20, 4096, 2);
	check(&ri);
	CU_ASSERT_EQUAL(walk(&ri, 8192, 12288, out, 8), 3);
	CU_ASSERT_PTR_EQUAL(out[0], &n[1]);
	CU_ASSERT_PTR_EQUAL(out[1], &n[2]);
	CU_ASSERT_PTR_EQUAL(out[2], &n[0]);
	CU_ASSERT_EQUAL(walk(&ri, 0, UINT64_MAX, out, 8), 6);
	CU_ASSERT_PTR_EQUAL(out[0], &n[1]);
	CU_ASSERT_PTR_EQUAL(out[1], &n[3]);
	CU_ASSERT_PTR_EQUAL(out[2], &n[2]);
	CU_ASSERT_PTR_EQUAL(out[3], &n[0]);
	CU_ASSERT_PTR_EQUAL(out[4], &n[4]);
	CU_ASSERT_PTR_EQUAL(out[5], &n[5]);
	CU_ASSERT_EQUAL(walk(&ri, 12288, 12289, out, 8), 2);
	CU_ASSERT_PTR_EQUAL(out[0], &n[1]);
	CU_ASSERT_PTR_EQUAL(out[1], &n[4]);
}

/* The conflict query: the newest (largest key) older overlapping range. */
static void
test_last_before(void)
{
	struct rangeidx ri;
	struct rangeidx_node big, a, b, c, far;

	rangeidx_init(&ri);
	rangeidx_insert(&ri, &big, 0, 1 << 20, 1);	/* a 1 MiB write */
	rangeidx_insert(&ri, &a, 4096, 4096, 2);	/* inside it */
	rangeidx_insert(&ri, &b, 4096, 4096, 3);	/* the same block again */
	rangeidx_insert(&ri, &c, 8192, 4096, 4);	/* adjacent to a and b */
	rangeidx_insert(&ri, &far, 4 << 20, 4096, 5);
	/* A new write (key 6) to a/b's block waits behind b, the newest. */
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 4096, 8192, 6), &b);
	/* b itself (key 3) is behind a; a is behind big; big runs. */
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 4096, 8192, 3), &a);
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 4096, 8192, 2), &big);
	CU_ASSERT_PTR_NULL(rangeidx_last_before(&ri, 4096, 8192, 1));
	/* c only overlaps big: newer a and b touch it but do not overlap. */
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 8192, 12288, 4), &big);
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 8192, 12288, 100), &c);
	/* Spanning everything: the newest of all. */
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 0, UINT64_MAX, 100), &far);
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 0, UINT64_MAX, 5), &c);
	/* Beyond big, before far: nothing. */
	CU_ASSERT_PTR_NULL(rangeidx_last_before(&ri, 1 << 20, 4 << 20, 100));
	/* When b completes, the new write waits behind a. */
	rangeidx_remove(&ri, &b);
	CU_ASSERT_PTR_EQUAL(rangeidx_last_before(&ri, 4096, 8192, 6), &a);
	rangeidx_remove(&ri, &a);
	rangeidx_remove(&ri, &big);
	CU_ASSERT_PTR_NULL(rangeidx_last_before(&ri, 4096, 8192, 6));
	check(&ri);
}

/* Sequential inserts and removals from either end keep the tree balanced. */
static void
test_balance(void)
{
	static struct rangeidx_node n[POOL];
	struct rangeidx ri;

	rangeidx_init(&ri);
	for (unsigned i = 0; i < POOL; i++)
		rangeidx_insert(&ri, &n[i], (uint64_t)i * 4096, 4096, i + 1);
	check(&ri);
	/* 512 nodes: an AVL tree is at most 1.44 log2(n) high. */
	CU_ASSERT_TRUE(ri.root->height <= 13);
	for (unsigned i = 0; i < POOL; i++)
		CU_ASSERT_PTR_EQUAL(rangeidx_first(&ri, (uint64_t)i * 4096 + 10,
		    (uint64_t)i * 4096 + 11), &n[i]);
	for (unsigned i = 0; i < POOL / 2; i++) {
		rangeidx_remove(&ri, &n[i]);
		rangeidx_remove(&ri, &n[POOL - 1 - i]);
		if (i % 32 == 0)
			check(&ri);
	}
	CU_ASSERT_PTR_NULL(ri.root);
	CU_ASSERT_EQUAL(ri.count, 0);
}

/* Random operations against a linear scan of the same ranges. */
static void
test_random_against_scan(void)
{
	static struct rangeidx_node n[POOL];
	static bool in[POOL];
	struct rangeidx ri;
	uint64_t key = 0;

	rangeidx_init(&ri);
	for (unsigned step = 0; step < 20000; step++) {
		unsigned i = (unsigned)(rng() % POOL);
		uint64_t s = rng() % (1 << 20), e = s + rng() % (64 << 10);
		uint64_t limit = rng() % (key + 2);
		struct rangeidx_node *best = NULL, *got, *out[POOL + 1];
		size_t k = 0, nw;

		if (in[i])
			rangeidx_remove(&ri, &n[i]);
		else	/* small keys repeat now and then */
			rangeidx_insert(&ri, &n[i], rng() % (1 << 20), rng() % 3 == 0 ?
			    rng() % 8 : rng() % (128 << 10), rng() % 8 == 0 ? 7 : ++key);
		in[i] = !in[i];
		for (unsigned j = 0; j < POOL; j++) {
			if (!in[j] || !(n[j].start < e && s < n[j].end))
				continue;
			k++;
			if (n[j].key < limit && (best == NULL || n[j].key > best->key))
				best = &n[j];
		}
		got = rangeidx_last_before(&ri, s, e, limit);
		CU_ASSERT_EQUAL(got ? got->key : UINT64_MAX, best ? best->key : UINT64_MAX);
		if (got != NULL)
			CU_ASSERT_TRUE(got->start < e && s < got->end && got->key < limit);
		nw = walk(&ri, s, e, out, POOL);
		CU_ASSERT_EQUAL(nw, k);
		for (size_t j = 1; j < nw && j < POOL; j++)
			CU_ASSERT_TRUE(out[j - 1]->start < out[j]->start ||
			    (out[j - 1]->start == out[j]->start && out[j - 1]->key <= out[j]->key));
		if (step % 1000 == 0)
			check(&ri);
	}
	check(&ri);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("rangeidx", NULL, NULL);
	CU_add_test(s, "empty", test_empty);
	CU_add_test(s, "overlap_rules", test_overlap_rules);
	CU_add_test(s, "walk_order", test_walk_order);
	CU_add_test(s, "last_before", test_last_before);
	CU_add_test(s, "balance", test_balance);
	CU_add_test(s, "random_against_scan", test_random_against_scan);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
