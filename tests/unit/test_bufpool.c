/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/bufpool.c: classes, fallback allocations, pooled-only. */
#include <errno.h>
#include <stdint.h>
#include <CUnit/Basic.h>

#include "bufpool.h"
#include "cu_run.h"

static const size_t sizes[BUFPOOL_CLASSES] = { 4096, 65536, 1 << 20 };
static const unsigned counts[BUFPOOL_CLASSES] = { 2, 1, 1 };

/* The smallest class that fits and has a buffer; then a fallback. */
static void
test_classes(void)
{
	struct bufpool bp;
	struct buf a, b, c, d;

	CU_ASSERT_EQUAL_FATAL(bufpool_init(&bp, sizes, counts), 0);
	CU_ASSERT_EQUAL(bufpool_get(&bp, 100, &a), 0);
	CU_ASSERT_EQUAL(a.cls, 0);
	CU_ASSERT_EQUAL(bufpool_get(&bp, 4096, &b), 0);
	CU_ASSERT_EQUAL(b.cls, 0);
	/* Class 0 is empty: the next class up. */
	CU_ASSERT_EQUAL(bufpool_get(&bp, 512, &c), 0);
	CU_ASSERT_EQUAL(c.cls, 1);
	/* Larger than every class: allocated, page aligned. */
	CU_ASSERT_EQUAL(bufpool_get(&bp, (2 << 20) + 1, &d), 0);
	CU_ASSERT_EQUAL(d.cls, -1);
	CU_ASSERT_EQUAL(d.index, -1);
	CU_ASSERT_EQUAL((uintptr_t)d.p % 4096, 0);
	CU_ASSERT_EQUAL(bp.fallback_allocs, 1);
	bufpool_put(&bp, &a);
	bufpool_put(&bp, &b);
	bufpool_put(&bp, &c);
	bufpool_put(&bp, &d);
	CU_ASSERT_PTR_NULL(d.p);
	CU_ASSERT_EQUAL(bp.cls[0].nfree, 2);
	CU_ASSERT_EQUAL(bp.cls[1].nfree, 1);
	bufpool_destroy(&bp);
}

/* bufpool_get_pooled() never allocates: -ENOBUFS instead. */
static void
test_pooled(void)
{
	struct bufpool bp;
	struct buf a, b;

	CU_ASSERT_EQUAL_FATAL(bufpool_init(&bp, sizes, counts), 0);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, (1 << 20) + 1, &a), -ENOBUFS);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, 1 << 20, &a), 0);
	CU_ASSERT_EQUAL(a.cls, 2);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, 1 << 20, &b), -ENOBUFS);
	CU_ASSERT_EQUAL(bp.fallback_allocs, 0);
	bufpool_put(&bp, &a);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, 1 << 20, &b), 0);
	bufpool_put(&bp, &b);
	bufpool_destroy(&bp);
}

/* A small request whose class is empty takes larger buffers only while
 * more than a quarter of that class is free; its own size still gets
 * the rest. */
static void
test_spill(void)
{
	static const unsigned many[BUFPOOL_CLASSES] = { 1, 8, 4 };
	struct bufpool bp;
	struct buf b[16], big;
	unsigned n = 0;

	CU_ASSERT_EQUAL_FATAL(bufpool_init(&bp, sizes, many), 0);
	while (n < 16 && bufpool_get_pooled(&bp, 4096, &b[n]) == 0)
		n++;
	/* 1 of class 0, 6 of class 1 (2 kept), 3 of class 2 (1 kept). */
	CU_ASSERT_EQUAL(n, 1 + 6 + 3);
	CU_ASSERT_EQUAL(bp.cls[1].nfree, 2);
	CU_ASSERT_EQUAL(bp.cls[2].nfree, 1);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, 65536, &big), 0);
	CU_ASSERT_EQUAL(big.cls, 1);
	bufpool_put(&bp, &big);
	CU_ASSERT_EQUAL(bufpool_get_pooled(&bp, 1 << 20, &big), 0);
	CU_ASSERT_EQUAL(big.cls, 2);
	bufpool_put(&bp, &big);
	while (n > 0)
		bufpool_put(&bp, &b[--n]);
	CU_ASSERT_EQUAL(bp.fallback_allocs, 0);
	bufpool_destroy(&bp);
}

/* What a fallback allocation of len takes: whole pages, at least one. */
static void
test_fallback_size(void)
{
	CU_ASSERT_EQUAL(bufpool_fallback_size(0), 4096);
	CU_ASSERT_EQUAL(bufpool_fallback_size(1), 4096);
	CU_ASSERT_EQUAL(bufpool_fallback_size(4096), 4096);
	CU_ASSERT_EQUAL(bufpool_fallback_size(4097), 8192);
	CU_ASSERT_EQUAL(bufpool_fallback_size(32 << 20), 32 << 20);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("bufpool", NULL, NULL);
	CU_add_test(s, "classes", test_classes);
	CU_add_test(s, "pooled", test_pooled);
	CU_add_test(s, "fallback_size", test_fallback_size);
	CU_add_test(s, "spill", test_spill);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
