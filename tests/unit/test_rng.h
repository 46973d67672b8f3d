/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The unit tests' deterministic pseudo-random generator (xorshift64*):
 * the same seed gives the same sequence on every run and machine.
 */
#ifndef BLKMIRROR_TEST_RNG_H
#define BLKMIRROR_TEST_RNG_H

#include <stdint.h>

/* Advance *state (never 0) and return the next value. */
static inline uint64_t
test_rng_next(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 2685821657736338717ull;
}

#endif
