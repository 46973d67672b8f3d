/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The range index (rangeidx.h): an AVL tree ordered by (start, key,
 * address), each node augmented with its subtree's largest end and smallest
 * and largest key (an interval tree as in CLRS 14.3).  Insert and remove
 * are recursive, bounded by the height (at most 1.44 log2 n: 16 levels for
 * 2048 ranges), and rebalance on the way back up, recomputing the augmented
 * fields of every node they pass or rotate.
 *
 * The queries prune with the augmented fields: a subtree whose largest end
 * is at or before the query's start holds no overlap, and nodes right of
 * one that starts at or after the query's end start there too.
 */
#include <assert.h>
#include <stdbool.h>

#include "rangeidx.h"
#include "util.h"

static int
height(const struct rangeidx_node *n)
{
	return n != NULL ? n->height : 0;
}

/* Fold child c's subtree fields into n's. */
static void
fold(struct rangeidx_node *n, const struct rangeidx_node *c)
{
	if (c == NULL)
		return;
	n->max_end = MAX(n->max_end, c->max_end);
	n->min_key = MIN(n->min_key, c->min_key);
	n->max_key = MAX(n->max_key, c->max_key);
}

/* Recompute n's subtree fields from its own range and its children. */
static void
update(struct rangeidx_node *n)
{
	n->height = 1 + MAX(height(n->left), height(n->right));
	n->max_end = n->end;
	n->min_key = n->max_key = n->key;
	fold(n, n->left);
	fold(n, n->right);
}

static struct rangeidx_node *
rotate_right(struct rangeidx_node *n)
{
	struct rangeidx_node *l = n->left;

	n->left = l->right;
	l->right = n;
	update(n);
	update(l);
	return l;
}

static struct rangeidx_node *
rotate_left(struct rangeidx_node *n)
{
	struct rangeidx_node *r = n->right;

	n->right = r->left;
	r->left = n;
	update(n);
	update(r);
	return r;
}

/* Update n and restore the balance of its subtree (children balanced and
 * their heights differing by at most 2); returns the subtree's new root. */
static struct rangeidx_node *
rebalance(struct rangeidx_node *n)
{
	int bal = height(n->left) - height(n->right);

	if (bal > 1) {
		if (height(n->left->left) < height(n->left->right))
			n->left = rotate_left(n->left);
		return rotate_right(n);
	}
	if (bal < -1) {
		if (height(n->right->right) < height(n->right->left))
			n->right = rotate_right(n->right);
		return rotate_left(n);
	}
	update(n);
	return n;
}

/* Index order: start, then key, then address (every node has its place). */
static bool
before(const struct rangeidx_node *a, const struct rangeidx_node *b)
{
	if (a->start != b->start)
		return a->start < b->start;
	if (a->key != b->key)
		return a->key < b->key;
	return (uintptr_t)a < (uintptr_t)b;
}

static bool
overlaps(const struct rangeidx_node *n, uint64_t start, uint64_t end)
{
	return n->start < end && start < n->end;
}

static struct rangeidx_node *
insert(struct rangeidx_node *t, struct rangeidx_node *n)
{
	if (t == NULL)
		return n;
	if (before(n, t))
		t->left = insert(t->left, n);
	else
		t->right = insert(t->right, n);
	return rebalance(t);
}

/* Detach the first node of t (not empty) into *min; returns the rest. */
static struct rangeidx_node *
detach_min(struct rangeidx_node *t, struct rangeidx_node **min)
{
	if (t->left == NULL) {
		*min = t;
		return t->right;
	}
	t->left = detach_min(t->left, min);
	return rebalance(t);
}

/* Remove n from t (n is in t); returns the subtree's new root. */
static struct rangeidx_node *
erase(struct rangeidx_node *t, struct rangeidx_node *n)
{
	struct rangeidx_node *succ, *rest;

	assert(t != NULL);
	if (t != n) {
		if (before(n, t))
			t->left = erase(t->left, n);
		else
			t->right = erase(t->right, n);
		return rebalance(t);
	}
	if (n->right == NULL)
		return n->left;
	/* Its successor takes its place. */
	rest = detach_min(n->right, &succ);
	succ->left = n->left;
	succ->right = rest;
	return rebalance(succ);
}

void
rangeidx_init(struct rangeidx *ri)
{
	ri->root = NULL;
	ri->count = 0;
}

void
rangeidx_insert(struct rangeidx *ri, struct rangeidx_node *n, uint64_t start,
    uint64_t len, uint64_t key)
{
	n->left = n->right = NULL;
	n->start = start;
	n->end = start + len;
	n->key = key;
	update(n);
	ri->root = insert(ri->root, n);
	ri->count++;
}

void
rangeidx_remove(struct rangeidx *ri, struct rangeidx_node *n)
{
	ri->root = erase(ri->root, n);
	n->left = n->right = NULL;
	ri->count--;
}

/* The first node of t after `after` (NULL: from the beginning) that
 * overlaps [start, end), or NULL. */
static struct rangeidx_node *
first_after(struct rangeidx_node *t, const struct rangeidx_node *after,
    uint64_t start, uint64_t end)
{
	while (t != NULL && t->max_end > start) {
		if (after == NULL || before(after, t)) {
			struct rangeidx_node *r = first_after(t->left, after, start, end);

			if (r != NULL)
				return r;
			if (t->start >= end)
				return NULL;	/* so does everything after t */
			if (overlaps(t, start, end))
				return t;
		}
		t = t->right;
	}
	return NULL;
}

struct rangeidx_node *
rangeidx_first(const struct rangeidx *ri, uint64_t start, uint64_t end)
{
	return first_after(ri->root, NULL, start, end);
}

struct rangeidx_node *
rangeidx_next(const struct rangeidx *ri, const struct rangeidx_node *prev,
    uint64_t start, uint64_t end)
{
	return first_after(ri->root, prev, start, end);
}

/* Whether subtree t may hold a better answer than *best for last_before. */
static bool
worth(const struct rangeidx_node *t, uint64_t start, uint64_t limit,
    const struct rangeidx_node *best)
{
	return t != NULL && t->max_end > start && t->min_key < limit &&
	    (best == NULL || t->max_key > best->key);
}

/*
 * Branch and bound: *best is the answer so far; subtrees that cannot
 * overlap, hold only keys at or above limit, or no key above the best one
 * are skipped, and the child with the larger keys is searched first.
 */
static void
last_before(const struct rangeidx_node *t, uint64_t start, uint64_t end,
    uint64_t limit, const struct rangeidx_node **best)
{
	while (worth(t, start, limit, *best)) {
		const struct rangeidx_node *first = t->left, *second = t->right;

		if (overlaps(t, start, end) && t->key < limit &&
		    (*best == NULL || t->key > (*best)->key))
			*best = t;
		if (t->start >= end)
			second = NULL;		/* the right subtree starts there too */
		else if (second != NULL && (first == NULL ||
		    second->max_key > first->max_key)) {
			first = t->right;
			second = t->left;
		}
		last_before(first, start, end, limit, best);
		t = second;
	}
}

struct rangeidx_node *
rangeidx_last_before(const struct rangeidx *ri, uint64_t start, uint64_t end,
    uint64_t limit)
{
	const struct rangeidx_node *best = NULL;

	last_before(ri->root, start, end, limit, &best);
	return (struct rangeidx_node *)best;
}
