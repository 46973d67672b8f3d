/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for daemon/volume.c's conflict rule: a write that overlaps an
 * older write still running or waiting waits, overlapping writes start in
 * submission order, everything else starts at once.  This file stands in
 * for the io engine (ioeng_submit records the request; the test completes
 * it), meta.c (no metadata: a write starts at once), replicate.c and
 * peerread.c (no peer, unless a test ships: then repl_ship says so and the
 * test acknowledges for the peer).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <CUnit/Basic.h>

#include "repl.h"
#include "util.h"
#include "cu_run.h"

#define MAXREQ 256

static struct daemon D;			/* the volume under test */
static struct vol_req *started[MAXREQ];	/* handed to the engine, in order */
static unsigned nstarted;
static unsigned ndone;			/* completions reported to the owner */
static bool ship;			/* repl_ship's answer */
static uint64_t oos_off, oos_len;	/* the last meta_set_oos() range */
static unsigned noos, nkept;		/* meta_set_oos / repl_keep_marked calls */
static int want_res;			/* result done() expects */

void
ioeng_submit(struct ioeng *e, struct io_req *r)
{
	CU_ASSERT_FATAL(nstarted < MAXREQ);
	started[nstarted++] = r->data;
}

void
meta_prepare_write(struct daemon *d, struct vol_req *vr)
{
	vol_start(d, vr);
}

void
meta_write_done(struct daemon *d, struct vol_req *vr)
{
}

bool
repl_congested(struct daemon *d, struct vol_req *vr)
{
	return false;
}

bool
repl_ship(struct daemon *d, struct vol_req *vr)
{
	return ship;
}

void
meta_set_oos(struct daemon *d, uint64_t off, uint64_t len)
{
	oos_off = off;
	oos_len = len;
	noos++;
}

void
repl_keep_marked(struct daemon *d, struct vol_req *vr)
{
	vr->local_failed = true;
	nkept++;
}

bool
peerread_divert(struct daemon *d, struct vol_req *vr)
{
	return false;
}

bool
diskfail_detached(const struct daemon *d)
{
	return false;
}

int
diskfail_after_detach(struct daemon *d, struct vol_req *vr, int res)
{
	return res;
}

int
diskfail_io_error(struct daemon *d, struct vol_req *vr, int res, bool *taken)
{
	*taken = false;
	return res;
}

static void
done(struct vol_req *vr, int res)
{
	CU_ASSERT_EQUAL(res, want_res);
	ndone++;
}

static void
reset(void)
{
	D = (struct daemon){ 0 };
	nstarted = ndone = noos = nkept = 0;
	ship = false;
	want_res = 0;
}

/* Submit a write (or read) of [off, off + len) KiB. */
static void
submit(struct vol_req *vr, uint64_t off_k, uint64_t len_k, bool write)
{
	*vr = (struct vol_req){ .d = &D, .done = done, .is_write = write };
	vr->io.opcode = write ? IO_WRITE : IO_READ;
	vr->io.offset = off_k << 10;
	vr->io.len = len_k << 10;
	vol_submit(&D, vr);
}

static bool
is_started(const struct vol_req *vr)
{
	for (unsigned i = 0; i < nstarted; i++)
		if (started[i] == vr)
			return true;
	return false;
}

/* The local disk finished vr. */
static void
complete(struct vol_req *vr)
{
	CU_ASSERT_FATAL(is_started(vr));
	vr->io.cb(&vr->io, 0);
}

static void
test_overlap_waits(void)
{
	struct vol_req a, b, c, r;

	reset();
	submit(&a, 0, 8, true);
	submit(&b, 4, 8, true);		/* overlaps a */
	submit(&c, 8, 4, true);		/* adjacent to a, overlaps b */
	submit(&r, 0, 16, false);	/* a read is never held */
	CU_ASSERT_EQUAL(nstarted, 2);
	CU_ASSERT_PTR_EQUAL(started[0], &a);
	CU_ASSERT_PTR_EQUAL(started[1], &r);
	/* c does not overlap a, but b (older, waiting) comes first. */
	complete(&a);
	CU_ASSERT_EQUAL(nstarted, 3);
	CU_ASSERT_PTR_EQUAL(started[2], &b);
	complete(&b);
	CU_ASSERT_PTR_EQUAL(started[3], &c);
	complete(&c);
	complete(&r);
	CU_ASSERT_EQUAL(ndone, 4);
	CU_ASSERT_EQUAL(D.writes.count, 0);
}

static void
test_adjacent_run(void)
{
	struct vol_req w[4];

	reset();
	for (unsigned i = 0; i < 4; i++)
		submit(&w[i], i * 4, 4, true);
	CU_ASSERT_EQUAL(nstarted, 4);
	for (unsigned i = 0; i < 4; i++)
		complete(&w[i]);
	CU_ASSERT_EQUAL(ndone, 4);
}

/* The same block written again and again drains in submission order. */
static void
test_same_block_chain(void)
{
	struct vol_req w[8];

	reset();
	for (unsigned i = 0; i < 8; i++)
		submit(&w[i], 64, 4, true);
	CU_ASSERT_EQUAL(nstarted, 1);
	for (unsigned i = 0; i < 8; i++) {
		CU_ASSERT_EQUAL(nstarted, i + 1);
		CU_ASSERT_PTR_EQUAL(started[i], &w[i]);
		complete(&w[i]);
	}
	CU_ASSERT_EQUAL(ndone, 8);
}

