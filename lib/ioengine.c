/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The io engine front: open, request life cycle, fault injection, stats.
 * The engines (ioeng_uring.c, ioeng_aio.c, ioeng_sync.c) only run
 * primitives; see ioeng_internal.h for the split.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <liburing.h>

#include "ioeng_internal.h"
#include "log.h"
#include "util.h"

/* statx(2) DIO alignment: kernel 6.1; headers may predate it. */
#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN		0x00002000U
#define STX_DIO_MEM_ALIGN(s)	(((const uint32_t *)(const void *)(s))[152 / 4])
#define STX_DIO_OFFSET_ALIGN(s)	(((const uint32_t *)(const void *)(s))[156 / 4])
#else
#define STX_DIO_MEM_ALIGN(s)	((s)->stx_dio_mem_align)
#define STX_DIO_OFFSET_ALIGN(s)	((s)->stx_dio_offset_align)
#endif

/*
 * Stages (io_req.stage).  Every opcode may end with ST_SYNC, the fdatasync
 * that makes a FUA request durable when nothing before it did.
 */
enum {
	WR_PLAIN = 0,		/* write: last chunk written without RWF_DSYNC */
	WR_DSYNC = 1,		/* write: last chunk written with RWF_DSYNC */
	WZ_PUNCH = 0,		/* write-zeroes: fallocate PUNCH_HOLE */
	WZ_ZERO_RANGE = 1,	/* write-zeroes: fallocate ZERO_RANGE */
	WZ_WRITE = 2,		/* write-zeroes: write zero buffers */
	ST_SYNC = 8,		/* any: trailing fdatasync for FUA */
	ST_EARLY = 9,		/* rejected at submit, never issued */
};

#define IO_F_ALL	(IO_F_FUA | IO_F_NO_HOLE | IO_F_FAST_ZERO)

static const char *const kind_names[] = {
	[IOENG_URING] = "io_uring",
	[IOENG_LIBAIO] = "libaio",
	[IOENG_SYNC] = "sync",
};

/* Fault spec opcode past enum io_opcode: ioeng_seek() (never a request). */
#define FAULT_SEEK	(IO_WRITE_ZEROES + 1)

/* Opcode names as the fault spec and log lines spell them. */
static const char *const op_names[] = {
	[IO_READ] = "read",
	[IO_WRITE] = "write",
	[IO_FLUSH] = "flush",
	[IO_TRIM] = "trim",
	[IO_WRITE_ZEROES] = "zero",
	[FAULT_SEEK] = "seek",
};

const char *
ioeng_kind_name(enum ioeng_kind k)
{
	if ((unsigned)k >= ARRAY_SIZE(kind_names))
		return "unknown";
	return kind_names[k];
}

int
ioeng_kind_parse(const char *s, enum ioeng_kind *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(kind_names); i++) {
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum ioeng_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- fault injection ---------------------------------------------------- */

/* Decimal or 0x-hex unsigned number filling all of s. */
static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	return 0;
}

/* "op:range:errno[:count[:skip]]" -> f; range is "*" or "LO-HI" (inclusive);
 * errno "stall" holds requests (not seeks: those are no requests). */
static int
fault_parse(const char *spec, struct ioeng_fault *f)
{
	char buf[160], *field[5], *save = NULL, *p, *dash;
	uint64_t v;
	int n = 0;

	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	for (p = strtok_r(buf, ":", &save); p != NULL; p = strtok_r(NULL, ":", &save)) {
		if (n == 5)
			return -EINVAL;
		field[n++] = p;
	}
	if (n < 3)
		return -EINVAL;
	memset(f, 0, sizeof(*f));
	f->opcode = UINT8_MAX;
	for (size_t i = 0; i < ARRAY_SIZE(op_names); i++)
		if (strcmp(field[0], op_names[i]) == 0)
			f->opcode = (uint8_t)i;
	if (f->opcode == UINT8_MAX)
		return -EINVAL;
	if (strcmp(field[1], "*") == 0) {
		f->hi = UINT64_MAX;
	} else {
		if ((dash = strchr(field[1], '-')) == NULL)
			return -EINVAL;
		*dash = '\0';
		if (parse_u64(field[1], &f->lo) < 0 || parse_u64(dash + 1, &f->hi) < 0 ||
		    f->lo > f->hi)
			return -EINVAL;
	}
	if (strcmp(field[2], "stall") == 0 && f->opcode != FAULT_SEEK)
		f->stall = true;
	else if (parse_u64(field[2], &v) < 0 || v == 0 || v > 4095)
		return -EINVAL;
	else
		f->err = (int)v;
	f->count = UINT64_MAX;
	if (n > 3 && (parse_u64(field[3], &f->count) < 0 || f->count == 0))
		return -EINVAL;
	if (n > 4 && parse_u64(field[4], &f->skip) < 0)
		return -EINVAL;
	f->active = true;
	return 0;
}

