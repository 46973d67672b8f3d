/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Replication protocol codecs (lib/repl_proto.h): symbolic names, the frame
 * header, one decoder and one encoder per message body, the dirty-bitmap
 * chunk coder, the HELLO comparison.  Pure functions: no allocation, no
 * I/O, no logging; the decoders are the libFuzzer targets of
 * tests/fuzz/fuzz_repl.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#define XXH_INLINE_ALL		/* header-only xxhash: no link dependency (fuzz targets) */
#include <xxhash.h>

#include "bitmap.h"
#include "repl_proto.h"
#include "util.h"

/* ---- names and the type table ---- */

/* One entry of a value -> name table. */
struct repl_name {
	uint32_t value;		/* protocol value */
	const char *name;	/* its symbolic name */
};

/* What the header decoder knows about each message type. */
struct repl_type_info {
	const char *name;	/* "REPL_MSG_..." */
	unsigned conns;		/* REPL_CONN_* it may travel on */
	uint32_t min_len;	/* smallest body */
	uint32_t max_len;	/* largest body */
	bool handshake;		/* frozen layout, always version 1 */
};

#define D REPL_CONN_DATA
#define M REPL_CONN_META
/* Indexed by type; entry 0 is unused ("no such type"). */
static const struct repl_type_info types[REPL_MSG_MAX + 1] = {
	[REPL_MSG_HELLO] = { "REPL_MSG_HELLO", D | M, REPL_HELLO_LEN, REPL_HELLO_LEN, true },
	[REPL_MSG_AUTH_CHALLENGE] = { "REPL_MSG_AUTH_CHALLENGE", D | M,
	    REPL_AUTH_CHALLENGE_LEN, REPL_AUTH_CHALLENGE_LEN, true },
	[REPL_MSG_AUTH_RESPONSE] = { "REPL_MSG_AUTH_RESPONSE", D | M,
	    REPL_AUTH_RESPONSE_LEN, REPL_AUTH_RESPONSE_LEN, true },
	[REPL_MSG_AUTH_RESULT] = { "REPL_MSG_AUTH_RESULT", D | M,
	    REPL_AUTH_RESULT_LEN, REPL_AUTH_RESULT_LEN, true },
	[REPL_MSG_REJECT] = { "REPL_MSG_REJECT", D | M,
	    REPL_REJECT_MIN_LEN, REPL_REJECT_MAX_LEN, true },
	[REPL_MSG_STATE] = { "REPL_MSG_STATE", D | M, REPL_STATE_LEN, REPL_STATE_LEN, false },
	[REPL_MSG_BITMAP] = { "REPL_MSG_BITMAP", D,
	    REPL_BITMAP_HDR_LEN + MD_BM_CHUNK_HDR, REPL_BITMAP_MAX_LEN, false },
	[REPL_MSG_DATA] = { "REPL_MSG_DATA", D,
	    REPL_DATA_LEN, REPL_DATA_LEN + REPL_MAX_DATA, false },
	[REPL_MSG_TRIM] = { "REPL_MSG_TRIM", D, REPL_TRIM_LEN, REPL_TRIM_LEN, false },
	[REPL_MSG_WRITE_ZEROES] = { "REPL_MSG_WRITE_ZEROES", D,
	    REPL_TRIM_LEN, REPL_TRIM_LEN, false },
	[REPL_MSG_FLUSH] = { "REPL_MSG_FLUSH", D, REPL_FLUSH_LEN, REPL_FLUSH_LEN, false },
	[REPL_MSG_RECV_ACK] = { "REPL_MSG_RECV_ACK", M,
	    REPL_RECV_ACK_LEN, REPL_RECV_ACK_LEN, false },
	[REPL_MSG_WRITE_ACK] = { "REPL_MSG_WRITE_ACK", M,
	    REPL_WRITE_ACK_LEN, REPL_WRITE_ACK_LEN, false },
	[REPL_MSG_FLUSH_ACK] = { "REPL_MSG_FLUSH_ACK", M,
	    REPL_FLUSH_ACK_LEN, REPL_FLUSH_ACK_LEN, false },
	[REPL_MSG_PING] = { "REPL_MSG_PING", M, REPL_PING_LEN, REPL_PING_LEN, false },
	[REPL_MSG_PING_ACK] = { "REPL_MSG_PING_ACK", M, REPL_PING_LEN, REPL_PING_LEN, false },
	[REPL_MSG_RESYNC_REQUEST] = { "REPL_MSG_RESYNC_REQUEST", D,
	    REPL_RESYNC_REQUEST_LEN, REPL_RESYNC_REQUEST_LEN, false },
	[REPL_MSG_RESYNC_DATA] = { "REPL_MSG_RESYNC_DATA", D,
	    REPL_RESYNC_DATA_LEN, REPL_RESYNC_DATA_LEN + REPL_MAX_DATA, false },
	[REPL_MSG_CSUM_REQUEST] = { "REPL_MSG_CSUM_REQUEST", D,
	    REPL_CSUM_REQUEST_LEN, REPL_CSUM_REQUEST_LEN, false },
	[REPL_MSG_CSUM_SAME] = { "REPL_MSG_CSUM_SAME", M,
	    REPL_CSUM_SAME_LEN, REPL_CSUM_SAME_LEN, false },
	[REPL_MSG_VERIFY_REQUEST] = { "REPL_MSG_VERIFY_REQUEST", D,
	    REPL_VERIFY_REQUEST_LEN, REPL_VERIFY_REQUEST_LEN, false },
	[REPL_MSG_VERIFY_REPLY] = { "REPL_MSG_VERIFY_REPLY", M,
	    REPL_VERIFY_REPLY_LEN, REPL_VERIFY_REPLY_LEN, false },
	[REPL_MSG_RESYNC_DONE] = { "REPL_MSG_RESYNC_DONE", D,
	    REPL_RESYNC_DONE_LEN, REPL_RESYNC_DONE_LEN, false },
	[REPL_MSG_PROMOTE_NOTICE] = { "REPL_MSG_PROMOTE_NOTICE", M,
	    REPL_PROMOTE_NOTICE_LEN, REPL_PROMOTE_NOTICE_LEN, false },
	[REPL_MSG_DISCONNECT] = { "REPL_MSG_DISCONNECT", D | M,
	    REPL_DISCONNECT_MIN_LEN, REPL_DISCONNECT_MAX_LEN, false },
	[REPL_MSG_RESYNC_ACK] = { "REPL_MSG_RESYNC_ACK", M,
	    REPL_RESYNC_ACK_LEN, REPL_RESYNC_ACK_LEN, false },
	[REPL_MSG_READ_REQUEST] = { "REPL_MSG_READ_REQUEST", D,
	    REPL_READ_REQUEST_LEN, REPL_READ_REQUEST_LEN, false },
	[REPL_MSG_READ_REPLY] = { "REPL_MSG_READ_REPLY", D,
	    REPL_READ_REPLY_LEN, REPL_READ_REPLY_LEN + REPL_MAX_DATA, false },
};
#undef D
#undef M

