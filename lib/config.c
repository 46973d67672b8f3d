/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Resource configuration parser; the format is in config.h and
 * docs/blkmirror.conf.5.
 *
 * inih splits "key = value" lines and calls conf_handler for each.  What
 * inih cannot tell us is done by our own line reader (conf_reader), which
 * inih calls once per line:
 *   - it counts lines, so every message carries a line number (Debian
 *     builds inih without INI_HANDLER_LINENO);
 *   - it strips ';' and '#' comments and surrounding blanks, so inih sees
 *     no comments and never an indented (multi-line continuation) line;
 *   - it parses section headers itself (inih truncates long section names
 *     and never reports a section without keys);
 *   - it rejects lines too long for inih's line buffer, lines with NUL
 *     bytes and lines that are neither "[section]" nor "key = value".
 * The first error ends the parse: the reader returns EOF and the handler
 * ignores any further call.  Checks that need the whole file (required
 * keys, the two-node rules) run afterwards in conf_finish().
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <ini.h>

#include "config.h"
#include "util.h"

#define CONTROL_DIR	"/run/blkmirror"	/* default control socket dir */
#define TIMEOUT_MAX_MS	3600000ull		/* timeout: at most one hour */
#define KO_COUNT_MAX	1000			/* ko-count upper bound */
#define AL_EXTENTS_MIN	7
#define AL_EXTENTS_MAX	65534
#define BM_GRAN_MIN	4096ull			/* bitmap-granularity bounds */
#define BM_GRAN_MAX	(1ull << 20)
#define UNIX_PATH_MAX	(sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define NAME_CHARS_HINT	"use only letters, digits, '.', '_' and '-'"

/* The section the current line belongs to. */
enum sect_kind {
	SECT_NONE = 0,		/* before the first section header */
	SECT_RESOURCE,		/* [resource] */
	SECT_NODE,		/* [node NAME] */
};

/* Every key, in the order of the key table. */
enum conf_key {
	K_NAME, K_PROTOCOL, K_IO_ENGINE, K_DIRECT_IO, K_INLINE_WRITES, K_BUSY_POLL,
	K_BLOCK_SIZE, K_SECRET_FILE,
	K_TIMEOUT, K_KO_COUNT, K_MAX_LAG, K_ON_CONGESTION, K_ON_IO_ERROR, K_RESYNC_RATE,
	K_CSUMS, K_AL_EXTENTS, K_BM_GRAN,
	K_DISK, K_META_DISK, K_ADDRESS, K_NBD_LISTEN, K_CONTROL,
	K_COUNT
};

/* State of one parse; inih hands it to the reader and the handler. */
struct parser {
	struct conf *c;			/* result being filled */
	const char *file;		/* FILE in messages (path as given) */
	char *err;			/* message buffer (may be NULL) */
	size_t errlen;			/* its size */
	int error;			/* first error (negative errno), or 0 */
	FILE *fp;			/* input file, or NULL ... */
	const char *text;		/* ... the rest of the input string */
	char *raw;			/* current raw line (getline buffer) */
	size_t rawcap;			/* its capacity */
	unsigned lineno;		/* number of the current line (1-based) */
	enum sect_kind sect;		/* section of the current line */
	struct conf_node *node;		/* current node when sect == SECT_NODE */
	unsigned resource_line;		/* line of [resource], 0 if none yet */
	/* line of the first use of each key: [0] resource, [1 + i] node i */
	unsigned seen[1 + CONF_MAX_NODES][K_COUNT];
	/* line of each nbd-listen entry, for duplicate messages */
	unsigned listen_line[CONF_MAX_NODES][CONF_MAX_LISTEN];
};

/* One key: where it lives and how its value is parsed. */
struct key_def {
	const char *name;		/* as written in the file */
	enum sect_kind sect;		/* SECT_RESOURCE or SECT_NODE */
	bool repeatable;		/* may appear more than once */
	int (*parse)(struct parser *p, const char *key, const char *val);
};

static const char *const protocol_names[] = {
	[PROTO_SYNC] = "sync", [PROTO_MEMSYNC] = "memsync", [PROTO_ASYNC] = "async",
};
static const char *const engine_names[] = {
	[IOENG_URING] = "io_uring", [IOENG_LIBAIO] = "libaio", [IOENG_SYNC] = "sync",
};
static const char *const yes_no_names[] = { "no", "yes" };
static const char *const congestion_names[] = {
	[CONGESTION_BLOCK] = "block", [CONGESTION_PULL_AHEAD] = "pull-ahead",
};

static const char *const io_error_names[] = {
	[IOERR_DETACH] = "detach", [IOERR_PASS_ON] = "pass-on",
};
static const char *const csums_names[] = {
	[CSUMS_NONE] = "none", [CSUMS_XXH3] = "xxh3",
};