static void admit(struct ioeng *e, struct io_req *r);

/* Submit the requests a stall fault held, in their order, past any fault. */
static void
stall_release(struct ioeng *e)
{
	struct io_req *r;

	if (e->stalled == 0)
		return;
	log_notice("%s: fault injection: releasing %u stalled request(s)", e->path,
	    e->stalled);
	while ((r = e->stall_head) != NULL) {
		e->stall_head = r->next;
		r->next = NULL;
		admit(e, r);
	}
	e->stall_tail = NULL;
	e->stalled = 0;
}

int
ioeng_fault_set(struct ioeng *e, const char *spec)
{
	struct ioeng_fault f;
	int ret;

	if (spec == NULL || *spec == '\0') {
		memset(&e->fault, 0, sizeof(e->fault));
		stall_release(e);
		return 0;
	}
	ret = fault_parse(spec, &f);
	if (ret < 0) {
		log_err("%s: bad fault spec \"%s\" (want op:lo-hi|*:errno|stall[:count[:skip]])",
		    e->path, spec);
		return ret;
	}
	e->fault = f;
	log_notice("%s: fault injection armed: %s", e->path, spec);
	stall_release(e);
	return 0;
}

void
ioeng_fault_release(struct ioeng *e)
{
	if (e->fault.stall)
		memset(&e->fault, 0, sizeof(e->fault));
	stall_release(e);
}

/* 0, or -errno when the armed fault hits opcode on offset+len, or 1 when
 * that fault is a stall (len 0 is taken as one byte; the request is
 * validated already). */
static int
fault_hit(struct ioeng *e, uint8_t opcode, uint64_t offset, uint64_t len)
{
	struct ioeng_fault *f = &e->fault;
	uint64_t last = offset + (len > 0 ? len - 1 : 0);

	if (!f->active || opcode != f->opcode || last < f->lo || offset > f->hi)
		return 0;
	if (f->skip > 0) {
		f->skip--;
		return 0;
	}
	if (f->count != UINT64_MAX && --f->count == 0)
		f->active = false;
	log_debug("%s: injected fault: %s %" PRIu64 "+%" PRIu64 " -> %s %d",
	    e->path, op_names[opcode], offset, len, f->stall ? "stall" : "errno", f->err);
	return f->stall ? 1 : -f->err;
}

static int
fault_check(struct ioeng *e, const struct io_req *r)
{
	return fault_hit(e, r->opcode, r->offset, r->len);
}

/* ---- request plans ------------------------------------------------------- */

/* Allocate the zero buffer the write-zeroes fallback writes from. */
static int
zero_buf_get(struct ioeng *e)
{
	if (e->zero_buf != NULL)
		return 0;
	e->zero_buf = aligned_alloc(MAX(4096u, e->mem_align), IOENG_ZERO_CHUNK);
	if (e->zero_buf == NULL)
		return -ENOMEM;
	memset(e->zero_buf, 0, IOENG_ZERO_CHUNK);
	return 0;
}

/*
 * Write-zeroes, first applicable stage from r->stage on:
 *   WZ_PUNCH       unless NO_HOLE or unsupported (devices: needs hardware
 *                  WRITE_ZEROES, the kernel uses it with NOFALLBACK)
 *   WZ_ZERO_RANGE  unless unsupported; on devices without hardware zeroing
 *                  the kernel writes zero pages, which FAST_ZERO forbids
 *   WZ_WRITE       zero buffers, unless FAST_ZERO (then -ENOTSUP)
 */
/* Whether write-zeroes with these flags may punch holes. */
static bool
zero_may_punch(const struct ioeng *e, uint32_t flags)
{
	return !(flags & IO_F_NO_HOLE) && !e->no_punch;
}

/* Whether write-zeroes with these flags may use ZERO_RANGE. */
static bool
zero_may_zero_range(const struct ioeng *e, uint32_t flags)
{
	return !e->no_zero_range &&
	    !((flags & IO_F_FAST_ZERO) && e->blockdev && !e->hw_zeroes);
}

bool
ioeng_can_fast_zero(const struct ioeng *e, uint32_t flags)
{
	return !(flags & IO_F_FAST_ZERO) || zero_may_punch(e, flags) ||
	    zero_may_zero_range(e, flags);
}

