/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Replication internals shared by meta.c (runtime metadata), peer.c (the
 * peer link: sockets, framing, handshake, heartbeat), replicate.c (the write
 * path on both sides), resync.c and state.c (roles, disk states, events).
 */
#ifndef BLKMIRRORD_REPL_H
#define BLKMIRRORD_REPL_H

#include "internal.h"

struct json_object;
#include "md.h"
#include "repl_auth.h"
#include "repl_handshake.h"
#include "repl_proto.h"

#define PEER_RX_BUF		(256u << 10)	/* per-socket receive buffer */
#define PEER_TX_BATCH		64		/* frames per sendmsg */
#define PEER_FRAME_INLINE	(REPL_HDR_LEN + REPL_REJECT_MAX_LEN) /* header + largest fixed body */
#define PEER_CONNECT_MS		1000		/* reconnect interval */
#define PEER_BACKOFF_MAX_MS	10000		/* reconnect interval after refusals */
#define PEER_PING_MS		1000		/* heartbeat interval on the meta socket */
#define RESYNC_CHUNK		(256u << 10)	/* bytes per resync request at most */
#define RESYNC_INFLIGHT		(8u << 20)	/* resync bytes in flight (no rate set) */
#define RESYNC_INFLIGHT_BUSY	(1u << 20)	/* ... while clients have I/O in flight */
#define RESYNC_RETRY_MAX_S	60		/* longest delay between passes over failed ranges */
/*
 * What the peer may make this node hold for it at once; more is a protocol
 * error (a buggy or hostile peer must not run us out of memory).  A resync
 * or verify source keeps at most RESYNC_INFLIGHT bytes (plus one range) in
 * flight; a primary sync target reads from us at most what its NBD clients
 * may have in flight (NBD_FALLBACK_MAX + NBD_FALLBACK_RESERVE).
 */
#define PEER_TGT_MAX		(64u << 20)	/* resync data, csum and verify ranges */
#define PEER_READS_MAX		(384u << 20)	/* READ_REQUESTs being served */
#define PEER_TXQ_MAX		(1u << 18)	/* frames waiting to be sent on the
						 * meta socket: a peer that does
						 * not read (while it sends) is cut */
#define PEER_APPLY_MAX		(128u << 20)	/* the peer's writes held in memory
						 * before the data connection
						 * stops reading (TCP pushes back) */

/* A callback waiting for metadata to be durable. */
struct meta_wait {
	void (*cb)(struct meta_wait *w, int res);	/* 0 or -errno */
	struct meta_wait *next;				/* queue link */
};

