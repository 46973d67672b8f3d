/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirror replication protocol: the peer link between two blkmirrord.
 * docs/protocol.md explains it with layout tables and sequence diagrams,
 * ack rules and rejection reasons; this header is the reference.  ALL WIRE FIELDS ARE BIG-ENDIAN.  The codecs
 * in repl_codec.c convert at the edge with get_be*()/put_be*() and copy out
 * after checking lengths; nothing ever casts a pointer into a receive buffer,
 * which is why the structs below are decoded forms, not wire layouts (the
 * wire layouts are the REPL_*_LEN constants and the offset tables in the
 * comments).
 *
 * Two TCP connections per peer:
 *   data  (default port 7789): DATA, TRIM, WRITE_ZEROES, FLUSH, BITMAP and
 *         the resync/verify requests and data, so client writes and resync
 *         writes stay in one ordered stream;
 *   meta  (default port 7790): acks, PING/PING_ACK, PROMOTE_NOTICE, so acks
 *         and heartbeats never wait behind megabytes of data.  STATE goes
 *         on data once the link is up (ordered with BITMAP and the
 *         resync), and is accepted on either.
 * repl_type_conns() tells which connection a type may travel on.
 *
 * Every frame = a 32-byte header + a body of `length` bytes:
 *
 *   off size field
 *     0    4 magic     REPL_MAGIC ("BMRP")
 *     4    2 version   protocol version this frame is encoded in
 *     6    2 type      REPL_MSG_*
 *     8    4 flags     REPL_HF_* (none defined in version 1: must be 0)
 *    12    4 length    body bytes after the header (<= REPL_MAX_PAYLOAD)
 *    16    8 epoch     sender's current epoch (DESIGN.md "Heartbeat")
 *    24    4 reserved  must be 0
 *    28    4 hdr_check XXH32 (seed 0) of bytes 0..27
 *
 * Version history (message types are never renumbered; a type, once
 * published, keeps its number and layout within a version):
 *   1  first version: header above, message types 1..28; STATE flag
 *      CLEAR_BITMAP (new-current-uuid --clear-bitmap) added before release.
 *
 * Compatibility rule: the header layout and the bodies of HELLO, REJECT,
 * AUTH_CHALLENGE, AUTH_RESPONSE and AUTH_RESULT are frozen forever and
 * always sent with header version REPL_PROTO_HANDSHAKE_VERSION (1), so any
 * two versions can always exchange HELLOs and refuse each other with an
 * explicit REJECT(REPL_REJECT_VERSION).  Every later frame uses the version
 * both sides negotiated (the highest one in both HELLO ranges).
 */
#ifndef BLKMIRROR_REPL_PROTO_H
#define BLKMIRROR_REPL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid_decide.h"

/* ---- versions ---- */
#define REPL_PROTO_VERSION		1	/* newest version we speak */
#define REPL_PROTO_VERSION_MIN		1	/* oldest version we speak */
#define REPL_PROTO_HANDSHAKE_VERSION	1	/* header version of handshake frames */

/* ---- frame header ---- */
#define REPL_MAGIC		0x424d5250u	/* "BMRP" */
#define REPL_HDR_LEN		32		/* bytes of the frame header */
#define REPL_HF_KNOWN		0u		/* header flags known in version 1 */

/* ---- limits ---- */
#define REPL_MAX_DATA		(32u << 20)	/* largest DATA / RESYNC_DATA payload and range */
#define REPL_MAX_PAYLOAD	(REPL_MAX_DATA + 4096u)	/* largest body of any frame */
#define REPL_STATUS_MAX		4095u	/* largest errno in an ack's or reply's status */
#define REPL_BITMAP_MAX_CHUNK	(1u << 20)	/* largest encoded bitmap chunk */
#define REPL_NAME_LEN		64	/* resource / node name field, NUL included */
#define REPL_TEXT_MAX		256	/* REJECT / DISCONNECT text, NUL included */
#define REPL_UUID_LEN		16	/* volume UUID */
#define REPL_NONCE_LEN		32	/* AUTH_CHALLENGE nonce */
#define REPL_HMAC_LEN		32	/* HMAC-SHA256 */
#define REPL_HISTORY_UUIDS	MD_UUID_HISTORY	/* history generation UUIDs in STATE (4) */
#define REPL_SECTOR		512	/* every offset and length is a multiple */
#define REPL_MAX_HANDSHAKE_FRAMES 8	/* frames a peer may send before it is authenticated */

/*
 * ---- message types (u16, never renumbered) ----
 * "->" names the direction in the usual case; "P" = primary, "S" =
 * secondary, "src"/"tgt" = sync (or verify) source/target; "both" = both
 * peers send it.  [d] data connection, [m] meta connection, [dm] either.
 */
