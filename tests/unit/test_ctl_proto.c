/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests for lib/ctl_proto.c: request/reply/event codecs, client I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <CUnit/Basic.h>
#include <json-c/json.h>

#include "ctl_proto.h"
#include "util.h"
#include "cu_run.h"

/* Decode a NUL-terminated line; returns the decoder's result. */
static int
dec(const char *s, struct ctl_request *r)
{
	return ctl_request_decode(s, strlen(s), r);
}

static void
test_request_good(void)
{
	struct ctl_request r;
	struct json_object *v;

	CU_ASSERT_EQUAL(dec("{\"cmd\":\"status\"}", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.cmd, "status");
	CU_ASSERT_PTR_NULL(r.args);
	ctl_request_free(&r);

	CU_ASSERT_EQUAL(dec(" {\"args\":{\"force\":true},\"cmd\":\"pause-sync\"}\t\r", &r), 0);
	CU_ASSERT_STRING_EQUAL(r.cmd, "pause-sync");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r.args);
	CU_ASSERT_TRUE(json_object_object_get_ex(r.args, "force", &v));
	CU_ASSERT_TRUE(json_object_get_boolean(v));
	ctl_request_free(&r);
	CU_ASSERT_PTR_NULL(r.args);

	/* Longest command name: CTL_CMD_MAX - 1 characters. */
	char line[128];
	char name[CTL_CMD_MAX];

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(line, sizeof(line), "{\"cmd\":\"%s\"}", name);
	CU_ASSERT_EQUAL(dec(line, &r), 0);
	CU_ASSERT_STRING_EQUAL(r.cmd, name);
	ctl_request_free(&r);
}

static void
test_request_bad(void)
{
	static const char *const bad[] = {
		"", "\r", "not json", "[1,2]", "\"status\"", "42", "null",
		"{}", "{\"cmd\":1}", "{\"cmd\":\"\"}", "{\"cmd\":\"Status\"}",
		"{\"cmd\":\"st atus\"}", "{\"cmd\":\"a/b\"}", "{\"cmd\":null}",
		"{\"cmd\":\"status\",\"args\":[]}", "{\"cmd\":\"status\",\"args\":1}",
		"{\"cmd\":\"status\",\"extra\":1}", "{\"cmd\":\"status\"} x",
		"{\"cmd\":\"status\"}{\"cmd\":\"down\"}", "{\"cmd\":\"status\"",
		"{\"cmd\":\"stat\\u0000us\"}",
		"{\"cmd\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",	/* 33 chars */
		"{\"cmd\":\"status\",\"args\":{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}",
	};
	struct ctl_request r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = dec(bad[i], &r);

		if (ret != -EINVAL)
			fprintf(stderr, "accepted or wrong error (%d): %s\n", ret, bad[i]);
		CU_ASSERT_EQUAL(ret, -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(r.error);
		CU_ASSERT_PTR_NULL(r.args);
		CU_ASSERT_EQUAL(r.cmd[0], '\0');
	}
	/* A NUL byte inside the given length is refused before parsing. */
	CU_ASSERT_EQUAL(ctl_request_decode("{\"cmd\":\"status\"}\0", 17, &r), -EINVAL);
	CU_ASSERT_STRING_EQUAL(r.error, "NUL byte in line");
}

/* The length bound: exactly CTL_MAX_LINE is fine, one more is -E2BIG. */
static void
test_request_length(void)
{
	char *line = malloc(CTL_MAX_LINE + 2);
	const char *req = "{\"cmd\":\"status\"}";
	struct ctl_request r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	memset(line, ' ', CTL_MAX_LINE + 2);
	memcpy(line, req, strlen(req));
	CU_ASSERT_EQUAL(ctl_request_decode(line, CTL_MAX_LINE, &r), 0);
	CU_ASSERT_STRING_EQUAL(r.cmd, "status");
	ctl_request_free(&r);
	line[CTL_MAX_LINE] = '\r';	/* a trailing CR does not count */
	CU_ASSERT_EQUAL(ctl_request_decode(line, CTL_MAX_LINE + 1, &r), 0);
	ctl_request_free(&r);
	line[CTL_MAX_LINE] = ' ';
	CU_ASSERT_EQUAL(ctl_request_decode(line, CTL_MAX_LINE + 1, &r), -E2BIG);
	CU_ASSERT_STRING_EQUAL(r.error, "line too long");
	free(line);
}

