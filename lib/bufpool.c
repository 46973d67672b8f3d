/* SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bufpool.h"

/*
 * Under AddressSanitizer a free pooled buffer is poisoned: a use after
 * bufpool_put() (a frame sending from a buffer given back, a late
 * completion writing into it) is reported there and then, not found later
 * as wrong bytes in the buffer's next user.
 */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#include <sanitizer/asan_interface.h>
#define pool_poison(p, n)	ASAN_POISON_MEMORY_REGION(p, n)
#define pool_unpoison(p, n)	ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define pool_poison(p, n)	((void)(p), (void)(n))
#define pool_unpoison(p, n)	((void)(p), (void)(n))
#endif

int
bufpool_init(struct bufpool *bp, const size_t sizes[BUFPOOL_CLASSES],
    const unsigned counts[BUFPOOL_CLASSES])
{
	memset(bp, 0, sizeof(*bp));
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct bufpool_class *c = &bp->cls[i];
		size_t bytes = sizes[i] * counts[i];

		c->size = sizes[i];
		c->count = counts[i];
		/* mmap: page aligned, and untouched pages cost nothing. */
		c->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		c->free = calloc(counts[i], sizeof(void *));
		if (c->base == MAP_FAILED || c->free == NULL) {
			if (c->base == MAP_FAILED)
				c->base = NULL;
			bufpool_destroy(bp);
			return -ENOMEM;
		}
		for (unsigned j = 0; j < counts[i]; j++)
			c->free[c->nfree++] = c->base + (size_t)(counts[i] - 1 - j) * sizes[i];
		pool_poison(c->base, bytes);
	}
	return 0;
}

void
bufpool_destroy(struct bufpool *bp)
{
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct bufpool_class *c = &bp->cls[i];

		if (c->base != NULL) {
			pool_unpoison(c->base, c->size * c->count);
			munmap(c->base, c->size * c->count);
		}
		free(c->free);
		c->base = NULL;
		c->free = NULL;
	}
}

void
bufpool_iovecs(const struct bufpool *bp, struct iovec iov[BUFPOOL_CLASSES])
{
	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		iov[i].iov_base = bp->cls[i].base;
		iov[i].iov_len = bp->cls[i].size * bp->cls[i].count;
	}
}

/*
 * The smallest class that fits, else a larger one only while more than
 * BUFPOOL_SPILL_KEEP of its buffers are free: small requests that find
 * their class empty may not take the last large buffers from the requests
 * that need them.
 */
int
bufpool_get_pooled(struct bufpool *bp, size_t len, struct buf *out)
{
	bool spill = false;	/* past the smallest class that fits */

	for (int i = 0; i < BUFPOOL_CLASSES; i++) {
		struct bufpool_class *c = &bp->cls[i];

		if (len > c->size)
			continue;
		if (c->nfree > (spill ? c->count / BUFPOOL_SPILL_KEEP : 0)) {
			out->p = c->free[--c->nfree];
			pool_unpoison(out->p, c->size);
			out->index = i;
			out->cls = i;
			return 0;
		}
		spill = true;
	}
	return -ENOBUFS;
}

size_t
bufpool_fallback_size(size_t len)
{
	return len == 0 ? 4096 : (len + 4095) & ~(size_t)4095;
}

int
bufpool_get(struct bufpool *bp, size_t len, struct buf *out)
{
	if (bufpool_get_pooled(bp, len, out) == 0)
		return 0;
	/* Larger than every class, or the class ran dry: allocate. */
	if (posix_memalign(&out->p, 4096, bufpool_fallback_size(len)) != 0)
		return -ENOMEM;
	out->index = -1;
	out->cls = -1;
	bp->fallback_allocs++;
	return 0;
}

void
bufpool_put(struct bufpool *bp, struct buf *b)
{
	if (b->p == NULL)
		return;
	if (b->cls < 0)
		free(b->p);
	else {
		struct bufpool_class *c = &bp->cls[b->cls];

		pool_poison(b->p, c->size);
		c->free[c->nfree++] = b->p;
	}
	b->p = NULL;
}