#define REPL_MSG_HELLO		1	/* both [dm]: who I am, what I have */
#define REPL_MSG_AUTH_CHALLENGE	2	/* both [dm]: my nonce, prove the secret */
#define REPL_MSG_AUTH_RESPONSE	3	/* both [dm]: HMAC over both nonces */
#define REPL_MSG_AUTH_RESULT	4	/* both [dm]: your proof is accepted */
#define REPL_MSG_REJECT		5	/* both [dm]: refused, reason, then close */
#define REPL_MSG_STATE		6	/* both [dm]: role, disk state, UUIDs (data once up) */
#define REPL_MSG_BITMAP		7	/* both [d]: a chunk of my dirty bitmap */
#define REPL_MSG_DATA		8	/* P->S [d]: a client write, payload follows */
#define REPL_MSG_TRIM		9	/* P->S [d]: a client trim */
#define REPL_MSG_WRITE_ZEROES	10	/* P->S [d]: a client write-zeroes */
#define REPL_MSG_FLUSH		11	/* P->S [d]: fdatasync after all lower seqs */
#define REPL_MSG_RECV_ACK	12	/* S->P [m]: seq received (memsync) */
#define REPL_MSG_WRITE_ACK	13	/* S->P [m]: seq written (all modes) */
#define REPL_MSG_FLUSH_ACK	14	/* S->P [m]: flush seq done */
#define REPL_MSG_PING		15	/* both [m]: heartbeat */
#define REPL_MSG_PING_ACK	16	/* both [m]: heartbeat echo */
#define REPL_MSG_RESYNC_REQUEST	17	/* tgt->src [d]: csums differ, send the range */
#define REPL_MSG_RESYNC_DATA	18	/* src->tgt [d]: range contents, payload follows */
#define REPL_MSG_CSUM_REQUEST	19	/* src->tgt [d]: the source's digest of a range */
#define REPL_MSG_CSUM_SAME	20	/* tgt->src [m]: digests equal, range in sync */
#define REPL_MSG_VERIFY_REQUEST	21	/* src->tgt [d]: my digest, compare yours */
#define REPL_MSG_VERIFY_REPLY	22	/* tgt->src [m]: your digest and the verdict */
#define REPL_MSG_RESYNC_DONE	23	/* src->peer [d]: resync / verify finished */
#define REPL_MSG_PROMOTE_NOTICE	24	/* new P->peer [m]: I became primary */
#define REPL_MSG_DISCONNECT	25	/* both [dm]: closing, reason */
#define REPL_MSG_RESYNC_ACK	26	/* tgt->src [m]: resync range written */
#define REPL_MSG_READ_REQUEST	27	/* P(sync tgt)->src [d]: read this range for a client */
#define REPL_MSG_READ_REPLY	28	/* src->P(sync tgt) [d]: its contents, payload follows */
#define REPL_MSG_MAX		28	/* highest type known to this build */

/* Connection kinds (HELLO.conn, repl_type_conns() bits). */
#define REPL_CONN_DATA		1u	/* data connection */
#define REPL_CONN_META		2u	/* meta connection */

/* Replication modes (HELLO.mode); same numbering as enum repl_protocol. */
#define REPL_MODE_SYNC		0	/* ack after peer's disk (DRBD C) */
#define REPL_MODE_MEMSYNC	1	/* ack after peer received (B) */
#define REPL_MODE_ASYNC		2	/* ack after queued (A) */

/* Roles (STATE.role). */
#define REPL_ROLE_SECONDARY	0
#define REPL_ROLE_PRIMARY	1

/* Disk states (STATE.disk); same numbering as daemon/internal.h. */
#define REPL_DISK_DISKLESS	0
#define REPL_DISK_INCONSISTENT	1
#define REPL_DISK_OUTDATED	2
#define REPL_DISK_CONSISTENT	3
#define REPL_DISK_UPTODATE	4
#define REPL_DISK_FAILED	5

/* Replication states (STATE.repl): what the sender is doing with us. */
#define REPL_RS_CONNECTING	0	/* handshake done, no decision yet */
#define REPL_RS_ESTABLISHED	1	/* in sync, mirroring */
#define REPL_RS_SYNC_SOURCE	2
#define REPL_RS_SYNC_TARGET	3
#define REPL_RS_VERIFY_SOURCE	4
#define REPL_RS_VERIFY_TARGET	5
#define REPL_RS_PAUSED_SYNC_SOURCE 6
#define REPL_RS_PAUSED_SYNC_TARGET 7
#define REPL_RS_AHEAD		8	/* async pulled ahead: marking, not shipping */
#define REPL_RS_BEHIND		9	/* peer of an AHEAD node */
#define REPL_RS_MAX		9