/* Runtime metadata (two-node resources). */
struct meta {
	struct daemon *d;		/* owner */
	struct meta_wait role_wait;	/* promote / demote superblock write */
	bool role_busy;			/* role_wait is queued or being written */
	bool promote_cancelled;		/* stepped down while a promotion was written */
	uint64_t stale_writes;		/* client writes failed: they waited while
					 * this node stepped down */
	bool demoting;			/* demoted; the superblock keeps the primary
					 * flag until the writes the peer had not
					 * confirmed are settled (state_demote) */
	bool demote_writing;		/* settled: its superblock is being written */
	bool demote_hidden;		/* asked for: the peer sees a primary until
					 * it is durable (not a forced step-down) */
	struct loop_timer settle_timer;	/* ... checked again when it fires */
	struct meta_wait rot_wait;	/* generation rotation before degraded writes */
	bool rotating;			/* that rotation is being written */
	struct vol_req *rot_waiting;	/* writes waiting for it */
	struct vol_req *lost_waiting;	/* writes the link lost, completed
					 * once it is durable */
	bool rot_retry;			/* its write failed: again at the tick */
	bool gen_own;			/* this run took the generation that the
					 * bitmap UUID tracks from (meta.c,
					 * generation_in_place) */
	int plain_fd;			/* buffered fd for start-up / shutdown I/O */
	struct ioeng *eng;		/* engine for metadata writes (data engine if internal) */
	bool own_eng;			/* eng was opened for an external meta-disk */
	struct md_loc loc;		/* where the metadata lives */
	struct md_sb sb;		/* the superblock in memory */
	int slot;			/* slot of the last durable superblock */
	struct md_layout layout;	/* regions */
	struct md_bitmap bm;		/* dirty bitmap */
	struct md_al al;		/* activity log */
	/* superblock writer: one write in flight; requests arriving meanwhile
	 * are served by one more write */
	struct io_req sb_io;		/* the write */
	void *sb_buf;			/* 4 KiB aligned */
	bool sb_busy;			/* a write is in flight */
	bool sb_again;			/* another write is needed after it */
	struct meta_wait *sb_waiting;	/* wait for the write in flight */
	struct meta_wait *sb_next;	/* wait for the next write */
	/* activity log writer */
	struct io_req al_io;
	void *al_buf;
	struct vol_req *al_waiting;	/* writes waiting for a transaction */
	/* bitmap writer: one block at a time */
	struct io_req bm_io;
	void *bm_buf;
	bool bm_busy;
	uint64_t bm_want;		/* block to write next, or MD_BM_NONE */
	struct io_req bm_flush_io;	/* data flush before a block with clears */
	struct io_req sb_flush_io;	/* data flush before such a superblock */
	bool sb_flush;			/* the next superblock write flushes first */
	uint64_t bm_flushes;		/* such flushes (stats) */
	uint64_t bm_blk;		/* block being written */
	uint64_t bm_gen;		/* its change counters */
	struct vol_req *bm_waiting;	/* writes waiting for durable bits */
	uint64_t bm_writes;		/* bitmap blocks written (stats) */
	uint64_t resync_bits_waits;	/* resync target ranges that waited for
					 * their bitmap block (stats) */
	uint64_t al_writes;		/* AL transactions written (stats) */
	uint64_t al_evict_waits;	/* AL transactions that waited for the
					 * bitmap of an extent they evict */
	bool al_evict_wait;		/* one waits now */
	struct io_req al_flush_io;	/* data flush before an evicting AL
					 * transaction */
	bool al_flush_busy;		/* ... in flight */
	uint64_t al_flush_clock;	/* md_al_put_clock() when it was submitted */
	uint64_t al_flushed_clock;	/* ... of the last one that succeeded */
	uint64_t al_flushes;		/* such flushes (stats) */
	bool detached;			/* the disk was detached after an I/O
					 * error (diskfail.c): no more AL and
					 * bitmap writes */
	uint64_t exposed_uuid;		/* detached primary: the peer's current
					 * UUID, whose data it serves (DRBD's
					 * exposed data UUID) */
	struct loop_timer retry_timer;	/* a failed AL/bitmap write is retried */
	bool retry_wait;		/* ... when it fires (no write before) */
	uint64_t write_errors;		/* failed metadata writes (stats) */
	uint64_t failing_since_ns;	/* first of the metadata write failures
					 * since the last success, or 0 */
	uint64_t failed_writes;		/* writes failed because their metadata
					 * could not be written (stats) */
	/* A primary's client writes that arrive while the link is up but the
	 * UUIDs not yet compared (RS_CONNECTING) wait, in arrival order, for
	 * the decision (meta.c, park_connecting) */
	struct vol_req *conn_parked;	/* first of them (linked by pnext) */
	struct vol_req **conn_tail;	/* where the next one goes */
	struct loop_timer conn_timer;	/* re-runs them on the next loop turn */
	uint64_t conn_parks;		/* writes parked so (stats) */
};

