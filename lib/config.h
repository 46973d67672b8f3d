/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Resource configuration: one INI file per resource, parsed with inih.
 *
 *   [resource]               global settings of the volume
 *   [node NAME]              one per node (one = standalone, two = mirrored)
 *
 * Unknown sections or keys, bad values, duplicate keys and missing required
 * keys are errors reported as "FILE:LINE: key: what is wrong" (LINE 0 for a
 * problem with the file as a whole, e.g. a missing section).
 */
#ifndef BLKMIRROR_CONFIG_H
#define BLKMIRROR_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ioengine.h"

#define CONF_MAX_NODES		2
#define CONF_MAX_LISTEN		8
#define CONF_NAME_MAX		64

enum repl_protocol {
	PROTO_SYNC = 0,		/* ack after local and peer disk (DRBD C) */
	PROTO_MEMSYNC,		/* ack after local disk and peer received (B) */
	PROTO_ASYNC,		/* ack after local disk and queued (A) */
};

enum on_congestion {
	CONGESTION_BLOCK = 0,	/* block clients while the send queue is full */
	CONGESTION_PULL_AHEAD,	/* stop shipping, mark the bitmap, resync later */
};

enum on_io_error {
	IOERR_DETACH = 0,	/* a primary drops its failing disk, serves from the peer */
	IOERR_PASS_ON,		/* the error goes to the client; the disk stays */
};

enum csums_alg {
	CSUMS_NONE = 0,		/* resync ships every marked block */
	CSUMS_XXH3,		/* target sends xxh3 digests, source ships only differences */
};

/* A listening address: TCP "host:port" or "unix:PATH". */
struct conf_addr {
	char text[160];			/* as written, for logs */
	struct sockaddr_storage ss;	/* parsed address */
	unsigned sslen;			/* bytes of ss in use */
};

struct conf_node {
	char name[CONF_NAME_MAX];	/* [node NAME] */
	char disk[256];			/* backing block device or file (required) */
	char meta_disk[256];		/* "internal" (default) or a path */
	struct conf_addr address;	/* replication data port (meta = port + 1) */
	bool has_address;		/* address= given */
	struct conf_addr nbd_listen[CONF_MAX_LISTEN];	/* nbd-listen= (repeatable) */
	unsigned n_nbd_listen;		/* entries used */
	char control[256];		/* control socket path (default /run/blkmirror/RES.sock) */
	unsigned line;			/* line of the [node] header, for errors */
};

#define BUSY_POLL_DEFAULT_US	0u	/* off: see blkmirror.conf(5) */
#define BUSY_POLL_MAX_US	1000u

struct conf {
	char path[256];			/* file the config came from */
	/* [resource] */
	char name[CONF_NAME_MAX];	/* name = (required; export name too) */
	enum repl_protocol protocol;	/* protocol = sync|memsync|async (sync) */
	enum ioeng_kind io_engine;	/* io-engine = io_uring|libaio|sync (io_uring) */
	bool direct_io;			/* direct-io = yes|no (yes): O_DIRECT on the
					 * disk where its DIO alignment allows */
	bool inline_writes;		/* inline-writes = no|yes (no): small
					 * buffered writes on the loop thread
					 * (ioeng_opts.inline_writes) */
	uint32_t busy_poll_us;		/* busy-poll = 0 (off) | DURATION: how long
					 * the event loop looks for work
					 * before it sleeps (loop_set_busy_poll) */
	uint32_t block_size;		/* block-size = 512|4096 (4096) */
	char secret_file[256];		/* secret-file = PATH (replication auth) */
	uint64_t timeout_ms;		/* timeout = 6s */
	unsigned ko_count;		/* ko-count = 7 */
	uint64_t max_lag_bytes;		/* max-lag-bytes = 64M */
	enum on_congestion on_congestion;	/* on-congestion = block */
	enum on_io_error on_io_error;		/* on-io-error = detach */
	uint64_t resync_rate;		/* resync-rate = 0 (0: dynamic controller), bytes/s */
	enum csums_alg csums;		/* csums = none|xxh3 (none) */
	unsigned al_extents;		/* al-extents = 1237 (7..65534) */
	uint64_t bitmap_granularity;	/* bitmap-granularity = 4K (power of 2, 4K..1M) */
	/* [node ...] */
	struct conf_node nodes[CONF_MAX_NODES];
	unsigned n_nodes;
};

/*
 * Parse path into *c (zeroed and filled with defaults first).  On error
 * returns a negative errno and writes one "FILE:LINE: key: message" line
 * into err (NUL-terminated, truncated to errlen; err may be NULL).  Errors
 * about a whole section name it as the key ("FILE:LINE: [node b]: ...");
 * an unreadable file gives "FILE: cannot open: strerror" and -errno.
 */
int conf_load(const char *path, struct conf *c, char *err, size_t errlen);
/* Same, from a string (tests); name is used as FILE in messages. */
int conf_load_string(const char *text, const char *name, struct conf *c,
    char *err, size_t errlen);
/* The node section called name, or NULL. */
const struct conf_node *conf_node(const struct conf *c, const char *name);
/* The other node (the peer of name), or NULL when standalone. */
const struct conf_node *conf_peer(const struct conf *c, const char *name);

/* Names as written in the file ("sync", "pull-ahead", "xxh3"...). */
const char *conf_protocol_name(enum repl_protocol p);
const char *conf_on_congestion_name(enum on_congestion oc);
const char *conf_on_io_error_name(enum on_io_error e);
const char *conf_csums_name(enum csums_alg a);

#endif
