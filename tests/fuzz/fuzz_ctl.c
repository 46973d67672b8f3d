/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: the control protocol decoders (lib/ctl_proto.c).
 *   ctl_request_decode   request lines from control clients (daemon side)
 *   ctl_reply_decode     reply lines from the daemon (blkmirrorctl side)
 *   ctl_event_decode     event lines from the daemon (blkmirrorctl side)
 * Input: one byte choosing the decoder, then the line.  Besides the
 * sanitizers, it checks the decoders' promises and aborts when one is
 * broken: accepted commands are short lower-case names that survive a
 * re-encode with the same arguments, refused lines leave nothing to free and say why.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "ctl_proto.h"

/* A decoded request obeys the header's rules and re-encodes to itself. */
static void
fuzz_request(const char *line, size_t len)
{
	struct ctl_request r, again;
	size_t n, elen;
	char *enc;
	int ret = ctl_request_decode(line, len, &r);

	if (ret < 0) {
		if ((ret != -EINVAL && ret != -E2BIG && ret != -ENOMEM) ||
		    r.error == NULL || r.args != NULL || r.cmd[0] != '\0')
			abort();
		if (len > CTL_MAX_LINE + 1 && ret != -E2BIG)
			abort();
		return;
	}
	n = strlen(r.cmd);
	if (n == 0 || n >= CTL_CMD_MAX || strspn(r.cmd, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		abort();
	if (r.args != NULL && !json_object_is_type(r.args, json_type_object))
		abort();
	enc = ctl_request_encode(r.cmd, json_object_get(r.args), &elen);
	if (enc == NULL || elen == 0 || enc[elen - 1] != '\n')
		abort();
	if (ctl_request_decode(enc, elen - 1, &again) != 0 || strcmp(again.cmd, r.cmd) != 0)
		abort();
	/* Same arguments: compare serializations (NaN is not equal to itself). */
	if ((r.args == NULL) != (again.args == NULL) || (r.args != NULL &&
	    strcmp(json_object_to_json_string_ext(r.args, JSON_C_TO_STRING_PLAIN),
	    json_object_to_json_string_ext(again.args, JSON_C_TO_STRING_PLAIN)) != 0))
		abort();
	ctl_request_free(&again);
	free(enc);
	ctl_request_free(&r);
}

static void
fuzz_reply(const char *line, size_t len)
{
	struct ctl_reply rep;

	if (ctl_reply_decode(line, len, &rep) < 0) {
		if (rep.root != NULL || rep.result != NULL)
			abort();
		return;
	}
	if (rep.ok != (rep.result != NULL) || memchr(rep.error, '\0', sizeof(rep.error)) == NULL)
		abort();
	ctl_reply_free(&rep);
}

static void
fuzz_event(const char *line, size_t len)
{
	struct ctl_event ev;

	if (ctl_event_decode(line, len, &ev) < 0) {
		if (ev.root != NULL)
			abort();
		return;
	}
	if (ev.name[0] == '\0' || strlen(ev.name) >= CTL_CMD_MAX)
		abort();
	ctl_event_free(&ev);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0: fuzz_request((const char *)data + 1, size - 1); break;
	case 1: fuzz_reply((const char *)data + 1, size - 1); break;
	default: fuzz_event((const char *)data + 1, size - 1); break;
	}
	return 0;
}
