/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * blkmirrord's internal interfaces, grouped by the file that implements them.
 */
#ifndef BLKMIRRORD_INTERNAL_H
#define BLKMIRRORD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bufpool.h"
#include "config.h"
#include "ioengine.h"
#include "loop.h"
#include "nbd_proto.h"
#include "rangeidx.h"

struct daemon;
struct nbd_conn;

enum role {
	ROLE_SECONDARY = 0,
	ROLE_PRIMARY,
};

enum disk_state {
	DISK_DISKLESS = 0,
	DISK_INCONSISTENT,
	DISK_OUTDATED,
	DISK_CONSISTENT,
	DISK_UPTODATE,
	DISK_FAILED,
};

enum conn_state {
	CONN_STANDALONE = 0,	/* no peer configured, or disconnected by hand */
	CONN_CONNECTING,
	CONN_CONNECTED,
};

/* Per-operation counters of the volume (status --json "ops"). */
struct op_counters {
	uint64_t reads, writes, flushes, trims, zeroes, caches, block_status;
	uint64_t read_bytes, write_bytes, trim_bytes, zero_bytes;
	uint64_t errors;		/* requests answered with an error */
	uint64_t rejected;		/* requests refused by validation */
};

/* A listening socket (NBD or control). */
struct listener {
	struct daemon *d;		/* owner */
	int fd;				/* listening socket */
	struct loop_op op;		/* pending accept */
	char name[160];			/* address as configured, for logs */
	bool is_control;		/* control socket (else NBD) */
	bool from_systemd;		/* came from LISTEN_FDS */
	uint64_t accept_errors;		/* accept failures seen */
	struct loop_timer retry;	/* re-arms accept after a failure */
	bool closed;			/* fd closed (daemon stopping) */
};

/* One in-flight request on the volume, from any frontend. */
struct vol_req {
	struct io_req io;		/* disk request; io.data = this */
	struct daemon *d;		/* the volume's daemon */
	void (*done)(struct vol_req *vr, int res);	/* completion, res 0 or -errno */
	void *owner;			/* frontend's context */
	struct rangeidx_node wnode;	/* in d->writes while a write runs or
					 * waits (conflicts); key: seq */
	struct vol_req *waiters;	/* requests blocked behind this one, in
					 * the order they started waiting */
	struct vol_req *waiters_last;	/* the last of them (appends in O(1)) */
	struct vol_req *wait_next;	/* link in the blocker's waiters list */
	uint64_t seq;			/* volume order of submission */
	bool is_write;			/* modifies data: takes part in conflicts */
	bool is_resync;			/* resync/verify I/O: no AL, not replicated */
	bool bits_first;		/* resync target: starts only once the
					 * range's bits are on disk (meta.c
					 * meta_prepare_write) */
	bool bits_waited;		/* it waited for them (counted once) */
	bool from_peer;			/* a replicated write applied here: never
					 * shipped back, even if this node is
					 * promoted while it runs */
	void (*local_cb)(struct vol_req *vr, int res);	/* optional: the local
					 * disk finished (before the peer) */
	/* replication (primary: shipped to the peer; secondary: applied) */
	bool al_pinned;			/* holds its AL extents */
	bool shipped;			/* a frame for it went to the peer */
	bool local_done;		/* the local disk finished */
	bool peer_done;			/* the peer condition of the mode holds */
	bool peer_only_copy;		/* shipped by a primary whose disk is not
					 * uptodate: the peer holds the only good
					 * copy, so the request completes on the
					 * peer's WRITE_ACK (whatever the protocol)
					 * and fails when the peer's write does */
	bool local_lost;		/* the local disk failed it and was
					 * detached: the peer's result decides */
	bool local_failed;		/* the local disk failed it: its range is
					 * marked and no peer ack may clear it */
	int local_res;			/* local result */
	int peer_res;			/* peer result (sync) */
	uint64_t peer_seq;		/* replication sequence number */
	uint64_t shipped_ns;		/* when it went to the peer (ko-count) */
	struct vol_req *pnext;		/* peer pending / apply list link */
	void *repl_ctx;			/* async: its frame until sent (replicate.c) */
	struct vol_split *split;	/* run in pieces (volume.c), or NULL */
};

