/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/ioengine.c and its engines: each engine (io_uring,
 * libaio, sync) on each loop backend it runs on, on a regular file in
 * /var/tmp and on a loop device (root and losetup needed for that part).
 * Every check reads data back or asserts an exact error code.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <CUnit/Basic.h>

#include "ioengine.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "cu_run.h"

#define MiB		(1ull << 20)
#define TSIZE		(64 * MiB)	/* backing size */
#define TDEPTH		8		/* queue depth the tests open with */
#define NMANY		64		/* requests in flight at once */

/* One test configuration: engine, loop backend, O_DIRECT. */
struct cfg {
	enum ioeng_kind kind;	/* engine asked for and expected */
	bool uring_loop;	/* loop backend: io_uring, else epoll */
	bool direct;		/* opts.direct */
};

/* What a battery runs against. */
struct target {
	const struct cfg *c;	/* configuration */
	struct loop *l;		/* loop driving completions */
	struct ioeng *e;	/* engine under test */
	const char *path;	/* file or loop device opened */
	const char *file;	/* regular file (the loop device's backing) */
	bool dev;		/* path is a loop device */
};

/* Completion record of one request. */
struct waiter {
	int res;		/* result given to the callback */
	bool done;		/* callback ran */
};

static unsigned completions;	/* callbacks run, all requests */

static void
wait_cb(struct io_req *r, int res)
{
	struct waiter *w = r->data;

	w->res = res;
	w->done = true;
	completions++;
}

/*
 * Run the loop until `completions` reaches want; abort after 60 s.  A turn
 * runs the callbacks made ready by the previous turn's wait and then waits
 * again for its whole timeout: keep the timeout short.
 */
static void
drive(struct loop *l, unsigned want)
{
	uint64_t deadline = now_ns() + 60ull * 1000000000ull;

	while (completions < want) {
		if (now_ns() > deadline || loop_run_once(l, 1) < 0) {
			/* Requests on the stack would dangle: stop here. */
			fprintf(stderr, "io engine test: requests never completed\n");
			abort();
		}
	}
}

static void
req_init(struct io_req *r, struct waiter *w, int op, uint32_t flags,
    uint64_t off, uint64_t len, void *buf)
{
	memset(r, 0, sizeof(*r));
	memset(w, 0, sizeof(*w));
	r->cb = wait_cb;
	r->data = w;
	r->opcode = (uint8_t)op;
	r->flags = flags;
	r->offset = off;
	r->len = len;
	r->buf = buf;
	r->buf_index = -1;
}

/* Submit one request, check it did not complete inside submit, wait. */
static int
do_io_idx(struct target *t, int op, uint32_t flags, uint64_t off,
    uint64_t len, void *buf, int idx)
{
	struct io_req r;
	struct waiter w;
	unsigned before = completions;

	req_init(&r, &w, op, flags, off, len, buf);
	r.buf_index = idx;
	ioeng_submit(t->e, &r);
	CU_ASSERT_FALSE(w.done);
	drive(t->l, before + 1);
	CU_ASSERT_TRUE(w.done);
	return w.res;
}

static int
do_io(struct target *t, int op, uint32_t flags, uint64_t off, uint64_t len, void *buf)
{
	return do_io_idx(t, op, flags, off, len, buf, -1);
}

static void *
xalloc(size_t len)
{
	void *p = aligned_alloc(4096, len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	memset(p, 0xee, len);
	return p;
}

static void
fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *p = buf;

	for (size_t i = 0; i < len / 8; i++)
		p[i] = seed * 0x9e3779b97f4a7c15ull + i;
}

static bool
is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/*
 * Temporary files still to delete: a fatal assertion jumps out of a test,
 * so the suite's cleanup removes whatever the tests did not.
 */
static char *tmp_files[16];

/* A size-byte sparse file in dir; remove it with rm_file(). */
static char *
make_file(const char *dir, uint64_t size)
{
	char *path;
	size_t i;
	int fd;

	for (i = 0; i < ARRAY_SIZE(tmp_files) && tmp_files[i] != NULL; i++)
		;
	CU_ASSERT_FATAL(i < ARRAY_SIZE(tmp_files));
	CU_ASSERT_FATAL(asprintf(&path, "%s/blkmirror-ioeng-XXXXXX", dir) > 0);
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	tmp_files[i] = path;
	CU_ASSERT_FATAL(ftruncate(fd, (off_t)size) == 0);
	close(fd);
	return path;
}

static void
rm_file(char *path)
{
	for (size_t i = 0; i < ARRAY_SIZE(tmp_files); i++)
		if (tmp_files[i] == path)
			tmp_files[i] = NULL;
	CU_ASSERT_EQUAL(unlink(path), 0);
	free(path);
}

static int
suite_cleanup(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(tmp_files); i++) {
		if (tmp_files[i] != NULL) {
			unlink(tmp_files[i]);
			free(tmp_files[i]);
			tmp_files[i] = NULL;
		}
	}
	return 0;
}

/*
 * Mark the loop device autoclear and keep an fd on it: however the test
 * ends, the device detaches when that fd closes (at the latest at exit).
 */
static int
loop_hold(const char *dev)
{
	struct loop_info64 info;
	int fd = open(dev, O_RDONLY | O_CLOEXEC);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(ioctl(fd, LOOP_GET_STATUS64, &info), 0);
	info.lo_flags |= LO_FLAGS_AUTOCLEAR;
	CU_ASSERT_EQUAL(ioctl(fd, LOOP_SET_STATUS64, &info), 0);
	return fd;
}

