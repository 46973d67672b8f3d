/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/config.c.
 *
 * Fixture files live in tests/unit/conf (CONF_FIXTURE_DIR); the suites run
 * with that directory as the working directory, so messages start with the
 * bare file name.  Every good-*.conf and every bad-*.conf becomes a test of
 * its own: a bad file's first line is "; expect: MESSAGE", the exact line
 * conf_load must produce.  Adding a fixture adds a test.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <CUnit/Basic.h>

#include "config.h"
#include "util.h"
#include "test_config_dir.h"
#include "cu_run.h"

#define EXPECT_PREFIX	"; expect: "
#define MAX_FIXTURES	256
#define MANPAGE		"../../../docs/blkmirror.conf.5"	/* from CONF_FIXTURE_DIR */

static struct conf c;		/* result of the last load */
static char err[512];		/* message of the last load */

/* ---- helpers ---- */

/* Read a whole file into a malloc'd NUL-terminated string (NULL on error). */
static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		return NULL;
	n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Port of an inet conf_addr, host order. */
static unsigned
port_of(const struct conf_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

/* Text form of an inet conf_addr's host. */
static const char *
host_of(const struct conf_addr *a, char *buf, size_t len)
{
	if (a->ss.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
		    buf, (socklen_t)len);
	return inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr,
	    buf, (socklen_t)len);
}

/* sun_path of a UNIX conf_addr. */
static const char *
unix_path(const struct conf_addr *a)
{
	return ((const struct sockaddr_un *)&a->ss)->sun_path;
}

/* Load a string; returns the result, message in err. */
static int
load_str(const char *text)
{
	return conf_load_string(text, "t.conf", &c, err, sizeof(err));
}

/* Assert that text fails with exactly msg (err printed on mismatch). */
#define ASSERT_BAD(text, msg) do {					\
	int r_ = load_str(text);					\
	CU_ASSERT_EQUAL(r_, -EINVAL);					\
	if (strcmp(err, (msg)) != 0)					\
		fprintf(stderr, "\n  got:      %s\n  expected: %s\n", err, (msg)); \
	CU_ASSERT_STRING_EQUAL(err, (msg));				\
} while (0)

/* Assert that text parses, printing the message if it does not. */
#define ASSERT_GOOD(text) do {						\
	int r_ = load_str(text);					\
	if (r_ != 0)							\
		fprintf(stderr, "\n  unexpected error: %s\n", err);	\
	CU_ASSERT_EQUAL(r_, 0);						\
	CU_ASSERT_STRING_EQUAL(err, "");				\
} while (0)

#define RES	"[resource]\nname = r0\n"
#define NODE	"[node alpha]\ndisk = /dev/loop0\n"

/* ---- good files, field by field ---- */