/* STATE.flags (the superblock's MD_FL_* travel apart, in STATE.md_flags) */
#define REPL_STATE_F_DISCARD_MY_DATA	(1u << 0)	/* connect --discard-my-data */
#define REPL_STATE_F_SYNC_PAUSED	(1u << 1)	/* pause-sync given on this node */
#define REPL_STATE_F_CLEAR_BITMAP	(1u << 2)	/* new-current-uuid --clear-bitmap: a
							   just-created peer adopts my UUIDs
							   without a sync (disks known equal) */
#define REPL_STATE_F_KNOWN		0x7u

/* BITMAP.flags */
#define REPL_BITMAP_F_MORE	(1u << 0)	/* more chunks follow */
#define REPL_BITMAP_F_KNOWN	0x1u

/* DATA / TRIM / WRITE_ZEROES flags */
#define REPL_WRITE_F_FUA	(1u << 0)	/* durable on the peer before WRITE_ACK */
#define REPL_WRITE_F_NO_HOLE	(1u << 1)	/* WRITE_ZEROES only: allocate, do not punch */
#define REPL_DATA_F_KNOWN	REPL_WRITE_F_FUA
#define REPL_TRIM_F_KNOWN	REPL_WRITE_F_FUA
#define REPL_WZ_F_KNOWN		(REPL_WRITE_F_FUA | REPL_WRITE_F_NO_HOLE)

/* WRITE_ACK flags */
#define REPL_WACK_F_DURABLE	(1u << 0)	/* the write is on stable storage (FUA) */
#define REPL_WACK_F_KNOWN	0x1u

/* RESYNC_REQUEST flags */
#define REPL_RSR_F_URGENT	(1u << 0)	/* a client read waits: serve before background */
#define REPL_RSR_F_KNOWN	0x1u

/* VERIFY_REPLY flags */
#define REPL_VERIFY_F_DIFFERS	(1u << 0)	/* digests differ: both mark the range */
#define REPL_VERIFY_F_KNOWN	0x1u

/* PROMOTE_NOTICE flags */
#define REPL_PROMOTE_F_FORCE	(1u << 0)	/* primary --force */
#define REPL_PROMOTE_F_KNOWN	0x1u

/* RESYNC_DONE kinds */
#define REPL_DONE_RESYNC	0	/* bytes = bytes shipped */
#define REPL_DONE_VERIFY	1	/* bytes = bytes found different */

/* REJECT reasons (also AUTH_RESULT.status when non-zero) */
#define REPL_REJECT_AUTH		1	/* wrong shared secret */
#define REPL_REJECT_OTHER_RESOURCE	2	/* HELLO names another resource */
#define REPL_REJECT_OTHER_VOLUME	3	/* volume UUIDs differ */
#define REPL_REJECT_SIZE		4	/* volume sizes differ */
#define REPL_REJECT_VERSION		5	/* no common protocol version */
#define REPL_REJECT_SAME_NODE		6	/* peer has my node name (loop to self?) */
#define REPL_REJECT_UNKNOWN_NODE	7	/* peer is not the configured peer */
#define REPL_REJECT_CONFIG		8	/* block size / granularity / mode differ */
#define REPL_REJECT_PROTOCOL		9	/* malformed or unexpected handshake frame */
#define REPL_REJECT_MAX			9

/* DISCONNECT reasons */
#define REPL_DISC_SHUTDOWN		1	/* daemon stopping */
#define REPL_DISC_ADMIN			2	/* blkmirrorctl disconnect / down */
#define REPL_DISC_DUPLICATE		3	/* this connection lost the arbitration */
#define REPL_DISC_PROTOCOL		4	/* malformed or unexpected frame */
#define REPL_DISC_TIMEOUT		5	/* peer too slow (timeout, ko-count) */
#define REPL_DISC_SPLIT_BRAIN		6	/* both sides wrote: see the split-brain policy */
#define REPL_DISC_UNRELATED		7	/* generation UUIDs unrelated */
#define REPL_DISC_IO_ERROR		8	/* local disk failed */
#define REPL_DISC_STATE_CONFLICT	9	/* two primaries / refused state change */
#define REPL_DISC_SESSION		10	/* the other connection of the pair went away */
#define REPL_DISC_MAX			10

/*
 * ---- body layouts (offset size field), lengths ----
 * Strings are fixed fields of REPL_NAME_LEN bytes: printable ASCII, at least
 * one character, NUL-terminated, NUL-padded.  Digests are XXH3-64 of the
 * range's bytes (repl_digest()).  Status fields carry a positive Linux
 * errno, 0 for success.
 */