/* An outgoing frame: a small inline part plus optional trailing data. */
struct peer_frame {
	uint8_t buf[PEER_FRAME_INLINE];	/* header + fixed body */
	uint32_t len;			/* bytes of buf to send */
	void *payload;			/* trailing data (zero copy), or NULL */
	uint32_t payload_len;		/* its bytes */
	bool free_payload;		/* free(payload) once sent */
	void (*sent)(struct peer_frame *f, int res);	/* after the send, or on
					 * link loss (res < 0); NULL: nothing */
	void *ctx;			/* sent()'s context */
	uint64_t seq;			/* a replicated write's or FLUSH's seq
					 * (0: any other frame) */
	struct peer_frame *next;	/* queue link */
};

enum sock_phase {
	SP_HANDSHAKE = 0,	/* HELLO / AUTH in progress */
	SP_READY,		/* authenticated, part of the link */
	SP_CLOSING,		/* shut down, freed once idle */
};

/* One TCP connection to the peer (data or meta). */
struct peer_sock {
	struct peer *p;			/* owner */
	struct peer_sock *next;		/* p->socks list */
	int fd;
	unsigned kind;			/* REPL_CONN_DATA or REPL_CONN_META */
	bool outgoing;			/* we connected */
	enum sock_phase phase;
	char name[96];			/* for logs: "data to beta" */
	/* handshake */
	struct repl_hs hs;		/* lib/repl_handshake.c state machine */
	struct repl_hello hello;	/* the peer's HELLO, once authenticated */
	/* connect */
	struct loop_op conn_op;		/* pending connect */
	bool connecting;
	/* receive */
	struct loop_op rx_op;
	bool rx_busy;
	bool rx_held;			/* data: not reading while the peer's writes
					 * being applied exceed PEER_APPLY_MAX */
	uint8_t *rx;			/* PEER_RX_BUF */
	size_t rx_len, rx_off;
	struct repl_hdr hdr;		/* header of the frame being received */
	bool in_body;			/* hdr valid, body not complete */
	uint8_t *big;			/* body received outside rx (BITMAP, payloads) */
	uint32_t big_len, big_got;	/* its size and bytes so far */
	struct buf payload;		/* DATA / RESYNC_DATA payload buffer */
	uint8_t fixed[64];		/* fixed part of a payload frame */
	/* send */
	struct loop_op tx_op;
	bool tx_busy;
	struct loop_flush tx_flush;	/* sends what the loop turn queued, at its end */
	struct peer_frame *txq_head, *txq_tail, *tx_batch;
	unsigned txq_n;			/* frames in txq (PEER_TXQ_MAX) */
	struct loop_op overflow_op;	/* deferred cut of a peer that does not read */
	bool overflow_queued;
	struct iovec iov[PEER_TX_BATCH * 2];
	uint64_t last_rx_ns;		/* last frame received */
	uint64_t born_ns;		/* when it was created (handshake bound) */
	struct loop_op free_op;		/* deferred free (sock_maybe_free) */
	bool free_queued;		/* free_op is queued */
	uint64_t bytes_sent, bytes_received;
};

/* Replication state when connected (REPL_RS_* values). */
enum link_state {
	RS_OFF = 0,		/* not connected */
	RS_CONNECTING,		/* link up, states not yet exchanged */
	RS_ESTABLISHED,
	RS_SYNC_SOURCE,
	RS_SYNC_TARGET,
	RS_PAUSED_SYNC_SOURCE,
	RS_PAUSED_SYNC_TARGET,
	RS_AHEAD,
	RS_BEHIND,
};

/* A replicated write waiting for the peer (primary side). */
struct peer_pending {
	struct vol_req *vr;		/* the volume request */
	uint64_t seq;			/* its sequence number */
};

