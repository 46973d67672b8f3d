/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Replication peer authentication (HMAC-SHA256 challenge-response with
 * OpenSSL libcrypto), the secret file, and the arbitration of simultaneous
 * connections.  See repl_auth.h for the formulas and rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "repl_auth.h"
#include "util.h"

/* ---- secret file ---- */

/* Read at most size bytes of fd into buf; returns bytes read or -errno. */
static ssize_t
read_upto(int fd, uint8_t *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Check the opened file's type, mode and size; one error line into err. */
static int
secret_stat(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "secret-file %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "secret-file %s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & 0077) {
		snprintf(err, errlen, "secret-file %s: mode %04o lets group or others "
		    "access the secret; run chmod 600 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	return 0;
}

int
repl_secret_load(const char *path, struct repl_secret *out, char *err, size_t errlen)
{
	uint8_t buf[REPL_SECRET_MAX + 2];	/* the limit, a newline, one more */
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "secret-file %s: %s", path, strerror(-rc));
		return rc;
	}
	if ((rc = secret_stat(fd, path, err, errlen)) < 0) {
		close(fd);
		return rc;
	}
	n = read_upto(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "secret-file %s: %s", path, strerror((int)-n));
		return (int)n;
	}
	if (n > 0 && buf[n - 1] == '\n')
		n--;		/* one trailing newline is not part of the secret */
	if (n > REPL_SECRET_MAX) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errlen, "secret-file %s: longer than %d bytes", path, REPL_SECRET_MAX);
		return -EFBIG;
	}
	if (n == 0) {
		snprintf(err, errlen, "secret-file %s: empty", path);
		return -EINVAL;
	}
	memcpy(out->key, buf, (size_t)n);
	out->len = (size_t)n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

void
repl_secret_clear(struct repl_secret *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
}

/* ---- randomness ---- */

int
repl_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(p + got, len - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	return 0;
}

/* ---- HMAC ---- */

int
repl_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
    uint8_t out[REPL_HMAC_LEN])
{
	unsigned outlen = 0;

	if (keylen > INT32_MAX)
		return -EINVAL;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) == NULL ||
	    outlen != REPL_HMAC_LEN)
		return -EIO;
	return 0;
}

/* Copy a name into a NUL-padded REPL_NAME_LEN field; -EINVAL if empty or too long. */
static int
name_field(uint8_t *dst, const char *name)
{
	size_t n = strnlen(name, REPL_NAME_LEN);

	if (n == 0 || n == REPL_NAME_LEN)
		return -EINVAL;
	memset(dst, 0, REPL_NAME_LEN);
	memcpy(dst, name, n);
	return 0;
}

int
repl_auth_compute(const struct repl_secret *s, const char *resource, const char *responder,
    const uint8_t challenge[REPL_NONCE_LEN], const uint8_t responder_nonce[REPL_NONCE_LEN],
    uint8_t out[REPL_HMAC_LEN])
{
	const size_t label = sizeof(REPL_AUTH_LABEL) - 1;
	uint8_t msg[sizeof(REPL_AUTH_LABEL) - 1 + 2 * REPL_NAME_LEN + 2 * REPL_NONCE_LEN];
	uint8_t *p = msg;

	memcpy(p, REPL_AUTH_LABEL, label);
	p += label;
	if (name_field(p, resource) < 0 || name_field(p + REPL_NAME_LEN, responder) < 0)
		return -EINVAL;
	p += 2 * REPL_NAME_LEN;
	memcpy(p, challenge, REPL_NONCE_LEN);
	memcpy(p + REPL_NONCE_LEN, responder_nonce, REPL_NONCE_LEN);
	return repl_hmac_sha256(s->key, s->len, msg, sizeof(msg), out);
}

int
repl_auth_verify(const struct repl_secret *s, const char *resource, const char *responder,
    const uint8_t challenge[REPL_NONCE_LEN], const uint8_t responder_nonce[REPL_NONCE_LEN],
    const uint8_t got[REPL_HMAC_LEN])
{
	uint8_t want[REPL_HMAC_LEN];
	int rc = repl_auth_compute(s, resource, responder, challenge, responder_nonce, want);

	if (rc == 0 && CRYPTO_memcmp(want, got, REPL_HMAC_LEN) != 0)
		rc = -EACCES;
	OPENSSL_cleanse(want, sizeof(want));
	return rc;
}

/* ---- arbitration ---- */

/* <0 when node a's initiated connection wins over b's, >0 when b's wins. */
static int
node_order(const struct repl_hello *a, const struct repl_hello *b)
{
	int c = strncmp(a->node, b->node, REPL_NAME_LEN);

	if (c != 0)
		return c;
	if (a->node_id != b->node_id)
		return a->node_id < b->node_id ? -1 : 1;
	if (a->nonce != b->nonce)
		return a->nonce < b->nonce ? -1 : 1;
	return 0;
}

enum repl_side
repl_arbitrate(const struct repl_hello *mine, const struct repl_hello *peer)
{
	return node_order(mine, peer) <= 0 ? REPL_SIDE_LOCAL : REPL_SIDE_PEER;
}