/* Attach file to a free loop device; NULL (with a message) if impossible. */
static char *
loop_attach(const char *file, int *hold)
{
	char cmd[512], line[128] = "";
	FILE *p;
	int st;

	if (geteuid() != 0 || access("/usr/sbin/losetup", X_OK) != 0) {
		printf("\n  [skipped: loop device part needs root and losetup]\n");
		CU_PASS("loop device part skipped: needs root and losetup");
		return NULL;
	}
	snprintf(cmd, sizeof(cmd), "/usr/sbin/losetup -f --show '%s' 2>&1", file);
	p = popen(cmd, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	if (fgets(line, sizeof(line), p) == NULL)
		line[0] = '\0';
	st = pclose(p);
	line[strcspn(line, "\n")] = '\0';
	if (st != 0 || strncmp(line, "/dev/loop", 9) != 0) {
		/* root with losetup: the loop part must run, not pass unseen */
		printf("\n  losetup -f failed: %s\n", line);
		CU_FAIL("losetup -f failed as root: the loop device part cannot run");
		return NULL;
	}
	*hold = loop_hold(line);
	return strdup(line);
}

/* Detach (deferred by the kernel until the hold fd closes) and check. */
static void
loop_detach(const char *dev, int hold)
{
	char cmd[128], sys[128];

	snprintf(cmd, sizeof(cmd), "/usr/sbin/losetup -d %s", dev);
	CU_ASSERT_EQUAL(system(cmd), 0);
	close(hold);
	snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", dev + 5);
	for (int i = 0; i < 1000 && access(sys, F_OK) == 0; i++)	/* 10 s */
		usleep(10000);
	CU_ASSERT_NOT_EQUAL(access(sys, F_OK), 0);
}

static bool opt_inline;	/* open_engine(): opts.inline_writes */

static int
open_engine(struct target *t, bool read_only, struct ioeng **out)
{
	struct ioeng_opts o = {
		.kind = t->c->kind, .direct = t->c->direct, .read_only = read_only,
		.inline_writes = opt_inline,
		.io_align = 4096, .queue_depth = TDEPTH, .threads = 3,
	};

	return ioeng_open(t->l, t->path, &o, out);
}

static uint64_t
file_blocks(const char *file)
{
	struct stat st;

	CU_ASSERT_EQUAL(stat(file, &st), 0);
	return (uint64_t)st.st_blocks;
}

/* ---- the battery ------------------------------------------------------- */

static void
check_props(struct target *t)
{
	unsigned a = ioeng_alignment(t->e);

	CU_ASSERT_EQUAL(ioeng_get_kind(t->e), t->c->kind);
	CU_ASSERT_EQUAL(ioeng_size(t->e), TSIZE);
	CU_ASSERT_EQUAL(ioeng_is_blockdev(t->e), t->dev);
	/* ext4 and loop devices do O_DIRECT with 512-byte alignment. */
	CU_ASSERT_EQUAL(ioeng_is_direct(t->e), t->c->direct);
	CU_ASSERT_TRUE(IS_POW2(a) && a >= 512 && a <= 4096);
	CU_ASSERT_TRUE(ioeng_fd(t->e) >= 0);
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), 0);
}

/* Pattern writes of several sizes read back byte for byte. */
static void
check_rw(struct target *t)
{
	size_t len = 4 * MiB;
	char *out = xalloc(len), *in = xalloc(len);
	const struct ioeng_stats *s = ioeng_get_stats(t->e);
	uint64_t wops = s->ops[IO_WRITE], wbytes = s->bytes[IO_WRITE];

	fill(out, len, 1);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 1 * MiB, len, out), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 1 * MiB, len, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, len), 0);
	/* A single 4 KiB block at the very end of the device. */
	fill(out, 4096, 2);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, TSIZE - 4096, 4096, out), 0);
	memset(in, 0, 4096);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, TSIZE - 4096, 4096, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, 4096), 0);
	CU_ASSERT_EQUAL(s->ops[IO_WRITE], wops + 2);
	CU_ASSERT_EQUAL(s->bytes[IO_WRITE], wbytes + len + 4096);
	/* FUA write, then flush. */
	fill(out, 65536, 3);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, IO_F_FUA, 6 * MiB, 65536, out), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 6 * MiB, 65536, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, 65536), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	/* Zero-length read completes (deferred) with 0. */
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 0, 0, in), 0);
	free(out);
	free(in);
}

/* Trim: succeeds; on files the range reads back as zeroes. */
static void
check_trim(struct target *t)
{
	size_t len = MiB;
	char *out = xalloc(len), *in = xalloc(len);

	fill(out, len, 4);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 10 * MiB, len, out), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_TRIM, 0, 10 * MiB, len, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_TRIM, IO_F_FUA, 10 * MiB, 4096, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 10 * MiB, len, in), 0);
	if (!t->dev)
		CU_ASSERT_TRUE(is_zero(in, len));
	free(out);
	free(in);
}

/* Write len bytes of pattern at off and make it reach the backing file. */
static void
put_pattern(struct target *t, uint64_t off, size_t len, char *buf, uint64_t seed)
{
	fill(buf, len, seed);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, off, len, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
}

/*
 * Write-zeroes reads back zeroes with every flag combination.  NO_HOLE
 * keeps the backing blocks allocated; without it they are deallocated
 * (checked on the backing file, also behind the loop device).
 */
static void
check_zeroes(struct target *t)
{
	uint64_t off = 12 * MiB, b0, b1, b2;
	size_t len = MiB;
	char *buf = xalloc(len), *in = xalloc(len);

	put_pattern(t, off, len, buf, 5);
	b0 = file_blocks(t->file);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, IO_F_NO_HOLE, off, len, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	b1 = file_blocks(t->file);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, off, len, in), 0);
	CU_ASSERT_TRUE(is_zero(in, len));
	CU_ASSERT_TRUE(b1 >= b0);

	put_pattern(t, off, len, buf, 6);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, 0, off, len, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	b2 = file_blocks(t->file);
	memset(in, 1, len);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, off, len, in), 0);
	CU_ASSERT_TRUE(is_zero(in, len));
	CU_ASSERT_TRUE(b2 + len / 512 <= b1);

	/* FAST_ZERO is fast on ext4 and on loop devices; FUA adds a sync. */
	CU_ASSERT_TRUE(ioeng_can_fast_zero(t->e, IO_F_FAST_ZERO | IO_F_NO_HOLE));
	put_pattern(t, off, len, buf, 7);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, IO_F_FAST_ZERO | IO_F_NO_HOLE | IO_F_FUA,
	    off, len / 2, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, IO_F_FAST_ZERO, off + len / 2,
	    len / 2, NULL), 0);
	memset(in, 1, len);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, off, len, in), 0);
	CU_ASSERT_TRUE(is_zero(in, len));
	free(buf);
	free(in);
}