/* Resync progress. */
struct resync {
	bool active;			/* a resync runs */
	bool source;			/* we ship data */
	bool paused;			/* pause-sync */
	bool bitmap_sent;		/* our BITMAP went out */
	bool bitmap_received;		/* the peer's BITMAP came in (last chunk) */
	bool stopped;			/* stopped on a live link (a disk was
					 * detached): late answers are ignored */
	uint64_t pos;			/* next bit to look at (source) */
	uint64_t inflight_bytes;	/* requested/shipped, not yet acked */
	uint64_t total_bytes;		/* out of sync at the start */
	uint64_t done_bytes;		/* resynced so far */
	uint64_t shipped_bytes;		/* bytes of data sent (source) */
	uint64_t same_bytes;		/* csums: ranges found equal */
	uint64_t started_ns;		/* when the resync started */
	uint64_t rate_bps;		/* measured rate */
	uint64_t rate_mark_bytes, rate_mark_ns;	/* rate window start */
	uint64_t limit_base_ns;		/* resync-rate: allowance counted from here */
	uint64_t limit_base_bytes;	/* ... and done_bytes at that moment */
	uint64_t failed_ranges;		/* source: ranges the peer answered with an
					 * error (our read or its write failed) */
	uint64_t failed_bytes;		/* ... their bytes (this resync) */
	uint64_t pass_failed;		/* bytes failed in the current pass */
	uint64_t retry_ns;		/* source: next pass not before (0: none) */
	unsigned retry_s;		/* the last retry delay, seconds */
	struct loop_timer timer;	/* rate limiting / restart */
	unsigned verify_orphans;	/* VERIFY_REPLYs still due for a verify
					 * stopped on a live link (their
					 * differences are marked) */
	bool done_sent;			/* RESYNC_DONE queued */
	uint64_t stale_refused;		/* target: ranges refused as older than our writes */
	/* verify */
	bool verify;			/* an online verify runs */
	uint64_t verify_pos, verify_diff, verify_done;
};

