/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Control protocol codec (see ctl_proto.h) and the blocking client used by
 * blkmirrorctl and the tests.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <json-c/json.h>

#include "ctl_proto.h"
#include "util.h"

#define CTL_JSON_DEPTH	16	/* deepest nesting accepted in any line */
#define CTL_JSON_FLAGS	(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- decoding ----------------------------------------------------------- */

/*
 * Parse line[0..len) as exactly one JSON object (whitespace around it is
 * allowed).  Checks the length and NUL bytes first.  Returns 0 with *out set
 * (caller puts it), or -E2BIG / -EINVAL with *why set.
 */
static int
parse_object(const char *line, size_t len, size_t max, struct json_object **out,
    const char **why)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t end;

	*out = NULL;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > max) {
		*why = "line too long";
		return -E2BIG;
	}
	if (len == 0 || memchr(line, '\0', len) != NULL) {
		*why = len == 0 ? "empty line" : "NUL byte in line";
		return -EINVAL;
	}
	tok = json_tokener_new_ex(CTL_JSON_DEPTH);
	if (tok == NULL) {
		*why = "out of memory";
		return -ENOMEM;
	}
	obj = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(obj);
		json_tokener_free(tok);
		*why = "invalid JSON";
		return -EINVAL;
	}
	json_tokener_free(tok);
	/* Only whitespace may follow the object. */
	for (; end < len; end++) {
		if (line[end] != ' ' && line[end] != '\t') {
			json_object_put(obj);
			*why = "trailing data after JSON object";
			return -EINVAL;
		}
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		*why = "not a JSON object";
		return -EINVAL;
	}
	*out = obj;
	return 0;
}

/* Copy a name string of [a-z0-9-]{1,CTL_CMD_MAX-1} into dst; 0 or -EINVAL. */
static int
copy_name(struct json_object *s, char dst[CTL_CMD_MAX])
{
	const char *p;
	int n;

	if (s == NULL || !json_object_is_type(s, json_type_string))
		return -EINVAL;
	p = json_object_get_string(s);
	n = json_object_get_string_len(s);
	if (n < 1 || n >= CTL_CMD_MAX)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		char ch = p[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_'))
			return -EINVAL;
	}
	memcpy(dst, p, (size_t)n);
	dst[n] = '\0';
	return 0;
}

int
ctl_request_decode(const char *line, size_t len, struct ctl_request *out)
{
	struct json_object *root, *cmd = NULL, *args = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = parse_object(line, len, CTL_MAX_LINE, &root, &out->error);
	if (ret < 0)
		return ret;
	/* Exactly "cmd" and an optional "args"; nothing else. */
	json_object_object_foreach(root, key, val) {
		if (strcmp(key, "cmd") == 0)
			cmd = val;
		else if (strcmp(key, "args") == 0)
			args = val;
		else {
			out->error = "unknown key in request";
			goto bad;
		}
	}
	if (cmd == NULL) {
		out->error = "missing \"cmd\"";
		goto bad;
	}
	if (copy_name(cmd, out->cmd) < 0) {
		out->error = "\"cmd\" must be a short lower-case name";
		goto bad;
	}
	if (args != NULL && !json_object_is_type(args, json_type_object)) {
		out->error = "\"args\" must be an object";
		goto bad;
	}
	out->args = json_object_get(args);
	json_object_put(root);
	return 0;
bad:
	out->cmd[0] = '\0';
	json_object_put(root);
	return -EINVAL;
}

void
ctl_request_free(struct ctl_request *req)
{
	json_object_put(req->args);
	req->args = NULL;
}

