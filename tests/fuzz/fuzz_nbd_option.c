/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * libFuzzer target: nbd_option_decode, plus the option reply encoder
 * round trip and the name tables.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_proto.h"
#include "util.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nbd_option o;
	uint8_t rep[NBD_OPT_REPLY_HDR_LEN];
	int err = nbd_option_decode(data, size, &o);

	if (size < NBD_OPT_HDR_LEN) {
		if (err != -EAGAIN)
			abort();
		return 0;
	}
	if (err == -EBADMSG) {
		if (get_be64(data) == NBD_IHAVEOPT)
			abort();
		return 0;
	}
	if (o.option != get_be32(data + 8) || o.length != get_be32(data + 12))
		abort();
	if ((err == 0) != (o.length <= NBD_MAX_OPTION_LEN))
		abort();
	if (err != 0 && err != -E2BIG)
		abort();
	/* Echo it as a reply and read the header back. */
	if (nbd_opt_reply_encode(rep, o.option, NBD_REP_ERR_UNSUP, o.length) != sizeof(rep))
		abort();
	if (get_be64(rep) != NBD_OPT_REPLY_MAGIC || get_be32(rep + 8) != o.option ||
	    get_be32(rep + 12) != NBD_REP_ERR_UNSUP || get_be32(rep + 16) != o.length)
		abort();
	if (strncmp(nbd_opt_name(o.option), "NBD_OPT_", 8) != 0 ||
	    strncmp(nbd_rep_name(o.length), "NBD_REP_", 8) != 0 ||
	    strncmp(nbd_info_name(o.option & 0xffff), "NBD_INFO_", 9) != 0)
		abort();
	return 0;
}