/* The peer link. */
struct peer {
	struct daemon *d;
	struct peer_sock *socks;	/* every socket (handshaking or ready) */
	struct peer_sock *data, *meta;	/* the link, once authenticated */
	struct listener lis[2];		/* data and meta listeners */
	struct loop_op lis_op[2];
	struct sockaddr_storage peer_addr[2];	/* peer's data and meta address */
	unsigned peer_addrlen;
	struct repl_secret secret;	/* shared secret (empty: none) */
	uint64_t nonce;			/* our daemon nonce (HELLO) */
	bool want_connect;		/* not disconnected by hand */
	uint64_t backoff_ms;		/* reconnect delay after refusals (0: none) */
	bool discard_my_data;		/* connect --discard-my-data */
	struct loop_timer connect_timer;
	struct loop_timer ping_timer;
	struct loop_timer hs_timer;	/* closes handshakes that take too long */
	uint64_t up_ns;			/* when the link last came up (the UUID
					 * decision is due within timeout) */
	struct loop_timer up_delay;	/* BLKMIRROR_TEST_LINK_UP_DELAY_MS */
	uint64_t hs_in_failures;	/* incoming connections whose handshake
					 * failed (strangers, scanners; stats) */
	char hs_in_why[REPL_TEXT_MAX + 64];	/* the last one's reason (logs) */
	struct peer_frame *leave_frame;	/* peer_leave's DISCONNECT, queued and
					 * not yet released, or NULL */
	uint64_t hs_timeouts;		/* handshakes closed for that (stats) */
	uint64_t ping_nonce;
	uint16_t version;		/* negotiated protocol version */
	struct repl_hello peer_hello;	/* the peer's HELLO (data socket) */
	bool state_sent, state_received;
	bool clear_bitmap_notice;	/* next STATE carries REPL_STATE_F_CLEAR_BITMAP */
	bool peer_paused;		/* the peer asked for pause-sync */
	struct repl_state peer_state;	/* the peer's last STATE */
	struct repl_state early_state;	/* a STATE that came before our link was up */
	uint64_t early_nonce;		/* the session it came from */
	bool have_early_state;		/* early_state is set */
	enum link_state rs;		/* replication state */
	uint64_t send_seq;		/* last seq sent (primary) */
	uint64_t tx_seq;		/* last seq handed to a sendmsg: an ack
					 * for a later one is a lie */
	/* primary: writes waiting for the peer, in seq order */
	struct vol_req *pend_head, *pend_tail;
	unsigned n_pend;
	uint64_t lag_bytes;		/* async: sent, not yet written on the peer */
	struct vol_req *cong_wait;	/* writes blocked by on-congestion = block */
	uint64_t congestion_waits;	/* writes that had to wait (stats) */
	uint64_t peer_flushes;		/* FLUSHes sent on this node's own, so
					 * that acknowledged writes do not stay
					 * long in the peer's volatile cache */
	uint64_t unflushed_marked;	/* bytes marked at link loss because the
					 * peer had not flushed them yet */
	unsigned n_peer_only;		/* pending writes with peer_only_copy */
	/* secondary: replicated writes in flight, in seq order */
	uint64_t apply_seq;		/* last write-type seq handed to the volume */
	struct vol_req *apply_head, *apply_tail;
	struct vol_req *flush_wait;	/* FLUSHes waiting for earlier writes */
	struct resync rs_state;		/* resync / verify */
	char last_error[REPL_TEXT_MAX + 64];	/* why the link last went down */
	uint64_t connects, disconnects;	/* counters */
	uint64_t bytes_sent, bytes_received;	/* of closed sockets + live ones */
	uint64_t resync_bytes_shipped;	/* since start */
	uint64_t resync_bytes_received;
	uint64_t split_brains;
	/* promoted sync target (peerread.c) */
	uint64_t al_starved_flushes;	/* own FLUSHes sent early: every AL slot
					 * was held, some for unflushed writes */
	uint64_t reads_from_peer;	/* client reads the peer served */
	uint64_t read_bytes_from_peer;	/* their bytes */
	uint64_t reads_for_peer;	/* READ_REQUESTs this node served */
	uint64_t tgt_bytes;		/* resync/verify ranges being worked on for
					 * the peer (PEER_TGT_MAX) */
	uint64_t serving_read_bytes;	/* READ_REQUESTs being served (PEER_READS_MAX) */
	uint64_t apply_bytes;		/* the peer's writes being applied: payloads
					 * and bookkeeping (PEER_APPLY_MAX) */
	uint64_t apply_holds;		/* times the data connection stopped reading
					 * for it */
	uint64_t io_refused_no_data;	/* I/O failed: no good data reachable */
	char leaving_why[REPL_TEXT_MAX];	/* peer_leave's reason */
};

/* meta.c */
int meta_attach(struct daemon *d);
void meta_detach(struct daemon *d, bool clean);
void meta_sb_write(struct daemon *d, struct meta_wait *w);
/* The same after flushing the data device: the superblock says the disk
 * holds data written before (uptodate). */
void meta_sb_write_flushed(struct daemon *d, struct meta_wait *w);
/* A write to [off, off+len) may start: AL (primary) and, when the peer
 * does not get it, bitmap bits durable.  Calls vol_start(vr) when ready. */
void meta_prepare_write(struct daemon *d, struct vol_req *vr);
void meta_write_done(struct daemon *d, struct vol_req *vr);
void meta_set_oos(struct daemon *d, uint64_t off, uint64_t len);
void meta_clear_oos(struct daemon *d, uint64_t off, uint64_t len);
void meta_flush_bitmap(struct daemon *d);
void meta_drop_resync_waiters(struct daemon *d, int res);
uint64_t meta_oos_bytes(struct daemon *d);
/* The disk is detached: mark the superblock (full sync pending), stop AL
 * and bitmap writes, let the writes waiting for them go on. */
void meta_disk_detached(struct daemon *d);
/* The link dropped; lost (linked by pnext) are the writes that were waiting
 * for the peer, marked out of sync if marked: complete them (after a new
 * generation is durable, on an uptodate primary). */