static const struct repl_name reject_names[] = {
	{ REPL_REJECT_AUTH,		"REPL_REJECT_AUTH" },
	{ REPL_REJECT_OTHER_RESOURCE,	"REPL_REJECT_OTHER_RESOURCE" },
	{ REPL_REJECT_OTHER_VOLUME,	"REPL_REJECT_OTHER_VOLUME" },
	{ REPL_REJECT_SIZE,		"REPL_REJECT_SIZE" },
	{ REPL_REJECT_VERSION,		"REPL_REJECT_VERSION" },
	{ REPL_REJECT_SAME_NODE,	"REPL_REJECT_SAME_NODE" },
	{ REPL_REJECT_UNKNOWN_NODE,	"REPL_REJECT_UNKNOWN_NODE" },
	{ REPL_REJECT_CONFIG,		"REPL_REJECT_CONFIG" },
	{ REPL_REJECT_PROTOCOL,		"REPL_REJECT_PROTOCOL" },
};

static const struct repl_name disc_names[] = {
	{ REPL_DISC_SHUTDOWN,		"REPL_DISC_SHUTDOWN" },
	{ REPL_DISC_ADMIN,		"REPL_DISC_ADMIN" },
	{ REPL_DISC_DUPLICATE,		"REPL_DISC_DUPLICATE" },
	{ REPL_DISC_PROTOCOL,		"REPL_DISC_PROTOCOL" },
	{ REPL_DISC_TIMEOUT,		"REPL_DISC_TIMEOUT" },
	{ REPL_DISC_SPLIT_BRAIN,	"REPL_DISC_SPLIT_BRAIN" },
	{ REPL_DISC_UNRELATED,		"REPL_DISC_UNRELATED" },
	{ REPL_DISC_IO_ERROR,		"REPL_DISC_IO_ERROR" },
	{ REPL_DISC_STATE_CONFLICT,	"REPL_DISC_STATE_CONFLICT" },
	{ REPL_DISC_SESSION,		"REPL_DISC_SESSION" },
};

static const struct repl_name role_names[] = {
	{ REPL_ROLE_SECONDARY,		"secondary" },
	{ REPL_ROLE_PRIMARY,		"primary" },
};

static const struct repl_name disk_names[] = {
	{ REPL_DISK_DISKLESS,		"diskless" },
	{ REPL_DISK_INCONSISTENT,	"inconsistent" },
	{ REPL_DISK_OUTDATED,		"outdated" },
	{ REPL_DISK_CONSISTENT,		"consistent" },
	{ REPL_DISK_UPTODATE,		"uptodate" },
	{ REPL_DISK_FAILED,		"failed" },
};

static const struct repl_name rs_names[] = {
	{ REPL_RS_CONNECTING,		"connecting" },
	{ REPL_RS_ESTABLISHED,		"established" },
	{ REPL_RS_SYNC_SOURCE,		"sync-source" },
	{ REPL_RS_SYNC_TARGET,		"sync-target" },
	{ REPL_RS_VERIFY_SOURCE,	"verify-source" },
	{ REPL_RS_VERIFY_TARGET,	"verify-target" },
	{ REPL_RS_PAUSED_SYNC_SOURCE,	"paused-sync-source" },
	{ REPL_RS_PAUSED_SYNC_TARGET,	"paused-sync-target" },
	{ REPL_RS_AHEAD,		"ahead" },
	{ REPL_RS_BEHIND,		"behind" },
};

static const struct repl_name mode_names[] = {
	{ REPL_MODE_SYNC,		"sync" },
	{ REPL_MODE_MEMSYNC,		"memsync" },
	{ REPL_MODE_ASYNC,		"async" },
};

/*
 * Format an unknown value as "<prefix><n>" into one of four per-thread
 * slots, so one log line may name up to four unknown values.
 */
static const char *
unknown_name(const char *prefix, uint32_t value)
{
	static __thread char slots[4][40];
	static __thread unsigned next;
	char *s = slots[next++ % ARRAY_SIZE(slots)];

	snprintf(s, sizeof(slots[0]), "%s%u", prefix, value);
	return s;
}

/* Look value up in a table, or format it with prefix. */
static const char *
name_lookup(const struct repl_name *t, size_t n, uint32_t value, const char *prefix)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].value == value)
			return t[i].name;
	return unknown_name(prefix, value);
}

const char *
repl_type_name(uint32_t type)
{
	if (type <= REPL_MSG_MAX && types[type].name != NULL)
		return types[type].name;
	return unknown_name("REPL_MSG_", type);
}

const char *
repl_reject_name(uint32_t reason)
{
	return name_lookup(reject_names, ARRAY_SIZE(reject_names), reason, "REPL_REJECT_");
}

const char *
repl_disc_name(uint32_t reason)
{
	return name_lookup(disc_names, ARRAY_SIZE(disc_names), reason, "REPL_DISC_");
}

const char *
repl_role_name(uint32_t role)
{
	return name_lookup(role_names, ARRAY_SIZE(role_names), role, "role-");
}

const char *
repl_disk_name(uint32_t disk)
{
	return name_lookup(disk_names, ARRAY_SIZE(disk_names), disk, "disk-");
}

const char *
repl_rs_name(uint32_t rs)
{
	return name_lookup(rs_names, ARRAY_SIZE(rs_names), rs, "repl-");
}

const char *
repl_mode_name(uint32_t mode)
{
	return name_lookup(mode_names, ARRAY_SIZE(mode_names), mode, "mode-");
}

/* The table entry of a known type, or NULL. */
static const struct repl_type_info *
type_info(uint32_t type)
{
	if (type == 0 || type > REPL_MSG_MAX || types[type].name == NULL)
		return NULL;
	return &types[type];
}

unsigned
repl_type_conns(uint32_t type)
{
	const struct repl_type_info *ti = type_info(type);

	return ti != NULL ? ti->conns : 0;
}

bool
repl_type_is_handshake(uint32_t type)
{
	const struct repl_type_info *ti = type_info(type);

	return ti != NULL && ti->handshake;
}

/* ---- frame header ---- */

/* XXH32 (seed 0) of the first 28 header bytes. */
static uint32_t
hdr_check(const uint8_t *p)
{
	return XXH32(p, REPL_HDR_LEN - 4, 0);
}

void
repl_hdr_encode(void *buf, const struct repl_hdr *h)
{
	uint8_t *p = buf;

	put_be32(p, REPL_MAGIC);
	put_be16(p + 4, h->version);
	put_be16(p + 6, h->type);
	put_be32(p + 8, h->flags);
	put_be32(p + 12, h->length);
	put_be64(p + 16, h->epoch);
	put_be32(p + 24, 0);
	put_be32(p + 28, hdr_check(p));
}