/*
 * HELLO (frozen):  0 u16 version_min | 2 u16 version_max | 4 u16 conn |
 * 6 u16 mode | 8 u32 features | 12 u32 block_size | 16 u64 size |
 * 24 u32 bitmap_granularity | 28 u32 node_id | 32 u64 nonce |
 * 40 u64 current_uuid | 48 u8[16] volume_uuid | 64 char[64] resource |
 * 128 char[64] node
 */
#define REPL_HELLO_LEN		192
struct repl_hello {
	uint16_t version_min;	/* oldest protocol version the sender speaks */
	uint16_t version_max;	/* newest protocol version the sender speaks */
	uint16_t conn;		/* REPL_CONN_DATA or REPL_CONN_META: what this connection is */
	uint16_t mode;		/* REPL_MODE_*: configured replication mode */
	uint32_t features;	/* advertised features; none in v1; unknown bits ignored */
	uint32_t block_size;	/* logical block size (512 or 4096) */
	uint64_t size;		/* usable volume bytes */
	uint32_t bitmap_granularity;	/* bytes per dirty-bitmap bit */
	uint32_t node_id;	/* node id from the metadata (informative, tie-break) */
	uint64_t nonce;		/* random per daemon start: pairs data+meta, arbitration tie-break */
	uint64_t current_uuid;	/* current generation UUID: 0 / MD_UUID_JUST_CREATED = fresh */
	uint8_t volume_uuid[REPL_UUID_LEN];	/* superblock's volume UUID */
	char resource[REPL_NAME_LEN];	/* resource name */
	char node[REPL_NAME_LEN];	/* sender's node name */
};

/* AUTH_CHALLENGE (frozen): 0 u8[32] nonce (getrandom) */
#define REPL_AUTH_CHALLENGE_LEN	REPL_NONCE_LEN
struct repl_auth_challenge {
	uint8_t nonce[REPL_NONCE_LEN];	/* fresh random bytes per connection */
};

/* AUTH_RESPONSE (frozen): 0 u8[32] hmac (see repl_auth.h for the input) */
#define REPL_AUTH_RESPONSE_LEN	REPL_HMAC_LEN
struct repl_auth_response {
	uint8_t hmac[REPL_HMAC_LEN];	/* HMAC-SHA256 proving the shared secret */
};

/* AUTH_RESULT (frozen): 0 u32 status | 4 u16 version | 6 u16 reserved */
#define REPL_AUTH_RESULT_LEN	8
struct repl_auth_result {
	uint32_t status;	/* 0 accepted, else a REPL_REJECT_* reason */
	uint16_t version;	/* negotiated protocol version (both compute it) */
};

/* REJECT (frozen): 0 u32 reason | 4 u32 reserved | 8 char[n] text, NUL-terminated */
#define REPL_REJECT_MIN_LEN	9	/* reason, reserved, "" */
#define REPL_REJECT_MAX_LEN	(8 + REPL_TEXT_MAX)
struct repl_reject {
	uint32_t reason;	/* REPL_REJECT_* */
	char text[REPL_TEXT_MAX];	/* one human-readable line */
};

/* DISCONNECT: same layout as REJECT with a REPL_DISC_* reason */
#define REPL_DISCONNECT_MIN_LEN	REPL_REJECT_MIN_LEN
#define REPL_DISCONNECT_MAX_LEN	REPL_REJECT_MAX_LEN
struct repl_disconnect {
	uint32_t reason;	/* REPL_DISC_* */
	char text[REPL_TEXT_MAX];	/* one human-readable line */
};

/*
 * STATE: 0 u32 role | 4 u32 disk | 8 u32 repl | 12 u32 flags |
 * 16 u32 md_flags | 20 u32 reserved | 24 u64 epoch | 32 u64 current_uuid |
 * 40 u64 bitmap_uuid | 48 u64 history[4] | 80 u64 out_of_sync
 */
#define REPL_STATE_LEN		88
struct repl_state {
	uint32_t role;		/* REPL_ROLE_* */
	uint32_t disk;		/* REPL_DISK_* */
	uint32_t repl;		/* REPL_RS_* */
	uint32_t flags;		/* REPL_STATE_F_* */
	uint32_t md_flags;	/* superblock MD_FL_* (uuid_decide.h), for md_uuid_decide() */
	uint64_t epoch;		/* sender's durable epoch (= the header's) */
	uint64_t current_uuid;	/* generation UUIDs, DESIGN.md "Generation UUIDs" */
	uint64_t bitmap_uuid;	/* 0 while connected and in sync */
	uint64_t history_uuid[REPL_HISTORY_UUIDS];	/* older current UUIDs, newest first */
	uint64_t out_of_sync;	/* bytes marked in the sender's bitmap */
};