void meta_link_lost(struct daemon *d, struct vol_req *lost, bool marked);
/* The replication state left RS_CONNECTING (or the disk was detached): the
 * writes parked meanwhile go on, from the next loop turn. */
void meta_connecting_over(struct daemon *d);
/* An async or memsync write completes before the peer wrote it: its AL
 * extents stay active (true) until meta_al_release after the peer's
 * WRITE_ACK or the link's loss, so that a crash meanwhile still resyncs
 * them.  False: vr holds no AL extents (nothing to release). */
bool meta_al_hold(struct daemon *d, const struct vol_req *vr);
void meta_al_release(struct daemon *d, uint64_t off, uint64_t len);
/* Every mark of the bitmap is on disk (true), or the writer was kicked. */
bool meta_bitmap_settled(struct daemon *d);
/* One more hold on an active extent (false: not active, nothing held);
 * released by meta_al_release. */
bool meta_al_get(struct daemon *d, uint32_t extent);

/* volume.c */
void vol_start(struct daemon *d, struct vol_req *vr);
/* Complete vr (submitted, not started on the disk) with res, as a failed
 * request: its waiters go on. */
void vol_fail(struct daemon *d, struct vol_req *vr, int res);
/* The peer acknowledged vr as its mode requires (res 0 or -errno). */
void vol_peer_done(struct daemon *d, struct vol_req *vr, int res);

/* peer.c */
int peer_start(struct daemon *d);
void peer_stop(struct daemon *d);
bool peer_connected(struct daemon *d);
bool peer_link_is(const struct peer *p, uint64_t link_gen);
void peer_send(struct peer_sock *s, struct peer_frame *f);
/* The peer's writes being applied went down: read the data connection again
 * if it stopped for them (below half of PEER_APPLY_MAX). */
void peer_apply_resume(struct peer *p);
struct peer_frame *peer_frame_new(void);
void peer_link_down(struct peer *p, uint32_t reason, const char *why);
/* The same after the frames queued on meta and a DISCONNECT went out. */
void peer_leave(struct peer *p, uint32_t reason, const char *why);
void peer_connect_cmd(struct daemon *d, bool discard_my_data);
void peer_disconnect_cmd(struct daemon *d);
struct repl_tx peer_tx(struct peer *p);

/* replicate.c */
/* Primary: send vr to the peer if the link ships writes; true if sent. */
bool repl_ship(struct daemon *d, struct vol_req *vr);
/* async over max-lag-bytes: park vr (block: true) or go ahead (false). */
bool repl_congested(struct daemon *d, struct vol_req *vr);
/* A link frame for the write path or resync; body/len is the raw body.  The
 * handler may take *payload (then it sets payload->p = NULL). */
void repl_handle(struct peer *p, struct peer_sock *s, const struct repl_hdr *h,
    const union repl_msg *m, struct buf *payload, const uint8_t *body, size_t len);
void repl_link_lost(struct peer *p);
/* Every ping tick: a FLUSH to the peer when written-to ranges wait for one;
 * false when the link was dropped (the peer's FLUSH hangs). */
bool repl_tick(struct peer *p);
/* Every AL slot is pinned: if writes the peer has not flushed hold some,
 * send a FLUSH of this node's own now (their holds go with its ack). */
void repl_al_starved(struct daemon *d);
/* No write of this node's waits for the peer's confirmation (WRITE_ACK, or
 * FLUSH_ACK of a FLUSH after it): true.  False: some do, and a FLUSH of
 * this node's own was sent for them if none is on its way. */
bool repl_settled(struct daemon *d);
/* vr's local write failed and its range is marked: no WRITE_ACK may clear it. */
void repl_keep_marked(struct daemon *d, struct vol_req *vr);
/* async, memsync: when the oldest write the peer has not yet written
 * (WRITE_ACK) was shipped; false if there is none. */
bool repl_lag_oldest(uint64_t *shipped_ns);