/* Check order: see repl_proto.h. */
int
repl_hdr_decode(const void *buf, size_t len, struct repl_hdr *out)
{
	const uint8_t *p = buf;
	const struct repl_type_info *ti;
	struct repl_hdr h;

	if (len < REPL_HDR_LEN)
		return -EAGAIN;
	if (get_be32(p) != REPL_MAGIC || get_be32(p + 28) != hdr_check(p))
		return -EBADMSG;
	h.version = get_be16(p + 4);
	h.type = get_be16(p + 6);
	h.flags = get_be32(p + 8);
	h.length = get_be32(p + 12);
	h.epoch = get_be64(p + 16);
	if (h.version < REPL_PROTO_VERSION_MIN || h.version > REPL_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if ((ti = type_info(h.type)) == NULL)
		return -EPROTO;
	if (ti->handshake && h.version != REPL_PROTO_HANDSHAKE_VERSION)
		return -EPROTONOSUPPORT;
	if ((h.flags & ~REPL_HF_KNOWN) != 0 || get_be32(p + 24) != 0)
		return -EINVAL;
	if (h.length > REPL_MAX_PAYLOAD || h.length > ti->max_len)
		return -E2BIG;
	if (h.length < ti->min_len)
		return -EBADMSG;
	*out = h;
	return 0;
}

/* ---- field helpers ---- */

/*
 * A fixed name field: 1..REPL_NAME_LEN-1 characters 0x21..0x7e, a NUL,
 * then only NULs.  Copies it into dst (REPL_NAME_LEN bytes).
 */
static int
get_name(const uint8_t *p, char *dst)
{
	const uint8_t *nul = memchr(p, 0, REPL_NAME_LEN);
	size_t n;

	if (nul == NULL || nul == p)
		return -EBADMSG;
	n = (size_t)(nul - p);
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return -EBADMSG;
	for (size_t i = n; i < REPL_NAME_LEN; i++)
		if (p[i] != 0)
			return -EBADMSG;
	memcpy(dst, p, REPL_NAME_LEN);
	return 0;
}

/* Write a name field; -EINVAL for names the decoder would refuse. */
static int
put_name(uint8_t *p, const char *name)
{
	size_t n = strnlen(name, REPL_NAME_LEN);

	if (n == 0 || n == REPL_NAME_LEN)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)name[i] < 0x21 || (uint8_t)name[i] > 0x7e)
			return -EINVAL;
	memset(p, 0, REPL_NAME_LEN);
	memcpy(p, name, n);
	return 0;
}

/*
 * A text tail of n bytes (REJECT, DISCONNECT): characters 0x20..0x7e and a
 * single NUL as the last byte.  Copies it into dst (REPL_TEXT_MAX bytes).
 */
static int
get_text(const uint8_t *p, size_t n, char *dst)
{
	if (n == 0 || n > REPL_TEXT_MAX || p[n - 1] != 0)
		return -EBADMSG;
	for (size_t i = 0; i + 1 < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return -EBADMSG;
	memset(dst, 0, REPL_TEXT_MAX);
	memcpy(dst, p, n);
	return 0;
}

/*
 * Write a text tail (truncated to REPL_TEXT_MAX - 1 characters, other than
 * printable ASCII replaced by '?'); returns the bytes written, NUL included.
 */
static size_t
put_text(uint8_t *p, const char *text)
{
	size_t n = strnlen(text, REPL_TEXT_MAX - 1);

	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)text[i];

		p[i] = (c < 0x20 || c > 0x7e) ? '?' : c;
	}
	p[n] = 0;
	return n + 1;
}

/*
 * An I/O range inside a body: length 1..max, offset and length multiples of
 * REPL_SECTOR, offset + length not wrapping.
 */
static int
check_io(uint64_t offset, uint32_t length, uint32_t max)
{
	if (length == 0 || length > max)
		return -EINVAL;
	if (offset % REPL_SECTOR != 0 || length % REPL_SECTOR != 0)
		return -EINVAL;
	if (offset > UINT64_MAX - length)
		return -EOVERFLOW;
	return 0;
}

/*
 * Start a frame: check the space, write the header.  body_len is what the
 * encoder writes now, wire_len what the header announces (more for DATA).
 * Returns the frame bytes written (header + body_len) or -ENOSPC.
 */
static int
frame_begin(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    size_t body_len, size_t wire_len)
{
	struct repl_hdr h = {
		.version = repl_type_is_handshake(type) ? REPL_PROTO_HANDSHAKE_VERSION
		    : tx->version,
		.type = type,
		.flags = 0,
		.length = (uint32_t)wire_len,
		.epoch = tx->epoch,
	};

	if (size < REPL_HDR_LEN + body_len)
		return -ENOSPC;
	repl_hdr_encode(buf, &h);
	return (int)(REPL_HDR_LEN + body_len);
}

/* The body of a frame begun with frame_begin(). */
#define BODY(buf) ((uint8_t *)(buf) + REPL_HDR_LEN)

/* ---- HELLO ---- */

int
repl_hello_decode(const void *buf, size_t len, struct repl_hello *out)
{
	const uint8_t *p = buf;
	struct repl_hello m;

	if (len != REPL_HELLO_LEN)
		return -EBADMSG;
	m.version_min = get_be16(p);
	m.version_max = get_be16(p + 2);
	m.conn = get_be16(p + 4);
	m.mode = get_be16(p + 6);
	m.features = get_be32(p + 8);
	m.block_size = get_be32(p + 12);
	m.size = get_be64(p + 16);
	m.bitmap_granularity = get_be32(p + 24);
	m.node_id = get_be32(p + 28);
	m.nonce = get_be64(p + 32);
	m.current_uuid = get_be64(p + 40);
	memcpy(m.volume_uuid, p + 48, REPL_UUID_LEN);
	if (get_name(p + 64, m.resource) < 0 || get_name(p + 128, m.node) < 0)
		return -EBADMSG;
	if (m.version_min == 0 || m.version_min > m.version_max)
		return -EINVAL;
	if (m.conn != REPL_CONN_DATA && m.conn != REPL_CONN_META)
		return -EINVAL;
	if (m.mode > REPL_MODE_ASYNC)
		return -EINVAL;
	if (!IS_POW2(m.block_size) || m.block_size < REPL_SECTOR ||
	    !IS_POW2(m.bitmap_granularity) || m.bitmap_granularity < REPL_SECTOR)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_hello_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_hello *m)
{
	uint8_t *p = BODY(buf);
	int n = frame_begin(buf, size, tx, REPL_MSG_HELLO, REPL_HELLO_LEN, REPL_HELLO_LEN);

	if (n < 0)
		return n;
	put_be16(p, m->version_min);
	put_be16(p + 2, m->version_max);
	put_be16(p + 4, m->conn);
	put_be16(p + 6, m->mode);
	put_be32(p + 8, m->features);
	put_be32(p + 12, m->block_size);
	put_be64(p + 16, m->size);
	put_be32(p + 24, m->bitmap_granularity);
	put_be32(p + 28, m->node_id);
	put_be64(p + 32, m->nonce);
	put_be64(p + 40, m->current_uuid);
	memcpy(p + 48, m->volume_uuid, REPL_UUID_LEN);
	if (put_name(p + 64, m->resource) < 0 || put_name(p + 128, m->node) < 0)
		return -EINVAL;
	return n;
}

/* ---- AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_RESULT ---- */

int
repl_auth_challenge_decode(const void *buf, size_t len, struct repl_auth_challenge *out)
{
	if (len != REPL_AUTH_CHALLENGE_LEN)
		return -EBADMSG;
	memcpy(out->nonce, buf, REPL_NONCE_LEN);
	return 0;
}

int
repl_auth_challenge_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_auth_challenge *m)
{
	int n = frame_begin(buf, size, tx, REPL_MSG_AUTH_CHALLENGE,
	    REPL_AUTH_CHALLENGE_LEN, REPL_AUTH_CHALLENGE_LEN);

	if (n >= 0)
		memcpy(BODY(buf), m->nonce, REPL_NONCE_LEN);
	return n;
}

