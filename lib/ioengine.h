/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The io engine: one interface to the local backing device, three engines
 * behind it.
 *
 *   io_uring  default.  Disk ops are SQEs on the daemon's own loop ring
 *             (one io_uring_enter per loop turn covers sockets and disk),
 *             O_DIRECT where the backing device allows it, registered
 *             buffers for the engine's buffer pool.
 *   libaio    io_submit(2) with an eventfd that the loop polls.  Chosen when
 *             io_uring is unavailable (the loop then runs on epoll).
 *   sync      pread/pwrite/fdatasync on a small pool of offload threads that
 *             complete through an eventfd; for tests and odd systems.
 *
 * Every engine gives the same semantics:
 *  - read/write transfer exactly len bytes or fail; short transfers and
 *    -EAGAIN are retried inside the engine, in one place;
 *  - r->cb(r, res) runs from the loop, never from inside ioeng_submit();
 *    res is 0 or a negative errno;
 *  - IO_F_FUA on a write makes that write durable before completion
 *    (RWF_DSYNC where supported, else write + fdatasync);
 *  - IO_FLUSH is fdatasync(2) of the backing fd;
 *  - IO_TRIM discards: BLKDISCARD on block devices, fallocate(PUNCH_HOLE |
 *    KEEP_SIZE) on regular files; the range then reads back as zeroes on
 *    files, and as whatever the device says on devices;
 *  - IO_WRITE_ZEROES: fallocate(ZERO_RANGE) (files and block devices),
 *    falling back to writing zero buffers where that is not supported;
 *    IO_F_NO_HOLE forbids deallocating (use ZERO_RANGE / zero writes, never
 *    PUNCH_HOLE); IO_F_FAST_ZERO fails with -ENOTSUP instead of falling back
 *    to slow zero writes.
 * Buffers for read/write must be aligned to ioeng_alignment() (4096 is
 * always enough) when the engine opened the device with O_DIRECT.
 *
 * Buffered I/O (opts.direct false, or a device that refuses O_DIRECT) keeps
 * these semantics: writes complete once in the page cache, IO_F_FUA still
 * writes with RWF_DSYNC (or write + fdatasync), IO_FLUSH is still
 * fdatasync(2), and buffers need no alignment.  io_uring and sync stay
 * asynchronous to the loop (io_uring punts blocking buffered I/O to its
 * io-wq workers) unless opts.inline_writes asks otherwise (below); libaio
 * does not: io_submit(2) itself copies into the page cache, and reads
 * missing the cache wait for the disk there.
 */
#ifndef BLKMIRROR_IOENGINE_H
#define BLKMIRROR_IOENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

struct ioeng;

enum ioeng_kind {
	IOENG_URING = 0,
	IOENG_LIBAIO,
	IOENG_SYNC,
};

enum io_opcode {
	IO_READ = 0,
	IO_WRITE,
	IO_FLUSH,
	IO_TRIM,
	IO_WRITE_ZEROES,
};

/* Request flags. */
#define IO_F_FUA	(1u << 0)	/* write: durable before completion */
#define IO_F_NO_HOLE	(1u << 1)	/* write-zeroes: do not deallocate */
#define IO_F_FAST_ZERO	(1u << 2)	/* write-zeroes: fail -ENOTSUP if slow */

/* One disk request.  Owned by the engine from submit to callback. */
struct io_req {
	void (*cb)(struct io_req *r, int res);	/* completion: 0 or -errno */
	void *data;		/* caller's context, untouched by the engine */
	uint8_t opcode;		/* enum io_opcode */
	uint32_t flags;		/* IO_F_* */
	uint64_t offset;	/* byte offset on the device */
	uint64_t len;		/* bytes (0 for FLUSH) */
	void *buf;		/* READ/WRITE data, len bytes */
	int buf_index;		/* registered buffer index, or -1 */
	/* engine-private from here */
	struct loop_op op;	/* the loop operation carrying the request */
	uint64_t done;		/* bytes transferred so far */
	int stage;		/* multi-step requests (FUA fallback, zero fill) */
	struct io_req *next;	/* engine queue link */
};