static void
test_encode(void)
{
	struct ctl_request r;
	struct ctl_reply rep;
	struct json_object *args = json_object_new_object();
	size_t len;
	char *s;

	json_object_object_add(args, "path", json_object_new_string("/run/x"));
	s = ctl_request_encode("status", args, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_STRING_EQUAL(s, "{\"cmd\":\"status\",\"args\":{\"path\":\"/run/x\"}}\n");
	CU_ASSERT_EQUAL(len, strlen(s));
	CU_ASSERT_EQUAL(ctl_request_decode(s, len - 1, &r), 0);
	CU_ASSERT_STRING_EQUAL(r.cmd, "status");
	ctl_request_free(&r);
	free(s);

	s = ctl_reply_ok(NULL, &len);
	CU_ASSERT_STRING_EQUAL(s, "{\"ok\":true,\"result\":{}}\n");
	CU_ASSERT_EQUAL(ctl_reply_decode(s, len - 1, &rep), 0);
	CU_ASSERT_TRUE(rep.ok);
	CU_ASSERT_PTR_NOT_NULL(rep.result);
	ctl_reply_free(&rep);
	free(s);

	s = ctl_reply_error(&len, "unknown command '%s'", "x\"y");
	CU_ASSERT_STRING_EQUAL(s, "{\"ok\":false,\"error\":\"unknown command 'x\\\"y'\"}\n");
	CU_ASSERT_EQUAL(ctl_reply_decode(s, len - 1, &rep), 0);
	CU_ASSERT_FALSE(rep.ok);
	CU_ASSERT_STRING_EQUAL(rep.error, "unknown command 'x\"y'");
	ctl_reply_free(&rep);
	free(s);

	/* Replies missing their fields are refused. */
	CU_ASSERT_EQUAL(ctl_reply_decode("{\"ok\":false}", 12, &rep), -EINVAL);
	CU_ASSERT_EQUAL(ctl_reply_decode("{\"ok\":1}", 8, &rep), -EINVAL);
	CU_ASSERT_EQUAL(ctl_reply_decode("{\"ok\":true,\"result\":3}", 22, &rep), -EINVAL);
	/* A reply without result gets an empty one. */
	CU_ASSERT_EQUAL(ctl_reply_decode("{\"ok\":true}", 11, &rep), 0);
	CU_ASSERT_PTR_NOT_NULL(rep.result);
	ctl_reply_free(&rep);
}

static void
test_event(void)
{
	struct json_object *ev = ctl_event_new("role-changed");
	struct ctl_event e;
	struct timespec ts;
	size_t len;
	char *s, *dot;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
	json_object_object_add(ev, "role", json_object_new_string("primary"));
	s = ctl_line(ev, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(s[len - 1], '\n');
	CU_ASSERT_PTR_NULL(memchr(s, '\n', len - 1));
	/* time has exactly six decimals */
	dot = strstr(s, "\"time\":");
	CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
	dot = strchr(dot, '.');
	CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
	CU_ASSERT_EQUAL(strspn(dot + 1, "0123456789"), 6);
	CU_ASSERT_EQUAL(ctl_event_decode(s, len - 1, &e), 0);
	CU_ASSERT_STRING_EQUAL(e.name, "role-changed");
	clock_gettime(CLOCK_REALTIME, &ts);
	CU_ASSERT_TRUE(e.time > (double)ts.tv_sec - 5 && e.time <= (double)ts.tv_sec + 1);
	ctl_event_free(&e);
	free(s);
	CU_ASSERT_EQUAL(ctl_event_decode("{\"event\":\"x\"}", 13, &e), -EINVAL);
	CU_ASSERT_EQUAL(ctl_event_decode("{\"time\":1.5}", 12, &e), -EINVAL);
	CU_ASSERT_EQUAL(ctl_event_decode("{\"event\":\"x\",\"time\":\"1\"}", 24, &e), -EINVAL);
}

/* ctl_recv_line over a socketpair: split lines, several lines, EOF, bound. */
static void
test_client_lines(void)
{
	struct ctl_conn c = { .fd = -1 };
	int sv[2];
	char *line;
	long n;

	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c.fd = sv[0];
	c.buf = malloc(CTL_MAX_REPLY + 1);
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 50), -ETIMEDOUT);
	CU_ASSERT_EQUAL(write(sv[1], "{\"a\":1}\n{\"b\"", 12), 12);
	n = ctl_recv_line(&c, &line, 1000);
	CU_ASSERT_EQUAL(n, 7);
	CU_ASSERT_STRING_EQUAL(line, "{\"a\":1}");
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 50), -ETIMEDOUT);
	CU_ASSERT_EQUAL(write(sv[1], ":2}\n\n", 5), 5);
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 1000), 7);
	CU_ASSERT_STRING_EQUAL(line, "{\"b\":2}");
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 1000), 0);
	CU_ASSERT_EQUAL(write(sv[1], "partial", 7), 7);
	close(sv[1]);
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 1000), -ECONNRESET);
	ctl_close(&c);
	CU_ASSERT_EQUAL(c.fd, -1);

	/* A line longer than CTL_MAX_REPLY is refused, not grown without bound. */
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c.fd = sv[0];
	c.buf = malloc(CTL_MAX_REPLY + 1);
	pid_t pid = fork();

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		char chunk[4096];

		memset(chunk, 'x', sizeof(chunk));
		close(sv[0]);
		for (int i = 0; i < CTL_MAX_REPLY / 4096 + 2; i++)
			if (write(sv[1], chunk, sizeof(chunk)) < 0)
				break;
		_exit(0);
	}
	close(sv[1]);
	CU_ASSERT_EQUAL(ctl_recv_line(&c, &line, 5000), -E2BIG);
	ctl_close(&c);
	waitpid(pid, NULL, 0);
}

