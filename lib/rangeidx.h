/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * An index of byte ranges: an interval tree (AVL tree ordered by start,
 * then key) whose nodes are embedded in the caller's structures, so that
 * inserting and removing never allocate.  Each range carries a key, the
 * caller's order (the volume's submission sequence number).
 *
 * Queries, all in O(log n) for the usual few overlaps (O(log n + k) when k
 * ranges overlap the query):
 *  - the first range overlapping [start, end) in index order, and the next
 *    one after a given range (to walk all overlapping ranges);
 *  - the overlapping range with the largest key below a limit: "the newest
 *    older write that overlaps" of the volume's conflict rule.
 *
 * Ranges are half-open, [start, end); two ranges overlap when each starts
 * before the other ends.  An empty range [s, s) therefore overlaps a range
 * that strictly contains s, and nothing else.  Ranges may overlap, nest,
 * touch or repeat; each node is in at most one index at a time.
 */
#ifndef BLKMIRROR_RANGEIDX_H
#define BLKMIRROR_RANGEIDX_H

#include <stddef.h>
#include <stdint.h>

/* A range in an index; embed it and find the container with container_of. */
struct rangeidx_node {
	struct rangeidx_node *left, *right;	/* subtrees: earlier, later */
	uint64_t start, end;	/* the range [start, end) */
	uint64_t key;		/* the caller's order (ties: the node's address) */
	uint64_t max_end;	/* largest end in this subtree */
	uint64_t min_key;	/* smallest key in this subtree */
	uint64_t max_key;	/* largest key in this subtree */
	int height;		/* of this subtree (a leaf: 1) */
};

/* An index; all zeros (or rangeidx_init) is an empty one. */
struct rangeidx {
	struct rangeidx_node *root;	/* NULL when empty */
	size_t count;			/* nodes in the index */
};

void rangeidx_init(struct rangeidx *ri);

/* Add n as the range [start, start + len) with key. */
void rangeidx_insert(struct rangeidx *ri, struct rangeidx_node *n,
    uint64_t start, uint64_t len, uint64_t key);

/* Remove n, which must be in ri. */
void rangeidx_remove(struct rangeidx *ri, struct rangeidx_node *n);

/* The first range (by start, then key) overlapping [start, end), or NULL. */
struct rangeidx_node *rangeidx_first(const struct rangeidx *ri,
    uint64_t start, uint64_t end);

/* The range after prev (in ri) in index order overlapping [start, end),
 * or NULL. */
struct rangeidx_node *rangeidx_next(const struct rangeidx *ri,
    const struct rangeidx_node *prev, uint64_t start, uint64_t end);

/* Of the ranges overlapping [start, end) with a key below limit, the one
 * with the largest key (any one of them if several share it), or NULL. */
struct rangeidx_node *rangeidx_last_before(const struct rangeidx *ri,
    uint64_t start, uint64_t end, uint64_t limit);

#endif