/* Options for ioeng_open(). */
struct ioeng_opts {
	enum ioeng_kind kind;	/* requested engine */
	bool direct;		/* try O_DIRECT (falls back silently if refused) */
	bool inline_writes;	/* io_uring, buffered fd: small writes inline
				 * (see "Inline buffered writes" below) */
	bool read_only;		/* open O_RDONLY */
	unsigned io_align;	/* smallest I/O the caller will issue (512 or
				 * 4096); O_DIRECT is used only if the device's
				 * DIO alignment divides it */
	unsigned queue_depth;	/* max requests in flight (default 256) */
	unsigned threads;	/* sync engine: offload threads (default 4) */
};

/*
 * Open the backing device or file at path and create the engine on loop l.
 * If kind is IOENG_URING and the loop has no ring, fall back to IOENG_LIBAIO
 * (IOENG_SYNC when opts.direct is false: kernel AIO on a buffered fd blocks
 * in io_submit) with one log line naming the reason.  Returns 0 or a
 * negative errno.
 */
int ioeng_open(struct loop *l, const char *path, const struct ioeng_opts *opts,
    struct ioeng **out);
/* Wait for in-flight requests (running the loop) and close everything.
 * Not from inside one of this engine's callbacks. */
void ioeng_close(struct ioeng *e);

/*
 * Start r.  Refused with r->cb(r, -EINVAL) on the next loop turn: unknown
 * opcode or flag bits, offset + len beyond ioeng_size() (or wrapping),
 * offset or len not a multiple of opts.io_align, a NULL buffer, or (with
 * O_DIRECT) a buffer not aligned to the DIO memory alignment; -EROFS for
 * modifications on a read-only engine.  len == 0 (except FLUSH) completes
 * with 0.  Requests beyond queue_depth wait inside the engine, in order.
 * IO_TRIM where the device or filesystem cannot discard completes with
 * -EOPNOTSUPP; IO_F_FUA on TRIM and WRITE_ZEROES adds an fdatasync.
 * Without IO_F_NO_HOLE, write-zeroes tries PUNCH_HOLE first (on block
 * devices: hardware WRITE_ZEROES that may unmap), then ZERO_RANGE, then
 * zero writes.
 */
void ioeng_submit(struct ioeng *e, struct io_req *r);

/*
 * Whether write-zeroes with flags (IO_F_*) can succeed without falling
 * back to writing zero buffers: always true without IO_F_FAST_ZERO.
 * Known before anything is submitted (regular files are probed at open),
 * so that a caller that also ships the request elsewhere can refuse it
 * first.  A request may still fail with -ENOTSUP when the kernel refuses
 * a mode the probe could not see.
 */
bool ioeng_can_fast_zero(const struct ioeng *e, uint32_t flags);

enum ioeng_kind ioeng_get_kind(const struct ioeng *e);
const char *ioeng_kind_name(enum ioeng_kind k);
/* "io_uring" | "libaio" | "sync" -> kind; -EINVAL for anything else. */
int ioeng_kind_parse(const char *s, enum ioeng_kind *out);
uint64_t ioeng_size(const struct ioeng *e);	/* bytes */
bool ioeng_is_blockdev(const struct ioeng *e);
bool ioeng_is_direct(const struct ioeng *e);	/* opened with O_DIRECT */
/* Alignment that offsets, lengths and buffers need: with O_DIRECT the
 * largest of the DIO offset and memory alignment and the logical block
 * size; buffered, the logical block size only. */
unsigned ioeng_alignment(const struct ioeng *e);
int ioeng_fd(const struct ioeng *e);		/* backing fd */
/*
 * lseek(2) on the backing fd, for SEEK_DATA / SEEK_HOLE: the resulting
 * offset or a negative errno (-ENXIO: no data, or no hole, after pos).
 * Synchronous (it only reads the filesystem's extent map).  A "seek"
 * fault (see ioeng_fault_set()) matching pos fails it with its errno.
 */
int64_t ioeng_seek(struct ioeng *e, uint64_t pos, int whence);
unsigned ioeng_in_flight(const struct ioeng *e);