/*
 * BITMAP: 0 u64 total_bits | 8 u32 granularity | 12 u32 flags |
 * 16 chunk, to the end of the body: one transfer chunk exactly as
 * md_bitmap_rle_encode() writes it (lib/bitmap.h: its own 20-byte header
 * with type, first run, start bit and bit count, then runs or raw words;
 * docs/on-disk-format.md).  The receiver checks total_bits and granularity
 * against its own bitmap, then md_bitmap_rle_decode() validates the chunk
 * and ORs it into its bitmap.  The last chunk has REPL_BITMAP_F_MORE clear.
 */
#define REPL_BITMAP_HDR_LEN	16
#define REPL_BITMAP_MAX_LEN	(REPL_BITMAP_HDR_LEN + REPL_BITMAP_MAX_CHUNK)
struct repl_bitmap {
	uint64_t total_bits;	/* bits of the sender's whole bitmap (> 0) */
	uint32_t granularity;	/* bytes per bit (md_bitmap_gran_valid()) */
	uint32_t flags;		/* REPL_BITMAP_F_MORE */
	uint32_t chunk_len;	/* bytes of chunk after the fixed part (>= MD_BM_CHUNK_HDR) */
};

/*
 * DATA: 0 u64 seq | 8 u64 offset | 16 u32 length | 20 u32 flags |
 * 24 u8[length] data.  Trailing data: the encoder writes header + 24 bytes,
 * the caller sends the data from its own buffer (second iovec).
 */
#define REPL_DATA_LEN		24	/* fixed part */
struct repl_data {
	uint64_t seq;		/* write sequence number (shared with TRIM/WZ/FLUSH) */
	uint64_t offset;	/* byte offset on the volume */
	uint32_t length;	/* data bytes that follow (> 0, <= REPL_MAX_DATA) */
	uint32_t flags;		/* REPL_WRITE_F_FUA */
};

/* TRIM, WRITE_ZEROES: 0 u64 seq | 8 u64 offset | 16 u32 length | 20 u32 flags */
#define REPL_TRIM_LEN		24
struct repl_trim {
	uint64_t seq;		/* write sequence number */
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes (> 0); no payload */
	uint32_t flags;		/* REPL_WRITE_F_FUA (+ NO_HOLE for WRITE_ZEROES) */
};

/* FLUSH: 0 u64 seq */
#define REPL_FLUSH_LEN		8
struct repl_flush {
	uint64_t seq;		/* fdatasync once every write with a lower seq completed */
};

/* RECV_ACK: 0 u64 seq */
#define REPL_RECV_ACK_LEN	8
struct repl_recv_ack {
	uint64_t seq;		/* DATA/TRIM/WZ fully received (memsync acknowledgement) */
};

/* WRITE_ACK: 0 u64 seq | 8 u32 status | 12 u32 flags */
#define REPL_WRITE_ACK_LEN	16
struct repl_write_ack {
	uint64_t seq;		/* the write that completed on the peer's disk */
	uint32_t status;	/* 0 or positive errno of the peer's write */
	uint32_t flags;		/* REPL_WACK_F_DURABLE */
};

/* FLUSH_ACK: 0 u64 seq | 8 u32 status | 12 u32 reserved */
#define REPL_FLUSH_ACK_LEN	16
struct repl_flush_ack {
	uint64_t seq;		/* the FLUSH that completed */
	uint32_t status;	/* 0 or positive errno of the peer's fdatasync */
};

/* PING, PING_ACK: 0 u64 timestamp | 8 u64 nonce */
#define REPL_PING_LEN		16
struct repl_ping {
	uint64_t timestamp;	/* sender's monotonic ns (PING_ACK echoes it) */
	uint64_t nonce;		/* matches PING_ACK to PING (echoed) */
};

/* RESYNC_REQUEST: 0 u64 offset | 8 u32 length | 12 u32 flags */
#define REPL_RESYNC_REQUEST_LEN	16
struct repl_resync_request {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes (> 0, <= REPL_MAX_DATA) */
	uint32_t flags;		/* REPL_RSR_F_URGENT */
};

/*
 * RESYNC_DATA: 0 u64 offset | 8 u32 length | 12 u32 status |
 * 16 u64 applied_seq | 24 u8[length] data (only when status == 0).
 * Trailing data as DATA.
 */
#define REPL_RESYNC_DATA_LEN	24	/* fixed part */
struct repl_resync_data {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes of the range (> 0, <= REPL_MAX_DATA) */
	uint32_t status;	/* 0: data follows; else errno of the source's read, no data */
	uint64_t applied_seq;	/* the source's read saw every write of the peer up to
				 * this sequence number (0: none); a primary sync
				 * target drops data older than its own writes */
};

