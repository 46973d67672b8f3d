/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Unit tests for lib/repl_auth.c: HMAC-SHA256 known answers (RFC 4231),
 * the challenge-response formula (known answer computed independently,
 * success, wrong secret, reflection, replay), nonces, the secret file's
 * checks, and the arbitration of simultaneous connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <CUnit/Basic.h>

#include "repl_auth.h"
#include "cu_run.h"

static char tmpdir[64];

/* Parse a hex string of 2 * n digits into out. */
static void
unhex(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		CU_ASSERT_EQUAL_FATAL(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

/* A secret from a string. */
static struct repl_secret
secret_of(const char *s)
{
	struct repl_secret sec;

	memset(&sec, 0, sizeof(sec));
	sec.len = strlen(s);
	memcpy(sec.key, s, sec.len);
	return sec;
}

static void
test_hmac_rfc4231(void)
{
	uint8_t key[20], out[REPL_HMAC_LEN], want[REPL_HMAC_LEN];

	/* RFC 4231 test case 1 */
	memset(key, 0x0b, sizeof(key));
	unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want, 32);
	CU_ASSERT_EQUAL(repl_hmac_sha256(key, sizeof(key), "Hi There", 8, out), 0);
	CU_ASSERT_EQUAL(memcmp(out, want, 32), 0);
	/* RFC 4231 test case 2: key "Jefe" */
	unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, 32);
	CU_ASSERT_EQUAL(repl_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out), 0);
	CU_ASSERT_EQUAL(memcmp(out, want, 32), 0);
	out[0] ^= 1;
	CU_ASSERT_NOT_EQUAL(memcmp(out, want, 32), 0);
}

/*
 * The response formula, against a value computed outside blkmirror
 * (Python's hmac module over the documented byte layout).
 */
static void
test_auth_known_answer(void)
{
	struct repl_secret s = secret_of("correct horse battery staple");
	uint8_t ch[REPL_NONCE_LEN], rn[REPL_NONCE_LEN], out[REPL_HMAC_LEN], want[REPL_HMAC_LEN];

	for (int i = 0; i < 32; i++) {
		ch[i] = (uint8_t)i;
		rn[i] = (uint8_t)(32 + i);
	}
	unhex("0d28b7e6af0a22df7006d0fe811546022e924c80b385b21d973c18a514b9a2e5", want, 32);
	CU_ASSERT_EQUAL(repl_auth_compute(&s, "r0", "beta", ch, rn, out), 0);
	CU_ASSERT_EQUAL(memcmp(out, want, 32), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&s, "r0", "beta", ch, rn, want), 0);
}

static void
test_auth_challenge_response(void)
{
	struct repl_secret good = secret_of("s3cret"), bad = secret_of("s3creT");
	uint8_t na[REPL_NONCE_LEN], nb[REPL_NONCE_LEN], resp[REPL_HMAC_LEN];
	char longname[REPL_NAME_LEN + 1];

	CU_ASSERT_EQUAL_FATAL(repl_random(na, sizeof(na)), 0);
	CU_ASSERT_EQUAL_FATAL(repl_random(nb, sizeof(nb)), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(na, nb, sizeof(na)), 0);

	/* beta answers alpha's challenge na; its own challenge was nb */
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r0", "beta", na, nb, resp), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), 0);
	/* a peer with the wrong secret fails */
	CU_ASSERT_EQUAL(repl_auth_compute(&bad, "r0", "beta", na, nb, resp), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), -EACCES);
	/* reflection: alpha's own answer (responder "alpha") is no proof for beta */
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r0", "alpha", na, nb, resp), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), -EACCES);
	/* nonces swapped (the answer of the other direction) */
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r0", "beta", nb, na, resp), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), -EACCES);
	/* another resource */
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r1", "beta", na, nb, resp), 0);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), -EACCES);
	/* one flipped bit */
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r0", "beta", na, nb, resp), 0);
	resp[31] ^= 0x80;
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "beta", na, nb, resp), -EACCES);
	/* names that do not fit the field */
	memset(longname, 'n', REPL_NAME_LEN);
	longname[REPL_NAME_LEN] = 0;
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "r0", longname, na, nb, resp), -EINVAL);
	CU_ASSERT_EQUAL(repl_auth_compute(&good, "", "beta", na, nb, resp), -EINVAL);
	CU_ASSERT_EQUAL(repl_auth_verify(&good, "r0", "", na, nb, resp), -EINVAL);
	repl_secret_clear(&good);
	CU_ASSERT_EQUAL(good.len, 0);
	CU_ASSERT_EQUAL(good.key[0], 0);
}

static void
test_random(void)
{
	uint8_t a[64], b[64], zero[64] = { 0 };

	CU_ASSERT_EQUAL(repl_random(a, sizeof(a)), 0);
	CU_ASSERT_EQUAL(repl_random(b, sizeof(b)), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof(a)), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a, zero, sizeof(a)), 0);
	CU_ASSERT_EQUAL(repl_random(a, 0), 0);
}

/* Write a file in tmpdir with the given bytes and mode; returns its path. */
static const char *
secret_file(const char *name, const void *data, size_t len, mode_t mode)
{
	static char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(write(fd, data, len), (ssize_t)len);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(chmod(path, mode), 0);
	return path;
}