/* Fill rep from an already parsed root (consumed). */
static int
reply_fill(struct json_object *root, struct ctl_reply *rep)
{
	struct json_object *ok, *v;

	if (!json_object_object_get_ex(root, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean))
		goto bad;
	rep->ok = json_object_get_boolean(ok);
	if (rep->ok) {
		if (!json_object_object_get_ex(root, "result", &v)) {
			v = json_object_new_object();
			if (v == NULL)
				goto bad;
			json_object_object_add(root, "result", v);
		}
		if (!json_object_is_type(v, json_type_object))
			goto bad;
		rep->result = v;
	} else {
		if (!json_object_object_get_ex(root, "error", &v) ||
		    !json_object_is_type(v, json_type_string))
			goto bad;
		snprintf(rep->error, sizeof(rep->error), "%s", json_object_get_string(v));
	}
	rep->root = root;
	return 0;
bad:
	json_object_put(root);
	memset(rep, 0, sizeof(*rep));
	return -EINVAL;
}

int
ctl_reply_decode(const char *line, size_t len, struct ctl_reply *out)
{
	struct json_object *root;
	const char *why;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = parse_object(line, len, CTL_MAX_REPLY, &root, &why);
	if (ret < 0)
		return ret;
	return reply_fill(root, out);
}

void
ctl_reply_free(struct ctl_reply *rep)
{
	json_object_put(rep->root);
	memset(rep, 0, sizeof(*rep));
}

int
ctl_event_decode(const char *line, size_t len, struct ctl_event *out)
{
	struct json_object *root, *v;
	const char *why;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = parse_object(line, len, CTL_MAX_REPLY, &root, &why);
	if (ret < 0)
		return ret;
	if (!json_object_object_get_ex(root, "event", &v) ||
	    copy_name(v, out->name) < 0)
		goto bad;
	if (!json_object_object_get_ex(root, "time", &v) ||
	    !(json_object_is_type(v, json_type_double) ||
	    json_object_is_type(v, json_type_int)))
		goto bad;
	out->time = json_object_get_double(v);
	out->root = root;
	return 0;
bad:
	json_object_put(root);
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

void
ctl_event_free(struct ctl_event *ev)
{
	json_object_put(ev->root);
	memset(ev, 0, sizeof(*ev));
}

/* ---- encoding ----------------------------------------------------------- */

char *
ctl_line(struct json_object *obj, size_t *lenp)
{
	const char *s;
	size_t n;
	char *line = NULL;

	if (obj == NULL)
		return NULL;
	s = json_object_to_json_string_length(obj, CTL_JSON_FLAGS, &n);
	if (s != NULL)
		line = malloc(n + 2);
	if (line != NULL) {
		memcpy(line, s, n);
		line[n] = '\n';
		line[n + 1] = '\0';
		if (lenp != NULL)
			*lenp = n + 1;
	}
	json_object_put(obj);
	return line;
}

char *
ctl_request_encode(const char *cmd, struct json_object *args, size_t *lenp)
{
	struct json_object *o = json_object_new_object();
	struct json_object *c = json_object_new_string(cmd);

	if (o == NULL || c == NULL) {
		json_object_put(o);
		json_object_put(c);
		json_object_put(args);
		return NULL;
	}
	json_object_object_add(o, "cmd", c);
	if (args != NULL)
		json_object_object_add(o, "args", args);
	return ctl_line(o, lenp);
}

char *
ctl_reply_ok(struct json_object *result, size_t *lenp)
{
	struct json_object *o = json_object_new_object();

	if (result == NULL)
		result = json_object_new_object();
	if (o == NULL || result == NULL) {
		json_object_put(o);
		json_object_put(result);
		return NULL;
	}
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "result", result);
	return ctl_line(o, lenp);
}