/* READ_REQUEST: 0 u64 id | 8 u64 offset | 16 u32 length | 20 u32 reserved */
#define REPL_READ_REQUEST_LEN	24
struct repl_read_request {
	uint64_t id;		/* the requester's tag, echoed in READ_REPLY */
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes (> 0, <= REPL_MAX_DATA) */
};

/*
 * READ_REPLY: 0 u64 id | 8 u64 offset | 16 u32 length | 20 u32 status |
 * 24 u8[length] data (only when status == 0).  Trailing data as DATA.
 */
#define REPL_READ_REPLY_LEN	24	/* fixed part */
struct repl_read_reply {
	uint64_t id;		/* READ_REQUEST's id */
	uint64_t offset;	/* its offset */
	uint32_t length;	/* its length */
	uint32_t status;	/* 0: data follows; else errno of the read, no data */
};

/* CSUM_REQUEST: 0 u64 offset | 8 u32 length | 12 u32 reserved | 16 u64 digest */
#define REPL_CSUM_REQUEST_LEN	24
struct repl_csum_request {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes (> 0, <= REPL_MAX_DATA) */
	uint64_t digest;	/* source's XXH3-64 of the range (csums) */
};

/* CSUM_SAME: 0 u64 offset | 8 u32 length | 12 u32 reserved */
#define REPL_CSUM_SAME_LEN	16
struct repl_csum_same {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes: the range is in sync, no data follows */
};

/* VERIFY_REQUEST: 0 u64 offset | 8 u32 length | 12 u32 reserved | 16 u64 digest */
#define REPL_VERIFY_REQUEST_LEN	24
struct repl_verify_request {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes (> 0, <= REPL_MAX_DATA) */
	uint64_t digest;	/* source's XXH3-64 of the range */
};

/*
 * VERIFY_REPLY: 0 u64 offset | 8 u32 length | 12 u32 status | 16 u64 digest |
 * 24 u32 flags | 28 u32 reserved
 */
#define REPL_VERIFY_REPLY_LEN	32
struct repl_verify_reply {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes */
	uint32_t status;	/* 0 or errno of the target's read (then digest is 0) */
	uint64_t digest;	/* target's XXH3-64 of the range */
	uint32_t flags;		/* REPL_VERIFY_F_DIFFERS */
};

/* RESYNC_ACK: 0 u64 offset | 8 u32 length | 12 u32 status */
#define REPL_RESYNC_ACK_LEN	16
struct repl_resync_ack {
	uint64_t offset;	/* byte offset */
	uint32_t length;	/* bytes written by the target */
	uint32_t status;	/* 0 or errno of the target's write */
};

/* RESYNC_DONE: 0 u32 kind | 4 u32 status | 8 u64 bytes */
#define REPL_RESYNC_DONE_LEN	16
struct repl_resync_done {
	uint32_t kind;		/* REPL_DONE_RESYNC or REPL_DONE_VERIFY */
	uint32_t status;	/* 0 completed, else errno that ended it */
	uint64_t bytes;		/* resync: bytes shipped; verify: bytes that differ */
};

/* PROMOTE_NOTICE: 0 u64 epoch | 8 u64 current_uuid | 16 u32 flags | 20 u32 reserved */
#define REPL_PROMOTE_NOTICE_LEN	24
struct repl_promote_notice {
	uint64_t epoch;		/* the new epoch, already durable on the sender */
	uint64_t current_uuid;	/* sender's current generation UUID after promotion */
	uint32_t flags;		/* REPL_PROMOTE_F_FORCE */
};

/* A decoded frame header. */
struct repl_hdr {
	uint16_t version;	/* protocol version of the frame */
	uint16_t type;		/* REPL_MSG_* */
	uint32_t flags;		/* REPL_HF_* */
	uint32_t length;	/* body bytes that follow */
	uint64_t epoch;		/* sender's epoch */
};

/* Any decoded body (repl_body_decode()). */
union repl_msg {
	struct repl_hello hello;
	struct repl_auth_challenge challenge;
	struct repl_auth_response response;
	struct repl_auth_result result;
	struct repl_reject reject;
	struct repl_state state;
	struct repl_bitmap bitmap;
	struct repl_data data;
	struct repl_trim trim;		/* TRIM and WRITE_ZEROES */
	struct repl_flush flush;
	struct repl_recv_ack recv_ack;
	struct repl_write_ack write_ack;
	struct repl_flush_ack flush_ack;
	struct repl_ping ping;		/* PING and PING_ACK */
	struct repl_resync_request resync_request;
	struct repl_resync_data resync_data;
	struct repl_csum_request csum_request;
	struct repl_csum_same csum_same;
	struct repl_verify_request verify_request;
	struct repl_verify_reply verify_reply;
	struct repl_resync_done resync_done;
	struct repl_promote_notice promote;
	struct repl_disconnect disconnect;
	struct repl_resync_ack resync_ack;
	struct repl_read_request read_request;
	struct repl_read_reply read_reply;
};