/* NMANY requests at once (queue depth TDEPTH), distinct patterns. */
static void
check_many(struct target *t)
{
	size_t bs = 16384;
	struct io_req r[NMANY];
	struct waiter w[NMANY];
	char *out = xalloc(bs * NMANY), *in = xalloc(bs * NMANY);
	uint64_t base = 20 * MiB;
	unsigned before = completions;

	for (int i = 0; i < NMANY; i++) {
		fill(out + i * bs, bs, 100 + (uint64_t)i);
		req_init(&r[i], &w[i], IO_WRITE, i % 5 == 0 ? IO_F_FUA : 0,
		    base + i * bs, bs, out + i * bs);
		ioeng_submit(t->e, &r[i]);
	}
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), NMANY);
	CU_ASSERT_EQUAL(completions, before);
	drive(t->l, before + NMANY);
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), 0);
	for (int i = 0; i < NMANY; i++)
		CU_ASSERT_EQUAL(w[i].res, 0);
	/* Read them back concurrently, in reverse order. */
	before = completions;
	for (int i = NMANY - 1; i >= 0; i--) {
		req_init(&r[i], &w[i], IO_READ, 0, base + i * bs, bs, in + i * bs);
		ioeng_submit(t->e, &r[i]);
	}
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), NMANY);
	drive(t->l, before + NMANY);
	for (int i = 0; i < NMANY; i++) {
		CU_ASSERT_EQUAL(w[i].res, 0);
		CU_ASSERT_EQUAL(memcmp(in + i * bs, out + i * bs, bs), 0);
	}
	free(out);
	free(in);
}

/* Misaligned, out-of-range and malformed requests fail with -EINVAL. */
static void
check_reject(struct target *t)
{
	char *buf = xalloc(16384);
	const struct ioeng_stats *s = ioeng_get_stats(t->e);
	uint64_t errs = s->errors;

	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 512, 4096, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 4096, 100, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, TSIZE - 4096, 8192, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, TSIZE, 4096, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, UINT64_MAX - 4095, 8192, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_TRIM, 0, TSIZE - 4096, 1ull << 62, NULL), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, 0, 3 * 512, 4096, NULL), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 4096, NULL), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, 9, 0, 0, 4096, buf), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 1u << 7, 0, 4096, buf), -EINVAL);
	if (ioeng_is_direct(t->e))
		CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 0, 4096, buf + 8), -EINVAL);
	CU_ASSERT_EQUAL(s->errors, errs + 10 + ioeng_is_direct(t->e));
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), 0);
	free(buf);
}

/* Fault specs fail exactly the requests they name, through the callback. */
static void
check_faults(struct target *t)
{
	char *buf = xalloc(8192);

	fill(buf, 8192, 8);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:4096-8191:5:1"), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 4096, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 4096, 4096, buf), -EIO);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 4096, 4096, buf), 0);
	/* The third write anywhere fails with ENOSPC, the fourth succeeds. */
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:28:1:2"), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 8192, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 8192, buf), -ENOSPC);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 8192, buf), 0);
	/* Unlimited count until cleared; other opcodes are untouched. */
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "flush:*:61"), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), -ENODATA);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), -ENODATA);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 4096, buf), 0);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "zero:0x0-0xfff:22"), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, 0, 0, 8192, NULL), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, 0, 4096, 4096, NULL), 0);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, ""), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, 0, 0, 4096, NULL), 0);
	/* Bad specs are refused and leave no fault armed. */
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "bogus"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:5-1:5"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:0"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:5:0"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:1-x:5"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:5:1:2:3"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "read:*:5000"), -EINVAL);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, 4096, buf), 0);
	free(buf);
}

/* Turn the loop for about ms milliseconds. */
static void
spin(struct loop *l, unsigned ms)
{
	uint64_t end = now_ns() + ms * 1000000ull;

	while (now_ns() < end)
		CU_ASSERT_FATAL(loop_run_once(l, 1) >= 0);
}

/*
 * A stall holds the requests it matches, in flight, until the fault is
 * cleared or released; they then run.  Others pass meanwhile.
 */
static void
check_stall(struct target *t)
{
	size_t bs = 4096;
	struct io_req r[4];
	struct waiter w[4];
	char *a = xalloc(bs), *b = xalloc(bs), *in = xalloc(2 * bs);
	unsigned before = completions;

	fill(a, bs, 31);
	fill(b, bs, 32);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:0-65535:stall"), 0);
	req_init(&r[0], &w[0], IO_WRITE, 0, 0, bs, a);
	req_init(&r[1], &w[1], IO_WRITE, IO_F_FUA, bs, bs, b);
	req_init(&r[2], &w[2], IO_WRITE, 0, 65536, bs, a);
	req_init(&r[3], &w[3], IO_WRITE, 0, 4096, 0, a);
	for (int i = 0; i < 4; i++)
		ioeng_submit(t->e, &r[i]);
	drive(t->l, before + 2);
	spin(t->l, 50);
	CU_ASSERT_TRUE(w[2].done && w[2].res == 0);
	CU_ASSERT_TRUE(w[3].done && w[3].res == 0);
	CU_ASSERT_FALSE(w[0].done || w[1].done);
	CU_ASSERT_EQUAL(ioeng_in_flight(t->e), 2);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, ""), 0);
	drive(t->l, before + 4);
	CU_ASSERT_TRUE(w[0].res == 0 && w[1].res == 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 0, 2 * bs, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, a, bs), 0);
	CU_ASSERT_EQUAL(memcmp(in + bs, b, bs), 0);
	/* Release: the stall ends, disarmed; an error fault would stay. */
	before = completions;
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "flush:*:stall:1"), 0);
	req_init(&r[0], &w[0], IO_FLUSH, 0, 0, 0, NULL);
	ioeng_submit(t->e, &r[0]);
	spin(t->l, 20);
	CU_ASSERT_FALSE(w[0].done);
	ioeng_fault_release(t->e);
	drive(t->l, before + 1);
	CU_ASSERT_EQUAL(w[0].res, 0);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:5:1"), 0);
	ioeng_fault_release(t->e);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, 0, 0, bs, a), -EIO);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "seek:*:stall"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:*:stalled"), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, ""), 0);
	free(a);
	free(b);
	free(in);
}