static int
plan_zeroes(struct ioeng *e, struct io_req *r, struct ioprim *p)
{
	bool fast = r->flags & IO_F_FAST_ZERO;

	p->kind = PRIM_FALLOC;
	p->off = r->offset;
	p->len = r->len;
	if (r->stage == WZ_PUNCH) {
		if (zero_may_punch(e, r->flags)) {
			p->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
			return 1;
		}
		r->stage = WZ_ZERO_RANGE;
	}
	if (r->stage == WZ_ZERO_RANGE) {
		if (zero_may_zero_range(e, r->flags)) {
			p->mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
			return 1;
		}
		r->stage = WZ_WRITE;
	}
	if (fast)
		return -ENOTSUP;
	if (zero_buf_get(e) < 0)
		return -ENOMEM;
	p->kind = PRIM_WRITE;
	p->off = r->offset + r->done;
	p->len = MIN(r->len - r->done, IOENG_ZERO_CHUNK);
	p->buf = e->zero_buf;
	return 1;
}

/*
 * The next primitive of r from its opcode, stage and progress.  Returns 1
 * with *p filled, or the request's final result (0 or -errno).
 */
static int
plan(struct ioeng *e, struct io_req *r, struct ioprim *p)
{
	memset(p, 0, sizeof(*p));
	p->buf_index = -1;
	if (r->stage == ST_SYNC || r->opcode == IO_FLUSH) {
		p->kind = PRIM_FSYNC;
		return 1;
	}
	switch (r->opcode) {
	case IO_READ:
	case IO_WRITE:
		p->kind = r->opcode == IO_READ ? PRIM_READ : PRIM_WRITE;
		p->off = r->offset + r->done;
		p->len = MIN(r->len - r->done, IOENG_MAX_CHUNK);
		p->buf = (char *)r->buf + r->done;
		p->buf_index = r->buf_index;
		if (r->opcode == IO_WRITE) {
			bool dsync = (r->flags & IO_F_FUA) && !e->no_dsync;

			p->rw_flags = dsync ? RWF_DSYNC : 0;
			r->stage = dsync ? WR_DSYNC : WR_PLAIN;
		}
		return 1;
	case IO_TRIM:
		p->off = r->offset;
		p->len = r->len;
		if (e->blockdev) {
			p->kind = PRIM_DISCARD;
		} else {
			p->kind = PRIM_FALLOC;
			p->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		}
		return 1;
	case IO_WRITE_ZEROES:
		return plan_zeroes(e, r, p);
	}
	return -EINVAL;
}

/* After the main work: the FUA tail, or done. */
static int
fua_tail(struct io_req *r)
{
	if (r->flags & IO_F_FUA) {
		r->stage = ST_SYNC;
		return 1;
	}
	return 0;
}

/* Account a read/write primitive's transfer; 1: more to do, else final. */
static int
advance_rw(struct ioeng *e, struct io_req *r, int res)
{
	if (res == -EINVAL && r->opcode == IO_WRITE && r->stage == WR_DSYNC) {
		if (!e->no_dsync)
			log_info("%s: RWF_DSYNC refused: FUA writes use write + fdatasync",
			    e->path);
		e->no_dsync = true;
		return 1;
	}
	if (res < 0)
		return res;
	if (res == 0) {
		log_err("%s: %s at %" PRIu64 " transferred nothing (device shrank?)",
		    e->path, op_names[r->opcode], r->offset + r->done);
		return -EIO;
	}
	r->done += (uint64_t)res;
	if (r->done < r->len)
		return 1;
	if (r->opcode == IO_WRITE && r->stage == WR_PLAIN)
		return fua_tail(r);
	return 0;
}

/* Write-zeroes: move to the next stage when a fallocate mode is missing. */
static int
advance_zeroes(struct ioeng *e, struct io_req *r, int res)
{
	bool punch = r->stage == WZ_PUNCH;

	if (r->stage == WZ_WRITE) {
		if (res < 0)
			return res;
		if (res == 0)
			return -EIO;
		r->done += (uint64_t)res;
		return r->done < r->len ? 1 : fua_tail(r);
	}
	if (res == -EOPNOTSUPP) {
		bool *flag = punch ? &e->no_punch : &e->no_zero_range;

		if (!*flag)
			log_info("%s: fallocate %s unsupported", e->path,
			    punch ? "PUNCH_HOLE" : "ZERO_RANGE");
		*flag = true;
		r->stage++;
		return 1;
	}
	return res < 0 ? res : fua_tail(r);
}

