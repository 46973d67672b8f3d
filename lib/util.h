/* SPDX-License-Identifier: BSD-2-Clause */
/* Small helpers shared by every part of blkmirror. */
#ifndef BLKMIRROR_UTIL_H
#define BLKMIRROR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <endian.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define likely(x) __builtin_expect(!!(x), 1)

/* Big-endian loads and stores on unaligned buffers (wire formats). */
static inline uint16_t get_be16(const void *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static inline uint32_t get_be32(const void *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static inline uint64_t get_be64(const void *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static inline void put_be16(void *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static inline void put_be32(void *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static inline void put_be64(void *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/*
 * Parse a size ("4096", "4K", "1M", "2G", "1T"; binary multiples) into *out.
 * Returns 0 or -EINVAL / -ERANGE.
 */
int parse_size(const char *s, uint64_t *out);
/* Parse a duration ("500ms", "6s", "2" = seconds) into milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out_ms);
/* "50us", "2ms", "1s" -> microseconds; a bare number must be 0 (a unit is
 * required otherwise, as "50" could mean anything); -EINVAL, -ERANGE. */
int parse_duration_us(const char *s, uint64_t *out_us);
/* Parse "host:port" / "[v6]:port" / "unix:PATH"; see util.c for the rules. */
struct sockaddr_storage;
int parse_sockaddr(const char *s, struct sockaddr_storage *ss, unsigned *sslen);
/* Format a socket address for log lines. */
const char *sockaddr_str(const struct sockaddr_storage *ss, char *buf, size_t len);

/*
 * flock(LOCK_EX) on fd without blocking for long: -EWOULDBLOCK if someone
 * else still holds a lock after LOCK_WAIT_MS (udev takes a shared lock on
 * a whole block device, loop devices too, for a moment after it changed).
 */
#define LOCK_WAIT_MS	5000
int lock_exclusive(int fd);

/* write(2)/read(2) everything, retrying EINTR and short transfers; 0 or -errno. */
int write_full(int fd, const void *buf, size_t len);
int read_full(int fd, void *buf, size_t len);

#endif