/*
 * Register buffers (io_uring: io_uring_register_buffers; others: no-op).
 * Requests may then name buf_index.  Returns 0 or a negative errno; on error
 * requests simply keep buf_index = -1.
 */
int ioeng_register_buffers(struct ioeng *e, const struct iovec *iov, unsigned n);

/*
 * Fault injection for tests (all engines): the environment variable
 * BLKMIRROR_FAULT="op:offset-range:errno[:count]" e.g. "write:0-1048575:5:1"
 * makes the first count matching requests (default: all) fail with -errno;
 * ioeng_fault_set() does the same from code.  op is read|write|flush|trim|zero,
 * or seek for ioeng_seek() (a call matches when its position is in range).
 * The range is "LO-HI" (inclusive, decimal or 0x hex) or "*"; a request
 * matches when it touches the range.  An optional fifth field lets that
 * many matching requests through first: "write:*:5:1:2" fails the third
 * write.  NULL or "" clears the fault; a bad spec returns -EINVAL.
 * Faults complete through the callback like real errors.  "stall" in place
 * of the errno (not for seek) holds matching requests instead, as a hung
 * disk would, without submitting them: they count in ioeng_in_flight() and
 * are submitted, in order and past any fault, when the fault is cleared or
 * replaced (any ioeng_fault_set() with a valid spec), by
 * ioeng_fault_release(), or by ioeng_close().
 */
int ioeng_fault_set(struct ioeng *e, const char *spec);
/* Submit the requests a stall holds and disarm a stall fault; an error
 * fault stays armed (for shutting down with a stalled disk). */
void ioeng_fault_release(struct ioeng *e);
/*
 * Also for tests: BLKMIRROR_IOENG_QUIRKS="no_dsync,no_fdsync,no_punch,
 * no_zero_range" (any subset) at ioeng_open() makes the engine act as if
 * RWF_DSYNC, libaio's IOCB_CMD_FDSYNC, or fallocate PUNCH_HOLE / ZERO_RANGE
 * were refused, so the fallbacks run on any machine; "slow_inline" makes
 * each inline buffered write (below) count as one that blocked and
 * "fast_inline" none.  Unknown names make ioeng_open() fail with -EINVAL.
 *
 * Inline buffered writes (opts.inline_writes; io_uring engine, buffered
 * fd; off by default): a filesystem without non-blocking buffered writes
 * (ext4) makes io_uring hand every buffered write to an io-wq worker
 * thread, two thread switches per write for what is a copy into the page
 * cache.  With the option, writes of up to IOENG_INLINE_WRITE_MAX whose
 * primitive has no RWF_DSYNC are written with pwritev2(2) on the loop
 * thread (the callback still runs on a later turn).  That is a blocking
 * call on the loop: one that takes longer than IOENG_INLINE_SLOW_NS
 * (dirty-page throttling, a journal wait) sends the writes of the next
 * IOENG_INLINE_BACKOFF_NS to io_uring again, so a throttled disk stalls the
 * loop for one write at a time, not for every one; but a write that never
 * returns (a hung disk once the dirty limit is reached, a hung network
 * file system) hangs the whole daemon, where io_uring would have hung one
 * worker thread.  Hence opt-in.
 */
#define IOENG_INLINE_WRITE_MAX	(64u << 10)
#define IOENG_INLINE_SLOW_NS	1000000u	/* 1 ms */
#define IOENG_INLINE_BACKOFF_NS	1000000000u	/* 1 s */

/* Per-engine counters for status output. */
struct ioeng_stats {
	uint64_t ops[5];	/* completed requests by enum io_opcode */
	uint64_t bytes[5];	/* bytes by enum io_opcode */
	uint64_t errors;	/* requests completed with an error */
	uint64_t inline_writes;	/* io_uring: buffered writes done inline */
	uint64_t inline_backoffs; /* ... that blocked, so the next ones for a
				 * while went to io_uring's workers */
};
const struct ioeng_stats *ioeng_get_stats(const struct ioeng *e);

#endif
