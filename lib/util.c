/* SPDX-License-Identifier: BSD-2-Clause */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int
parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	/* Accept an optional "iB"/"B" suffix: "4KiB", "4KB". */
	if (shift != 0 && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'b' || end[1] == 'B'))
		end += 2;
	else if (shift != 0 && (end[0] == 'b' || end[0] == 'B'))
		end++;
	if (*end != '\0')
		return -EINVAL;
	if (shift != 0 && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* A duration unit and its factor to the caller's unit. */
struct dur_unit {
	const char *suffix;
	uint64_t mul;
};

/*
 * A decimal number followed by one of units[], times that unit's factor;
 * a bare number is multiplied by bare_mul (bare_mul 0: only a bare 0).
 */
static int
parse_scaled(const char *s, const struct dur_unit *units, size_t n,
    uint64_t bare_mul, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 0;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	if (*end == '\0')
		mul = v == 0 ? 1 : bare_mul;
	for (size_t i = 0; i < n && mul == 0; i++)
		if (strcmp(end, units[i].suffix) == 0)
			mul = units[i].mul;
	if (mul == 0)
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

int
parse_duration_ms(const char *s, uint64_t *out_ms)
{
	static const struct dur_unit units[] = { { "ms", 1 }, { "s", 1000 } };

	return parse_scaled(s, units, ARRAY_SIZE(units), 1000, out_ms);
}

int
parse_duration_us(const char *s, uint64_t *out_us)
{
	static const struct dur_unit units[] = {
		{ "us", 1 }, { "ms", 1000 }, { "s", 1000000 },
	};

	return parse_scaled(s, units, ARRAY_SIZE(units), 0, out_us);
}

/*
 * "unix:PATH" gives an AF_UNIX address; "[v6addr]:port", "v4addr:port" and
 * "*:port" (any IPv4) give an inet address.  The port is mandatory.
 */
int
parse_sockaddr(const char *s, struct sockaddr_storage *ss, unsigned *sslen)
{
	char host[128];
	const char *colon, *hstart, *hend;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;
		size_t n = strlen(s + 5);

		if (n == 0 || n >= sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, s + 5, n + 1);
		*sslen = (unsigned)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		return 0;
	}
	if (s[0] == '[') {
		hstart = s + 1;
		hend = strchr(s, ']');
		if (hend == NULL || hend[1] != ':')
			return -EINVAL;
		colon = hend + 1;
	} else {
		hstart = s;
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hend = colon;
	}
	if ((size_t)(hend - hstart) >= sizeof(host) || hend == hstart)
		return -EINVAL;
	memcpy(host, hstart, (size_t)(hend - hstart));
	host[hend - hstart] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end != '\0' || errno != 0 || port > 65535)
		return -EINVAL;
	if (s[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		*sslen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		*sslen = sizeof(*sin);
	}
	return 0;
}

const char *
sockaddr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	switch (ss->ss_family) {
	case AF_UNIX:
		snprintf(buf, len, "unix:%s", ((const struct sockaddr_un *)ss)->sun_path);
		break;
	case AF_INET: {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, ntohs(sin6->sin6_port));
		break;
	}
	default:
		snprintf(buf, len, "(family %d)", ss->ss_family);
	}
	return buf;
}

int
write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
lock_exclusive(int fd)
{
	struct timespec pause = { .tv_nsec = 50000000 };

	for (unsigned waited = 0;; waited += 50) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (waited >= LOCK_WAIT_MS)
			return -EWOULDBLOCK;
		nanosleep(&pause, NULL);
	}
}