/* Registered buffers (io_uring: fixed reads/writes; others ignore them). */
static void
check_fixed(struct target *t)
{
	size_t len = 65536;
	struct iovec iov[2] = {
		{ .iov_base = xalloc(len), .iov_len = len },
		{ .iov_base = xalloc(len), .iov_len = len },
	};
	char *plain = xalloc(len);

	CU_ASSERT_EQUAL(ioeng_register_buffers(t->e, iov, 2), 0);
	if (t->c->kind == IOENG_URING)
		CU_ASSERT_EQUAL(ioeng_register_buffers(t->e, iov, 2), -EBUSY);
	fill(iov[0].iov_base, len, 9);
	CU_ASSERT_EQUAL(do_io_idx(t, IO_WRITE, 0, 30 * MiB, len, iov[0].iov_base, 0), 0);
	CU_ASSERT_EQUAL(do_io_idx(t, IO_READ, 0, 30 * MiB, len, iov[1].iov_base, 1), 0);
	CU_ASSERT_EQUAL(memcmp(iov[0].iov_base, iov[1].iov_base, len), 0);
	/* An index that does not cover the buffer falls back to plain I/O. */
	CU_ASSERT_EQUAL(do_io_idx(t, IO_READ, 0, 30 * MiB, len, plain, 1), 0);
	CU_ASSERT_EQUAL(memcmp(plain, iov[0].iov_base, len), 0);
	/* Partial buffer use: the second half of buffer 0. */
	CU_ASSERT_EQUAL(do_io_idx(t, IO_READ, 0, 30 * MiB, len / 2,
	    (char *)iov[0].iov_base + len / 2, 0), 0);
	CU_ASSERT_EQUAL(memcmp((char *)iov[0].iov_base + len / 2, plain, len / 2), 0);
	free(plain);
	/* Registered pages stay pinned by the ring; no request uses them. */
	free(iov[0].iov_base);
	free(iov[1].iov_base);
}

/* ioeng_close() waits for requests still in flight, stalled ones too;
 * data is on disk. */
static void
check_close_inflight(struct target *t)
{
	size_t bs = 65536;
	struct io_req r[16];
	struct waiter w[16];
	char *out = xalloc(bs * 16), *in = xalloc(bs * 16);
	unsigned before = completions;

	CU_ASSERT_EQUAL(ioeng_fault_set(t->e, "write:41943040-41943040:stall"), 0);
	for (int i = 0; i < 16; i++) {
		fill(out + i * bs, bs, 200 + (uint64_t)i);
		req_init(&r[i], &w[i], IO_WRITE, 0, 40 * MiB + i * bs, bs, out + i * bs);
		ioeng_submit(t->e, &r[i]);
	}
	ioeng_close(t->e);
	t->e = NULL;
	CU_ASSERT_EQUAL(completions, before + 16);
	for (int i = 0; i < 16; i++)
		CU_ASSERT_TRUE(w[i].done && w[i].res == 0);
	CU_ASSERT_EQUAL_FATAL(open_engine(t, false, &t->e), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 40 * MiB, bs * 16, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, bs * 16), 0);
	free(out);
	free(in);
}