/* Fold a primitive's result into r; 1: issue the next one, else final. */
static int
advance(struct ioeng *e, struct io_req *r, int res)
{
	if (r->stage == ST_SYNC || r->opcode == IO_FLUSH)
		return res < 0 ? res : 0;
	switch (r->opcode) {
	case IO_READ:
	case IO_WRITE:
		return advance_rw(e, r, res);
	case IO_TRIM:
		return res < 0 ? res : fua_tail(r);
	case IO_WRITE_ZEROES:
		return advance_zeroes(e, r, res);
	}
	return -EINVAL;
}

/* ---- life cycle ------------------------------------------------------------ */

static void start(struct ioeng *e, struct io_req *r);

/* Append r to the FIFO *head .. *tail (linked by next). */
static void
req_append(struct io_req **head, struct io_req **tail, struct io_req *r)
{
	if (*tail != NULL)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

/* Take queued requests while there is room under queue_depth. */
static void
pump(struct ioeng *e)
{
	while (e->wait_head != NULL && e->active < e->queue_depth) {
		struct io_req *r = e->wait_head;

		e->wait_head = r->next;
		if (e->wait_head == NULL)
			e->wait_tail = NULL;
		e->active++;
		start(e, r);
	}
}

/* Final completion: counters, queue, then the caller's callback. */
static void
finish(struct ioeng *e, struct io_req *r, int res)
{
	if (r->stage != ST_EARLY)
		e->active--;
	e->in_flight--;
	if (res < 0) {
		e->stats.errors++;
		log_debug("%s: %s %" PRIu64 "+%" PRIu64 " failed: %s", e->path,
		    r->opcode <= IO_WRITE_ZEROES ? op_names[r->opcode] : "?",
		    r->offset, r->len, strerror(-res));
	}
	if (r->opcode <= IO_WRITE_ZEROES) {
		e->stats.ops[r->opcode]++;
		if (res == 0)
			e->stats.bytes[r->opcode] += r->len;
	}
	pump(e);
	r->cb(r, res);
}

/* loop_op callback carrying a final result (rejects, plan results). */
static void
final_cb(struct loop_op *op, int res)
{
	finish(op->data, container_of(op, struct io_req, op), res);
}

static void
final_defer(struct ioeng *e, struct io_req *r, int res)
{
	r->op.cb = final_cb;
	r->op.data = e;
	loop_defer(e->l, &r->op, res);
}

/* Issue r's first primitive (r holds an active slot). */
static void
start(struct ioeng *e, struct io_req *r)
{
	struct ioprim p;
	int ret = plan(e, r, &p);

	if (ret > 0)
		e->ops->issue(e, r, &p);
	else
		final_defer(e, r, ret);
}

void
ioeng_prim_done(struct ioeng *e, struct io_req *r, int res)
{
	struct ioprim p;
	int ret;

	/* The one place where interrupted primitives are retried. */
	if (res == -EAGAIN || res == -EINTR)
		ret = 1;
	else
		ret = advance(e, r, res);
	if (ret > 0)
		ret = plan(e, r, &p);
	if (ret > 0)
		e->ops->issue(e, r, &p);
	else
		finish(e, r, ret);
}

void
ioeng_prim_cb(struct loop_op *op, int res)
{
	ioeng_prim_done(op->data, container_of(op, struct io_req, op), res);
}

void
ioeng_prim_fail(struct ioeng *e, struct io_req *r, int res)
{
	finish(e, r, res);
}

/* Requests the engine refuses: 0 or -errno (logged at debug). */
static int
validate(const struct ioeng *e, const struct io_req *r)
{
	if (r->opcode > IO_WRITE_ZEROES || (r->flags & ~IO_F_ALL) != 0)
		return -EINVAL;
	if (e->read_only && r->opcode != IO_READ && r->opcode != IO_FLUSH)
		return -EROFS;
	if (r->opcode == IO_FLUSH)
		return 0;
	if (r->len > e->size || r->offset > e->size - r->len)
		return -EINVAL;
	if (((r->offset | r->len) & (e->io_align - 1)) != 0)
		return -EINVAL;
	if (r->opcode == IO_READ || r->opcode == IO_WRITE) {
		if (r->buf == NULL && r->len > 0)
			return -EINVAL;
		if (e->direct && ((uintptr_t)r->buf & (e->mem_align - 1)) != 0)
			return -EINVAL;
	}
	return 0;
}

void
ioeng_submit(struct ioeng *e, struct io_req *r)
{
	int ret;

	r->done = 0;
	r->stage = 0;
	r->next = NULL;
	e->in_flight++;
	ret = validate(e, r);
	if (ret < 0)
		log_debug("%s: rejected %s %" PRIu64 "+%" PRIu64 ": %s", e->path,
		    r->opcode <= IO_WRITE_ZEROES ? op_names[r->opcode] : "?",
		    r->offset, r->len, strerror(-ret));
	else
		ret = fault_check(e, r);
	if (ret < 0 || (r->len == 0 && r->opcode != IO_FLUSH)) {
		r->stage = ST_EARLY;
		final_defer(e, r, MIN(ret, 0));	/* empty: nothing to stall */
		return;
	}
	if (ret > 0) {
		/* Stalled: held, in flight, until stall_release(). */
		req_append(&e->stall_head, &e->stall_tail, r);
		e->stalled++;
		return;
	}
	admit(e, r);
}

/* Start r, or queue it behind the others when queue_depth is reached. */
static void
admit(struct ioeng *e, struct io_req *r)
{
	if (e->active >= e->queue_depth || e->wait_head != NULL) {
		req_append(&e->wait_head, &e->wait_tail, r);
		return;
	}
	e->active++;
	start(e, r);
}

/* ---- offload ----------------------------------------------------------------- */

int
ioprim_exec(int fd, const struct ioprim *p)
{
	struct iovec iov = { .iov_base = p->buf, .iov_len = (size_t)p->len };
	uint64_t range[2] = { p->off, p->len };
	ssize_t n;

	do {
		switch (p->kind) {
		case PRIM_READ:
			n = pread(fd, p->buf, (size_t)p->len, (off_t)p->off);
			break;
		case PRIM_WRITE:
			n = pwritev2(fd, &iov, 1, (off_t)p->off, p->rw_flags);
			break;
		case PRIM_FSYNC:
			n = fdatasync(fd);
			break;
		case PRIM_FALLOC:
			n = fallocate(fd, p->mode, (off_t)p->off, (off_t)p->len);
			break;
		case PRIM_DISCARD:
			n = ioctl(fd, BLKDISCARD, range);
			break;
		default:
			return -EINVAL;
		}
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int)n;
}

static void
slot_run(struct offload_job *j)
{
	struct ioeng_slot *s = j->data;

	s->res = ioprim_exec(s->e->fd, &s->p);
}

static void
slot_done(struct offload_job *j)
{
	struct ioeng_slot *s = j->data;
	struct ioeng *e = s->e;
	struct io_req *r = s->r;

	s->next_free = e->free_slots;
	e->free_slots = s;
	loop_disk_hold(e->l, -1);
	ioeng_prim_done(e, r, s->res);
}

void
ioeng_offload(struct ioeng *e, struct io_req *r, const struct ioprim *p)
{
	struct ioeng_slot *s;
	int ret;

	if (e->off == NULL) {
		/* The sync engine runs everything here; others only ioctls. */
		ret = offload_new(e->l, e->kind == IOENG_SYNC ? e->threads : 2,
		    &e->off);
		if (ret < 0) {
			/* Final: a retried -EAGAIN would spin on thread limits. */
			final_defer(e, r, ret == -EAGAIN ? -ENOMEM : ret);
			return;
		}
	}
	/* active <= queue_depth and one primitive per request: never empty. */
	s = e->free_slots;
	e->free_slots = s->next_free;
	s->r = r;
	s->p = *p;
	s->job.fn = slot_run;
	s->job.done = slot_done;
	s->job.data = s;
	loop_disk_hold(e->l, 1);	/* no busy polling while it runs */
	offload_submit(e->off, &s->job);
}

/* ---- open / close ---------------------------------------------------------- */

/* Why the loop has no ring, for the fallback log line. */
static void
uring_unavailable_reason(char *buf, size_t len)
{
	const char *env = getenv("BLKMIRROR_NO_IO_URING");
	struct io_uring ring;
	int disabled = 0, ret;
	FILE *f;

	if (env != NULL && strcmp(env, "1") == 0) {
		snprintf(buf, len, "BLKMIRROR_NO_IO_URING=1");
		return;
	}
	f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
	if (f != NULL) {
		if (fscanf(f, "%d", &disabled) != 1)
			disabled = 0;
		fclose(f);
	}
	if (disabled != 0) {
		snprintf(buf, len, "kernel.io_uring_disabled=%d", disabled);
		return;
	}
	ret = io_uring_queue_init(2, &ring, 0);
	if (ret == 0) {
		io_uring_queue_exit(&ring);
		snprintf(buf, len, "the event loop runs on epoll");
	} else {
		snprintf(buf, len, "io_uring_setup: %s", strerror(-ret));
	}
}

/* Read one unsigned number from a sysfs file of the device; 0 if absent. */
static uint64_t
sysfs_queue_u64(dev_t rdev, const char *name)
{
	char path[128];
	unsigned long long v = 0;
	FILE *f;

	/* Whole disks have queue/; partitions share their parent's. */
	for (int up = 0; up < 2; up++) {
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%squeue/%s",
		    major(rdev), minor(rdev), up ? "../" : "", name);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
		return v;
	}
	return 0;
}