static void
test_secret_file(void)
{
	static char big[REPL_SECRET_MAX + 1];
	struct repl_secret s;
	char err[512], path[128];

	CU_ASSERT_EQUAL(repl_secret_load(secret_file("a", "hunter2\n", 8, 0600), &s, err,
	    sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.len, 7);
	CU_ASSERT_EQUAL(memcmp(s.key, "hunter2", 7), 0);
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("b", "hunter2", 7, 0400), &s, err,
	    sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.len, 7);
	/* only one newline is stripped */
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("c", "x\n\n", 3, 0600), &s, err,
	    sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.len, 2);
	CU_ASSERT_EQUAL(memcmp(s.key, "x\n", 2), 0);
	/* group- or world-accessible: refused with the fix in the message */
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("d", "x", 1, 0644), &s, err, sizeof(err)),
	    -EPERM);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "chmod 600"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "0644"));
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("e", "x", 1, 0604), &s, err, sizeof(err)),
	    -EPERM);
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("f", "x", 1, 0610), &s, err, sizeof(err)),
	    -EPERM);
	/* empty, or only a newline */
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("g", "", 0, 0600), &s, err, sizeof(err)),
	    -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty"));
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("h", "\n", 1, 0600), &s, err, sizeof(err)),
	    -EINVAL);
	/* size bound: exactly REPL_SECRET_MAX is fine, one more is not */
	memset(big, 'k', sizeof(big));
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("i", big, REPL_SECRET_MAX, 0600), &s, err,
	    sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.len, REPL_SECRET_MAX);
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("j", big, sizeof(big), 0600), &s, err,
	    sizeof(err)), -EFBIG);
	/* the limit plus its trailing newline (echo > file) is fine */
	big[REPL_SECRET_MAX] = '\n';
	CU_ASSERT_EQUAL(repl_secret_load(secret_file("k", big, sizeof(big), 0600), &s, err,
	    sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.len, REPL_SECRET_MAX);
	big[REPL_SECRET_MAX] = 'k';
	/* missing file, directory */
	snprintf(path, sizeof(path), "%s/missing", tmpdir);
	CU_ASSERT_EQUAL(repl_secret_load(path, &s, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_EQUAL(chmod(tmpdir, 0700), 0);
	CU_ASSERT_EQUAL(repl_secret_load(tmpdir, &s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "regular"));
	repl_secret_clear(&s);
}

/* A HELLO with the given identity. */
static struct repl_hello
hello(const char *node, uint32_t id, uint64_t nonce)
{
	struct repl_hello h;

	memset(&h, 0, sizeof(h));
	strcpy(h.resource, "r0");
	strcpy(h.node, node);
	h.node_id = id;
	h.nonce = nonce;
	return h;
}

/*
 * Both nodes hold two connections: c1 initiated by a, c2 by b.  Each keeps
 * the connection whose initiator repl_arbitrate() names; they must keep the
 * same one.  Returns the surviving connection (1 or 2).
 */
static int
arbitrate_pair(const struct repl_hello *a, const struct repl_hello *b)
{
	enum repl_side sa = repl_arbitrate(a, b), sb = repl_arbitrate(b, a);
	int keep_a = sa == REPL_SIDE_LOCAL ? 1 : 2;	/* a initiated c1 */
	int keep_b = sb == REPL_SIDE_LOCAL ? 2 : 1;	/* b initiated c2 */

	CU_ASSERT_EQUAL(keep_a, keep_b);
	return keep_a;
}

static void
test_arbitration(void)
{
	struct repl_hello alpha = hello("alpha", 5, 9), beta = hello("beta", 1, 1);
	struct repl_hello alpha2 = hello("alpha", 6, 0), alpha3 = hello("alpha", 5, 10);
	struct repl_hello longer = hello("alphabet", 0, 0), upper = hello("Zulu", 0, 0);

	/* lower name wins, whatever the ids and nonces */
	CU_ASSERT_EQUAL(repl_arbitrate(&alpha, &beta), REPL_SIDE_LOCAL);
	CU_ASSERT_EQUAL(repl_arbitrate(&beta, &alpha), REPL_SIDE_PEER);
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha, &beta), 1);
	CU_ASSERT_EQUAL(arbitrate_pair(&beta, &alpha), 2);
	/* prefix sorts first; byte order (uppercase before lowercase) */
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha, &longer), 1);
	CU_ASSERT_EQUAL(arbitrate_pair(&upper, &alpha), 1);
	/* equal names: node id, then nonce */
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha, &alpha2), 1);
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha2, &alpha), 2);
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha3, &alpha), 2);
	CU_ASSERT_EQUAL(arbitrate_pair(&alpha, &alpha3), 1);
	/* many random pairs: always symmetric */
	for (int i = 0; i < 200; i++) {
		struct repl_hello x = hello("n", 0, 0), y = hello("n", 0, 0);
		uint8_t r[4];

		CU_ASSERT_EQUAL_FATAL(repl_random(r, sizeof(r)), 0);
		x.node[0] = (char)('a' + r[0] % 3);
		y.node[0] = (char)('a' + r[1] % 3);
		x.node_id = r[2] % 2;
		y.node_id = r[3] % 2;
		x.nonce = r[0];
		y.nonce = r[1] ^ r[2];
		if (x.nonce == y.nonce && x.node_id == y.node_id && x.node[0] == y.node[0])
			continue;	/* identical identities: refused as SAME_NODE */
		arbitrate_pair(&x, &y);
	}
}

static int
suite_init(void)
{
	strcpy(tmpdir, "/tmp/test_repl_auth.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
suite_clean(void)
{
	static const char *names[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k" };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int
main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return CU_get_error();
	s = CU_add_suite("repl_auth", suite_init, suite_clean);
	CU_add_test(s, "hmac_rfc4231", test_hmac_rfc4231);
	CU_add_test(s, "auth_known_answer", test_auth_known_answer);
	CU_add_test(s, "auth_challenge_response", test_auth_challenge_response);
	CU_add_test(s, "random", test_random);
	CU_add_test(s, "secret_file", test_secret_file);
	CU_add_test(s, "arbitration", test_arbitration);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	int failed = cu_run();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