int
repl_auth_response_decode(const void *buf, size_t len, struct repl_auth_response *out)
{
	if (len != REPL_AUTH_RESPONSE_LEN)
		return -EBADMSG;
	memcpy(out->hmac, buf, REPL_HMAC_LEN);
	return 0;
}

int
repl_auth_response_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_auth_response *m)
{
	int n = frame_begin(buf, size, tx, REPL_MSG_AUTH_RESPONSE,
	    REPL_AUTH_RESPONSE_LEN, REPL_AUTH_RESPONSE_LEN);

	if (n >= 0)
		memcpy(BODY(buf), m->hmac, REPL_HMAC_LEN);
	return n;
}

int
repl_auth_result_decode(const void *buf, size_t len, struct repl_auth_result *out)
{
	const uint8_t *p = buf;
	struct repl_auth_result m;

	if (len != REPL_AUTH_RESULT_LEN)
		return -EBADMSG;
	m.status = get_be32(p);
	m.version = get_be16(p + 4);
	if (get_be16(p + 6) != 0 || m.status > REPL_REJECT_MAX)
		return -EINVAL;
	if (m.status == 0 && m.version == 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_auth_result_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_auth_result *m)
{
	uint8_t *p = BODY(buf);
	int n;

	if (m->status > REPL_REJECT_MAX || (m->status == 0 && m->version == 0))
		return -EINVAL;
	n = frame_begin(buf, size, tx, REPL_MSG_AUTH_RESULT,
	    REPL_AUTH_RESULT_LEN, REPL_AUTH_RESULT_LEN);
	if (n < 0)
		return n;
	put_be32(p, m->status);
	put_be16(p + 4, m->version);
	put_be16(p + 6, 0);
	return n;
}

/* ---- REJECT and DISCONNECT (reason + text) ---- */

/* Decode a reason + text body whose reason must be in 1..max. */
static int
reason_text_decode(const uint8_t *p, size_t len, uint32_t max, uint32_t *reason, char *text)
{
	uint32_t r;
	int rc;

	if (len < REPL_REJECT_MIN_LEN || len > REPL_REJECT_MAX_LEN)
		return -EBADMSG;
	r = get_be32(p);
	if (r == 0 || r > max || get_be32(p + 4) != 0)
		return -EINVAL;
	if ((rc = get_text(p + 8, len - 8, text)) < 0)
		return rc;
	*reason = r;
	return 0;
}

/* Encode a reason + text frame. */
static int
reason_text_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    uint32_t max, uint32_t reason, const char *text)
{
	size_t tlen = strnlen(text, REPL_TEXT_MAX - 1) + 1;
	int n;

	if (reason == 0 || reason > max)
		return -EINVAL;
	n = frame_begin(buf, size, tx, type, 8 + tlen, 8 + tlen);
	if (n < 0)
		return n;
	put_be32(BODY(buf), reason);
	put_be32(BODY(buf) + 4, 0);
	put_text(BODY(buf) + 8, text);
	return n;
}

int
repl_reject_decode(const void *buf, size_t len, struct repl_reject *out)
{
	return reason_text_decode(buf, len, REPL_REJECT_MAX, &out->reason, out->text);
}

int
repl_reject_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_reject *m)
{
	return reason_text_encode(buf, size, tx, REPL_MSG_REJECT, REPL_REJECT_MAX,
	    m->reason, m->text);
}

int
repl_disconnect_decode(const void *buf, size_t len, struct repl_disconnect *out)
{
	return reason_text_decode(buf, len, REPL_DISC_MAX, &out->reason, out->text);
}

int
repl_disconnect_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_disconnect *m)
{
	return reason_text_encode(buf, size, tx, REPL_MSG_DISCONNECT, REPL_DISC_MAX,
	    m->reason, m->text);
}

/* ---- STATE ---- */

/* Enum fields in range, no unknown flag. */
static bool
state_valid(const struct repl_state *m)
{
	return m->role <= REPL_ROLE_PRIMARY && m->disk <= REPL_DISK_FAILED &&
	    m->repl <= REPL_RS_MAX && (m->flags & ~REPL_STATE_F_KNOWN) == 0 &&
	    (m->md_flags & ~MD_FL_ALL) == 0;
}

int
repl_state_decode(const void *buf, size_t len, struct repl_state *out)
{
	const uint8_t *p = buf;
	struct repl_state m;

	if (len != REPL_STATE_LEN)
		return -EBADMSG;
	m.role = get_be32(p);
	m.disk = get_be32(p + 4);
	m.repl = get_be32(p + 8);
	m.flags = get_be32(p + 12);
	m.md_flags = get_be32(p + 16);
	m.epoch = get_be64(p + 24);
	m.current_uuid = get_be64(p + 32);
	m.bitmap_uuid = get_be64(p + 40);
	for (unsigned i = 0; i < REPL_HISTORY_UUIDS; i++)
		m.history_uuid[i] = get_be64(p + 48 + 8 * i);
	m.out_of_sync = get_be64(p + 80);
	if (!state_valid(&m) || get_be32(p + 20) != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_state_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_state *m)
{
	uint8_t *p = BODY(buf);
	int n;

	if (!state_valid(m))
		return -EINVAL;
	if ((n = frame_begin(buf, size, tx, REPL_MSG_STATE, REPL_STATE_LEN, REPL_STATE_LEN)) < 0)
		return n;
	put_be32(p, m->role);
	put_be32(p + 4, m->disk);
	put_be32(p + 8, m->repl);
	put_be32(p + 12, m->flags);
	put_be32(p + 16, m->md_flags);
	put_be32(p + 20, 0);
	put_be64(p + 24, m->epoch);
	put_be64(p + 32, m->current_uuid);
	put_be64(p + 40, m->bitmap_uuid);
	for (unsigned i = 0; i < REPL_HISTORY_UUIDS; i++)
		put_be64(p + 48 + 8 * i, m->history_uuid[i]);
	put_be64(p + 80, m->out_of_sync);
	return n;
}

/* ---- BITMAP ---- */

int
repl_bitmap_decode(const void *buf, size_t len, struct repl_bitmap *out)
{
	const uint8_t *p = buf;
	struct repl_bitmap m;

	if (len < REPL_BITMAP_HDR_LEN + MD_BM_CHUNK_HDR || len > REPL_BITMAP_MAX_LEN)
		return -EBADMSG;
	m.total_bits = get_be64(p);
	m.granularity = get_be32(p + 8);
	m.flags = get_be32(p + 12);
	m.chunk_len = (uint32_t)(len - REPL_BITMAP_HDR_LEN);
	if (m.total_bits == 0 || !md_bitmap_gran_valid(m.granularity) ||
	    (m.flags & ~REPL_BITMAP_F_KNOWN) != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_bitmap_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_bitmap *m)
{
	size_t body = (size_t)REPL_BITMAP_HDR_LEN + m->chunk_len;
	uint8_t *p = BODY(buf);
	int n;

	if (m->total_bits == 0 || !md_bitmap_gran_valid(m->granularity) ||
	    (m->flags & ~REPL_BITMAP_F_KNOWN) != 0 ||
	    m->chunk_len < MD_BM_CHUNK_HDR || m->chunk_len > REPL_BITMAP_MAX_CHUNK)
		return -EINVAL;
	if ((n = frame_begin(buf, size, tx, REPL_MSG_BITMAP, body, body)) < 0)
		return n;
	put_be64(p, m->total_bits);
	put_be32(p + 8, m->granularity);
	put_be32(p + 12, m->flags);
	return n;
}

/* ---- DATA, TRIM, WRITE_ZEROES ---- */

/* Decode the common 24-byte write layout and check flags and range. */
static int
write_decode(const uint8_t *p, uint32_t known, uint32_t max, struct repl_trim *m)
{
	m->seq = get_be64(p);
	m->offset = get_be64(p + 8);
	m->length = get_be32(p + 16);
	m->flags = get_be32(p + 20);
	if ((m->flags & ~known) != 0)
		return -EINVAL;
	return check_io(m->offset, m->length, max);
}

/* Encode the common 24-byte write layout; wire_len counts trailing data. */
static int
write_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    uint32_t known, uint32_t max, const struct repl_trim *m, size_t wire_len)
{
	uint8_t *p = BODY(buf);
	int n;

	if ((m->flags & ~known) != 0 || check_io(m->offset, m->length, max) < 0)
		return -EINVAL;
	if ((n = frame_begin(buf, size, tx, type, REPL_DATA_LEN, wire_len)) < 0)
		return n;
	put_be64(p, m->seq);
	put_be64(p + 8, m->offset);
	put_be32(p + 16, m->length);
	put_be32(p + 20, m->flags);
	return n;
}

int
repl_data_decode(const void *buf, size_t len, struct repl_data *out)
{
	struct repl_trim m;
	int rc;

	if (len < REPL_DATA_LEN)
		return -EBADMSG;
	if ((rc = write_decode(buf, REPL_DATA_F_KNOWN, REPL_MAX_DATA, &m)) < 0)
		return rc;
	if (len - REPL_DATA_LEN != m.length)
		return -EBADMSG;
	out->seq = m.seq;
	out->offset = m.offset;
	out->length = m.length;
	out->flags = m.flags;
	return 0;
}

int
repl_data_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_data *m)
{
	struct repl_trim t = {
		.seq = m->seq, .offset = m->offset, .length = m->length, .flags = m->flags,
	};

	return write_encode(buf, size, tx, REPL_MSG_DATA, REPL_DATA_F_KNOWN,
	    REPL_MAX_DATA, &t, (size_t)REPL_DATA_LEN + m->length);
}