char *
ctl_reply_error(size_t *lenp, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[CTL_ERR_MAX];
	va_list ap;

	if (o == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return ctl_line(o, lenp);
}

struct json_object *
ctl_event_new(const char *name)
{
	struct json_object *o = json_object_new_object();
	struct timespec ts;
	char text[40];
	double t;

	if (o == NULL)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	/* Serialize with exactly microsecond precision. */
	snprintf(text, sizeof(text), "%lld.%06ld", (long long)ts.tv_sec,
	    ts.tv_nsec / 1000);
	json_object_object_add(o, "event", json_object_new_string(name));
	json_object_object_add(o, "time", json_object_new_double_s(t, text));
	return o;
}

/* ---- blocking client ------------------------------------------------------ */

/*
 * connect(2) on fd, bounded by timeout_ms (< 0: no bound).  A UNIX stream
 * connect waits only while the listener's backlog is full (a daemon that
 * stopped accepting); a non-blocking connect then fails with EAGAIN at
 * once instead of going in progress, so there is nothing to poll for.
 * The kernel bounds that wait by the socket's send timeout instead, which
 * is set for the connect and cleared after it.  0 or a negative errno,
 * -ETIMEDOUT when the bound passed.
 */
static int
connect_bounded(int fd, const struct sockaddr_un *sun, int timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)MAX(timeout_ms, 1) * 1000000;
	struct timeval tv = { 0, 0 };
	int ret;

	/* One pass per attempt: retried only after a signal, within the bound. */
	for (;;) {
		if (timeout_ms >= 0) {
			uint64_t now = now_ns(), left;

			if (now >= deadline)
				return -ETIMEDOUT;
			left = (deadline - now + 999) / 1000;	/* microseconds */
			tv.tv_sec = (time_t)(left / 1000000);
			tv.tv_usec = (suseconds_t)(left % 1000000);
			if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
				return -errno;
		}
		ret = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
		if (ret == 0 || errno != EINTR)
			break;
	}
	if (ret < 0)
		return timeout_ms >= 0 && errno == EAGAIN ? -ETIMEDOUT : -errno;
	if (timeout_ms >= 0) {
		tv = (struct timeval){ 0, 0 };
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
			return -errno;
	}
	return 0;
}

int
ctl_connect(struct ctl_conn *c, const char *path, int timeout_ms)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, ret;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	c->buf = malloc(CTL_MAX_REPLY + 1);
	if (c->buf == NULL)
		return -ENOMEM;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ret = fd < 0 ? -errno : connect_bounded(fd, &sun, timeout_ms);
	if (ret < 0) {
		if (fd >= 0)
			close(fd);
		free(c->buf);
		c->buf = NULL;
		return ret;
	}
	c->fd = fd;
	return 0;
}

void
ctl_close(struct ctl_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int
ctl_send_line(struct ctl_conn *c, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = send(c->fd, line, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		line += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Wait until fd is readable or the deadline (0: none) passed. */
static int
wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int ms = -1, n;

	if (deadline != 0) {
		uint64_t now = now_ns();

		ms = now >= deadline ? 0 :
		    (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
	}
	n = poll(&pfd, 1, ms);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

long
ctl_recv_line(struct ctl_conn *c, char **line, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000;
	char *nl;
	int ret;

	/* Drop the line returned last time. */
	if (c->line_len > 0) {
		memmove(c->buf, c->buf + c->line_len, c->len - c->line_len);
		c->len -= c->line_len;
		c->line_len = 0;
	}
	/* Each pass either finds a line, fills more of the bounded buffer or fails. */
	while ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
		ssize_t n;

		if (c->len >= CTL_MAX_REPLY)
			return -E2BIG;
		ret = wait_readable(c->fd, deadline);
		if (ret < 0)
			return ret;
		n = recv(c->fd, c->buf + c->len, CTL_MAX_REPLY - c->len, 0);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		if (n > 0)
			c->len += (size_t)n;
	}
	*nl = '\0';
	c->line_len = (size_t)(nl - c->buf) + 1;
	*line = c->buf;
	return nl - c->buf;
}

int
ctl_call(struct ctl_conn *c, const char *cmd, struct json_object *args,
    struct ctl_reply *rep, int timeout_ms)
{
	size_t len;
	char *req = ctl_request_encode(cmd, args, &len);
	char *line;
	long n;
	int ret;

	if (req == NULL)
		return -ENOMEM;
	ret = ctl_send_line(c, req, len);
	free(req);
	if (ret < 0)
		return ret;
	n = ctl_recv_line(c, &line, timeout_ms);
	if (n < 0)
		return (int)n;
	if (ctl_reply_decode(line, (size_t)n, rep) < 0)
		return -EBADMSG;
	return 0;
}