/* A read-only engine refuses every modification with -EROFS. */
static void
check_read_only(struct target *t)
{
	struct target ro = *t;
	char *buf = xalloc(4096);

	CU_ASSERT_EQUAL_FATAL(open_engine(&ro, true, &ro.e), 0);
	CU_ASSERT_EQUAL(do_io(&ro, IO_READ, 0, 0, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(&ro, IO_WRITE, 0, 0, 4096, buf), -EROFS);
	CU_ASSERT_EQUAL(do_io(&ro, IO_TRIM, 0, 0, 4096, NULL), -EROFS);
	CU_ASSERT_EQUAL(do_io(&ro, IO_WRITE_ZEROES, 0, 0, 4096, NULL), -EROFS);
	CU_ASSERT_EQUAL(do_io(&ro, IO_FLUSH, 0, 0, 0, NULL), 0);
	ioeng_close(ro.e);
	free(buf);
}

static void
battery(struct target *t)
{
	CU_ASSERT_EQUAL_FATAL(open_engine(t, false, &t->e), 0);
	check_props(t);
	check_rw(t);
	check_trim(t);
	check_zeroes(t);
	check_many(t);
	check_reject(t);
	check_faults(t);
	check_stall(t);
	check_fixed(t);
	check_close_inflight(t);
	check_read_only(t);
	ioeng_close(t->e);
}

/* Run the battery on a file, then on a loop device over another file. */
static void
run_cfg(const struct cfg *c)
{
	struct target t = { .c = c };
	char *file, *dev;
	int hold = -1;

	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 64, c->uring_loop, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(loop_ring(t.l) != NULL, c->uring_loop);
	file = make_file("/var/tmp", TSIZE);
	t.path = t.file = file;
	battery(&t);
	rm_file(file);

	file = make_file("/var/tmp", TSIZE);
	dev = loop_attach(file, &hold);
	if (dev != NULL) {
		t.path = dev;
		t.file = file;
		t.dev = true;
		battery(&t);
		loop_detach(dev, hold);
		free(dev);
	}
	rm_file(file);
	loop_free(t.l);
}

#define CFG_TEST(name, k, u, d) \
	static void name(void) { static const struct cfg c = { k, u, d }; run_cfg(&c); }
CFG_TEST(test_uring_direct, IOENG_URING, true, true)
CFG_TEST(test_uring_buffered, IOENG_URING, true, false)
CFG_TEST(test_aio_uring_loop, IOENG_LIBAIO, true, true)
CFG_TEST(test_aio_epoll_loop, IOENG_LIBAIO, false, true)
CFG_TEST(test_aio_buffered_epoll, IOENG_LIBAIO, false, false)
CFG_TEST(test_sync_uring_loop, IOENG_SYNC, true, true)
CFG_TEST(test_sync_epoll_loop, IOENG_SYNC, false, true)
CFG_TEST(test_sync_buffered_epoll, IOENG_SYNC, false, false)

/* ---- single-purpose tests ----------------------------------------------- */

static void
test_kind_names(void)
{
	enum ioeng_kind k;

	CU_ASSERT_STRING_EQUAL(ioeng_kind_name(IOENG_URING), "io_uring");
	CU_ASSERT_STRING_EQUAL(ioeng_kind_name(IOENG_LIBAIO), "libaio");
	CU_ASSERT_STRING_EQUAL(ioeng_kind_name(IOENG_SYNC), "sync");
	CU_ASSERT_EQUAL(ioeng_kind_parse("io_uring", &k), 0);
	CU_ASSERT_EQUAL(k, IOENG_URING);
	CU_ASSERT_EQUAL(ioeng_kind_parse("libaio", &k), 0);
	CU_ASSERT_EQUAL(k, IOENG_LIBAIO);
	CU_ASSERT_EQUAL(ioeng_kind_parse("sync", &k), 0);
	CU_ASSERT_EQUAL(k, IOENG_SYNC);
	CU_ASSERT_EQUAL(ioeng_kind_parse("uring", &k), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_kind_parse("", &k), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_kind_parse("SYNC", &k), -EINVAL);
}

/* Character devices, directories, missing paths and bad options. */
static void
test_open_errors(void)
{
	struct ioeng_opts o = { .kind = IOENG_URING, .io_align = 4096 };
	struct loop *l;
	struct ioeng *e = NULL;
	char *file = make_file("/var/tmp", MiB);

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, true, NULL), 0);
	CU_ASSERT_EQUAL(ioeng_open(l, "/dev/null", &o, &e), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_open(l, "/var/tmp", &o, &e), -EINVAL);
	CU_ASSERT_EQUAL(ioeng_open(l, "/var/tmp/blkmirror-no-such-file", &o, &e), -ENOENT);
	o.io_align = 1000;
	CU_ASSERT_EQUAL(ioeng_open(l, file, &o, &e), -EINVAL);
	o.io_align = 4096;
	o.kind = (enum ioeng_kind)7;
	CU_ASSERT_EQUAL(ioeng_open(l, file, &o, &e), -EINVAL);
	o.kind = IOENG_SYNC;
	setenv("BLKMIRROR_FAULT", "write:nonsense", 1);
	CU_ASSERT_EQUAL(ioeng_open(l, file, &o, &e), -EINVAL);
	unsetenv("BLKMIRROR_FAULT");
	CU_ASSERT_PTR_NULL(e);
	loop_free(l);
	rm_file(file);
}

/* BLKMIRROR_FAULT at open arms the fault; the next matching write heals. */
static void
test_fault_env(void)
{
	struct cfg c = { IOENG_URING, true, true };
	struct ioeng_opts o = { .kind = IOENG_URING, .direct = true, .io_align = 4096 };
	struct target t = { .c = &c };
	char *buf = xalloc(4096), *file = make_file("/var/tmp", MiB);

	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, true, NULL), 0);
	setenv("BLKMIRROR_FAULT", "write:0-4095:5:1", 1);
	CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
	unsetenv("BLKMIRROR_FAULT");
	fill(buf, 4096, 10);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, 0, 4096, 4096, buf), 0);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, 0, 0, 4096, buf), -EIO);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, 0, 0, 4096, buf), 0);
	CU_ASSERT_EQUAL(ioeng_get_stats(t.e)->errors, 1);
	ioeng_close(t.e);
	loop_free(t.l);
	rm_file(file);
	free(buf);
}

/*
 * ioeng_seek(): SEEK_DATA / SEEK_HOLE on a file with one data block, -ENXIO
 * past the last data, and a "seek" fault failing the calls it names.
 */
static void
test_seek(void)
{
	struct cfg c = { IOENG_SYNC, false, true };
	struct ioeng_opts o = { .kind = IOENG_SYNC, .io_align = 4096 };
	struct target t = { .c = &c };
	char *buf = xalloc(65536), *file = make_file("/var/tmp", MiB);
	int64_t data;

	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, true, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
	fill(buf, 65536, 11);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, 0, 512 * 1024, 65536, buf), 0);
	data = ioeng_seek(t.e, 0, SEEK_DATA);
	/* A filesystem without extent maps calls everything data. */
	CU_ASSERT(data == 0 || (data > 0 && data <= 512 * 1024));
	if (data > 0) {
		CU_ASSERT_EQUAL(ioeng_seek(t.e, 512 * 1024, SEEK_HOLE), 576 * 1024);
		CU_ASSERT_EQUAL(ioeng_seek(t.e, 768 * 1024, SEEK_DATA), -ENXIO);
	}
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 2 * MiB, SEEK_DATA), -ENXIO);
	/* The second seek in [0, 1 MiB) fails with EIO, once. */
	CU_ASSERT_EQUAL(ioeng_fault_set(t.e, "seek:0-1048575:5:1:1"), 0);
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 0, SEEK_DATA), data);
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 2 * MiB, SEEK_DATA), -ENXIO);
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 4096, SEEK_DATA), -EIO);
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 0, SEEK_DATA), data);
	/* Requests are not seeks: a seek fault leaves them alone. */
	CU_ASSERT_EQUAL(ioeng_fault_set(t.e, "seek:*:22"), 0);
	CU_ASSERT_EQUAL(ioeng_seek(t.e, 0, SEEK_HOLE), -EINVAL);
	CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, 512 * 1024, 4096, buf), 0);
	ioeng_close(t.e);
	loop_free(t.l);
	rm_file(file);
	free(buf);
}

