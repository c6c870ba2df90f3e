/*
 * random: ChaCha with 8 rounds as a keystream generator. Eight rounds keep a
 * wide security margin for choosing addresses (no known attack gets close)
 * at half the cost of ChaCha20; eight blocks are made at once in vector
 * lanes, and draws below 65536 take half a word. Each generator is owned
 * by one lock domain, so it needs no atomics; the key comes from getrandom
 * and is never reused.
 */
#include "random.h"
#include "generation.h"
#include "os.h"

#include <string.h>

/*
 * A refill makes RNG_BLOCKS blocks side by side: lane j of every vector
 * belongs to block j, so one vector instruction does the work of eight (or
 * four) scalar ones. Word i of block j lands at block[i * RNG_BLOCKS + j]:
 * the keystream's words in another order, which a generator used only for
 * random numbers may choose (tests/test_random.c checks them against a
 * plain ChaCha8). With AVX2 eight blocks take one pass, and the rotations
 * by 16 and 8 bits are byte shuffles; otherwise two passes of four.
 */
#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define CHACHA_ROUNDS(x, rot16, rot8)                                         \
	do {                                                                  \
		for (int k = 0; k < 4; k++) {                                 \
			QUARTER(x, 0, 4, 8, 12, rot16, rot8);                 \
			QUARTER(x, 1, 5, 9, 13, rot16, rot8);                 \
			QUARTER(x, 2, 6, 10, 14, rot16, rot8);                \
			QUARTER(x, 3, 7, 11, 15, rot16, rot8);                \
			QUARTER(x, 0, 5, 10, 15, rot16, rot8);                \
			QUARTER(x, 1, 6, 11, 12, rot16, rot8);                \
			QUARTER(x, 2, 7, 8, 13, rot16, rot8);                 \
			QUARTER(x, 3, 4, 9, 14, rot16, rot8);                 \
		}                                                             \
	} while (0)
#define QUARTER(x, a, b, c, d, rot16, rot8)                                   \
	do {                                                                  \
		x[a] += x[b]; x[d] ^= x[a]; x[d] = rot16(x[d]);               \
		x[c] += x[d]; x[b] ^= x[c]; x[b] = ROTL(x[b], 12);            \
		x[a] += x[b]; x[d] ^= x[a]; x[d] = rot8(x[d]);                \
		x[c] += x[d]; x[b] ^= x[c]; x[b] = ROTL(x[b], 7);             \
	} while (0)
#define ROT16(v) ROTL(v, 16)
#define ROT8(v) ROTL(v, 8)

static const uint32_t sigma[4] = { 0x61707865, 0x3320646e, 0x79622d32, 0x6b206574 };

typedef uint32_t vec4 __attribute__((vector_size(16)));

/*
 * The body of a refill pass: blocks counter + [0, lanes) into
 * out[i * RNG_BLOCKS + j] for word i of block j, in vectors of type vec
 * (lanes wide), with rot16 and rot8 for the rotations by whole bytes.
 * One body for both widths; each width is a function of its own, so that
 * the wide one alone is compiled for AVX2.
 */
#define CHACHA8_PASS(vec, lanes, rot16, rot8)                                 \
	do {                                                                  \
		vec in[16], x[16];                                            \
		for (int i = 0; i < 4; i++)                                   \
			in[i] = (vec){ 0 } + sigma[i];                        \
		for (int i = 0; i < 8; i++)                                   \
			in[4 + i] = (vec){ 0 } + key[i];                      \
		for (int j = 0; j < (lanes); j++) {                           \
			in[12][j] = (uint32_t)(counter + (uint64_t)j);        \
			in[13][j] = (uint32_t)((counter + (uint64_t)j) >> 32); \
		}                                                             \
		in[14] = in[15] = (vec){ 0 };                                 \
		memcpy(x, in, sizeof x);                                      \
		CHACHA_ROUNDS(x, rot16, rot8);                                \
		for (int i = 0; i < 16; i++) {                                \
			vec v = x[i] + in[i];                                 \
			memcpy(out + i * RNG_BLOCKS, &v, sizeof v);           \
		}                                                             \
		memset(x, 0, sizeof x);                                       \
	} while (0)