/* ---- messages ---- */

/*
 * Record the first error as "FILE:LINE: what: message" (LINE 0 for the file
 * as a whole) and return -EINVAL.  Later errors are dropped: the
 * administrator fixes one thing at a time, and the first is the one that
 * caused the rest.
 */
static int __attribute__((format(printf, 4, 5)))
conf_error(struct parser *p, unsigned line, const char *what, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->error != 0)
		return p->error;
	p->error = -EINVAL;
	if (p->err == NULL || p->errlen == 0)
		return p->error;
	n = snprintf(p->err, p->errlen, "%s:%u: %s: ", p->file, line, what);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return p->error;
}

/* Record an I/O error on the file itself: "FILE: doing: strerror". */
static int
conf_io_error(struct parser *p, const char *doing, int err)
{
	if (p->error != 0)
		return p->error;
	p->error = -err;
	if (p->err != NULL && p->errlen > 0)
		snprintf(p->err, p->errlen, "%s: %s: %s", p->file, doing, strerror(err));
	return p->error;
}

/*
 * NULL if name is a valid resource or node name (1..CONF_NAME_MAX-1 bytes
 * of [A-Za-z0-9._-]), else what is wrong with it, formatted into buf.
 */
static const char *
name_problem(const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);
	const unsigned char *s;

	if (n == 0)
		return "must not be empty";
	if (n >= CONF_NAME_MAX) {
		snprintf(buf, len, "too long (%zu characters, max %d)", n,
		    CONF_NAME_MAX - 1);
		return buf;
	}
	for (s = (const unsigned char *)name; *s != '\0'; s++) {
		if (isalnum(*s) || *s == '.' || *s == '_' || *s == '-')
			continue;
		if (isprint(*s))
			snprintf(buf, len, "'%c' is not allowed; " NAME_CHARS_HINT, *s);
		else
			snprintf(buf, len, "byte 0x%02x is not allowed; " NAME_CHARS_HINT, *s);
		return buf;
	}
	return NULL;
}

/* ---- value parsers ---- */

/*
 * Look val up in names[0..n); returns its index, or reports
 * "must be a, b or c, got val".
 */