static void
test_standalone(void)
{
	const struct conf_node *n;

	CU_ASSERT_EQUAL_FATAL(conf_load("good-standalone.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT_STRING_EQUAL(c.path, "good-standalone.conf");
	CU_ASSERT_STRING_EQUAL(c.name, "r0");
	/* every [resource] default */
	CU_ASSERT_EQUAL(c.protocol, PROTO_SYNC);
	CU_ASSERT_EQUAL(c.io_engine, IOENG_URING);
	CU_ASSERT_TRUE(c.direct_io);
	CU_ASSERT_EQUAL(c.busy_poll_us, 0);
	CU_ASSERT_FALSE(c.inline_writes);
	CU_ASSERT_EQUAL(c.block_size, 4096);
	CU_ASSERT_STRING_EQUAL(c.secret_file, "");
	CU_ASSERT_EQUAL(c.timeout_ms, 6000);
	CU_ASSERT_EQUAL(c.ko_count, 7);
	CU_ASSERT_EQUAL(c.max_lag_bytes, 64ull << 20);
	CU_ASSERT_EQUAL(c.on_congestion, CONGESTION_BLOCK);
	CU_ASSERT_EQUAL(c.on_io_error, IOERR_DETACH);
	CU_ASSERT_EQUAL(c.resync_rate, 0);
	CU_ASSERT_EQUAL(c.csums, CSUMS_NONE);
	CU_ASSERT_EQUAL(c.al_extents, 1237);
	CU_ASSERT_EQUAL(c.bitmap_granularity, 4096);
	/* the node */
	CU_ASSERT_EQUAL_FATAL(c.n_nodes, 1);
	n = &c.nodes[0];
	CU_ASSERT_STRING_EQUAL(n->name, "alpha");
	CU_ASSERT_EQUAL(n->line, 5);
	CU_ASSERT_STRING_EQUAL(n->disk, "/dev/loop0");
	CU_ASSERT_STRING_EQUAL(n->meta_disk, "internal");
	CU_ASSERT_FALSE(n->has_address);
	CU_ASSERT_STRING_EQUAL(n->control, "/run/blkmirror/r0.sock");
	CU_ASSERT_EQUAL_FATAL(n->n_nbd_listen, 1);
	CU_ASSERT_STRING_EQUAL(n->nbd_listen[0].text, "127.0.0.1:10809");
	CU_ASSERT_EQUAL(n->nbd_listen[0].ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(n->nbd_listen[0].sslen, sizeof(struct sockaddr_in));
	CU_ASSERT_EQUAL(port_of(&n->nbd_listen[0]), 10809);
	/* lookups on a standalone resource */
	CU_ASSERT_PTR_EQUAL(conf_node(&c, "alpha"), n);
	CU_ASSERT_PTR_NULL(conf_node(&c, "beta"));
	CU_ASSERT_PTR_NULL(conf_peer(&c, "alpha"));
	CU_ASSERT_PTR_NULL(conf_peer(&c, "beta"));
}

static void
test_two_nodes(void)
{
	const struct conf_node *a, *b;
	char h[INET6_ADDRSTRLEN];

	CU_ASSERT_EQUAL_FATAL(conf_load("good-two-nodes.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "r1");
	CU_ASSERT_EQUAL(c.protocol, PROTO_MEMSYNC);
	CU_ASSERT_STRING_EQUAL(c.secret_file, "/etc/blkmirror/r1.secret");
	CU_ASSERT_EQUAL_FATAL(c.n_nodes, 2);
	a = conf_node(&c, "alpha");
	b = conf_node(&c, "beta");
	CU_ASSERT_PTR_EQUAL_FATAL(a, &c.nodes[0]);
	CU_ASSERT_PTR_EQUAL_FATAL(b, &c.nodes[1]);
	CU_ASSERT_PTR_EQUAL(conf_peer(&c, "alpha"), b);
	CU_ASSERT_PTR_EQUAL(conf_peer(&c, "beta"), a);
	CU_ASSERT_PTR_NULL(conf_peer(&c, "gamma"));
	CU_ASSERT_EQUAL(a->line, 7);
	CU_ASSERT_EQUAL(b->line, 12);
	CU_ASSERT_TRUE(a->has_address);
	CU_ASSERT_TRUE(b->has_address);
	CU_ASSERT_STRING_EQUAL(host_of(&a->address, h, sizeof(h)), "192.0.2.1");
	CU_ASSERT_STRING_EQUAL(host_of(&b->address, h, sizeof(h)), "192.0.2.2");
	CU_ASSERT_EQUAL(port_of(&a->address), 7789);
	CU_ASSERT_EQUAL(port_of(&b->address), 7789);
	CU_ASSERT_STRING_EQUAL(b->address.text, "192.0.2.2:7789");
	CU_ASSERT_STRING_EQUAL(a->meta_disk, "internal");
	CU_ASSERT_STRING_EQUAL(b->meta_disk, "/dev/vg0/r1-meta");
	CU_ASSERT_EQUAL(a->n_nbd_listen, 1);
	CU_ASSERT_EQUAL(b->n_nbd_listen, 0);
	CU_ASSERT_STRING_EQUAL(host_of(&a->nbd_listen[0], h, sizeof(h)), "0.0.0.0");
	CU_ASSERT_STRING_EQUAL(a->control, "/run/blkmirror/r1.sock");
	CU_ASSERT_STRING_EQUAL(b->control, "/run/blkmirror/r1.sock");
}

static void
test_every_key(void)
{
	const struct conf_node *a, *b;
	char h[INET6_ADDRSTRLEN];

	CU_ASSERT_EQUAL_FATAL(conf_load("good-every-key.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "db.vol_2-a");
	CU_ASSERT_EQUAL(c.protocol, PROTO_ASYNC);
	CU_ASSERT_EQUAL(c.io_engine, IOENG_SYNC);
	CU_ASSERT_FALSE(c.direct_io);
	CU_ASSERT_EQUAL(c.block_size, 512);
	CU_ASSERT_STRING_EQUAL(c.secret_file, "/etc/blkmirror/db.secret");
	CU_ASSERT_EQUAL(c.timeout_ms, 2500);
	CU_ASSERT_EQUAL(c.ko_count, 3);
	CU_ASSERT_EQUAL(c.max_lag_bytes, 1ull << 30);
	CU_ASSERT_EQUAL(c.on_congestion, CONGESTION_PULL_AHEAD);
	CU_ASSERT_EQUAL(c.on_io_error, IOERR_PASS_ON);
	CU_ASSERT_EQUAL(c.resync_rate, 100ull << 20);
	CU_ASSERT_EQUAL(c.csums, CSUMS_XXH3);
	CU_ASSERT_EQUAL(c.al_extents, 6001);
	CU_ASSERT_EQUAL(c.bitmap_granularity, 64 << 10);
	CU_ASSERT_EQUAL_FATAL(c.n_nodes, 2);
	a = &c.nodes[0];
	b = &c.nodes[1];
	CU_ASSERT_STRING_EQUAL(a->name, "alpha");
	CU_ASSERT_EQUAL(a->line, 20);
	CU_ASSERT_STRING_EQUAL(a->disk, "/srv/alpha.img");
	CU_ASSERT_STRING_EQUAL(a->meta_disk, "/srv/alpha.meta");
	CU_ASSERT_EQUAL(a->address.ss.ss_family, AF_INET6);
	CU_ASSERT_STRING_EQUAL(host_of(&a->address, h, sizeof(h)), "2001:db8::1");
	CU_ASSERT_EQUAL(port_of(&a->address), 7800);
	CU_ASSERT_EQUAL_FATAL(a->n_nbd_listen, 2);
	CU_ASSERT_STRING_EQUAL(host_of(&a->nbd_listen[0], h, sizeof(h)), "::1");
	CU_ASSERT_EQUAL(port_of(&a->nbd_listen[0]), 10810);
	CU_ASSERT_EQUAL(a->nbd_listen[1].ss.ss_family, AF_UNIX);
	CU_ASSERT_STRING_EQUAL(unix_path(&a->nbd_listen[1]), "/run/blkmirror/db-alpha.nbd");
	CU_ASSERT_STRING_EQUAL(a->control, "/run/blkmirror/db-alpha.ctl");
	CU_ASSERT_STRING_EQUAL(b->name, "beta");
	CU_ASSERT_STRING_EQUAL(b->disk, "/srv/beta.img");
	CU_ASSERT_STRING_EQUAL(b->meta_disk, "internal");
	CU_ASSERT_STRING_EQUAL(host_of(&b->address, h, sizeof(h)), "2001:db8::2");
	CU_ASSERT_STRING_EQUAL(b->control, "/tmp/db-beta.ctl");
	CU_ASSERT_EQUAL(b->n_nbd_listen, 0);
}

static void
test_unix_listeners(void)
{
	const struct conf_node *n;
	const char *p1 = "/run/blkmirror/u0.nbd";

	CU_ASSERT_EQUAL_FATAL(conf_load("good-unix.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(c.n_nodes, 1);
	n = &c.nodes[0];
	CU_ASSERT_STRING_EQUAL(n->name, "local");
	CU_ASSERT_EQUAL_FATAL(n->n_nbd_listen, 2);
	CU_ASSERT_EQUAL(n->nbd_listen[0].ss.ss_family, AF_UNIX);
	CU_ASSERT_STRING_EQUAL(unix_path(&n->nbd_listen[0]), p1);
	CU_ASSERT_EQUAL(n->nbd_listen[0].sslen,
	    offsetof(struct sockaddr_un, sun_path) + strlen(p1) + 1);
	CU_ASSERT_STRING_EQUAL(n->nbd_listen[0].text, "unix:/run/blkmirror/u0.nbd");
	CU_ASSERT_STRING_EQUAL(unix_path(&n->nbd_listen[1]), "/tmp/u0-second.nbd");
	CU_ASSERT_STRING_EQUAL(n->control, "/run/blkmirror/u0.sock");
}

static void
test_repeated_listen(void)
{
	static const char *const text[CONF_MAX_LISTEN] = {
		"127.0.0.1:10809", "127.0.0.1:10810", "*:10811", "[::1]:10809",
		"[::]:10812", "192.0.2.10:10809", "unix:/run/blkmirror/many.nbd",
		"unix:/run/blkmirror/many-2.nbd",
	};
	static const int family[CONF_MAX_LISTEN] = {
		AF_INET, AF_INET, AF_INET, AF_INET6, AF_INET6, AF_INET, AF_UNIX, AF_UNIX,
	};
	const struct conf_node *n;
	unsigned i;

	CU_ASSERT_EQUAL_FATAL(conf_load("good-repeated-listen.conf", &c, err,
	    sizeof(err)), 0);
	n = &c.nodes[0];
	CU_ASSERT_EQUAL_FATAL(n->n_nbd_listen, CONF_MAX_LISTEN);
	for (i = 0; i < CONF_MAX_LISTEN; i++) {
		CU_ASSERT_STRING_EQUAL(n->nbd_listen[i].text, text[i]);
		CU_ASSERT_EQUAL(n->nbd_listen[i].ss.ss_family, family[i]);
	}
	CU_ASSERT_EQUAL(port_of(&n->nbd_listen[2]), 10811);
	CU_ASSERT_EQUAL(port_of(&n->nbd_listen[4]), 10812);
}

static void
test_no_listen(void)
{
	CU_ASSERT_EQUAL_FATAL(conf_load("good-no-listen.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.n_nodes, 1);
	CU_ASSERT_EQUAL(c.nodes[0].n_nbd_listen, 0);
	CU_ASSERT_STRING_EQUAL(c.nodes[0].control, "/run/blkmirror/sa.sock");
}

/* Loading a file into a used struct starts from the defaults again. */
static void
test_reload_resets(void)
{
	CU_ASSERT_EQUAL_FATAL(conf_load("good-every-key.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(conf_load("good-standalone.conf", &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.protocol, PROTO_SYNC);
	CU_ASSERT_EQUAL(c.block_size, 4096);
	CU_ASSERT_EQUAL(c.csums, CSUMS_NONE);
	CU_ASSERT_EQUAL(c.n_nodes, 1);
	CU_ASSERT_STRING_EQUAL(c.secret_file, "");
	CU_ASSERT_STRING_EQUAL(c.nodes[1].name, "");
}

/* ---- conf_load_string: syntax ---- */

/* Comments, blanks, CRLF, a byte order mark and spaced headers all parse. */
static void
test_string_syntax(void)
{
	ASSERT_GOOD(RES NODE);
	CU_ASSERT_STRING_EQUAL(c.path, "t.conf");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].disk, "/dev/loop0");
	/* CRLF line ends, tabs, a BOM, comments of both kinds */
	ASSERT_GOOD("\xEF\xBB\xBF; utf-8 file\r\n[resource]\t# res\r\n"
	    "\tname\t=\tr0\t;x\r\n\r\n  [ node   a ]  \r\ndisk=/d;not-a-comment\r\n");
	CU_ASSERT_STRING_EQUAL(c.name, "r0");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].name, "a");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].disk, "/d;not-a-comment");
	/* '#' inside a value stays; '#' after a blank starts a comment */
	ASSERT_GOOD(RES "[node alpha]\ndisk = /dev/disk#1 # comment\n");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].disk, "/dev/disk#1");
	/* no final newline */
	ASSERT_GOOD(RES "[node alpha]\ndisk = /dev/loop9");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].disk, "/dev/loop9");
	/* a value may contain '=' */
	ASSERT_GOOD(RES "[node alpha]\ndisk = /dev/disk/by-label/a=b\n");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].disk, "/dev/disk/by-label/a=b");
	/* sections in any order; keys of [resource] after the nodes */
	ASSERT_GOOD(NODE "[resource]\nprotocol = async\nname = late\n");
	CU_ASSERT_STRING_EQUAL(c.name, "late");
	CU_ASSERT_STRING_EQUAL(c.nodes[0].control, "/run/blkmirror/late.sock");
	/* an indented line is a key of its own, never a continuation */
	ASSERT_BAD(RES NODE "nbd-listen = 127.0.0.1:1\n    127.0.0.1:2\n",
	    "t.conf:6: 127.0.0.1: use '=' between key and value, not ':'");
}

/* Line numbers count every line: blank, comment, CRLF, long comment. */
static void
test_string_line_numbers(void)
{
	char text[1024];

	ASSERT_BAD("\n\n; c\n# c\n[resource]\nname = r0\nfoo = 1\n",
	    "t.conf:7: foo: unknown key in [resource]");
	ASSERT_BAD("[resource]\r\n\r\nname = r0\r\nbar = 1\r\n",
	    "t.conf:4: bar: unknown key in [resource]");
	/* a 400-character comment is one line, not two */
	snprintf(text, sizeof(text), "; %0400d\n[resource]\nname = r0\nbaz = 1\n", 0);
	ASSERT_BAD(text, "t.conf:4: baz: unknown key in [resource]");
	/* the first error wins; nothing after it is reported */
	ASSERT_BAD("[resource]\nname = r0\nblock-size = 3\nprotocol = X\n[bogus]\n",
	    "t.conf:3: block-size: must be 512 or 4096, got 3");
}

/* Structural errors, from strings. */
static void
test_string_structure(void)
{
	ASSERT_BAD("", "t.conf:0: [resource]: missing section; the file needs "
	    "[resource] with name = NAME");
	ASSERT_BAD(RES, "t.conf:0: [node NAME]: missing section; add [node NAME] "
	    "with disk = PATH (one node: standalone, two: mirrored)");
	ASSERT_BAD("[resource]\n" NODE, "t.conf:1: name: missing; [resource] "
	    "needs name = NAME");
	ASSERT_BAD(RES "[node alpha]\n", "t.conf:3: disk: missing; [node alpha] "
	    "needs disk = PATH");
	ASSERT_BAD(RES "[node a]\ndisk=/a\n[node b]\ndisk=/b\naddress=192.0.2.2:1\n",
	    "t.conf:3: address: missing; [node a] needs address = HOST:PORT "
	    "because the resource has two nodes");
	ASSERT_BAD(RES "[nodes alpha]\n", "t.conf:3: [nodes alpha]: unknown "
	    "section; expected [resource] or [node NAME]");
	ASSERT_BAD(RES "[]\n", "t.conf:3: []: unknown section; expected "
	    "[resource] or [node NAME]");
	ASSERT_BAD(RES "[\n", "t.conf:3: [: section header must end with ']'");
	ASSERT_BAD(RES "[node \x01x]\n", "t.conf:3: [node \x01x]: invalid node "
	    "name: byte 0x01 is not allowed; use only letters, digits, '.', '_' "
	    "and '-'");
	ASSERT_BAD(RES NODE "name = r1\n", "t.conf:5: name: belongs in "
	    "[resource], not in [node alpha]");
	ASSERT_BAD(RES NODE "control = /a\ncontrol = /b\n", "t.conf:6: control: "
	    "duplicate key in [node alpha] (already set at line 5)");
	ASSERT_BAD(RES "Name = r0\n", "t.conf:3: Name: unknown key in [resource]");
	ASSERT_BAD("[resource]\nname =\n", "t.conf:2: name: missing value");
	ASSERT_BAD(RES "name\n", "t.conf:3: name: missing '=' (expected KEY = VALUE)");
}

/* Every value check at its bounds, from strings. */
static void
test_string_values(void)
{
	char name63[80], text[512];

	memset(name63, 'n', 63);
	name63[63] = '\0';
	snprintf(text, sizeof(text), "[resource]\nname = %s\n[node %s]\ndisk = /d\n",
	    name63, name63);
	ASSERT_GOOD(text);
	CU_ASSERT_STRING_EQUAL(c.name, name63);
	CU_ASSERT_STRING_EQUAL(c.nodes[0].name, name63);
	ASSERT_GOOD(RES "block-size = 4K\n" NODE);
	CU_ASSERT_EQUAL(c.block_size, 4096);
	ASSERT_GOOD(RES "block-size = 512\ntimeout = 1ms\nko-count = 1000\n"
	    "al-extents = 7\nbitmap-granularity = 1M\nmax-lag-bytes = 1\n"
	    "resync-rate = 0\n" NODE);
	CU_ASSERT_EQUAL(c.timeout_ms, 1);
	CU_ASSERT_EQUAL(c.ko_count, 1000);
	CU_ASSERT_EQUAL(c.al_extents, 7);
	CU_ASSERT_EQUAL(c.bitmap_granularity, 1 << 20);
	CU_ASSERT_EQUAL(c.max_lag_bytes, 1);
	ASSERT_GOOD(RES "timeout = 3600\nal-extents = 65534\nbitmap-granularity = 4096\n"
	    "resync-rate = 2G\nio-engine = sync\nprotocol = sync\n" NODE);
	CU_ASSERT_EQUAL(c.timeout_ms, 3600000);
	CU_ASSERT_EQUAL(c.al_extents, 65534);
	CU_ASSERT_EQUAL(c.resync_rate, 2ull << 30);
	CU_ASSERT_EQUAL(c.io_engine, IOENG_SYNC);
	ASSERT_GOOD(RES "direct-io = no\n" NODE);
	CU_ASSERT_FALSE(c.direct_io);
	CU_ASSERT_EQUAL(c.io_engine, IOENG_URING);
	ASSERT_GOOD(RES "io-engine = libaio\ndirect-io = yes\n" NODE);
	CU_ASSERT_TRUE(c.direct_io);
	ASSERT_GOOD(RES "direct-io = no\ninline-writes = yes\n" NODE);
	CU_ASSERT_TRUE(c.inline_writes);
	ASSERT_BAD(RES "inline-writes = yes\n" NODE, "t.conf:3: inline-writes: "
	    "yes needs direct-io = no and io-engine = io_uring (it copies "
	    "buffered writes into the page cache on the event loop thread "
	    "instead of io_uring's workers)");
	ASSERT_BAD(RES "direct-io = no\nio-engine = sync\ninline-writes = yes\n"
	    NODE, "t.conf:5: inline-writes: yes needs direct-io = no and "
	    "io-engine = io_uring (it copies buffered writes into the page "
	    "cache on the event loop thread instead of io_uring's workers)");
	ASSERT_BAD(RES "inline-writes = maybe\n", "t.conf:3: inline-writes: "
	    "must be no or yes, got maybe");
	ASSERT_GOOD(RES "busy-poll = 0\n" NODE);
	CU_ASSERT_EQUAL(c.busy_poll_us, 0);
	ASSERT_GOOD(RES "busy-poll = 1ms\n" NODE);
	CU_ASSERT_EQUAL(c.busy_poll_us, 1000);
	ASSERT_GOOD(RES "busy-poll = 20us\n" NODE);
	CU_ASSERT_EQUAL(c.busy_poll_us, 20);
	ASSERT_BAD(RES "busy-poll = 50\n", "t.conf:3: busy-poll: must be 0 (off) "
	    "or a duration up to 1000us such as 50us, got 50");
	ASSERT_BAD(RES "busy-poll = 1001us\n", "t.conf:3: busy-poll: must be 0 "
	    "(off) or a duration up to 1000us such as 50us, got 1001us");
	ASSERT_BAD(RES "direct-io = off\n", "t.conf:3: direct-io: must be no or "
	    "yes, got off");
	ASSERT_BAD(RES "direct-io = no\nio-engine = libaio\n" NODE, "t.conf:3: "
	    "direct-io: no cannot be combined with io-engine = libaio (line 4): "
	    "kernel AIO on a buffered file blocks inside io_submit(2); use "
	    "io-engine = io_uring or sync");
	ASSERT_BAD(RES "timeout = 0ms\n", "t.conf:3: timeout: must be from 1ms "
	    "to 3600s, got 0ms");
	ASSERT_BAD(RES "timeout = -1\n", "t.conf:3: timeout: must be a duration "
	    "such as 6s or 500ms (a bare number is seconds), got -1");
	ASSERT_BAD(RES "ko-count = 1001\n", "t.conf:3: ko-count: must be an "
	    "integer from 1 to 1000, got 1001");
	ASSERT_BAD(RES "ko-count = 7k\n", "t.conf:3: ko-count: must be an "
	    "integer from 1 to 1000, got 7k");
	ASSERT_BAD(RES "al-extents = 6\n", "t.conf:3: al-extents: must be an "
	    "integer from 7 to 65534, got 6");
	ASSERT_BAD(RES "al-extents = 99999999999999999999999\n", "t.conf:3: "
	    "al-extents: must be an integer from 7 to 65534, got "
	    "99999999999999999999999");
	ASSERT_BAD(RES "bitmap-granularity = 2K\n", "t.conf:3: bitmap-granularity: "
	    "must be a power of two from 4K to 1M, got 2K");
	ASSERT_BAD(RES "block-size = 1024\n", "t.conf:3: block-size: must be 512 "
	    "or 4096, got 1024");
	ASSERT_BAD(RES "protocol = Sync\n", "t.conf:3: protocol: must be sync, "
	    "memsync or async, got Sync");
	ASSERT_BAD(RES NODE "address = [::]:7789\n", "t.conf:5: address: must be "
	    "this node's own IP address (the peer connects to it), not a "
	    "wildcard, got [::]:7789");
	ASSERT_BAD(RES NODE "address = 192.0.2.1:0\n", "t.conf:5: address: port "
	    "must be from 1 to 65534 (the meta connection uses port + 1), got 0");
	ASSERT_BAD(RES NODE "meta-disk = Internal\n", "t.conf:5: meta-disk: must "
	    "be internal or an absolute path, got Internal");
	/* same address text spelled differently is still the same address */
	ASSERT_BAD(RES "[node a]\ndisk=/a\naddress=[::1]:7789\n[node b]\ndisk=/b\n"
	    "address = [0::1]:7789\n", "t.conf:8: address: same as [node a] "
	    "(line 5); each node needs its own address");
	/* UNIX socket paths: 107 bytes fit in sun_path, 108 do not */
	memset(name63, 'p', 63);
	snprintf(text, sizeof(text), RES NODE "control = /%s%.43s\n"
	    "nbd-listen = unix:/%s%.43s\n", name63, name63, name63, name63);
	ASSERT_GOOD(text);
	CU_ASSERT_EQUAL(strlen(c.nodes[0].control), 107);
	CU_ASSERT_EQUAL(strlen(unix_path(&c.nodes[0].nbd_listen[0])), 107);
	snprintf(text, sizeof(text), RES NODE "control = /%s%.44s\n", name63, name63);
	ASSERT_BAD(text, "t.conf:5: control: path too long (108 bytes, max 107)");
	/* the same port on two addresses is fine (two hosts) */
	ASSERT_GOOD(RES "[node a]\ndisk=/a\naddress=192.0.2.1:7789\n[node b]\n"
	    "disk=/b\naddress=192.0.2.2:7789\n");
}

/* ---- files that cannot be read, and the message buffer ---- */

/* conf_load of the mode-000 file path: 0 when refused with EACCES and the
 * right message (as nobody, in a child, when we are root). */
static int
unreadable_as_user(const char *path)
{
	pid_t pid;
	int st;

	if (geteuid() != 0)
		return conf_load(path, &c, err, sizeof(err)) == -EACCES &&
		    strstr(err, "nul.conf: cannot open: Permission denied") != NULL ? 0 : 1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		_exit(conf_load(path, &c, err, sizeof(err)) == -EACCES &&
		    strstr(err, "nul.conf: cannot open: Permission denied") != NULL ? 0 : 1);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void
test_open_errors(void)
{
	char dir[] = "/tmp/test_config.XXXXXX", path[64];
	int fd;

	CU_ASSERT_EQUAL(conf_load("no-such-file.conf", &c, err, sizeof(err)), -ENOENT);
	CU_ASSERT_STRING_EQUAL(err, "no-such-file.conf: cannot open: No such file "
	    "or directory");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL(conf_load(dir, &c, err, sizeof(err)), -EISDIR);
	snprintf(path, sizeof(path), "%s: cannot read: Is a directory", dir);
	CU_ASSERT_STRING_EQUAL(err, path);
	/* a NUL byte inside a line is refused with its line number */
	snprintf(path, sizeof(path), "%s/nul.conf", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "[resource]\nname = r0\0x\n", 23), 23);
	close(fd);
	CU_ASSERT_EQUAL(conf_load(path, &c, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nul.conf:2: line: contains a NUL byte"));
	/* unreadable (mode 000) is refused; root reads anything, so as root
	 * the check runs in a child that became nobody */
	chmod(path, 0);
	CU_ASSERT_EQUAL(chmod(dir, 0711), 0);
	CU_ASSERT_EQUAL(unreadable_as_user(path), 0);
	CU_ASSERT_EQUAL(unlink(path), 0);
	CU_ASSERT_EQUAL(rmdir(dir), 0);
}

/* err may be NULL or short: the result is the same, the text truncated. */
static void
test_err_buffer(void)
{
	char small[12];

	CU_ASSERT_EQUAL(conf_load_string(RES "bad = 1\n", "t.conf", &c, NULL, 0), -EINVAL);
	CU_ASSERT_EQUAL(conf_load("no-such-file.conf", &c, NULL, 0), -ENOENT);
	memset(small, 'X', sizeof(small));
	CU_ASSERT_EQUAL(conf_load_string(RES "bad = 1\n", "t.conf", &c, small,
	    sizeof(small)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(small, "t.conf:3: b");
	memset(small, 'X', sizeof(small));
	CU_ASSERT_EQUAL(conf_load_string(RES NODE, "t.conf", &c, small,
	    sizeof(small)), 0);
	CU_ASSERT_STRING_EQUAL(small, "");
}

static void
test_names(void)
{
	CU_ASSERT_STRING_EQUAL(conf_protocol_name(PROTO_SYNC), "sync");
	CU_ASSERT_STRING_EQUAL(conf_protocol_name(PROTO_MEMSYNC), "memsync");
	CU_ASSERT_STRING_EQUAL(conf_protocol_name(PROTO_ASYNC), "async");
	CU_ASSERT_STRING_EQUAL(conf_protocol_name((enum repl_protocol)99), "unknown");
	CU_ASSERT_STRING_EQUAL(conf_on_congestion_name(CONGESTION_BLOCK), "block");
	CU_ASSERT_STRING_EQUAL(conf_on_congestion_name(CONGESTION_PULL_AHEAD), "pull-ahead");
	CU_ASSERT_STRING_EQUAL(conf_on_congestion_name((enum on_congestion)7), "unknown");
	CU_ASSERT_STRING_EQUAL(conf_on_io_error_name(IOERR_DETACH), "detach");
	CU_ASSERT_STRING_EQUAL(conf_on_io_error_name(IOERR_PASS_ON), "pass-on");
	CU_ASSERT_STRING_EQUAL(conf_on_io_error_name((enum on_io_error)9), "unknown");
	CU_ASSERT_STRING_EQUAL(conf_csums_name(CSUMS_NONE), "none");
	CU_ASSERT_STRING_EQUAL(conf_csums_name(CSUMS_XXH3), "xxh3");
	CU_ASSERT_STRING_EQUAL(conf_csums_name((enum csums_alg)5), "unknown");
	/* every name the parser prints parses back to the same value */
	ASSERT_GOOD(RES "protocol = memsync\non-congestion = pull-ahead\n"
	    "csums = xxh3\non-io-error = pass-on\n" NODE);
	CU_ASSERT_STRING_EQUAL(conf_protocol_name(c.protocol), "memsync");
	CU_ASSERT_STRING_EQUAL(conf_on_congestion_name(c.on_congestion), "pull-ahead");
	CU_ASSERT_STRING_EQUAL(conf_csums_name(c.csums), "xxh3");
	CU_ASSERT_STRING_EQUAL(conf_on_io_error_name(c.on_io_error), "pass-on");
}

/*
 * The example files in docs/blkmirror.conf.5 (".nf" blocks that start with
 * "[resource]") parse: one standalone, one with two nodes.
 */
static void
test_manpage_examples(void)
{
	char *man = slurp(MANPAGE), *p, *end, *q;
	char text[4096];
	size_t n;
	unsigned found = 0, nodes = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(man);
	for (p = man; (p = strstr(p, "\n.nf\n[resource]\n")) != NULL; p = end) {
		p += 5;
		end = strstr(p, "\n.fi\n");
		CU_ASSERT_PTR_NOT_NULL_FATAL(end);
		/* undo the groff escapes the examples use: \- and \(aq */
		for (n = 0, q = p; q < end + 1 && n < sizeof(text) - 1; q++) {
			if (strncmp(q, "\\-", 2) == 0) {
				text[n++] = '-';
				q++;
			} else if (strncmp(q, "\\(aq", 4) == 0) {
				text[n++] = '\'';
				q += 3;
			} else
				text[n++] = *q;
		}
		text[n] = '\0';
		ASSERT_GOOD(text);
		found++;
		nodes |= 1u << c.n_nodes;
	}
	CU_ASSERT_EQUAL(found, 2);
	CU_ASSERT_EQUAL(nodes, (1u << 1) | (1u << 2));
	free(man);
}

/* ---- one test per fixture file ---- */

static char *fixtures[MAX_FIXTURES];	/* fixture file names (test names) */
static unsigned n_fixtures;

/*
 * Good fixture named like the running test: conf_load accepts it, and
 * conf_load_string on its text gives the very same struct.
 */
static void
test_good_fixture(void)
{
	const char *name = CU_get_current_test()->pName;
	static struct conf from_string;
	char *text = slurp(name);
	int r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	r = conf_load(name, &c, err, sizeof(err));
	if (r != 0)
		fprintf(stderr, "\n  %s: unexpected error: %s\n", name, err);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_STRING_EQUAL(err, "");
	CU_ASSERT(c.n_nodes >= 1 && c.nodes[0].disk[0] == '/');
	CU_ASSERT_EQUAL(conf_load_string(text, name, &from_string, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(memcmp(&c, &from_string, sizeof(c)), 0);
	free(text);
}

/*
 * Bad fixture named like the running test: its first line is
 * "; expect: MESSAGE"; conf_load and conf_load_string must both fail with
 * exactly MESSAGE, which must name the file itself.
 */
static void
test_bad_fixture(void)
{
	const char *name = CU_get_current_test()->pName;
	char *text = slurp(name), *nl, expect[512];

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL_FATAL(strncmp(text, EXPECT_PREFIX, strlen(EXPECT_PREFIX)), 0);
	nl = strchr(text, '\n');
	CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
	snprintf(expect, sizeof(expect), "%.*s", (int)(nl - text) -
	    (int)strlen(EXPECT_PREFIX), text + strlen(EXPECT_PREFIX));
	CU_ASSERT(strncmp(expect, name, strlen(name)) == 0 && expect[strlen(name)] == ':');
	CU_ASSERT_EQUAL(conf_load(name, &c, err, sizeof(err)), -EINVAL);
	if (strcmp(err, expect) != 0)
		fprintf(stderr, "\n  got:      %s\n  expected: %s\n", err, expect);
	CU_ASSERT_STRING_EQUAL(err, expect);
	CU_ASSERT_EQUAL(conf_load_string(text, name, &c, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, expect);
	free(text);
}

/* Keep fixture names that start with prefix and end in ".conf". */
static int
fixture_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return (strncmp(d->d_name, "good-", 5) == 0 ||
	    strncmp(d->d_name, "bad-", 4) == 0) &&
	    n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

/* Add one test per fixture of the given prefix to suite s; returns count. */
static unsigned
add_fixture_tests(CU_pSuite s, const char *prefix, CU_TestFunc fn)
{
	unsigned i, n = 0;

	for (i = 0; i < n_fixtures; i++)
		if (strncmp(fixtures[i], prefix, strlen(prefix)) == 0) {
			CU_add_test(s, fixtures[i], fn);
			n++;
		}
	return n;
}

/* List the fixture directory (sorted) into fixtures[]. */
static int
scan_fixtures(void)
{
	struct dirent **list;
	int i, n = scandir(".", &list, fixture_filter, alphasort);

	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++) {
		if (n_fixtures < MAX_FIXTURES)
			fixtures[n_fixtures++] = strdup(list[i]->d_name);
		free(list[i]);
	}
	free(list);
	return 0;
}

int
main(void)
{
	CU_pSuite s;
	unsigned n_good, n_bad, i;
	int failed;

	if (chdir(CONF_FIXTURE_DIR) < 0 || scan_fixtures() < 0) {
		perror(CONF_FIXTURE_DIR);
		return 1;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("config", NULL, NULL);
	CU_add_test(s, "standalone", test_standalone);
	CU_add_test(s, "two_nodes", test_two_nodes);
	CU_add_test(s, "every_key", test_every_key);
	CU_add_test(s, "unix_listeners", test_unix_listeners);
	CU_add_test(s, "repeated_listen", test_repeated_listen);
	CU_add_test(s, "no_listen", test_no_listen);
	CU_add_test(s, "reload_resets", test_reload_resets);
	CU_add_test(s, "string_syntax", test_string_syntax);
	CU_add_test(s, "string_line_numbers", test_string_line_numbers);
	CU_add_test(s, "string_structure", test_string_structure);
	CU_add_test(s, "string_values", test_string_values);
	CU_add_test(s, "open_errors", test_open_errors);
	CU_add_test(s, "err_buffer", test_err_buffer);
	CU_add_test(s, "names", test_names);
	CU_add_test(s, "manpage_examples", test_manpage_examples);
	n_good = add_fixture_tests(CU_add_suite("config good files", NULL, NULL),
	    "good-", test_good_fixture);
	n_bad = add_fixture_tests(CU_add_suite("config bad files", NULL, NULL),
	    "bad-", test_bad_fixture);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	failed = cu_run();
	CU_cleanup_registry();
	for (i = 0; i < n_fixtures; i++)
		free(fixtures[i]);
	/* an empty fixture directory must not pass silently */
	if (n_good < 5 || n_bad < 40) {
		fprintf(stderr, "only %u good and %u bad fixtures found in %s\n",
		    n_good, n_bad, CONF_FIXTURE_DIR);
		return 1;
	}
	return failed ? 1 : 0;
}