int
repl_trim_decode(const void *buf, size_t len, struct repl_trim *out)
{
	if (len != REPL_TRIM_LEN)
		return -EBADMSG;
	return write_decode(buf, REPL_TRIM_F_KNOWN, UINT32_MAX, out);
}

int
repl_trim_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_trim *m)
{
	return write_encode(buf, size, tx, REPL_MSG_TRIM, REPL_TRIM_F_KNOWN,
	    UINT32_MAX, m, REPL_TRIM_LEN);
}

int
repl_write_zeroes_decode(const void *buf, size_t len, struct repl_trim *out)
{
	if (len != REPL_TRIM_LEN)
		return -EBADMSG;
	return write_decode(buf, REPL_WZ_F_KNOWN, UINT32_MAX, out);
}

int
repl_write_zeroes_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_trim *m)
{
	return write_encode(buf, size, tx, REPL_MSG_WRITE_ZEROES, REPL_WZ_F_KNOWN,
	    UINT32_MAX, m, REPL_TRIM_LEN);
}

/* ---- FLUSH, RECV_ACK (a lone u64 seq) ---- */

int
repl_flush_decode(const void *buf, size_t len, struct repl_flush *out)
{
	if (len != REPL_FLUSH_LEN)
		return -EBADMSG;
	out->seq = get_be64(buf);
	return 0;
}

int
repl_flush_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_flush *m)
{
	int n = frame_begin(buf, size, tx, REPL_MSG_FLUSH, REPL_FLUSH_LEN, REPL_FLUSH_LEN);

	if (n >= 0)
		put_be64(BODY(buf), m->seq);
	return n;
}

int
repl_recv_ack_decode(const void *buf, size_t len, struct repl_recv_ack *out)
{
	if (len != REPL_RECV_ACK_LEN)
		return -EBADMSG;
	out->seq = get_be64(buf);
	return 0;
}

int
repl_recv_ack_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_recv_ack *m)
{
	int n = frame_begin(buf, size, tx, REPL_MSG_RECV_ACK, REPL_RECV_ACK_LEN,
	    REPL_RECV_ACK_LEN);

	if (n >= 0)
		put_be64(BODY(buf), m->seq);
	return n;
}

/* ---- WRITE_ACK, FLUSH_ACK ---- */

int
repl_write_ack_decode(const void *buf, size_t len, struct repl_write_ack *out)
{
	const uint8_t *p = buf;
	struct repl_write_ack m;

	if (len != REPL_WRITE_ACK_LEN)
		return -EBADMSG;
	m.seq = get_be64(p);
	m.status = get_be32(p + 8);
	m.flags = get_be32(p + 12);
	if ((m.flags & ~REPL_WACK_F_KNOWN) != 0 || m.status > REPL_STATUS_MAX)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_write_ack_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_write_ack *m)
{
	uint8_t *p = BODY(buf);
	int n;

	if ((m->flags & ~REPL_WACK_F_KNOWN) != 0)
		return -EINVAL;
	n = frame_begin(buf, size, tx, REPL_MSG_WRITE_ACK, REPL_WRITE_ACK_LEN,
	    REPL_WRITE_ACK_LEN);
	if (n < 0)
		return n;
	put_be64(p, m->seq);
	put_be32(p + 8, m->status);
	put_be32(p + 12, m->flags);
	return n;
}

int
repl_flush_ack_decode(const void *buf, size_t len, struct repl_flush_ack *out)
{
	const uint8_t *p = buf;

	if (len != REPL_FLUSH_ACK_LEN)
		return -EBADMSG;
	if (get_be32(p + 12) != 0 || get_be32(p + 8) > REPL_STATUS_MAX)
		return -EINVAL;
	out->seq = get_be64(p);
	out->status = get_be32(p + 8);
	return 0;
}

int
repl_flush_ack_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_flush_ack *m)
{
	uint8_t *p = BODY(buf);
	int n = frame_begin(buf, size, tx, REPL_MSG_FLUSH_ACK, REPL_FLUSH_ACK_LEN,
	    REPL_FLUSH_ACK_LEN);

	if (n < 0)
		return n;
	put_be64(p, m->seq);
	put_be32(p + 8, m->status);
	put_be32(p + 12, 0);
	return n;
}

/* ---- PING, PING_ACK ---- */

int
repl_ping_decode(const void *buf, size_t len, struct repl_ping *out)
{
	const uint8_t *p = buf;

	if (len != REPL_PING_LEN)
		return -EBADMSG;
	out->timestamp = get_be64(p);
	out->nonce = get_be64(p + 8);
	return 0;
}