static int
parse_choice(struct parser *p, const char *key, const char *val,
    const char *const *names, unsigned n)
{
	char list[128];
	size_t off = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		if (strcmp(val, names[i]) == 0)
			return (int)i;
	list[0] = '\0';
	for (i = 0; i < n && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
		    i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
	return conf_error(p, p->lineno, key, "must be %s, got %s", list, val);
}

/* A plain decimal integer in [min, max] into *out. */
static int
parse_uint_range(struct parser *p, const char *key, const char *val,
    uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(val, &end, 10);
	if (!isdigit((unsigned char)val[0]) || *end != '\0' || errno != 0 ||
	    v < min || v > max)
		return conf_error(p, p->lineno, key,
		    "must be an integer from %llu to %llu, got %s",
		    (unsigned long long)min, (unsigned long long)max, val);
	*out = v;
	return 0;
}

/* A size with an optional K/M/G/T suffix into *out. */
static int
parse_size_key(struct parser *p, const char *key, const char *val, uint64_t *out)
{
	if (parse_size(val, out) < 0)
		return conf_error(p, p->lineno, key,
		    "must be a size in bytes with an optional K, M, G or T "
		    "suffix (e.g. 64M), got %s", val);
	return 0;
}

/* An absolute path that fits in dst[size]. */
static int
parse_path(struct parser *p, const char *key, const char *val, char *dst,
    size_t size)
{
	size_t n = strlen(val);

	if (val[0] != '/')
		return conf_error(p, p->lineno, key,
		    "must be an absolute path (starting with /), got %s", val);
	if (n >= size)
		return conf_error(p, p->lineno, key,
		    "path too long (%zu bytes, max %zu)", n, size - 1);
	memcpy(dst, val, n + 1);
	return 0;
}

/* The port of an inet address (host order). */
static unsigned
addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* True for 0.0.0.0 and ::. */
static bool
addr_is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(
		    &((const struct sockaddr_in6 *)ss)->sin6_addr);
	return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

/* Keep the text of an address for logs; it must fit conf_addr.text. */
static int
addr_set_text(struct parser *p, const char *key, const char *val,
    struct conf_addr *a)
{
	size_t n = strlen(val);

	if (n >= sizeof(a->text))
		return conf_error(p, p->lineno, key,
		    "too long (%zu characters, max %zu)", n, sizeof(a->text) - 1);
	memcpy(a->text, val, n + 1);
	return 0;
}

/* ---- [resource] keys ----
 *
 * Each key_X parses the value of key X (non-empty, trimmed) into p->c, or
 * for [node] keys into p->node, and returns 0 or the error it recorded.
 */

static int
key_name(struct parser *p, const char *key, const char *val)
{
	char why[128];
	const char *bad = name_problem(val, why, sizeof(why));

	if (bad != NULL)
		return conf_error(p, p->lineno, key, "invalid resource name %s: %s",
		    val, bad);
	snprintf(p->c->name, sizeof(p->c->name), "%s", val);
	return 0;
}

static int
key_protocol(struct parser *p, const char *key, const char *val)
{
	int i = parse_choice(p, key, val, protocol_names, ARRAY_SIZE(protocol_names));

	if (i < 0)
		return i;
	p->c->protocol = (enum repl_protocol)i;
	return 0;
}

static int
key_io_engine(struct parser *p, const char *key, const char *val)
{
	int i = parse_choice(p, key, val, engine_names, ARRAY_SIZE(engine_names));

	if (i < 0)
		return i;
	p->c->io_engine = (enum ioeng_kind)i;
	return 0;
}

/* "no" | "yes" into *out; 0 or the parse error. */
static int
parse_yes_no(struct parser *p, const char *key, const char *val, bool *out)
{
	int i = parse_choice(p, key, val, yes_no_names, ARRAY_SIZE(yes_no_names));

	if (i < 0)
		return i;
	*out = i == 1;
	return 0;
}

static int
key_direct_io(struct parser *p, const char *key, const char *val)
{
	return parse_yes_no(p, key, val, &p->c->direct_io);
}

static int
key_inline_writes(struct parser *p, const char *key, const char *val)
{
	return parse_yes_no(p, key, val, &p->c->inline_writes);
}

static int
key_busy_poll(struct parser *p, const char *key, const char *val)
{
	uint64_t us;

	if (parse_duration_us(val, &us) < 0 || us > BUSY_POLL_MAX_US)
		return conf_error(p, p->lineno, key,
		    "must be 0 (off) or a duration up to %uus such as 50us, got %s",
		    BUSY_POLL_MAX_US, val);
	p->c->busy_poll_us = (uint32_t)us;
	return 0;
}

static int
key_block_size(struct parser *p, const char *key, const char *val)
{
	uint64_t v = 0;

	if (parse_size(val, &v) < 0 || (v != 512 && v != 4096))
		return conf_error(p, p->lineno, key, "must be 512 or 4096, got %s", val);
	p->c->block_size = (uint32_t)v;
	return 0;
}

static int
key_secret_file(struct parser *p, const char *key, const char *val)
{
	return parse_path(p, key, val, p->c->secret_file, sizeof(p->c->secret_file));
}

static int
key_timeout(struct parser *p, const char *key, const char *val)
{
	uint64_t ms;

	if (parse_duration_ms(val, &ms) < 0)
		return conf_error(p, p->lineno, key,
		    "must be a duration such as 6s or 500ms (a bare number is "
		    "seconds), got %s", val);
	if (ms == 0 || ms > TIMEOUT_MAX_MS)
		return conf_error(p, p->lineno, key,
		    "must be from 1ms to %llus, got %s",
		    TIMEOUT_MAX_MS / 1000, val);
	p->c->timeout_ms = ms;
	return 0;
}

static int
key_ko_count(struct parser *p, const char *key, const char *val)
{
	uint64_t v = 0;
	int r = parse_uint_range(p, key, val, 1, KO_COUNT_MAX, &v);

	if (r == 0)
		p->c->ko_count = (unsigned)v;
	return r;
}

static int
key_max_lag(struct parser *p, const char *key, const char *val)
{
	uint64_t v = 0;
	int r = parse_size_key(p, key, val, &v);

	if (r < 0)
		return r;
	if (v == 0)
		return conf_error(p, p->lineno, key, "must be greater than 0");
	p->c->max_lag_bytes = v;
	return 0;
}

static int
key_on_congestion(struct parser *p, const char *key, const char *val)
{
	int i = parse_choice(p, key, val, congestion_names,
	    ARRAY_SIZE(congestion_names));

	if (i < 0)
		return i;
	p->c->on_congestion = (enum on_congestion)i;
	return 0;
}

static int
key_on_io_error(struct parser *p, const char *key, const char *val)
{
	int i = parse_choice(p, key, val, io_error_names, ARRAY_SIZE(io_error_names));

	if (i < 0)
		return i;
	p->c->on_io_error = (enum on_io_error)i;
	return 0;
}

static int
key_resync_rate(struct parser *p, const char *key, const char *val)
{
	return parse_size_key(p, key, val, &p->c->resync_rate);
}

static int
key_csums(struct parser *p, const char *key, const char *val)
{
	int i = parse_choice(p, key, val, csums_names, ARRAY_SIZE(csums_names));

	if (i < 0)
		return i;
	p->c->csums = (enum csums_alg)i;
	return 0;
}

static int
key_al_extents(struct parser *p, const char *key, const char *val)
{
	uint64_t v = 0;
	int r = parse_uint_range(p, key, val, AL_EXTENTS_MIN, AL_EXTENTS_MAX, &v);

	if (r == 0)
		p->c->al_extents = (unsigned)v;
	return r;
}

static int
key_bm_gran(struct parser *p, const char *key, const char *val)
{
	uint64_t v = 0;

	if (parse_size(val, &v) < 0 || !IS_POW2(v) || v < BM_GRAN_MIN ||
	    v > BM_GRAN_MAX)
		return conf_error(p, p->lineno, key,
		    "must be a power of two from 4K to 1M, got %s", val);
	p->c->bitmap_granularity = v;
	return 0;
}

/* ---- [node NAME] keys ---- */

static int
key_disk(struct parser *p, const char *key, const char *val)
{
	return parse_path(p, key, val, p->node->disk, sizeof(p->node->disk));
}

static int
key_meta_disk(struct parser *p, const char *key, const char *val)
{
	struct conf_node *n = p->node;

	if (strcmp(val, "internal") == 0) {
		snprintf(n->meta_disk, sizeof(n->meta_disk), "internal");
		return 0;
	}
	if (val[0] != '/')
		return conf_error(p, p->lineno, key,
		    "must be internal or an absolute path, got %s", val);
	return parse_path(p, key, val, n->meta_disk, sizeof(n->meta_disk));
}

/*
 * address = HOST:PORT: where this node's replication link listens and where
 * the peer connects, so it must be a specific inet address whose port + 1
 * (the meta connection) is also a port.
 */
static int
key_address(struct parser *p, const char *key, const char *val)
{
	struct conf_addr *a = &p->node->address;
	unsigned port;

	if (parse_sockaddr(val, &a->ss, &a->sslen) < 0 || a->ss.ss_family == AF_UNIX)
		return conf_error(p, p->lineno, key,
		    "must be IPV4:PORT or [IPV6]:PORT, got %s", val);
	if (addr_is_wildcard(&a->ss))
		return conf_error(p, p->lineno, key,
		    "must be this node's own IP address (the peer connects to "
		    "it), not a wildcard, got %s", val);
	port = addr_port(&a->ss);
	if (port == 0 || port == 65535)
		return conf_error(p, p->lineno, key,
		    "port must be from 1 to 65534 (the meta connection uses "
		    "port + 1), got %u", port);
	if (addr_set_text(p, key, val, a) < 0)
		return p->error;
	p->node->has_address = true;
	return 0;
}

/* Report why parse_sockaddr refused an nbd-listen value. */
static int
listen_syntax_error(struct parser *p, const char *key, const char *val, int r)
{
	if (strncmp(val, "unix:", 5) == 0 && r == -ENAMETOOLONG) {
		if (val[5] == '\0')
			return conf_error(p, p->lineno, key,
			    "missing socket path after unix:");
		return conf_error(p, p->lineno, key,
		    "UNIX socket path too long (%zu bytes, max %zu)",
		    strlen(val + 5), UNIX_PATH_MAX);
	}
	return conf_error(p, p->lineno, key,
	    "must be IPV4:PORT, [IPV6]:PORT, *:PORT or unix:/PATH, got %s", val);
}

/* nbd-listen = ADDRESS (repeatable, at most CONF_MAX_LISTEN per node). */
static int
key_nbd_listen(struct parser *p, const char *key, const char *val)
{
	struct conf_node *n = p->node;
	unsigned ni = (unsigned)(n - p->c->nodes), i;
	struct conf_addr *a = &n->nbd_listen[n->n_nbd_listen];
	int r;

	if (n->n_nbd_listen == CONF_MAX_LISTEN)
		return conf_error(p, p->lineno, key,
		    "too many listeners in [node %s] (max %d)", n->name,
		    CONF_MAX_LISTEN);
	r = parse_sockaddr(val, &a->ss, &a->sslen);
	if (r < 0)
		return listen_syntax_error(p, key, val, r);
	if (a->ss.ss_family == AF_UNIX &&
	    ((struct sockaddr_un *)&a->ss)->sun_path[0] != '/')
		return conf_error(p, p->lineno, key,
		    "UNIX socket path must be absolute (unix:/PATH), got %s", val);
	if (a->ss.ss_family != AF_UNIX && addr_port(&a->ss) == 0)
		return conf_error(p, p->lineno, key,
		    "port must be from 1 to 65535, got 0");
	for (i = 0; i < n->n_nbd_listen; i++)
		if (n->nbd_listen[i].sslen == a->sslen &&
		    memcmp(&n->nbd_listen[i].ss, &a->ss, a->sslen) == 0)
			return conf_error(p, p->lineno, key,
			    "%s is already listed at line %u", val,
			    p->listen_line[ni][i]);
	if (addr_set_text(p, key, val, a) < 0)
		return p->error;
	p->listen_line[ni][n->n_nbd_listen++] = p->lineno;
	return 0;
}

static int
key_control(struct parser *p, const char *key, const char *val)
{
	size_t max = MIN(sizeof(p->node->control), UNIX_PATH_MAX + 1);

	return parse_path(p, key, val, p->node->control, max);
}

/* Every key; the order matches enum conf_key. */
static const struct key_def keys[K_COUNT] = {
	[K_NAME] = { "name", SECT_RESOURCE, false, key_name },
	[K_PROTOCOL] = { "protocol", SECT_RESOURCE, false, key_protocol },
	[K_IO_ENGINE] = { "io-engine", SECT_RESOURCE, false, key_io_engine },
	[K_DIRECT_IO] = { "direct-io", SECT_RESOURCE, false, key_direct_io },
	[K_INLINE_WRITES] = { "inline-writes", SECT_RESOURCE, false, key_inline_writes },
	[K_BUSY_POLL] = { "busy-poll", SECT_RESOURCE, false, key_busy_poll },
	[K_BLOCK_SIZE] = { "block-size", SECT_RESOURCE, false, key_block_size },
	[K_SECRET_FILE] = { "secret-file", SECT_RESOURCE, false, key_secret_file },
	[K_TIMEOUT] = { "timeout", SECT_RESOURCE, false, key_timeout },
	[K_KO_COUNT] = { "ko-count", SECT_RESOURCE, false, key_ko_count },
	[K_MAX_LAG] = { "max-lag-bytes", SECT_RESOURCE, false, key_max_lag },
	[K_ON_CONGESTION] = { "on-congestion", SECT_RESOURCE, false, key_on_congestion },
	[K_ON_IO_ERROR] = { "on-io-error", SECT_RESOURCE, false, key_on_io_error },
	[K_RESYNC_RATE] = { "resync-rate", SECT_RESOURCE, false, key_resync_rate },
	[K_CSUMS] = { "csums", SECT_RESOURCE, false, key_csums },
	[K_AL_EXTENTS] = { "al-extents", SECT_RESOURCE, false, key_al_extents },
	[K_BM_GRAN] = { "bitmap-granularity", SECT_RESOURCE, false, key_bm_gran },
	[K_DISK] = { "disk", SECT_NODE, false, key_disk },
	[K_META_DISK] = { "meta-disk", SECT_NODE, false, key_meta_disk },
	[K_ADDRESS] = { "address", SECT_NODE, false, key_address },
	[K_NBD_LISTEN] = { "nbd-listen", SECT_NODE, true, key_nbd_listen },
	[K_CONTROL] = { "control", SECT_NODE, false, key_control },
};

/* ---- sections ---- */

/* "[resource]" or "[node NAME]" for messages about the current section. */
static const char *
sect_label(const struct parser *p, char *buf, size_t len)
{
	if (p->sect == SECT_NODE)
		snprintf(buf, len, "[node %s]", p->node->name);
	else
		snprintf(buf, len, "[resource]");
	return buf;
}

static int
begin_resource(struct parser *p)
{
	if (p->resource_line != 0)
		return conf_error(p, p->lineno, "[resource]",
		    "duplicate section (first at line %u)", p->resource_line);
	p->resource_line = p->lineno;
	p->sect = SECT_RESOURCE;
	return 0;
}

/* Start node section name: checks the name, the count and duplicates. */
static int
begin_node(struct parser *p, const char *name)
{
	struct conf *c = p->c;
	struct conf_node *n;
	char what[256], why[128];
	const char *bad;
	unsigned i;

	snprintf(what, sizeof(what), "[node %s]", name);
	if (name[0] == '\0')
		return conf_error(p, p->lineno, "[node]",
		    "missing node name; write [node NAME]");
	if ((bad = name_problem(name, why, sizeof(why))) != NULL)
		return conf_error(p, p->lineno, what, "invalid node name: %s", bad);
	for (i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return conf_error(p, p->lineno, what,
			    "duplicate section (first at line %u)",
			    c->nodes[i].line);
	if (c->n_nodes == CONF_MAX_NODES)
		return conf_error(p, p->lineno, what,
		    "too many nodes: a resource has at most %d ([node %s] at "
		    "line %u, [node %s] at line %u)", CONF_MAX_NODES,
		    c->nodes[0].name, c->nodes[0].line, c->nodes[1].name,
		    c->nodes[1].line);
	n = &c->nodes[c->n_nodes++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->meta_disk, sizeof(n->meta_disk), "internal");
	n->line = p->lineno;
	p->node = n;
	p->sect = SECT_NODE;
	return 0;
}

/*
 * A "[...]" line (comments and blanks already stripped; at most the line
 * length inih takes).  The line itself is left intact for inih.
 */
static int
section_line(struct parser *p, const char *s)
{
	size_t n = strlen(s);
	char copy[512], *inner, *end;

	if (n < 2 || s[n - 1] != ']')
		return conf_error(p, p->lineno, s,
		    "section header must end with ']'");
	if (n - 2 >= sizeof(copy))
		return conf_error(p, p->lineno, "[...]", "section header too long");
	memcpy(copy, s + 1, n - 2);
	copy[n - 2] = '\0';
	for (inner = copy; isspace((unsigned char)*inner); inner++)
		;
	for (end = inner + strlen(inner); end > inner &&
	    isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	if (strcmp(inner, "resource") == 0)
		return begin_resource(p);
	if (strncmp(inner, "node", 4) == 0 &&
	    (inner[4] == '\0' || isspace((unsigned char)inner[4]))) {
		for (inner += 4; isspace((unsigned char)*inner); inner++)
			;
		return begin_node(p, inner);
	}
	return conf_error(p, p->lineno, s,
	    "unknown section; expected [resource] or [node NAME]");
}

/* ---- lines ---- */

/*
 * Read the next raw line into p->raw without its "\n"; returns its length,
 * or -1 at the end of the input or on a read error (recorded).
 */
static ssize_t
read_raw_line(struct parser *p)
{
	const char *nl;
	ssize_t n;
	size_t len;

	if (p->fp != NULL) {
		errno = 0;
		n = getline(&p->raw, &p->rawcap, p->fp);
		if (n < 0) {
			if (ferror(p->fp))
				conf_io_error(p, "cannot read", errno ? errno : EIO);
			return -1;
		}
		if (n > 0 && p->raw[n - 1] == '\n')
			p->raw[--n] = '\0';
		return n;
	}
	if (p->text == NULL || *p->text == '\0')
		return -1;
	nl = strchr(p->text, '\n');
	len = nl != NULL ? (size_t)(nl - p->text) : strlen(p->text);
	if (len + 1 > p->rawcap) {
		char *r = realloc(p->raw, len + 1);

		if (r == NULL) {
			conf_io_error(p, "cannot read", ENOMEM);
			return -1;
		}
		p->raw = r;
		p->rawcap = len + 1;
	}
	memcpy(p->raw, p->text, len);
	p->raw[len] = '\0';
	p->text += nl != NULL ? len + 1 : len;
	return (ssize_t)len;
}

/*
 * Strip a UTF-8 byte order mark (line 1), leading and trailing blanks
 * (including a DOS "\r") and comments: ';' or '#' at the start of the line
 * or after a blank.  Returns the cleaned start of the line.
 */
static char *
clean_line(const struct parser *p, char *s)
{
	char *q;
	size_t n;

	if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	for (q = s; *q != '\0'; q++)
		if ((*q == ';' || *q == '#') &&
		    (q == s || isspace((unsigned char)q[-1]))) {
			*q = '\0';
			break;
		}
	n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* The key at the start of a line, for messages: up to a blank, '=' or ':'. */
static const char *
line_key(const char *s, char *buf, size_t len)
{
	size_t n = strcspn(s, " \t=:");

	if (n == 0)
		n = strlen(s);
	snprintf(buf, len, "%.*s", (int)MIN(n, 60), s);
	return buf;
}

/*
 * Check a cleaned line: empty, a section header (handled here), or
 * "key = value" (left to inih and the handler).  max is the longest line
 * inih's buffer takes.
 */
static int
check_line(struct parser *p, char *s, size_t max)
{
	char key[64];
	const char *sep;
	size_t n = strlen(s);

	if (n > max)
		return conf_error(p, p->lineno, line_key(s, key, sizeof(key)),
		    "line too long (%zu characters without comments and "
		    "blanks, max %zu)", n, max);
	if (*s == '\0')
		return 0;
	if (*s == '[')
		return section_line(p, s);
	sep = strpbrk(s, "=:");
	if (sep == s)
		return conf_error(p, p->lineno, s, "missing key before '='");
	if (sep == NULL)
		return conf_error(p, p->lineno, line_key(s, key, sizeof(key)),
		    "missing '=' (expected KEY = VALUE)");
	if (*sep == ':')
		return conf_error(p, p->lineno, line_key(s, key, sizeof(key)),
		    "use '=' between key and value, not ':'");
	return 0;
}

/*
 * inih's line source (fgets contract): the next cleaned line plus "\n" in
 * buf[num], or NULL at the end of the input or after the first error.
 */
static char *
conf_reader(char *buf, int num, void *stream)
{
	struct parser *p = stream;
	ssize_t n;
	char *s;

	if (p->error != 0 || num < 3)
		return NULL;
	n = read_raw_line(p);
	if (n < 0)
		return NULL;
	p->lineno++;
	if ((size_t)n != strlen(p->raw)) {
		conf_error(p, p->lineno, "line", "contains a NUL byte");
		return NULL;
	}
	s = clean_line(p, p->raw);
	if (check_line(p, s, (size_t)num - 2) < 0)
		return NULL;
	n = (ssize_t)strlen(s);
	memcpy(buf, s, (size_t)n);
	buf[n] = '\n';
	buf[n + 1] = '\0';
	return buf;
}

/* inih's handler: one "key = value" of the current section. */
static int
conf_handler(void *user, const char *section, const char *key, const char *val)
{
	struct parser *p = user;
	const struct key_def *k = NULL;
	char sect[CONF_NAME_MAX + 16];
	unsigned *seen, i;

	if (p->error != 0)
		return 0;
	if (p->sect == SECT_NONE)
		return conf_error(p, p->lineno, key, "outside any section; put "
		    "it under [resource] or [node NAME]"), 0;
	for (i = 0; i < K_COUNT && k == NULL; i++)
		if (strcmp(keys[i].name, key) == 0)
			k = &keys[i];
	sect_label(p, sect, sizeof(sect));
	if (k == NULL)
		return conf_error(p, p->lineno, key, "unknown key in %s", sect), 0;
	if (k->sect != p->sect)
		return conf_error(p, p->lineno, key, "belongs in %s, not in %s",
		    k->sect == SECT_NODE ? "a [node NAME] section" : "[resource]",
		    sect), 0;
	seen = &p->seen[p->sect == SECT_NODE ? 1 + (p->node - p->c->nodes) : 0]
	    [k - keys];
	if (*seen != 0 && !k->repeatable)
		return conf_error(p, p->lineno, key,
		    "duplicate key in %s (already set at line %u)", sect, *seen), 0;
	if (*val == '\0')
		return conf_error(p, p->lineno, key, "missing value"), 0;
	if (*seen == 0)
		*seen = p->lineno;
	return k->parse(p, key, val) == 0;
}

/* ---- whole file ---- */

/*
 * Two nodes on one host (tests, a demo) with data ports one apart: one's
 * meta port (port + 1) is the other's data port, and the second daemon to
 * start could not listen.
 */
static bool
ports_overlap(const struct conf_addr *a, const struct conf_addr *b)
{
	const struct sockaddr_in *a4 = (const void *)&a->ss, *b4 = (const void *)&b->ss;
	const struct sockaddr_in6 *a6 = (const void *)&a->ss, *b6 = (const void *)&b->ss;
	unsigned pa = addr_port(&a->ss), pb = addr_port(&b->ss);

	if (a->ss.ss_family != b->ss.ss_family || (pa + 1 != pb && pb + 1 != pa))
		return false;
	if (a->ss.ss_family == AF_INET)
		return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
}

/* The checks that need the whole file, and defaults that depend on it. */
static int
conf_finish(struct parser *p)
{
	struct conf *c = p->c;
	struct conf_node *n;
	unsigned i;

	if (p->resource_line == 0)
		return conf_error(p, 0, "[resource]", "missing section; the file "
		    "needs [resource] with name = NAME");
	if (c->name[0] == '\0')
		return conf_error(p, p->resource_line, "name",
		    "missing; [resource] needs name = NAME");
	/* Kernel AIO is only asynchronous with O_DIRECT: on a buffered fd
	 * io_submit() copies (and reads from disk) before it returns, which
	 * would stall the one event loop thread and every client with it. */
	if (!c->direct_io && c->io_engine == IOENG_LIBAIO)
		return conf_error(p, p->seen[0][K_DIRECT_IO], "direct-io",
		    "no cannot be combined with io-engine = libaio (line %u): "
		    "kernel AIO on a buffered file blocks inside io_submit(2); "
		    "use io-engine = io_uring or sync", p->seen[0][K_IO_ENGINE]);
	/* Only io_uring punts buffered writes to workers, and only buffered
	 * writes can be copied into the page cache on the loop thread. */
	if (c->inline_writes && (c->direct_io || c->io_engine != IOENG_URING))
		return conf_error(p, p->seen[0][K_INLINE_WRITES], "inline-writes",
		    "yes needs direct-io = no and io-engine = io_uring (it "
		    "copies buffered writes into the page cache on the event "
		    "loop thread instead of io_uring's workers)");
	if (c->n_nodes == 0)
		return conf_error(p, 0, "[node NAME]", "missing section; add "
		    "[node NAME] with disk = PATH (one node: standalone, two: "
		    "mirrored)");
	for (i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].disk[0] == '\0')
			return conf_error(p, c->nodes[i].line, "disk",
			    "missing; [node %s] needs disk = PATH",
			    c->nodes[i].name);
	for (i = 0; i < c->n_nodes; i++) {
		n = &c->nodes[i];
		if (c->n_nodes == 2 && !n->has_address)
			return conf_error(p, n->line, "address", "missing; [node %s] "
			    "needs address = HOST:PORT because the resource has "
			    "two nodes", n->name);
		if (n->control[0] == '\0')
			snprintf(n->control, sizeof(n->control),
			    CONTROL_DIR "/%s.sock", c->name);
	}
	if (c->n_nodes == 2 &&
	    c->nodes[0].address.sslen == c->nodes[1].address.sslen &&
	    memcmp(&c->nodes[0].address.ss, &c->nodes[1].address.ss,
	    c->nodes[0].address.sslen) == 0)
		return conf_error(p, p->seen[2][K_ADDRESS], "address",
		    "same as [node %s] (line %u); each node needs its own "
		    "address", c->nodes[0].name, p->seen[1][K_ADDRESS]);
	if (c->n_nodes == 2 && ports_overlap(&c->nodes[0].address,
	    &c->nodes[1].address))
		return conf_error(p, p->seen[2][K_ADDRESS], "address",
		    "port %u is [node %s]'s meta port or its data port is this "
		    "node's meta port (line %u); on one host the two nodes' "
		    "ports must be at least 2 apart", addr_port(
		    &c->nodes[1].address.ss), c->nodes[0].name,
		    p->seen[1][K_ADDRESS]);
	return 0;
}

/* Zero *c and set every default. */
static void
conf_defaults(struct conf *c, const char *file)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s", file);
	c->protocol = PROTO_SYNC;
	c->io_engine = IOENG_URING;
	c->direct_io = true;
	c->busy_poll_us = BUSY_POLL_DEFAULT_US;
	c->block_size = 4096;
	c->timeout_ms = 6000;
	c->ko_count = 7;
	c->max_lag_bytes = 64ull << 20;
	c->on_congestion = CONGESTION_BLOCK;
	c->on_io_error = IOERR_DETACH;
	c->resync_rate = 0;
	c->csums = CSUMS_NONE;
	c->al_extents = 1237;
	c->bitmap_granularity = 4096;
}

/* Run the parse set up in *p; 0 or the first error (message in p->err). */
static int
conf_parse(struct parser *p)
{
	int r;

	conf_defaults(p->c, p->file);
	if (p->err != NULL && p->errlen > 0)
		p->err[0] = '\0';
	r = ini_parse_stream(conf_reader, p, conf_handler, p);
	free(p->raw);
	p->raw = NULL;
	if (p->error == 0 && r > 0)
		conf_error(p, (unsigned)r, "line", "syntax error");
	else if (p->error == 0 && r < 0)
		conf_io_error(p, "cannot parse", ENOMEM);
	if (p->error == 0)
		conf_finish(p);
	return p->error;
}

int
conf_load(const char *path, struct conf *c, char *err, size_t errlen)
{
	struct parser p = { .c = c, .file = path, .err = err, .errlen = errlen };
	int r;

	p.fp = fopen(path, "re");
	if (p.fp == NULL) {
		r = errno;
		memset(c, 0, sizeof(*c));
		return conf_io_error(&p, "cannot open", r);
	}
	r = conf_parse(&p);
	fclose(p.fp);
	return r;
}

int
conf_load_string(const char *text, const char *name, struct conf *c,
    char *err, size_t errlen)
{
	struct parser p = { .c = c, .file = name, .err = err, .errlen = errlen,
	    .text = text };

	return conf_parse(&p);
}

const struct conf_node *
conf_node(const struct conf *c, const char *name)
{
	unsigned i;

	for (i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return &c->nodes[i];
	return NULL;
}

const struct conf_node *
conf_peer(const struct conf *c, const char *name)
{
	const struct conf_node *self = conf_node(c, name);

	if (self == NULL || c->n_nodes != 2)
		return NULL;
	return self == &c->nodes[0] ? &c->nodes[1] : &c->nodes[0];
}

const char *
conf_protocol_name(enum repl_protocol p)
{
	return (unsigned)p < ARRAY_SIZE(protocol_names) ? protocol_names[p] : "unknown";
}

const char *
conf_on_congestion_name(enum on_congestion oc)
{
	return (unsigned)oc < ARRAY_SIZE(congestion_names) ?
	    congestion_names[oc] : "unknown";
}

const char *
conf_on_io_error_name(enum on_io_error e)
{
	return (unsigned)e < ARRAY_SIZE(io_error_names) ? io_error_names[e] : "unknown";
}

const char *
conf_csums_name(enum csums_alg a)
{
	return (unsigned)a < ARRAY_SIZE(csums_names) ? csums_names[a] : "unknown";
}