static void
test_connect_errors(void)
{
	struct ctl_conn c;
	char path[200];

	CU_ASSERT_EQUAL(ctl_connect(&c, "/nonexistent/dir/x.sock", 1000), -ENOENT);
	CU_ASSERT_EQUAL(c.fd, -1);
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	CU_ASSERT_EQUAL(ctl_connect(&c, path, 1000), -ENAMETOOLONG);
}

/*
 * A listener that accepts nothing, its backlog full (a stopped daemon):
 * connect gives up after its timeout with -ETIMEDOUT instead of blocking,
 * and succeeds once the listener made room.
 */
static void
test_connect_timeout(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/blkmirror-ctlproto-XXXXXX";
	int lfd, fds[16], nfd = 0, afd;
	struct ctl_conn c;
	uint64_t t0, ms;

	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/s.sock", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(lfd >= 0);
	CU_ASSERT_EQUAL_FATAL(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	CU_ASSERT_EQUAL_FATAL(listen(lfd, 0), 0);
	/* Fill the backlog: non-blocking connects until one would wait. */
	while (nfd < (int)ARRAY_SIZE(fds)) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

		CU_ASSERT_FATAL(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			CU_ASSERT_EQUAL(errno, EAGAIN);
			close(fd);
			break;
		}
		fds[nfd++] = fd;
	}
	CU_ASSERT_FATAL(nfd > 0 && nfd < (int)ARRAY_SIZE(fds));
	t0 = now_ns();
	CU_ASSERT_EQUAL(ctl_connect(&c, sun.sun_path, 300), -ETIMEDOUT);
	ms = (now_ns() - t0) / 1000000;
	CU_ASSERT(ms >= 250 && ms < 3000);
	CU_ASSERT_EQUAL(c.fd, -1);
	CU_ASSERT_PTR_NULL(c.buf);
	/* Room again: the same call connects. */
	afd = accept(lfd, NULL, NULL);
	CU_ASSERT_FATAL(afd >= 0);
	CU_ASSERT_EQUAL(ctl_connect(&c, sun.sun_path, 300), 0);
	CU_ASSERT_EQUAL(ctl_send_line(&c, "x\n", 2), 0);
	ctl_close(&c);
	close(afd);
	while (nfd > 0)
		close(fds[--nfd]);
	close(lfd);
	CU_ASSERT_EQUAL(unlink(sun.sun_path), 0);
	CU_ASSERT_EQUAL(rmdir(dir), 0);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("ctl_proto", NULL, NULL);
	CU_add_test(s, "request good", test_request_good);
	CU_add_test(s, "request bad", test_request_bad);
	CU_add_test(s, "request length bound", test_request_length);
	CU_add_test(s, "encoders", test_encode);
	CU_add_test(s, "events", test_event);
	CU_add_test(s, "client lines", test_client_lines);
	CU_add_test(s, "connect errors", test_connect_errors);
	CU_add_test(s, "connect timeout", test_connect_timeout);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	{
		int failed = cu_run();

		CU_cleanup_registry();
		return failed == 0 ? 0 : 1;
	}
}
