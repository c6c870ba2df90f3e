/*
 * The keystream: rng_fill() makes ChaCha8's words, with AVX2 or without.
 * A wrong round, a lane mixed up or a counter off by one would still look
 * random, so the words are checked against a published test vector and a
 * plain one-block-at-a-time ChaCha8 written here.
 */
#include "random.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

/* One block, the textbook way: words 12-13 the counter, 14-15 a zero nonce. */
static void chacha8_block(const uint32_t key[8], uint64_t counter, uint32_t out[16])
{
	uint32_t in[16] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };
	memcpy(in + 4, key, 32);
	in[12] = (uint32_t)counter;
	in[13] = (uint32_t)(counter >> 32);
	uint32_t x[16];
	memcpy(x, in, sizeof x);
	static const int q[8][4] = { { 0, 4, 8, 12 }, { 1, 5, 9, 13 }, { 2, 6, 10, 14 },
				     { 3, 7, 11, 15 }, { 0, 5, 10, 15 }, { 1, 6, 11, 12 },
				     { 2, 7, 8, 13 }, { 3, 4, 9, 14 } };
	for (int round = 0; round < 8; round++) {
		for (int k = 0; k < 4; k++) {
			const int *s = q[(round & 1) * 4 + k];
			uint32_t *a = &x[s[0]], *b = &x[s[1]], *c = &x[s[2]], *d = &x[s[3]];
			*a += *b; *d ^= *a; *d = ROTL(*d, 16);
			*c += *d; *b ^= *c; *b = ROTL(*b, 12);
			*a += *b; *d ^= *a; *d = ROTL(*d, 8);
			*c += *d; *b ^= *c; *b = ROTL(*b, 7);
		}
	}
	for (int i = 0; i < 16; i++)
		out[i] = x[i] + in[i];
}

static void check_against_reference(const uint32_t key[8], uint64_t counter, bool wide)
{
	uint32_t got[RNG_WORDS];
	rng_fill(key, counter, got, wide);
	for (int j = 0; j < RNG_BLOCKS; j++) {
		uint32_t want[16];
		chacha8_block(key, counter + (uint64_t)j, want);
		for (int i = 0; i < 16; i++)
			cr_assert_eq(got[i * RNG_BLOCKS + j], want[i],
				     "%s: word %d of block %d differs", wide ? "AVX2" : "SSE2", i, j);
	}
}

/* draft-strombergson-chacha-test-vectors, TC1: 256-bit zero key, 8 rounds. */
Test(random, the_first_block_is_chacha8s_test_vector)
{
	static const uint8_t tc1[16] = { 0x3e, 0x00, 0xef, 0x2f, 0x89, 0x5f, 0x40, 0xd6,
					 0x7f, 0x5b, 0xb8, 0xe8, 0x1f, 0x09, 0xa5, 0xa1 };
	uint32_t key[8] = { 0 }, ref[16], got[RNG_WORDS];
	chacha8_block(key, 0, ref);
	cr_assert_eq(memcmp(ref, tc1, sizeof tc1), 0, "the reference block is not ChaCha8");
	rng_fill(key, 0, got, false);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(got[i * RNG_BLOCKS], ref[i]);
}

Test(random, both_widths_make_chacha8s_words)
{
	for (int round = 0; round < 50; round++) {
		uint32_t key[8];
		uint64_t counter;
		cr_assert_eq(getrandom(key, sizeof key, 0), (ssize_t)sizeof key);
		cr_assert_eq(getrandom(&counter, sizeof counter, 0), (ssize_t)sizeof counter);
		/* a counter about to carry into its high word, now and then */
		if (round % 5 == 0)
			counter = UINT32_MAX - (uint64_t)(round % 8);
		check_against_reference(key, counter, false);
		if (__builtin_cpu_supports("avx2"))
			check_against_reference(key, counter, true);
	}
}
