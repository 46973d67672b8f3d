/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Pools of page-aligned I/O buffers in a few size classes, allocated once at
 * start so the hot path never calls the allocator, and registered with the
 * io engine (io_uring fixed buffers) as one region per class.  Requests larger
 * than the largest class, or arriving when their class is empty and the
 * larger ones are scarce (BUFPOOL_SPILL_KEEP), get a fresh aligned allocation (buf_index -1) that is freed on release.
 */
#ifndef BLKMIRROR_BUFPOOL_H
#define BLKMIRROR_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BUFPOOL_CLASSES 3
#define BUFPOOL_SPILL_KEEP 4	/* a request may take a buffer of a larger
				 * class than its own only while more than
				 * 1/4 of that class is free */

struct bufpool_class {
	size_t size;		/* bytes per buffer */
	unsigned count;		/* buffers in the class */
	char *base;		/* one aligned region of size * count bytes */
	void **free;		/* stack of free buffers */
	unsigned nfree;		/* entries on the stack */
};

struct bufpool {
	struct bufpool_class cls[BUFPOOL_CLASSES];	/* ascending sizes */
	uint64_t fallback_allocs;	/* allocations outside the pool */
};

/* A buffer handed out by the pool. */
struct buf {
	void *p;		/* aligned data, at least the asked size */
	int index;		/* registered buffer index (class), or -1 */
	int cls;		/* class, or -1 for a fallback allocation */
};

/* sizes[i] buffers of counts[i] each; 0 or -ENOMEM. */
int bufpool_init(struct bufpool *bp, const size_t sizes[BUFPOOL_CLASSES],
    const unsigned counts[BUFPOOL_CLASSES]);
void bufpool_destroy(struct bufpool *bp);
/* The regions to register, one iovec per class (index = class). */
void bufpool_iovecs(const struct bufpool *bp, struct iovec iov[BUFPOOL_CLASSES]);
/* A buffer of at least len bytes; 0 or -ENOMEM. */
int bufpool_get(struct bufpool *bp, size_t len, struct buf *out);
/* The same from the pool only: 0, or -ENOBUFS when no class of at least
 * len bytes may give a buffer (bufpool_get() would allocate): the
 * smallest such class when it has one, a larger class only above its
 * BUFPOOL_SPILL_KEEP share. */
int bufpool_get_pooled(struct bufpool *bp, size_t len, struct buf *out);
/* Bytes bufpool_get() allocates outside the pool for len (page multiple). */
size_t bufpool_fallback_size(size_t len);
void bufpool_put(struct bufpool *bp, struct buf *b);

#endif