/* What every frame we send carries besides its type and body. */
struct repl_tx {
	uint16_t version;	/* negotiated version (handshake frames always use 1) */
	uint64_t epoch;		/* sender's current epoch */
};

/* ---- names (for logs) ---- */
/*
 * Symbolic names ("REPL_MSG_DATA", "REPL_REJECT_AUTH", "primary", ...).
 * Unknown values give "<PREFIX><n>" in one of four per-thread slots.
 */
const char *repl_type_name(uint32_t type);
const char *repl_reject_name(uint32_t reason);
const char *repl_disc_name(uint32_t reason);
const char *repl_role_name(uint32_t role);
const char *repl_disk_name(uint32_t disk);
const char *repl_rs_name(uint32_t rs);
const char *repl_mode_name(uint32_t mode);
/* REPL_CONN_* bits of the connections a type may be sent on, 0 if unknown. */
unsigned repl_type_conns(uint32_t type);
/* True for HELLO, AUTH_*, REJECT: frames with a frozen layout and version 1. */
bool repl_type_is_handshake(uint32_t type);

/* ---- frame header ---- */
/*
 * Decode and check a frame header.  Returns 0 or, in this order:
 * -EAGAIN len < REPL_HDR_LEN (read more); -EBADMSG wrong magic or
 * hdr_check; -EPROTONOSUPPORT version outside [MIN, MAX]; -EPROTO unknown
 * type; -EINVAL unknown header flag or reserved field not 0; -E2BIG length
 * over REPL_MAX_PAYLOAD or the type's largest body; -EBADMSG length under
 * the type's smallest body.  After 0, exactly out->length body bytes follow.
 */
int repl_hdr_decode(const void *buf, size_t len, struct repl_hdr *out);
/* Write a REPL_HDR_LEN header (hdr_check computed). */
void repl_hdr_encode(void *buf, const struct repl_hdr *h);

/* ---- bodies ---- */
/*
 * Body decoders: buf/len is the body of one frame (len = header length).
 * Each checks, before touching out's caller: exact length (-EBADMSG),
 * unknown flags and reserved fields (-EINVAL), enum values (-EINVAL),
 * strings (-EBADMSG: no NUL in the field, empty, non-printable, garbage
 * after the NUL), lengths 0 or over REPL_MAX_DATA (-EINVAL), offsets and
 * lengths not multiples of REPL_SECTOR (-EINVAL), offset + length wrapping
 * (-EOVERFLOW).  Volume bounds need the volume: repl_check_range().
 *
 * DATA, RESYNC_DATA and READ_REPLY carry trailing data: their len is still
 * the whole body length from the header, but only the fixed part
 * (REPL_DATA_LEN / REPL_RESYNC_DATA_LEN / REPL_READ_REPLY_LEN bytes) is read from buf, so the data may already be
 * in a separate buffer; the decoder checks len == fixed part + data length.
 */
int repl_hello_decode(const void *buf, size_t len, struct repl_hello *out);
int repl_auth_challenge_decode(const void *buf, size_t len, struct repl_auth_challenge *out);
int repl_auth_response_decode(const void *buf, size_t len, struct repl_auth_response *out);
int repl_auth_result_decode(const void *buf, size_t len, struct repl_auth_result *out);
int repl_reject_decode(const void *buf, size_t len, struct repl_reject *out);
int repl_state_decode(const void *buf, size_t len, struct repl_state *out);
int repl_bitmap_decode(const void *buf, size_t len, struct repl_bitmap *out);
int repl_data_decode(const void *buf, size_t len, struct repl_data *out);
int repl_trim_decode(const void *buf, size_t len, struct repl_trim *out);
int repl_write_zeroes_decode(const void *buf, size_t len, struct repl_trim *out);
int repl_flush_decode(const void *buf, size_t len, struct repl_flush *out);
int repl_recv_ack_decode(const void *buf, size_t len, struct repl_recv_ack *out);
int repl_write_ack_decode(const void *buf, size_t len, struct repl_write_ack *out);
int repl_flush_ack_decode(const void *buf, size_t len, struct repl_flush_ack *out);
int repl_ping_decode(const void *buf, size_t len, struct repl_ping *out);
int repl_resync_request_decode(const void *buf, size_t len, struct repl_resync_request *out);
int repl_resync_data_decode(const void *buf, size_t len, struct repl_resync_data *out);
int repl_csum_request_decode(const void *buf, size_t len, struct repl_csum_request *out);
int repl_csum_same_decode(const void *buf, size_t len, struct repl_csum_same *out);
int repl_verify_request_decode(const void *buf, size_t len, struct repl_verify_request *out);
int repl_verify_reply_decode(const void *buf, size_t len, struct repl_verify_reply *out);
int repl_resync_done_decode(const void *buf, size_t len, struct repl_resync_done *out);
int repl_promote_notice_decode(const void *buf, size_t len, struct repl_promote_notice *out);
int repl_disconnect_decode(const void *buf, size_t len, struct repl_disconnect *out);
int repl_resync_ack_decode(const void *buf, size_t len, struct repl_resync_ack *out);
int repl_read_request_decode(const void *buf, size_t len, struct repl_read_request *out);
int repl_read_reply_decode(const void *buf, size_t len, struct repl_read_reply *out);
/* Dispatch on type (PING_ACK uses .ping, WRITE_ZEROES .trim); -EPROTO if unknown. */
int repl_body_decode(uint32_t type, const void *buf, size_t len, union repl_msg *out);