/* Without io_uring the loop runs on epoll and io_uring becomes libaio. */
static void
test_fallback(void)
{
	struct cfg c = { IOENG_LIBAIO, false, true };
	struct ioeng_opts o = { .kind = IOENG_URING, .direct = true, .io_align = 4096 };
	struct target t = { .c = &c };
	char *out = xalloc(MiB), *in = xalloc(MiB), *file = make_file("/var/tmp", 4 * MiB);
	int err = 0;

	setenv("BLKMIRROR_NO_IO_URING", "1", 1);
	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, true, &err), 0);
	CU_ASSERT_EQUAL(err, -EPERM);
	CU_ASSERT_PTR_NULL(loop_ring(t.l));
	CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
	unsetenv("BLKMIRROR_NO_IO_URING");
	CU_ASSERT_EQUAL(ioeng_get_kind(t.e), IOENG_LIBAIO);
	CU_ASSERT_TRUE(ioeng_is_direct(t.e));
	fill(out, MiB, 11);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, IO_F_FUA, MiB, MiB, out), 0);
	CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, MiB, MiB, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, MiB), 0);
	/* Buffer registration is a no-op there. */
	struct iovec iov = { .iov_base = in, .iov_len = MiB };
	CU_ASSERT_EQUAL(ioeng_register_buffers(t.e, &iov, 1), 0);
	ioeng_close(t.e);
	loop_free(t.l);
	rm_file(file);
	free(out);
	free(in);
}

/* Without io_uring and with buffered I/O, io_uring becomes sync, not libaio
 * (kernel AIO would block in io_submit on a buffered fd). */
static void
test_fallback_buffered(void)
{
	struct cfg c = { IOENG_SYNC, false, false };
	struct ioeng_opts o = { .kind = IOENG_URING, .direct = false, .io_align = 4096 };
	struct target t = { .c = &c };
	char *out = xalloc(MiB), *in = xalloc(MiB), *file = make_file("/var/tmp", 4 * MiB);

	setenv("BLKMIRROR_NO_IO_URING", "1", 1);
	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, true, NULL), 0);
	CU_ASSERT_PTR_NULL(loop_ring(t.l));
	CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
	unsetenv("BLKMIRROR_NO_IO_URING");
	CU_ASSERT_EQUAL(ioeng_get_kind(t.e), IOENG_SYNC);
	CU_ASSERT_FALSE(ioeng_is_direct(t.e));
	fill(out, MiB, 12);
	CU_ASSERT_EQUAL(do_io(&t, IO_WRITE, IO_F_FUA, MiB, MiB, out), 0);
	CU_ASSERT_EQUAL(do_io(&t, IO_FLUSH, 0, 0, 0, NULL), 0);
	CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, MiB, MiB, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, MiB), 0);
	ioeng_close(t.e);
	loop_free(t.l);
	rm_file(file);
	free(out);
	free(in);
}

/* O_DIRECT only when asked and when the DIO alignment divides io_align. */
static void
test_direct_choice(void)
{
	struct ioeng_opts o = { .kind = IOENG_URING, .direct = true, .io_align = 512 };
	struct loop *l;
	struct ioeng *e;
	char *file = make_file("/var/tmp", MiB);

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, true, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(ioeng_open(l, file, &o, &e), 0);
	/* ext4 on this machine: 512-byte DIO alignment. */
	CU_ASSERT_EQUAL(ioeng_is_direct(e), ioeng_alignment(e) <= 512);
	CU_ASSERT_EQUAL((fcntl(ioeng_fd(e), F_GETFL) & O_DIRECT) != 0, ioeng_is_direct(e));
	ioeng_close(e);
	o.direct = false;
	o.io_align = 4096;
	CU_ASSERT_EQUAL_FATAL(ioeng_open(l, file, &o, &e), 0);
	CU_ASSERT_FALSE(ioeng_is_direct(e));
	CU_ASSERT_EQUAL(fcntl(ioeng_fd(e), F_GETFL) & O_DIRECT, 0);
	/* buffered: only the sector size of a file (512) constrains I/O */
	CU_ASSERT_EQUAL(ioeng_alignment(e), 512);
	ioeng_close(e);
	loop_free(l);
	rm_file(file);
}

/*
 * Learning which fallocate modes the file takes changes nothing in it: on
 * ext4 (/var/tmp here) a ZERO_RANGE past the end allocates a block there
 * that a hole punched past the end does not give back.
 */
static void
test_probe_no_block(void)
{
	struct ioeng_opts o = { .kind = IOENG_URING, .direct = false, .io_align = 4096 };
	struct loop *l;
	struct ioeng *e;
	struct stat st;
	char *file = make_file("/var/tmp", MiB);

	CU_ASSERT_EQUAL_FATAL(loop_new(&l, 16, true, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(ioeng_open(l, file, &o, &e), 0);
	/* ext4 zeroes ranges without writing: the probe found it out. */
	CU_ASSERT_TRUE(ioeng_can_fast_zero(e, IO_F_FAST_ZERO | IO_F_NO_HOLE));
	CU_ASSERT_EQUAL(file_blocks(file), 0);
	ioeng_close(e);
	CU_ASSERT_EQUAL_FATAL(stat(file, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, MiB);
	CU_ASSERT_EQUAL(st.st_blocks, 0);
	loop_free(l);
	rm_file(file);
}

static const struct cfg all_engines[] = {
	{ IOENG_URING, true, true },
	{ IOENG_LIBAIO, true, true },
	{ IOENG_LIBAIO, false, false },
	{ IOENG_SYNC, true, true },
	{ IOENG_SYNC, false, false },
};

/* A backing file that shrank under the engine: a short read is -EIO. */
static void
test_short_read(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(all_engines); i++) {
		const struct cfg *c = &all_engines[i];
		struct ioeng_opts o = { .kind = c->kind, .direct = c->direct, .io_align = 4096 };
		struct target t = { .c = c };
		char *buf = xalloc(MiB), *file = make_file("/var/tmp", MiB);

		CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, c->uring_loop, NULL), 0);
		CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
		CU_ASSERT_EQUAL(truncate(file, MiB / 2), 0);
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, 0, MiB, buf), -EIO);
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, 0, MiB / 2, buf), 0);
		ioeng_close(t.e);
		loop_free(t.l);
		rm_file(file);
		free(buf);
	}
}

