/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the io engines share behind lib/ioengine.h.
 *
 * ioengine.c owns the request life cycle: validation, fault injection, the
 * queue-depth limit, the multi-step plans (FUA fallback, write-zeroes
 * fallbacks, the fdatasync tail) and the one place where -EAGAIN and short
 * transfers are retried.  It breaks every request into primitives (one
 * pread, pwrite, fdatasync, fallocate or BLKDISCARD each) and hands them to
 * the engine's issue(); the engine reports each primitive's result back
 * with ioeng_prim_done() on the loop thread.  At most one primitive per
 * request is outstanding at a time.
 */
#ifndef BLKMIRROR_IOENG_INTERNAL_H
#define BLKMIRROR_IOENG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ioengine.h"
#include "offload.h"

/* Longest single read/write primitive; longer requests take several. */
#define IOENG_MAX_CHUNK		(1u << 30)
/* Size of the zero buffer used when write-zeroes falls back to writes. */
#define IOENG_ZERO_CHUNK	(1u << 20)

enum ioprim_kind {
	PRIM_READ = 0,		/* pread(off, len) into buf */
	PRIM_WRITE,		/* pwrite(off, len) from buf, rw_flags */
	PRIM_FSYNC,		/* fdatasync */
	PRIM_FALLOC,		/* fallocate(mode, off, len) */
	PRIM_DISCARD,		/* ioctl(BLKDISCARD, {off, len}) */
};

/* One system-call-sized step of a request. */
struct ioprim {
	uint8_t kind;		/* enum ioprim_kind */
	int rw_flags;		/* PRIM_WRITE: RWF_DSYNC or 0 */
	int mode;		/* PRIM_FALLOC: FALLOC_FL_* */
	uint64_t off;		/* byte offset */
	uint64_t len;		/* bytes; <= IOENG_MAX_CHUNK for READ/WRITE */
	void *buf;		/* READ/WRITE data */
	int buf_index;		/* READ/WRITE: registered buffer index or -1 */
};

/* The table each engine fills in. */
struct ioeng_ops {
	const char *name;	/* "io_uring", "libaio", "sync" */
	/* Set up engine state after the backing fd is open; 0 or -errno. */
	int (*init)(struct ioeng *e);
	/* Free engine state; nothing is in flight and busy() is false. */
	void (*fini)(struct ioeng *e);
	/* Start primitive p of r; its result arrives via ioeng_prim_done()
	 * from a loop callback, never from inside issue(). */
	void (*issue)(struct ioeng *e, struct io_req *r, const struct ioprim *p);
	/* True while engine-internal loop operations are still in flight. */
	bool (*busy)(const struct ioeng *e);
	/* ioeng_register_buffers(); NULL: accepted and ignored. */
	int (*register_buffers)(struct ioeng *e, const struct iovec *iov, unsigned n);
};

extern const struct ioeng_ops ioeng_uring_ops;
extern const struct ioeng_ops ioeng_aio_ops;
extern const struct ioeng_ops ioeng_sync_ops;

/* Fault injection state (see ioeng_fault_set()). */
struct ioeng_fault {
	bool active;		/* a spec is set and not used up */
	uint8_t opcode;		/* enum io_opcode that fails */
	uint64_t lo, hi;	/* inclusive byte range a request must touch */
	int err;		/* positive errno to fail with (0: stall) */
	bool stall;		/* hold matching requests instead of failing them */
	uint64_t count;		/* failures (stalls) left; UINT64_MAX = unlimited */
	uint64_t skip;		/* matching requests to let through first */
};

/* A primitive on the offload pool; one per queue_depth slot. */
struct ioeng_slot {
	struct offload_job job;		/* the pool's handle */
	struct ioeng *e;		/* engine */
	struct io_req *r;		/* request the primitive belongs to */
	struct ioprim p;		/* what to run */
	int res;			/* result, written by the worker */
	struct ioeng_slot *next_free;	/* free list link */
};

struct ioeng {
	const struct ioeng_ops *ops;	/* engine behind the API */
	struct loop *l;			/* loop running every callback */
	enum ioeng_kind kind;		/* engine actually in use */
	char *path;			/* backing path, for log lines */
	int fd;				/* backing fd */
	uint64_t size;			/* bytes */
	bool blockdev;			/* S_ISBLK, else regular file */
	bool direct;			/* fd has O_DIRECT */
	bool read_only;			/* opened O_RDONLY */
	unsigned lbs;			/* logical block size (512 for files) */
	unsigned dio_align;		/* DIO offset alignment (0: no DIO) */
	unsigned mem_align;		/* DIO buffer alignment */
	unsigned io_align;		/* offset/len granularity enforced */
	unsigned queue_depth;		/* max requests issued at once */
	unsigned threads;		/* offload workers to start */
	bool hw_zeroes;			/* device does WRITE_ZEROES in hardware */
	bool no_dsync;			/* RWF_DSYNC refused: write + fdatasync */
	bool no_punch;			/* fallocate PUNCH_HOLE unsupported */
	bool no_zero_range;		/* fallocate ZERO_RANGE unsupported */
	bool no_fdsync;			/* libaio: IOCB_CMD_FDSYNC refused */
	bool inline_writes;		/* opts.inline_writes */
	bool fast_inline;		/* io_uring: no inline write counts
					 * as slow (tests on a loaded host) */
	bool slow_inline;		/* io_uring: every inline write counts
					 * as slow (tests the back-off) */
	unsigned in_flight;		/* submitted, callback not yet run */
	unsigned active;		/* issued to the engine (<= queue_depth) */
	struct io_req *wait_head;	/* over queue_depth, FIFO */
	struct io_req *wait_tail;
	void *zero_buf;			/* IOENG_ZERO_CHUNK zeroes, lazily */
	struct offload *off;		/* offload pool, lazily (sync: at open) */
	struct ioeng_slot *slots;	/* queue_depth offload slots */
	struct ioeng_slot *free_slots;	/* unused slots */
	struct ioeng_fault fault;	/* fault injection */
	struct io_req *stall_head;	/* held by a stall fault, FIFO; */
	struct io_req *stall_tail;	/* in in_flight, not in active */
	unsigned stalled;		/* requests held */
	struct ioeng_stats stats;	/* counters */
	void *priv;			/* engine-private state */
};

/* Engines report a primitive's result (bytes, 0, or -errno) here. */
void ioeng_prim_done(struct ioeng *e, struct io_req *r, int res);
/* loop_op callback of r->op that calls ioeng_prim_done() (r->op.data = e). */
void ioeng_prim_cb(struct loop_op *op, int res);
/* Fail r with res now, without retries (from a loop callback only). */
void ioeng_prim_fail(struct ioeng *e, struct io_req *r, int res);
/* Run p on the offload pool; the result arrives via ioeng_prim_done(). */
void ioeng_offload(struct ioeng *e, struct io_req *r, const struct ioprim *p);
/* Execute p with blocking system calls; bytes, 0 or -errno. */
int ioprim_exec(int fd, const struct ioprim *p);

#endif