/* resync.c */
void resync_begin(struct peer *p, enum md_sync_decision dec);
void resync_handle(struct peer *p, const struct repl_hdr *h, const union repl_msg *m,
    struct buf *payload, const uint8_t *body, size_t len);
void resync_kick(struct peer *p);
void resync_cleared(struct peer *p);
bool resync_oldest(uint64_t *sent_ns);
void resync_stop(struct peer *p);
void verify_abandon(struct peer *p, const char *why);
void resync_cmd_pause(struct daemon *d, bool pause);
/* Show a pause of either node in the replication state (paused-sync-*). */
void resync_show_pause(struct peer *p);
int verify_start(struct daemon *d);

/* peerread.c: a primary whose disk is not uptodate (promoted sync target) */
/* Divert vr (not yet submitted): reads of out-of-sync blocks go to the peer,
 * I/O that needs the peer's data fails with EIO while the peer cannot serve
 * it.  true: vr was taken (it completes later through vr->done). */
bool peerread_divert(struct daemon *d, struct vol_req *vr);
/* The peer serves this node's reads and writes (sync target, peer uptodate). */
bool peerread_peer_serves(const struct daemon *d);
/* READ_REQUEST (source side) and READ_REPLY (target side). */
void peerread_handle(struct peer *p, const struct repl_hdr *h, const union repl_msg *m,
    struct buf *payload);
/* Link lost: pending reads fail with EIO. */
void peerread_link_lost(struct peer *p);
bool peerread_oldest(uint64_t *sent_ns);
/* A client write overlapping [off, off+len) that the peer may not have
 * applied before applied_seq (not yet acknowledged as written, or shipped
 * with a higher sequence number): resync data read then is stale for it. */
bool peerread_newer_write(struct daemon *d, uint64_t off, uint64_t len, uint64_t applied_seq);
/* Send the read vr to the peer now (true: vr completes through vr->done). */
bool peerread_send(struct daemon *d, struct vol_req *vr);

/* diskfail.c: local disk errors (on-io-error) */
/* The disk was detached: this node is a diskless primary. */
bool diskfail_detached(const struct daemon *d);
/* vr's local I/O failed with res: detach if the policy and the peer allow.
 * Returns the local result vr completes with (0: the peer's result
 * decides); *taken: vr was handed to the peer (a read), do not complete it. */
int diskfail_io_error(struct daemon *d, struct vol_req *vr, int res, bool *taken);
/* vr's local I/O (started before the detach) completed on a detached disk
 * with res: the result vr completes with locally (0: the peer's decides). */
int diskfail_after_detach(struct daemon *d, struct vol_req *vr, int res);
/* A metadata write failed: detach if the policy and the peer allow. */
void diskfail_meta_error(struct daemon *d, const char *what, int res);
/* Secondary: the primary detached its disk; start a new generation. */
void diskfail_peer_detached(struct peer *p);
/* Connect with either disk detached: true if it decided (no resync). */
bool diskfail_decide(struct peer *p);

/* admin.c */
int admin_exec(struct daemon *d, const char *cmd, struct json_object *args, char *err,
    size_t errlen);
void admin_status(struct daemon *d, struct json_object *o);

/* state.c */
enum md_sync_decision state_leftover_decision(struct peer *p);
int state_clear_bitmap(struct daemon *d, char *err, size_t errlen);
const char *repl_state_name(int rs);
void state_peer_uuids(const struct peer *p, struct md_uuids *u);
void state_disk_uptodate(struct daemon *d);
void resync_target_finish(struct peer *p);
void state_set(struct daemon *d, const char *what, int role, int disk, int conn,
    int rs, const char *reason);
void state_event(struct daemon *d, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void state_send(struct peer *p);
void state_send_on(struct peer *p, struct peer_sock *sock);
void state_received(struct peer *p, const struct repl_state *st);
int state_promote(struct daemon *d, bool force, char *err, size_t errlen);
int state_demote(struct daemon *d, char *err, size_t errlen);

#endif