/*
 * tmpfs punches holes but has no ZERO_RANGE: NO_HOLE falls back to writing
 * zero buffers (3 MiB: several chunks), FAST_ZERO | NO_HOLE gives -ENOTSUP
 * and leaves the data alone.
 */
static void
test_zero_fallback(void)
{
	struct statfs sfs;
	size_t len = 3 * MiB;

	if (statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC) {
		printf("\n  [skipped: /dev/shm is not tmpfs]\n");
		CU_PASS("zero fallback skipped: no tmpfs at /dev/shm");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(all_engines); i++) {
		const struct cfg *c = &all_engines[i];
		struct ioeng_opts o = { .kind = c->kind, .io_align = 4096 };
		struct target t = { .c = c };
		char *buf = xalloc(len), *in = xalloc(len), *file = make_file("/dev/shm", 8 * MiB);

		t.file = file;
		CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, c->uring_loop, NULL), 0);
		CU_ASSERT_EQUAL_FATAL(ioeng_open(t.l, file, &o, &t.e), 0);
		/* Known at open, before any request tried ZERO_RANGE. */
		CU_ASSERT_FALSE(ioeng_can_fast_zero(t.e, IO_F_NO_HOLE | IO_F_FAST_ZERO));
		CU_ASSERT_TRUE(ioeng_can_fast_zero(t.e, IO_F_FAST_ZERO));
		CU_ASSERT_TRUE(ioeng_can_fast_zero(t.e, IO_F_NO_HOLE));
		put_pattern(&t, MiB, len, buf, 12);
		CU_ASSERT_EQUAL(do_io(&t, IO_WRITE_ZEROES, IO_F_NO_HOLE | IO_F_FAST_ZERO,
		    MiB, len, NULL), -ENOTSUP);
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, MiB, len, in), 0);
		CU_ASSERT_EQUAL(memcmp(in, buf, len), 0);
		CU_ASSERT_EQUAL(do_io(&t, IO_WRITE_ZEROES, IO_F_NO_HOLE | IO_F_FUA,
		    MiB, len, NULL), 0);
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, MiB, len, in), 0);
		CU_ASSERT_TRUE(is_zero(in, len));
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, 0, MiB, in), 0);
		CU_ASSERT_TRUE(is_zero(in, MiB));
		/* Hole punching works on tmpfs, so FAST_ZERO alone succeeds. */
		put_pattern(&t, MiB, len, buf, 13);
		CU_ASSERT_EQUAL(do_io(&t, IO_WRITE_ZEROES, IO_F_FAST_ZERO, MiB, len, NULL), 0);
		memset(in, 1, len);
		CU_ASSERT_EQUAL(do_io(&t, IO_READ, 0, MiB, len, in), 0);
		CU_ASSERT_TRUE(is_zero(in, len));
		ioeng_close(t.e);
		loop_free(t.l);
		rm_file(file);
		free(buf);
		free(in);
	}
}

/* The quirk checks on one target (engine already open). */
static void
check_quirks(struct target *t)
{
	size_t len = 3 * MiB;
	char *buf = xalloc(len), *in = xalloc(len);
	uint64_t b0;

	/* FUA as write + fdatasync; libaio's fdatasync on a thread. */
	fill(buf, 65536, 14);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, IO_F_FUA, 0, 65536, buf), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, 0, 65536, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, buf, 65536), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	/* No fast zeroing at all: FAST_ZERO refuses and leaves the data. */
	CU_ASSERT_FALSE(ioeng_can_fast_zero(t->e, IO_F_FAST_ZERO));
	put_pattern(t, MiB, len, buf, 15);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, IO_F_FAST_ZERO, MiB, len, NULL), -ENOTSUP);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, MiB, len, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, buf, len), 0);
	/* Zero writes, in 1 MiB chunks, keep the blocks allocated. */
	b0 = file_blocks(t->file);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE_ZEROES, IO_F_FUA, MiB, len, NULL), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, MiB, len, in), 0);
	CU_ASSERT_TRUE(is_zero(in, len));
	CU_ASSERT_EQUAL(do_io(t, IO_FLUSH, 0, 0, 0, NULL), 0);
	CU_ASSERT_TRUE(file_blocks(t->file) >= b0);
	free(buf);
	free(in);
}

/* Open t with the test quirks set in the environment, run check_quirks. */
static void
quirks_on(struct target *t)
{
	setenv("BLKMIRROR_IOENG_QUIRKS", "no_dsync,no_fdsync,no_punch,no_zero_range", 1);
	CU_ASSERT_EQUAL_FATAL(open_engine(t, false, &t->e), 0);
	unsetenv("BLKMIRROR_IOENG_QUIRKS");
	check_quirks(t);
	ioeng_close(t->e);
}

/*
 * BLKMIRROR_IOENG_QUIRKS drives every fallback: on a file for each engine,
 * and on a loop device with io_uring and libaio.
 */
static void
test_quirks(void)
{
	struct target t = { 0 };
	char *file, *dev;
	int hold = -1;

	for (size_t i = 0; i < ARRAY_SIZE(all_engines); i++) {
		t.c = &all_engines[i];
		CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, t.c->uring_loop, NULL), 0);
		t.path = t.file = file = make_file("/var/tmp", TSIZE);
		quirks_on(&t);
		rm_file(file);
		if (i < 2) {
			file = make_file("/var/tmp", TSIZE);
			dev = loop_attach(file, &hold);
			if (dev != NULL) {
				t.path = dev;
				t.file = file;
				t.dev = true;
				quirks_on(&t);
				t.dev = false;
				loop_detach(dev, hold);
				free(dev);
			}
			rm_file(file);
		}
		loop_free(t.l);
	}
	setenv("BLKMIRROR_IOENG_QUIRKS", "no_dsync,bogus", 1);
	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 16, true, NULL), 0);
	t.c = &all_engines[0];
	t.path = file = make_file("/var/tmp", MiB);
	CU_ASSERT_EQUAL(open_engine(&t, false, &t.e), -EINVAL);
	unsetenv("BLKMIRROR_IOENG_QUIRKS");
	rm_file(file);
	loop_free(t.l);
}