struct daemon {
	struct conf conf;		/* parsed configuration */
	const struct conf_node *self;	/* our [node] section */
	const struct conf_node *peer;	/* the other node, or NULL (standalone) */
	struct loop *loop;		/* the one event loop */
	struct ioeng *eng;		/* local backing device */
	uint64_t size;			/* exported bytes */
	enum role role;
	enum disk_state disk;
	enum conn_state conn;
	bool stopping;			/* shutdown requested */
	uint64_t started_ns;		/* now_ns() at start */

	struct listener *listeners;	/* NBD and control listeners */
	unsigned n_listeners;

	struct nbd_conn *conns;		/* open NBD connections */
	unsigned n_conns;		/* entries on conns */
	uint64_t conns_total;		/* accepted since start */

	struct rangeidx writes;		/* writes running or waiting, by range
					 * (conflict detection) */
	uint64_t vol_seq;		/* last vol_req seq handed out */
	unsigned inflight;		/* requests submitted to the volume */
	unsigned client_inflight;	/* client (NBD) requests not yet answered */
	unsigned req_cached;		/* NBD request structs kept for reuse
					 * (at most NBD_REQ_CACHE_MAX) */

	struct op_counters ops;		/* volume-level counters */
	struct bufpool pool;		/* I/O buffers (registered with the engine) */
	uint32_t block_size;		/* exported minimum block size */
	const char *refuse;		/* why NBD clients are refused now, or NULL */
	struct loop_timer stop_timer;	/* polls for the end of a clean shutdown */
	uint64_t stop_deadline;		/* now_ns() after which shutdown is forced */
	struct control *ctl;		/* control socket state */
	struct meta *md;		/* metadata (two-node resources), or NULL */
	struct peer *link;		/* the peer link (two-node), or NULL */
	uint64_t epoch;			/* current epoch (durable in the superblock) */
	uint64_t transitions;		/* state changes since start */
	uint64_t disk_errors;		/* local disk requests that failed */
	uint64_t detaches;		/* times the disk was detached (0 or 1) */
	uint64_t split_requests;	/* writes run in pieces (volume.c) */
	unsigned splits_live;		/* of them, not yet completed */
};

/* main.c */
void daemon_request_stop(struct daemon *d, const char *why);
/*
 * A test setting from the environment: the value of NAME if it is a number
 * in 1..max, else 0 (unset, bad or out of range).  When set, logs one
 * warning: "NAME=N: WHAT (a test setting)".  Call once and keep the result.
 */
uint64_t test_setting(const char *name, uint64_t max, const char *what);
const char *role_name(enum role r);
const char *disk_state_name(enum disk_state s);
const char *conn_state_name(enum conn_state s);

/* volume.c: the I/O path shared by all frontends. */
/* Submit vr (io fields filled in); vr->done runs from the loop. */
void vol_submit(struct daemon *d, struct vol_req *vr);

/* nbd_server.c: listeners, accept, connection lifecycle and handshake. */
int nbd_server_start(struct daemon *d);
/* Stop accepting; every connection finishes its requests and closes. */
void nbd_server_stop(struct daemon *d);
/* Listening socket helper shared with control.c: bind+listen addr (unix
 * sockets: mode applied, stale file removed); returns fd or -errno. */
int listen_on(const struct sockaddr_storage *ss, unsigned sslen, int mode);

/* control.c: control socket (line-delimited JSON). */
int control_start(struct daemon *d);
void control_stop(struct daemon *d);
/* Emit an event to every "events" subscriber; obj is a json_object * (consumed). */
void control_emit(struct daemon *d, void *json_obj);

#endif