/* Small writes nested in a big one start together, in submission order,
 * when it completes; one that overlaps two of them waits for both. */
static void
test_nested(void)
{
	struct vol_req big, s[3], span;

	reset();
	submit(&big, 0, 1024, true);
	submit(&s[0], 512, 4, true);
	submit(&s[1], 8, 4, true);
	submit(&s[2], 100, 8, true);
	submit(&span, 8, 100, true);	/* overlaps s[1] and s[2] */
	CU_ASSERT_EQUAL(nstarted, 1);
	complete(&big);
	CU_ASSERT_EQUAL(nstarted, 4);
	CU_ASSERT_PTR_EQUAL(started[1], &s[0]);
	CU_ASSERT_PTR_EQUAL(started[2], &s[1]);
	CU_ASSERT_PTR_EQUAL(started[3], &s[2]);
	complete(&s[2]);		/* out of order: s[1] still holds span */
	CU_ASSERT_EQUAL(nstarted, 4);
	complete(&s[1]);
	CU_ASSERT_EQUAL(nstarted, 5);
	CU_ASSERT_PTR_EQUAL(started[4], &span);
	complete(&s[0]);
	complete(&span);
	CU_ASSERT_EQUAL(ndone, 5);
}

/*
 * Random writes and completions in random order.  At every step: no two
 * started, unfinished writes overlap; a write starts only after every
 * older write overlapping it has finished; and all finish in the end.
 */
static void
test_random_model(void)
{
	static struct vol_req w[MAXREQ];
	static bool fin[MAXREQ];
	uint64_t st = 0x853c49e6748fea9bull;
	unsigned nsub = 0, checked = 0;

	reset();
	while (ndone < MAXREQ) {
		unsigned running[MAXREQ], nrun = 0;

		st ^= st << 13;
		st ^= st >> 7;
		st ^= st << 17;
		for (unsigned i = 0; i < nstarted; i++)
			if (!fin[started[i] - w])
				running[nrun++] = (unsigned)(started[i] - w);
		if (nsub == MAXREQ && nrun == 0) {
			CU_FAIL("writes wait with nothing running");
			break;
		}
		if (nsub < MAXREQ && (nrun == 0 || st % 3 != 0)) {
			submit(&w[nsub++], st % 256 * 4, 4 * (1 + (st >> 20) % 8), true);
		} else {
			unsigned k = running[(st >> 8) % nrun];

			fin[k] = true;
			complete(&w[k]);
		}
		/* Each newly started write: older overlapping ones are done. */
		for (; checked < nstarted; checked++) {
			const struct vol_req *n = started[checked];

			for (unsigned j = 0; j < (unsigned)(n - w); j++)
				if (w[j].io.offset < n->io.offset + n->io.len &&
				    n->io.offset < w[j].io.offset + w[j].io.len)
					CU_ASSERT_TRUE(fin[j]);
		}
	}
	CU_ASSERT_EQUAL(nstarted, MAXREQ);
	CU_ASSERT_EQUAL(D.writes.count, 0);
	CU_ASSERT_PTR_NULL(D.writes.root);
}

/*
 * A TRIM or WRITE_ZEROES shipped to the peer that the local disk cannot do
 * (-EOPNOTSUPP, -ENOTSUP): the peer may have done it, so its range is
 * marked out of sync and kept marked; the requester still gets the local
 * result.  Not shipped: nothing to mark.
 */
static void
test_unsupported_shipped(void)
{
	static struct meta m;
	static struct peer p;
	struct vol_req vr;
	const int errs[] = { -EOPNOTSUPP, -ENOTSUP };

	for (unsigned i = 0; i < 4; i++) {
		reset();
		D.md = &m;
		D.link = &p;
		ship = i < 2;
		want_res = errs[i % 2];
		vr = (struct vol_req){ .d = &D, .done = done, .is_write = true };
		vr.io.opcode = i % 2 ? IO_WRITE_ZEROES : IO_TRIM;
		vr.io.offset = 1 << 20;
		vr.io.len = 64 << 10;
		vol_submit(&D, &vr);
		CU_ASSERT_FATAL(is_started(&vr));
		vr.io.cb(&vr.io, want_res);
		if (ship)
			vol_peer_done(&D, &vr, 0);
		CU_ASSERT_EQUAL(ndone, 1);
		CU_ASSERT_EQUAL(noos, ship ? 1u : 0u);
		CU_ASSERT_EQUAL(nkept, ship ? 1u : 0u);
		if (ship) {
			CU_ASSERT_EQUAL(oos_off, 1u << 20);
			CU_ASSERT_EQUAL(oos_len, 64u << 10);
		}
	}
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("volume", NULL, NULL);
	CU_add_test(s, "overlap_waits", test_overlap_waits);
	CU_add_test(s, "adjacent_run", test_adjacent_run);
	CU_add_test(s, "same_block_chain", test_same_block_chain);
	CU_add_test(s, "nested", test_nested);
	CU_add_test(s, "random_model", test_random_model);
	CU_add_test(s, "unsupported_shipped", test_unsupported_shipped);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