/* Open t->path with opts.inline_writes and the quirks (NULL: none). */
static void
open_with_quirks(struct target *t, bool inl, const char *quirks)
{
	if (quirks != NULL)
		setenv("BLKMIRROR_IOENG_QUIRKS", quirks, 1);
	opt_inline = inl;
	CU_ASSERT_EQUAL_FATAL(open_engine(t, false, &t->e), 0);
	opt_inline = false;
	unsetenv("BLKMIRROR_IOENG_QUIRKS");
}

/* Write len bytes of pattern seed at off and read them back. */
static void
write_check(struct target *t, uint32_t flags, uint64_t off, size_t len, uint64_t seed)
{
	char *out = xalloc(len), *in = xalloc(len);

	fill(out, len, seed);
	CU_ASSERT_EQUAL(do_io(t, IO_WRITE, flags, off, len, out), 0);
	CU_ASSERT_EQUAL(do_io(t, IO_READ, 0, off, len, in), 0);
	CU_ASSERT_EQUAL(memcmp(in, out, len), 0);
	free(out);
	free(in);
}

/*
 * With opts.inline_writes the io_uring engine writes small buffered writes
 * without FUA on the loop thread (still completing on a later turn: do_io
 * checks that) and backs off for a while after one that blocked; never
 * without the option, nor with O_DIRECT.
 */
static void
test_uring_inline(void)
{
	static const struct cfg buffered = { IOENG_URING, true, false };
	static const struct cfg direct = { IOENG_URING, true, true };
	struct target t = { .c = &buffered };
	const struct ioeng_stats *s;
	char *file;

	CU_ASSERT_EQUAL_FATAL(loop_new(&t.l, 64, true, NULL), 0);
	t.path = t.file = file = make_file("/var/tmp", TSIZE);

	/* fast_inline: a write slowed by a loaded machine is no back-off. */
	open_with_quirks(&t, true, "fast_inline");
	s = ioeng_get_stats(t.e);
	write_check(&t, 0, 0, 4096, 21);
	CU_ASSERT_EQUAL(s->inline_writes, 1);
	write_check(&t, 0, MiB, IOENG_INLINE_WRITE_MAX, 22);
	CU_ASSERT_EQUAL(s->inline_writes, 2);
	/* FUA (RWF_DSYNC: waits for the disk) and larger writes: io_uring. */
	write_check(&t, IO_F_FUA, 2 * MiB, 4096, 23);
	write_check(&t, 0, 3 * MiB, 2 * IOENG_INLINE_WRITE_MAX, 24);
	CU_ASSERT_EQUAL(s->inline_writes, 2);
	CU_ASSERT_EQUAL(s->inline_backoffs, 0);
	CU_ASSERT_EQUAL(s->ops[IO_WRITE], 4);
	ioeng_close(t.e);

	/* A write that blocked: the next ones go to io_uring for a while. */
	open_with_quirks(&t, true, "slow_inline");
	s = ioeng_get_stats(t.e);
	write_check(&t, 0, 4 * MiB, 4096, 25);
	CU_ASSERT_EQUAL(s->inline_writes, 1);
	CU_ASSERT_EQUAL(s->inline_backoffs, 1);
	write_check(&t, 0, 5 * MiB, 4096, 26);
	write_check(&t, 0, 6 * MiB, 8192, 27);
	CU_ASSERT_EQUAL(s->inline_writes, 1);
	CU_ASSERT_EQUAL(s->inline_backoffs, 1);
	CU_ASSERT_EQUAL(s->ops[IO_WRITE], 3);
	ioeng_close(t.e);

	open_with_quirks(&t, false, NULL);
	s = ioeng_get_stats(t.e);
	write_check(&t, 0, 7 * MiB, 4096, 28);
	CU_ASSERT_EQUAL(s->inline_writes, 0);
	ioeng_close(t.e);

	t.c = &direct;
	open_with_quirks(&t, true, NULL);
	CU_ASSERT_TRUE(ioeng_is_direct(t.e));
	s = ioeng_get_stats(t.e);
	write_check(&t, 0, 8 * MiB, 4096, 29);
	CU_ASSERT_EQUAL(s->inline_writes, 0);
	ioeng_close(t.e);

	rm_file(file);
	loop_free(t.l);
}

int
main(void)
{
	CU_pSuite s;

	log_init(LOG_TO_STDERR, getenv("IOENG_TEST_DEBUG") ? LOG_DEBUG : LOG_INFO);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("ioengine", NULL, suite_cleanup);
	CU_add_test(s, "kind_names", test_kind_names);
	CU_add_test(s, "open_errors", test_open_errors);
	CU_add_test(s, "direct_choice", test_direct_choice);
	CU_add_test(s, "probe_no_block", test_probe_no_block);
	CU_add_test(s, "fallback_buffered", test_fallback_buffered);
	CU_add_test(s, "fault_env", test_fault_env);
	CU_add_test(s, "seek", test_seek);
	CU_add_test(s, "fallback_no_io_uring", test_fallback);
	CU_add_test(s, "short_read", test_short_read);
	CU_add_test(s, "zero_fallback_tmpfs", test_zero_fallback);
	CU_add_test(s, "quirks_fallbacks", test_quirks);
	CU_add_test(s, "io_uring_direct", test_uring_direct);
	CU_add_test(s, "io_uring_buffered", test_uring_buffered);
	CU_add_test(s, "io_uring_inline", test_uring_inline);
	CU_add_test(s, "libaio_uring_loop", test_aio_uring_loop);
	CU_add_test(s, "libaio_epoll_loop", test_aio_epoll_loop);
	CU_add_test(s, "libaio_buffered_epoll", test_aio_buffered_epoll);
	CU_add_test(s, "sync_uring_loop", test_sync_uring_loop);
	CU_add_test(s, "sync_epoll_loop", test_sync_epoll_loop);
	CU_add_test(s, "sync_buffered_epoll", test_sync_buffered_epoll);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