/*
 * Which fallocate modes a regular file takes, learnt before the first
 * request (ioeng_can_fast_zero() must know before anything is submitted):
 * one block past the end of the file, with KEEP_SIZE, so that no byte
 * of the file changes, and no block stays allocated past the end.
 * Only EOPNOTSUPP counts: any other failure leaves the mode to be learnt
 * from real requests, as before.
 */
static void
probe_falloc(struct ioeng *e)
{
	off_t end = (off_t)ALIGN_UP(e->size, 4096);

	if (e->read_only)
		return;
	if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, end, 4096) < 0 &&
	    errno == EOPNOTSUPP)
		e->no_punch = true;
	if (fallocate(e->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, end, 4096) < 0) {
		if (errno == EOPNOTSUPP)
			e->no_zero_range = true;
	} else if (ftruncate(e->fd, (off_t)e->size) < 0) {
		/* The probe allocated a block past the end of the file, which
		 * ext4 does not give back on a hole punched past the end; a
		 * truncation to the unchanged size does.  Failing that, a
		 * punch frees it where the file system can. */
		if (!e->no_punch)
			(void)fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    end, 4096);
	}
}

/* Size, logical block size, DIO alignment and zeroing support of e->fd. */
static int
probe_backing(struct ioeng *e, const struct stat *st)
{
	struct statx stx;
	int lbs = 512;

	if (e->blockdev) {
		if (ioctl(e->fd, BLKGETSIZE64, &e->size) < 0 ||
		    ioctl(e->fd, BLKSSZGET, &lbs) < 0)
			return -errno;
		e->hw_zeroes = sysfs_queue_u64(st->st_rdev, "write_zeroes_max_bytes") > 0;
		e->no_punch = !e->hw_zeroes;
	} else {
		e->size = (uint64_t)st->st_size;
		probe_falloc(e);
	}
	e->lbs = (unsigned)lbs;
	e->dio_align = e->mem_align = e->lbs;
	memset(&stx, 0, sizeof(stx));
	if (statx(e->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		/* 0 means this file cannot do direct I/O at all. */
		e->dio_align = STX_DIO_OFFSET_ALIGN(&stx);
		e->mem_align = MAX(STX_DIO_MEM_ALIGN(&stx), 1u);
	}
	return 0;
}

/* Switch the fd to O_DIRECT when the alignment rules allow it. */
static void
try_direct(struct ioeng *e)
{
	int fl;

	if (e->dio_align == 0) {
		log_info("%s: direct I/O not supported here: using buffered I/O", e->path);
		return;
	}
	if (e->io_align % e->dio_align != 0 || e->mem_align > 4096) {
		log_info("%s: DIO alignment %u (memory %u) does not fit io-align %u: "
		    "using buffered I/O", e->path, e->dio_align, e->mem_align, e->io_align);
		return;
	}
	fl = fcntl(e->fd, F_GETFL);
	if (fl < 0 || fcntl(e->fd, F_SETFL, fl | O_DIRECT) < 0) {
		log_errno(LOG_INFO, -errno, "%s: O_DIRECT refused: using buffered I/O",
		    e->path);
		return;
	}
	e->direct = true;
}

/* Open and probe the backing device or file; 0 or -errno (logged). */
static int
open_backing(struct ioeng *e, const char *path, const struct ioeng_opts *o)
{
	struct stat st;
	int ret;

	e->fd = open(path, (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (e->fd < 0 && errno == EISDIR) {
		log_err("%s: not a block device or regular file", path);
		return -EINVAL;
	}
	if (e->fd < 0) {
		ret = -errno;
		log_errno(LOG_ERR, ret, "%s: open", path);
		return ret;
	}
	if (fstat(e->fd, &st) < 0) {
		ret = -errno;
		log_errno(LOG_ERR, ret, "%s: fstat", path);
		return ret;
	}
	e->blockdev = S_ISBLK(st.st_mode);
	if (!e->blockdev && !S_ISREG(st.st_mode)) {
		log_err("%s: not a block device or regular file", path);
		return -EINVAL;
	}
	ret = probe_backing(e, &st);
	if (ret < 0) {
		log_errno(LOG_ERR, ret, "%s: probing size", path);
		return ret;
	}
	if (o->direct)
		try_direct(e);
	return 0;
}

/*
 * The engine to run: io_uring needs the loop's ring.  Without it, libaio
 * takes over, unless the caller asked for buffered I/O: kernel AIO on a
 * buffered fd does its work inside io_submit(2), on the loop thread, so
 * the sync engine's offload threads serve buffered I/O instead.
 */
static enum ioeng_kind
choose_kind(struct loop *l, enum ioeng_kind want, bool direct)
{
	char why[128];

	if (want != IOENG_URING || loop_ring(l) != NULL)
		return want;
	uring_unavailable_reason(why, sizeof(why));
	if (!direct) {
		log_notice("io_uring unavailable (%s): using sync engine "
		    "(buffered I/O: libaio would block in io_submit)", why);
		return IOENG_SYNC;
	}
	log_notice("io_uring unavailable (%s): using libaio engine", why);
	return IOENG_LIBAIO;
}

static const struct ioeng_ops *
ops_of(enum ioeng_kind k)
{
	return k == IOENG_URING ? &ioeng_uring_ops :
	    k == IOENG_LIBAIO ? &ioeng_aio_ops : &ioeng_sync_ops;
}

/* Options with defaults filled in; -EINVAL on nonsense. */
static int
opts_apply(struct ioeng *e, const struct ioeng_opts *o)
{
	if ((unsigned)o->kind > IOENG_SYNC)
		return -EINVAL;
	e->read_only = o->read_only;
	e->io_align = o->io_align ? o->io_align : 512;
	e->queue_depth = o->queue_depth ? o->queue_depth : 256;
	e->inline_writes = o->inline_writes;
	e->threads = o->threads ? o->threads : 4;
	if (!IS_POW2(e->io_align) || e->io_align > (1u << 20) ||
	    e->queue_depth > 65536 || e->threads > 64)
		return -EINVAL;
	return 0;
}

/*
 * BLKMIRROR_IOENG_QUIRKS="no_dsync,no_fdsync,no_punch,no_zero_range": act
 * as if the kernel or filesystem refused that feature, so tests reach the
 * fallbacks (write + fdatasync for FUA, fdatasync on a thread for libaio,
 * the next write-zeroes stage) on any machine.  "slow_inline" makes
 * every inline buffered write (opts.inline_writes) count as one that
 * blocked, so the back-off after it can be tested; "fast_inline" makes
 * none count (but for slow_inline), so a test on a loaded machine, where
 * a write can take over a millisecond, still sees every write inline.
 */
static int
quirks_apply(struct ioeng *e, const char *list)
{
	static const struct {
		const char *name;		/* token in the list */
		size_t off;			/* bool in struct ioeng */
	} quirks[] = {
		{ "no_dsync", offsetof(struct ioeng, no_dsync) },
		{ "no_fdsync", offsetof(struct ioeng, no_fdsync) },
		{ "no_punch", offsetof(struct ioeng, no_punch) },
		{ "no_zero_range", offsetof(struct ioeng, no_zero_range) },
		{ "slow_inline", offsetof(struct ioeng, slow_inline) },
		{ "fast_inline", offsetof(struct ioeng, fast_inline) },
	};
	char buf[128], *save = NULL, *tok;
	size_t i;

	if (strlen(list) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < ARRAY_SIZE(quirks); i++)
			if (strcmp(tok, quirks[i].name) == 0)
				break;
		if (i == ARRAY_SIZE(quirks)) {
			log_err("BLKMIRROR_IOENG_QUIRKS: unknown quirk \"%s\"", tok);
			return -EINVAL;
		}
		*(bool *)((char *)e + quirks[i].off) = true;
	}
	log_notice("%s: io engine quirks: %s", e->path, list);
	return 0;
}

/* Slots, fault spec from the environment, engine init (libaio -> sync). */
static int
engine_init(struct ioeng *e, enum ioeng_kind kind)
{
	const char *spec = getenv("BLKMIRROR_FAULT");
	int ret;

	e->slots = calloc(e->queue_depth, sizeof(*e->slots));
	if (e->slots == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < e->queue_depth; i++) {
		e->slots[i].e = e;
		e->slots[i].next_free = e->free_slots;
		e->free_slots = &e->slots[i];
	}
	if (spec != NULL && (ret = ioeng_fault_set(e, spec)) < 0)
		return ret;
	spec = getenv("BLKMIRROR_IOENG_QUIRKS");
	if (spec != NULL && (ret = quirks_apply(e, spec)) < 0)
		return ret;
	e->kind = kind;
	e->ops = ops_of(kind);
	ret = e->ops->init(e);
	if (ret < 0 && kind == IOENG_LIBAIO) {
		log_notice("libaio unavailable (io_setup: %s): using sync engine",
		    strerror(-ret));
		e->kind = IOENG_SYNC;
		e->ops = &ioeng_sync_ops;
		ret = e->ops->init(e);
	}
	if (ret < 0)
		log_errno(LOG_ERR, ret, "%s: %s engine setup", e->path, e->ops->name);
	return ret;
}

static void
ioeng_free(struct ioeng *e)
{
	if (e->fd >= 0)
		close(e->fd);
	free(e->zero_buf);
	free(e->slots);
	free(e->path);
	free(e);
}

int
ioeng_open(struct loop *l, const char *path, const struct ioeng_opts *opts,
    struct ioeng **out)
{
	struct ioeng *e = calloc(1, sizeof(*e));
	int ret;

	if (e == NULL)
		return -ENOMEM;
	e->l = l;
	e->fd = -1;
	e->path = strdup(path);
	ret = e->path == NULL ? -ENOMEM : opts_apply(e, opts);
	if (ret == 0)
		ret = open_backing(e, path, opts);
	if (ret == 0)
		ret = engine_init(e, choose_kind(l, opts->kind, e->direct));
	if (ret < 0) {
		ioeng_free(e);
		return ret;
	}
	log_info("%s: %s engine, %s of %" PRIu64 " bytes, %s I/O (DIO alignment %u)",
	    path, e->ops->name, e->blockdev ? "block device" : "file", e->size,
	    e->direct ? "direct" : "buffered", e->dio_align);
	*out = e;
	return 0;
}

void
ioeng_close(struct ioeng *e)
{
	int ret;

	if (e == NULL)
		return;
	/* A stalled request would never finish: it runs now. */
	stall_release(e);
	/*
	 * Run the loop until every request and internal operation is over.
	 * Callbacks made ready by a turn's wait (epoll backend, deferred ops)
	 * only run at the start of the next turn, which may then block for its
	 * whole timeout: keep the timeout short.
	 */
	while (e->in_flight > 0 || e->ops->busy(e) ||
	    (e->off != NULL && offload_pending(e->off) > 0)) {
		ret = loop_run_once(e->l, 5);
		if (ret < 0) {
			log_errno(LOG_CRIT, ret, "%s: loop failed while closing; "
			    "leaking the engine", e->path);
			return;
		}
	}
	e->ops->fini(e);
	offload_free(e->off);
	ioeng_free(e);
}

/* ---- accessors ----------------------------------------------------------------- */

int
ioeng_register_buffers(struct ioeng *e, const struct iovec *iov, unsigned n)
{
	if (e->ops->register_buffers == NULL)
		return 0;
	return e->ops->register_buffers(e, iov, n);
}

enum ioeng_kind ioeng_get_kind(const struct ioeng *e) { return e->kind; }
uint64_t ioeng_size(const struct ioeng *e) { return e->size; }
bool ioeng_is_blockdev(const struct ioeng *e) { return e->blockdev; }
bool ioeng_is_direct(const struct ioeng *e) { return e->direct; }
int ioeng_fd(const struct ioeng *e) { return e->fd; }

int64_t
ioeng_seek(struct ioeng *e, uint64_t pos, int whence)
{
	off_t ret;
	int err;

	if (pos > INT64_MAX)
		return -EINVAL;
	if ((err = fault_hit(e, FAULT_SEEK, pos, 0)) < 0)
		return err;
	ret = lseek(e->fd, (off_t)pos, whence);
	return ret < 0 ? -errno : (int64_t)ret;
}
unsigned ioeng_in_flight(const struct ioeng *e) { return e->in_flight; }
const struct ioeng_stats *ioeng_get_stats(const struct ioeng *e) { return &e->stats; }

unsigned
ioeng_alignment(const struct ioeng *e)
{
	unsigned a = MAX(e->dio_align, e->mem_align);

	/* Through the page cache only the device's sector size matters. */
	if (!e->direct)
		return e->lbs;
	return MAX(a, e->lbs);
}