/* PING and PING_ACK share the layout. */
static int
ping_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    const struct repl_ping *m)
{
	int n = frame_begin(buf, size, tx, type, REPL_PING_LEN, REPL_PING_LEN);

	if (n >= 0) {
		put_be64(BODY(buf), m->timestamp);
		put_be64(BODY(buf) + 8, m->nonce);
	}
	return n;
}

int
repl_ping_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_ping *m)
{
	return ping_encode(buf, size, tx, REPL_MSG_PING, m);
}

int
repl_ping_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_ping *m)
{
	return ping_encode(buf, size, tx, REPL_MSG_PING_ACK, m);
}

/* ---- range messages: offset u64 | length u32 | u32 word ---- */

/*
 * Decode the 16-byte "offset, length, word" prefix shared by the resync
 * and verify messages, and check the range (length up to REPL_MAX_DATA).
 */
static int
range_decode(const uint8_t *p, uint64_t *offset, uint32_t *length, uint32_t *word)
{
	*offset = get_be64(p);
	*length = get_be32(p + 8);
	*word = get_be32(p + 12);
	return check_io(*offset, *length, REPL_MAX_DATA);
}

/* Encode that prefix as a frame of body_len (wire_len) bytes. */
static int
range_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    size_t body_len, size_t wire_len, uint64_t offset, uint32_t length, uint32_t word)
{
	int n;

	if (check_io(offset, length, REPL_MAX_DATA) < 0)
		return -EINVAL;
	if ((n = frame_begin(buf, size, tx, type, body_len, wire_len)) < 0)
		return n;
	put_be64(BODY(buf), offset);
	put_be32(BODY(buf) + 8, length);
	put_be32(BODY(buf) + 12, word);
	return n;
}

int
repl_resync_request_decode(const void *buf, size_t len, struct repl_resync_request *out)
{
	struct repl_resync_request m;
	int rc;

	if (len != REPL_RESYNC_REQUEST_LEN)
		return -EBADMSG;
	if ((rc = range_decode(buf, &m.offset, &m.length, &m.flags)) < 0)
		return rc;
	if ((m.flags & ~REPL_RSR_F_KNOWN) != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_resync_request_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_resync_request *m)
{
	if ((m->flags & ~REPL_RSR_F_KNOWN) != 0)
		return -EINVAL;
	return range_encode(buf, size, tx, REPL_MSG_RESYNC_REQUEST, REPL_RESYNC_REQUEST_LEN,
	    REPL_RESYNC_REQUEST_LEN, m->offset, m->length, m->flags);
}

int
repl_resync_data_decode(const void *buf, size_t len, struct repl_resync_data *out)
{
	struct repl_resync_data m;
	int rc;

	if (len < REPL_RESYNC_DATA_LEN)
		return -EBADMSG;
	if ((rc = range_decode(buf, &m.offset, &m.length, &m.status)) < 0)
		return rc;
	if (m.status > REPL_STATUS_MAX)
		return -EINVAL;
	if (len - REPL_RESYNC_DATA_LEN != (m.status == 0 ? m.length : 0))
		return -EBADMSG;
	m.applied_seq = get_be64((const uint8_t *)buf + 16);
	*out = m;
	return 0;
}

int
repl_resync_data_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_resync_data *m)
{
	size_t data = m->status == 0 ? m->length : 0;
	int n = range_encode(buf, size, tx, REPL_MSG_RESYNC_DATA, REPL_RESYNC_DATA_LEN,
	    REPL_RESYNC_DATA_LEN + data, m->offset, m->length, m->status);

	if (n >= 0)
		put_be64(BODY(buf) + 16, m->applied_seq);
	return n;
}

/* ---- reads served by the peer: id u64 | offset u64 | length u32 | u32 word ---- */

/* Decode the common 24-byte layout of READ_REQUEST and READ_REPLY. */
static int
read_decode(const uint8_t *p, uint64_t *id, uint64_t *offset, uint32_t *length,
    uint32_t *word)
{
	*id = get_be64(p);
	*offset = get_be64(p + 8);
	*length = get_be32(p + 16);
	*word = get_be32(p + 20);
	return check_io(*offset, *length, REPL_MAX_DATA);
}

/* Encode that layout as a frame of wire_len bytes (trailing data after it). */
static int
read_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    size_t wire_len, uint64_t id, uint64_t offset, uint32_t length, uint32_t word)
{
	int n;

	if (check_io(offset, length, REPL_MAX_DATA) < 0)
		return -EINVAL;
	if ((n = frame_begin(buf, size, tx, type, REPL_READ_REQUEST_LEN, wire_len)) < 0)
		return n;
	put_be64(BODY(buf), id);
	put_be64(BODY(buf) + 8, offset);
	put_be32(BODY(buf) + 16, length);
	put_be32(BODY(buf) + 20, word);
	return n;
}

int
repl_read_request_decode(const void *buf, size_t len, struct repl_read_request *out)
{
	struct repl_read_request m;
	uint32_t reserved;
	int rc;

	if (len != REPL_READ_REQUEST_LEN)
		return -EBADMSG;
	if ((rc = read_decode(buf, &m.id, &m.offset, &m.length, &reserved)) < 0)
		return rc;
	if (reserved != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_read_request_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_read_request *m)
{
	return read_encode(buf, size, tx, REPL_MSG_READ_REQUEST, REPL_READ_REQUEST_LEN,
	    m->id, m->offset, m->length, 0);
}

int
repl_read_reply_decode(const void *buf, size_t len, struct repl_read_reply *out)
{
	struct repl_read_reply m;
	int rc;

	if (len < REPL_READ_REPLY_LEN)
		return -EBADMSG;
	if ((rc = read_decode(buf, &m.id, &m.offset, &m.length, &m.status)) < 0)
		return rc;
	if (m.status > REPL_STATUS_MAX)
		return -EINVAL;
	if (len - REPL_READ_REPLY_LEN != (m.status == 0 ? m.length : 0))
		return -EBADMSG;
	*out = m;
	return 0;
}

int
repl_read_reply_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_read_reply *m)
{
	size_t data = m->status == 0 ? m->length : 0;

	return read_encode(buf, size, tx, REPL_MSG_READ_REPLY, REPL_READ_REPLY_LEN + data,
	    m->id, m->offset, m->length, m->status);
}

int
repl_resync_ack_decode(const void *buf, size_t len, struct repl_resync_ack *out)
{
	struct repl_resync_ack m;
	int rc;

	if (len != REPL_RESYNC_ACK_LEN)
		return -EBADMSG;
	if ((rc = range_decode(buf, &m.offset, &m.length, &m.status)) < 0)
		return rc;
	if (m.status > REPL_STATUS_MAX)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_resync_ack_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_resync_ack *m)
{
	return range_encode(buf, size, tx, REPL_MSG_RESYNC_ACK, REPL_RESYNC_ACK_LEN,
	    REPL_RESYNC_ACK_LEN, m->offset, m->length, m->status);
}