static void chacha8_x4(const uint32_t key[8], uint64_t counter, uint32_t *out)
{
	CHACHA8_PASS(vec4, 4, ROT16, ROT8);
}

#if defined(__x86_64__) && defined(__GNUC__)
typedef uint32_t vec8 __attribute__((vector_size(32)));
typedef uint8_t bytes32 __attribute__((vector_size(32)));

/* Rotations by whole bytes: one shuffle within each 128-bit lane (the
 * indices count across the whole vector: the upper lane's start at 16). */
#define BYTES_ROT(v, a, b, c, d)                                              \
	((vec8)__builtin_shuffle((bytes32)(v), (bytes32){                     \
		a, b, c, d, a + 4, b + 4, c + 4, d + 4, a + 8, b + 8, c + 8,  \
		d + 8, a + 12, b + 12, c + 12, d + 12, a + 16, b + 16,        \
		c + 16, d + 16, a + 20, b + 20, c + 20, d + 20, a + 24,       \
		b + 24, c + 24, d + 24, a + 28, b + 28, c + 28, d + 28 }))
#define SHUF16(v) BYTES_ROT(v, 2, 3, 0, 1)
#define SHUF8(v) BYTES_ROT(v, 3, 0, 1, 2)

__attribute__((target("avx2"))) static void chacha8_x8(const uint32_t key[8], uint64_t counter,
							 uint32_t *out)
{
	CHACHA8_PASS(vec8, 8, SHUF16, SHUF8);
}
#else
static void chacha8_x8(const uint32_t key[8], uint64_t counter, uint32_t *out)
{
	(void)key, (void)counter, (void)out;
}
#endif

static void reseed(struct rng *r, uint32_t gen)
{
	os_random_bytes(r->key, sizeof r->key);
	r->counter = 0;
	r->used = RNG_WORDS;
	r->has_half = 0;
	r->gen = gen;
}

void rng_renew_if_stale(struct rng *r)
{
	uint32_t gen = generation_now();
	if (__builtin_expect(r->gen != gen, 0))
		reseed(r, gen);
}

void rng_fill(const uint32_t key[8], uint64_t counter, uint32_t out[RNG_WORDS], bool wide)
{
	if (wide) {
		chacha8_x8(key, counter, out);
		return;
	}
	chacha8_x4(key, counter, out);
	chacha8_x4(key, counter + 4, out + 4);
}

void rng_refill(struct rng *r)
{
	rng_renew_if_stale(r);
	rng_fill(r->key, r->counter, r->block, os_cpu_avx2());
	r->counter += RNG_BLOCKS;
	r->used = 0;
}

void rng_seed(struct rng *r)
{
	reseed(r, generation_now());
}

void rng_seed_from(struct rng *r, const uint32_t key[8], uint32_t gen)
{
	memcpy(r->key, key, sizeof r->key);
	r->counter = 0;
	r->used = RNG_WORDS;
	r->has_half = 0;
	r->gen = gen;
}

uint64_t rng_u64(struct rng *r)
{
	uint64_t hi = rng_u32(r);
	return hi << 32 | rng_u32(r);
}

uint64_t rng_below64(struct rng *r, uint64_t n)
{
	if (n <= UINT32_MAX)
		return rng_below(r, (uint32_t)n);
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t v;
	do
		v = rng_u64(r);
	while (v >= limit);
	return v % n;
}

void rng_derive(struct rng *child, struct rng *parent)
{
	/* Buffered words of a stale parent are its parent's: drop them too. */
	rng_renew_if_stale(parent);
	for (int i = 0; i < 8; i++)
		child->key[i] = rng_u32(parent);
	child->counter = 0;
	child->used = RNG_WORDS;
	child->has_half = 0;
	child->gen = parent->gen;
}