/*
 * Frame encoders: write header + body into buf (size bytes) and return the
 * frame length, or -ENOSPC (buf too small) / -EINVAL (a field the decoder
 * would refuse: unknown flag, string too long or empty, bad length).
 * Handshake frames are always encoded with version 1, others with
 * tx->version.  repl_data_encode(), repl_resync_data_encode() and
 * repl_read_reply_encode() write only
 * the header and the fixed part (REPL_HDR_LEN + REPL_DATA_LEN bytes); the
 * header's length counts the data, which the caller sends next from its own
 * buffer (zero copy: iov[0] = buf, iov[1] = data).
 */
int repl_hello_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_hello *m);
int repl_auth_challenge_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_auth_challenge *m);
int repl_auth_response_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_auth_response *m);
int repl_auth_result_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_auth_result *m);
int repl_reject_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_reject *m);
int repl_state_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_state *m);
/*
 * BITMAP: the m->chunk_len bytes of chunk (from md_bitmap_rle_encode())
 * must already sit at buf + REPL_HDR_LEN + REPL_BITMAP_HDR_LEN.
 */
int repl_bitmap_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_bitmap *m);
int repl_data_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_data *m);
int repl_trim_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_trim *m);
int repl_write_zeroes_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_trim *m);
int repl_flush_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_flush *m);
int repl_recv_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_recv_ack *m);
int repl_write_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_write_ack *m);
int repl_flush_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_flush_ack *m);
int repl_ping_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_ping *m);
int repl_ping_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_ping *m);
int repl_resync_request_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_resync_request *m);
int repl_resync_data_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_resync_data *m);
int repl_csum_request_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_csum_request *m);
int repl_csum_same_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_csum_same *m);
int repl_verify_request_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_verify_request *m);
int repl_verify_reply_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_verify_reply *m);
int repl_resync_done_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_resync_done *m);
int repl_promote_notice_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_promote_notice *m);
int repl_disconnect_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_disconnect *m);
int repl_resync_ack_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_resync_ack *m);
int repl_read_request_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_read_request *m);
int repl_read_reply_encode(void *buf, size_t size, const struct repl_tx *tx, const struct repl_read_reply *m);

/* ---- checks and helpers ---- */
/*
 * Check a range against the volume: 0, -EINVAL (len 0, or offset/len not a
 * multiple of block_size, or block_size not a power of 2), -EOVERFLOW
 * (offset + len wraps), -ERANGE (past size).
 */
int repl_check_range(uint64_t offset, uint64_t len, uint64_t size, uint32_t block_size);
/* Highest version in both [min, max] ranges, or -EPROTONOSUPPORT. */
int repl_version_negotiate(uint16_t my_min, uint16_t my_max, uint16_t peer_min, uint16_t peer_max);
/*
 * Compare a peer's HELLO with ours (conn must match ours: the caller fills
 * mine->conn with the kind of the socket).  expected_peer is the configured
 * peer's node name (NULL: any other name).  Returns 0 or the REPL_REJECT_*
 * reason, in the order: VERSION, OTHER_RESOURCE, SAME_NODE, UNKNOWN_NODE,
 * PROTOCOL (conn), OTHER_VOLUME (md_volume_check() says MISMATCH), SIZE,
 * CONFIG; why gets one line for the log and the REJECT text.  Differing
 * volume UUIDs where one side is just created pass: after authentication
 * the daemon calls md_volume_check() and the fresh side adopts the other's.
 */
int repl_hello_check(const struct repl_hello *mine, const struct repl_hello *peer,
    const char *expected_peer, char *why, size_t whylen);
/* XXH3-64 of a range's bytes: the digest of CSUM_* and VERIFY_*. */
uint64_t repl_digest(const void *buf, size_t len);

#endif