int
repl_csum_same_decode(const void *buf, size_t len, struct repl_csum_same *out)
{
	struct repl_csum_same m;
	uint32_t reserved;
	int rc;

	if (len != REPL_CSUM_SAME_LEN)
		return -EBADMSG;
	if ((rc = range_decode(buf, &m.offset, &m.length, &reserved)) < 0)
		return rc;
	if (reserved != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_csum_same_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_csum_same *m)
{
	return range_encode(buf, size, tx, REPL_MSG_CSUM_SAME, REPL_CSUM_SAME_LEN,
	    REPL_CSUM_SAME_LEN, m->offset, m->length, 0);
}

/* CSUM_REQUEST and VERIFY_REQUEST: range, reserved 0, digest. */
static int
digest_req_decode(const uint8_t *p, size_t len, uint64_t *offset, uint32_t *length,
    uint64_t *digest)
{
	uint32_t reserved;
	int rc;

	if (len != REPL_CSUM_REQUEST_LEN)
		return -EBADMSG;
	if ((rc = range_decode(p, offset, length, &reserved)) < 0)
		return rc;
	if (reserved != 0)
		return -EINVAL;
	*digest = get_be64(p + 16);
	return 0;
}

static int
digest_req_encode(void *buf, size_t size, const struct repl_tx *tx, uint16_t type,
    uint64_t offset, uint32_t length, uint64_t digest)
{
	int n = range_encode(buf, size, tx, type, REPL_CSUM_REQUEST_LEN,
	    REPL_CSUM_REQUEST_LEN, offset, length, 0);

	if (n >= 0)
		put_be64(BODY(buf) + 16, digest);
	return n;
}

int
repl_csum_request_decode(const void *buf, size_t len, struct repl_csum_request *out)
{
	struct repl_csum_request m;
	int rc = digest_req_decode(buf, len, &m.offset, &m.length, &m.digest);

	if (rc == 0)
		*out = m;
	return rc;
}

int
repl_csum_request_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_csum_request *m)
{
	return digest_req_encode(buf, size, tx, REPL_MSG_CSUM_REQUEST,
	    m->offset, m->length, m->digest);
}

int
repl_verify_request_decode(const void *buf, size_t len, struct repl_verify_request *out)
{
	struct repl_verify_request m;
	int rc = digest_req_decode(buf, len, &m.offset, &m.length, &m.digest);

	if (rc == 0)
		*out = m;
	return rc;
}

int
repl_verify_request_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_verify_request *m)
{
	return digest_req_encode(buf, size, tx, REPL_MSG_VERIFY_REQUEST,
	    m->offset, m->length, m->digest);
}

int
repl_verify_reply_decode(const void *buf, size_t len, struct repl_verify_reply *out)
{
	const uint8_t *p = buf;
	struct repl_verify_reply m;
	int rc;

	if (len != REPL_VERIFY_REPLY_LEN)
		return -EBADMSG;
	if ((rc = range_decode(p, &m.offset, &m.length, &m.status)) < 0)
		return rc;
	if (m.status > REPL_STATUS_MAX)
		return -EINVAL;
	m.digest = get_be64(p + 16);
	m.flags = get_be32(p + 24);
	if ((m.flags & ~REPL_VERIFY_F_KNOWN) != 0 || get_be32(p + 28) != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_verify_reply_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_verify_reply *m)
{
	int n;

	if ((m->flags & ~REPL_VERIFY_F_KNOWN) != 0)
		return -EINVAL;
	n = range_encode(buf, size, tx, REPL_MSG_VERIFY_REPLY, REPL_VERIFY_REPLY_LEN,
	    REPL_VERIFY_REPLY_LEN, m->offset, m->length, m->status);
	if (n < 0)
		return n;
	put_be64(BODY(buf) + 16, m->digest);
	put_be32(BODY(buf) + 24, m->flags);
	put_be32(BODY(buf) + 28, 0);
	return n;
}

/* ---- RESYNC_DONE, PROMOTE_NOTICE ---- */

int
repl_resync_done_decode(const void *buf, size_t len, struct repl_resync_done *out)
{
	const uint8_t *p = buf;
	struct repl_resync_done m;

	if (len != REPL_RESYNC_DONE_LEN)
		return -EBADMSG;
	m.kind = get_be32(p);
	m.status = get_be32(p + 4);
	m.bytes = get_be64(p + 8);
	if (m.kind > REPL_DONE_VERIFY)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_resync_done_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_resync_done *m)
{
	uint8_t *p = BODY(buf);
	int n;

	if (m->kind > REPL_DONE_VERIFY)
		return -EINVAL;
	n = frame_begin(buf, size, tx, REPL_MSG_RESYNC_DONE, REPL_RESYNC_DONE_LEN,
	    REPL_RESYNC_DONE_LEN);
	if (n < 0)
		return n;
	put_be32(p, m->kind);
	put_be32(p + 4, m->status);
	put_be64(p + 8, m->bytes);
	return n;
}

int
repl_promote_notice_decode(const void *buf, size_t len, struct repl_promote_notice *out)
{
	const uint8_t *p = buf;
	struct repl_promote_notice m;

	if (len != REPL_PROMOTE_NOTICE_LEN)
		return -EBADMSG;
	m.epoch = get_be64(p);
	m.current_uuid = get_be64(p + 8);
	m.flags = get_be32(p + 16);
	if ((m.flags & ~REPL_PROMOTE_F_KNOWN) != 0 || get_be32(p + 20) != 0)
		return -EINVAL;
	*out = m;
	return 0;
}

int
repl_promote_notice_encode(void *buf, size_t size, const struct repl_tx *tx,
    const struct repl_promote_notice *m)
{
	uint8_t *p = BODY(buf);
	int n;

	if ((m->flags & ~REPL_PROMOTE_F_KNOWN) != 0)
		return -EINVAL;
	n = frame_begin(buf, size, tx, REPL_MSG_PROMOTE_NOTICE, REPL_PROMOTE_NOTICE_LEN,
	    REPL_PROMOTE_NOTICE_LEN);
	if (n < 0)
		return n;
	put_be64(p, m->epoch);
	put_be64(p + 8, m->current_uuid);
	put_be32(p + 16, m->flags);
	put_be32(p + 20, 0);
	return n;
}

/* ---- dispatch ---- */

int
repl_body_decode(uint32_t type, const void *buf, size_t len, union repl_msg *out)
{
	switch (type) {
	case REPL_MSG_HELLO:		return repl_hello_decode(buf, len, &out->hello);
	case REPL_MSG_AUTH_CHALLENGE:	return repl_auth_challenge_decode(buf, len, &out->challenge);
	case REPL_MSG_AUTH_RESPONSE:	return repl_auth_response_decode(buf, len, &out->response);
	case REPL_MSG_AUTH_RESULT:	return repl_auth_result_decode(buf, len, &out->result);
	case REPL_MSG_REJECT:		return repl_reject_decode(buf, len, &out->reject);
	case REPL_MSG_STATE:		return repl_state_decode(buf, len, &out->state);
	case REPL_MSG_BITMAP:		return repl_bitmap_decode(buf, len, &out->bitmap);
	case REPL_MSG_DATA:		return repl_data_decode(buf, len, &out->data);
	case REPL_MSG_TRIM:		return repl_trim_decode(buf, len, &out->trim);
	case REPL_MSG_WRITE_ZEROES:	return repl_write_zeroes_decode(buf, len, &out->trim);
	case REPL_MSG_FLUSH:		return repl_flush_decode(buf, len, &out->flush);
	case REPL_MSG_RECV_ACK:		return repl_recv_ack_decode(buf, len, &out->recv_ack);
	case REPL_MSG_WRITE_ACK:	return repl_write_ack_decode(buf, len, &out->write_ack);
	case REPL_MSG_FLUSH_ACK:	return repl_flush_ack_decode(buf, len, &out->flush_ack);
	case REPL_MSG_PING:
	case REPL_MSG_PING_ACK:		return repl_ping_decode(buf, len, &out->ping);
	case REPL_MSG_RESYNC_REQUEST:	return repl_resync_request_decode(buf, len, &out->resync_request);
	case REPL_MSG_RESYNC_DATA:	return repl_resync_data_decode(buf, len, &out->resync_data);
	case REPL_MSG_CSUM_REQUEST:	return repl_csum_request_decode(buf, len, &out->csum_request);
	case REPL_MSG_CSUM_SAME:	return repl_csum_same_decode(buf, len, &out->csum_same);
	case REPL_MSG_VERIFY_REQUEST:	return repl_verify_request_decode(buf, len, &out->verify_request);
	case REPL_MSG_VERIFY_REPLY:	return repl_verify_reply_decode(buf, len, &out->verify_reply);
	case REPL_MSG_RESYNC_DONE:	return repl_resync_done_decode(buf, len, &out->resync_done);
	case REPL_MSG_PROMOTE_NOTICE:	return repl_promote_notice_decode(buf, len, &out->promote);
	case REPL_MSG_DISCONNECT:	return repl_disconnect_decode(buf, len, &out->disconnect);
	case REPL_MSG_RESYNC_ACK:	return repl_resync_ack_decode(buf, len, &out->resync_ack);
	case REPL_MSG_READ_REQUEST:	return repl_read_request_decode(buf, len, &out->read_request);
	case REPL_MSG_READ_REPLY:	return repl_read_reply_decode(buf, len, &out->read_reply);
	default:			return -EPROTO;
	}
}

/* ---- checks and helpers ---- */

int
repl_check_range(uint64_t offset, uint64_t len, uint64_t size, uint32_t block_size)
{
	if (len == 0 || !IS_POW2(block_size))
		return -EINVAL;
	if (offset % block_size != 0 || len % block_size != 0)
		return -EINVAL;
	if (offset > UINT64_MAX - len)
		return -EOVERFLOW;
	if (offset + len > size)
		return -ERANGE;
	return 0;
}

int
repl_version_negotiate(uint16_t my_min, uint16_t my_max, uint16_t peer_min, uint16_t peer_max)
{
	uint16_t lo = MAX(my_min, peer_min), hi = MIN(my_max, peer_max);

	if (lo > hi || hi == 0)
		return -EPROTONOSUPPORT;
	return hi;
}

uint64_t
repl_digest(const void *buf, size_t len)
{
	return XXH3_64bits(buf, len);
}

/* ---- HELLO comparison ---- */

/* md_volume_check() on two HELLOs: only the current UUID and node id count. */
static enum md_volume_check
volume_check(const struct repl_hello *mine, const struct repl_hello *peer)
{
	struct md_uuid_side me = { .uuids.current = mine->current_uuid, .node_id = mine->node_id };
	struct md_uuid_side other = { .uuids.current = peer->current_uuid,
	    .node_id = peer->node_id };

	return md_volume_check(mine->volume_uuid, &me, peer->volume_uuid, &other);
}

/* Describe the first configuration difference into why; false when none. */
static bool
config_diff(const struct repl_hello *a, const struct repl_hello *b, char *why, size_t whylen)
{
	if (a->block_size != b->block_size)
		snprintf(why, whylen, "block-size mismatch: ours %u, peer %u",
		    a->block_size, b->block_size);
	else if (a->bitmap_granularity != b->bitmap_granularity)
		snprintf(why, whylen, "bitmap-granularity mismatch: ours %u, peer %u",
		    a->bitmap_granularity, b->bitmap_granularity);
	else if (a->mode != b->mode)
		snprintf(why, whylen, "protocol mismatch: ours %s, peer %s",
		    repl_mode_name(a->mode), repl_mode_name(b->mode));
	else
		return false;
	return true;
}

/*
 * Decision order (first failing row wins; the reason names the row):
 *   versions overlap?                      REPL_REJECT_VERSION
 *   same resource name?                    REPL_REJECT_OTHER_RESOURCE
 *   peer's node name differs from mine?    REPL_REJECT_SAME_NODE
 *   peer is the configured peer?           REPL_REJECT_UNKNOWN_NODE
 *   same connection kind?                  REPL_REJECT_PROTOCOL
 *   md_volume_check() not MISMATCH?        REPL_REJECT_OTHER_VOLUME
 *   same size?                             REPL_REJECT_SIZE
 *   same block size, granularity, mode?    REPL_REJECT_CONFIG
 */
int
repl_hello_check(const struct repl_hello *mine, const struct repl_hello *peer,
    const char *expected_peer, char *why, size_t whylen)
{
	if (whylen > 0)
		why[0] = '\0';
	if (repl_version_negotiate(mine->version_min, mine->version_max,
	    peer->version_min, peer->version_max) < 0) {
		snprintf(why, whylen, "no common protocol version: ours %u..%u, peer %u..%u",
		    mine->version_min, mine->version_max, peer->version_min, peer->version_max);
		return REPL_REJECT_VERSION;
	}
	if (strncmp(mine->resource, peer->resource, REPL_NAME_LEN) != 0) {
		snprintf(why, whylen, "peer serves resource '%.63s', not '%.63s'",
		    peer->resource, mine->resource);
		return REPL_REJECT_OTHER_RESOURCE;
	}
	if (strncmp(mine->node, peer->node, REPL_NAME_LEN) == 0) {
		snprintf(why, whylen, "peer calls itself '%.63s' like this node "
		    "(connected to itself?)", peer->node);
		return REPL_REJECT_SAME_NODE;
	}
	if (expected_peer != NULL && strncmp(expected_peer, peer->node, REPL_NAME_LEN) != 0) {
		snprintf(why, whylen, "peer is node '%.63s', the configured peer is '%.63s'",
		    peer->node, expected_peer);
		return REPL_REJECT_UNKNOWN_NODE;
	}
	if (mine->conn != peer->conn) {
		snprintf(why, whylen, "peer sent a %s HELLO on our %s port",
		    peer->conn == REPL_CONN_DATA ? "data" : "meta",
		    mine->conn == REPL_CONN_DATA ? "data" : "meta");
		return REPL_REJECT_PROTOCOL;
	}
	if (volume_check(mine, peer) == MD_VOL_MISMATCH) {
		snprintf(why, whylen, "peer has another volume (volume UUIDs differ and "
		    "both disks hold data)");
		return REPL_REJECT_OTHER_VOLUME;
	}
	if (mine->size != peer->size) {
		snprintf(why, whylen, "size mismatch: ours %llu bytes, peer %llu bytes",
		    (unsigned long long)mine->size, (unsigned long long)peer->size);
		return REPL_REJECT_SIZE;
	}
	if (config_diff(mine, peer, why, whylen))
		return REPL_REJECT_CONFIG;
	return 0;
}
