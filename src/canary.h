/*
 * canary: the bytes between the end of an allocation and the end of its slot
 * (or its last page) hold a pattern keyed by the block's own key and made
 * from its address and its version word; free checks them, so an overflow of
 * even one byte is caught at the latest when the block is freed.
 *
 * Keys are kept out of line, never in heap pages: a small slot's is its
 * room's key (drawn when the room opens) mixed with the key of the process
 * generation that handed the slot out (generation.h); a large region, a
 * guarded run and a pool page have keys of their own. The version word
 * changes with every allocation, so a slot's canary does too.
 *
 * The pattern is periodic in 8 bytes and aligned to the block's start, so it
 * is written and checked a word at a time; no byte of it is zero (the most
 * common overflow is a string's terminating NUL one byte too far). The
 * checks are inline: they run on every malloc and free.
 */
#ifndef LAB_CANARY_H
#define LAB_CANARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define NO_DAMAGE SIZE_MAX

/* Find what the CPU offers (once; before the first check). */
void canary_init(void);

/*
 * A block's 8-byte pattern: 7 bits per byte from the mix, the low bit always
 * set. The key enters twice, around a multiplication, so one canary and its
 * address give no equation that pins the key down (the old one-step mix could
 * be run backwards); two multiplies, about as cheap as the mix it replaced.
 */
static inline uint64_t canary_pattern(uint64_t key, const void *base, uint64_t v)
{
	uint64_t x = ((uint64_t)(uintptr_t)base ^ key) * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 29;
	x = (x ^ v ^ (key << 32 | key >> 32)) * 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 32;
	return x | 0x0101010101010101ULL;
}

/* The bytes of the word at an 8-aligned offset that lie below `from` (the
 * block's own bytes, kept); words are little-endian, so they are its low ones. */
static inline uint64_t canary_below(size_t from)
{
	return (1ULL << (8 * (from & 7))) - 1;
}

static inline uint64_t word_at(const char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

static inline unsigned char canary_byte(uint64_t pat, size_t offset)
{
	return (unsigned char)(pat >> (8 * (offset & 7)));
}

/* Fill bytes [from, to) of the block at base with its canary pattern pat.
 * Words are written only where they lie inside [base, base + to): a tail
 * that ends mid-word (a guarded block's slack) is written byte by byte. */
static inline void canary_write(char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from;
	if ((i & 7) && (i | 7) + 1 <= to) {
		size_t w0 = i & ~(size_t)7;
		uint64_t keep = canary_below(i);
		uint64_t w = (word_at(base + w0) & keep) | (pat & ~keep);
		memcpy(base + w0, &w, 8);
		i = w0 + 8;
	}
	if (!(i & 7)) {
#ifdef __SSE2__
		/* The pattern's period is 8: 16-byte stores at any 8-aligned offset. */
		__m128i v = _mm_set1_epi64x((long long)pat);
		for (; i + 16 <= to; i += 16)
			_mm_storeu_si128((__m128i *)(base + i), v);
#endif
		for (; i + 8 <= to; i += 8)
			memcpy(base + i, &pat, 8);
	}
	for (; i < to; i++)
		base[i] = (char)canary_byte(pat, i);
}

/* Whether bytes [from, to) still hold the canary: the common case, decided
 * once for the whole tail (a tail can be hundreds of bytes). */
static inline bool canary_intact(const char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from;
	uint64_t bad = 0;
	if ((i & 7) && (i | 7) + 1 <= to) {
		size_t w0 = i & ~(size_t)7;
		bad = (word_at(base + w0) ^ pat) & ~canary_below(i);
		i = w0 + 8;
	}
	if (!(i & 7)) {
#ifdef __SSE2__
		__m128i v = _mm_set1_epi64x((long long)pat), acc = _mm_setzero_si128();
		for (; i + 32 <= to; i += 32) {
			__m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(base + i)), v);
			__m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(base + i + 16)), v);
			acc = _mm_or_si128(acc, _mm_or_si128(a, b));
		}
		if (_mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) != 0xffff)
			return false;
#endif
		for (; i + 8 <= to; i += 8)
			bad |= word_at(base + i) ^ pat;
	}
	for (; i < to; i++)
		bad |= (unsigned char)base[i] ^ canary_byte(pat, i);
	return bad == 0;
}

/*
 * The same two for a slot's tail, where from < to and to is a multiple of
 * 16 (every class size is), and the slot 16-aligned: the tail is whole
 * 16-byte lines, the first of them shared with the block's last bytes.
 * With SSE2 that line is merged under a byte mask (canary_line_keep), and
 * the rest are plain stores; no loop runs for a tail within one line.
 */
#ifdef __SSE2__
/* Bytes [0, h) of the line at 16 - h are 0xff: the block's, kept. */
static const uint8_t canary_line_ramp[32] __attribute__((aligned(16))) = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static inline __m128i canary_line_keep(size_t from)
{
	return _mm_loadu_si128((const __m128i *)(canary_line_ramp + 16 - (from & 15)));
}

static inline void canary_write_slot(char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from & ~(size_t)15;
	__m128i v = _mm_set1_epi64x((long long)pat), keep = canary_line_keep(from);
	__m128i line = _mm_load_si128((const __m128i *)(base + i));
	_mm_store_si128((__m128i *)(base + i),
			_mm_or_si128(_mm_and_si128(keep, line), _mm_andnot_si128(keep, v)));
	for (i += 16; i < to; i += 16)
		_mm_store_si128((__m128i *)(base + i), v);
}

static inline bool canary_intact_slot(const char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from & ~(size_t)15;
	__m128i v = _mm_set1_epi64x((long long)pat);
	__m128i bad = _mm_andnot_si128(canary_line_keep(from),
				       _mm_xor_si128(_mm_load_si128((const __m128i *)(base + i)), v));
	for (i += 16; i < to; i += 16)
		bad = _mm_or_si128(bad, _mm_xor_si128(_mm_load_si128((const __m128i *)(base + i)), v));
	return _mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) == 0xffff;
}
#else
static inline void canary_write_slot(char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from & ~(size_t)7;
	uint64_t keep = canary_below(from);
	uint64_t w = (word_at(base + i) & keep) | (pat & ~keep);
	memcpy(base + i, &w, 8);
	for (i += 8; i < to; i += 8)
		memcpy(base + i, &pat, 8);
}

static inline bool canary_intact_slot(const char *base, size_t from, size_t to, uint64_t pat)
{
	size_t i = from & ~(size_t)7;
	uint64_t bad = (word_at(base + i) ^ pat) & ~canary_below(from);
	for (i += 8; i < to; i += 8)
		bad |= word_at(base + i) ^ pat;
	return bad == 0;
}
#endif

/* Offset of the first byte of [from, to) that is not the canary, or NO_DAMAGE. */
static inline size_t canary_damage(const char *base, size_t from, size_t to, uint64_t pat)
{
	for (size_t i = from; i < to; i++)
		if ((unsigned char)base[i] != canary_byte(pat, i))
			return i;
	return NO_DAMAGE;
}

/*
 * Whether [0, len) is all zero, len a multiple of 16 (a slot): every slot
 * handed out is scanned whole, so the scan ORs 64 bytes at a time and
 * decides once at the end; the clean case is the only common one.
 */
/* The same for big slots, 32 bytes a load, when the CPU has AVX2. */
bool bytes_all_zero_wide(const char *p, size_t len);
extern bool canary_cpu_avx2;

/* The same without AVX2, inline: no call. */
static inline __attribute__((always_inline)) bool bytes_all_zero_narrow(const char *p, size_t len)
{
	size_t i = 0;
#ifdef __SSE2__
	__m128i acc = _mm_setzero_si128();
	for (; i + 64 <= len; i += 64) {
		__m128i a = _mm_or_si128(_mm_loadu_si128((const __m128i *)(p + i)),
					 _mm_loadu_si128((const __m128i *)(p + i + 16)));
		__m128i b = _mm_or_si128(_mm_loadu_si128((const __m128i *)(p + i + 32)),
					 _mm_loadu_si128((const __m128i *)(p + i + 48)));
		acc = _mm_or_si128(acc, _mm_or_si128(a, b));
	}
	for (; i < len; i += 16)
		acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)(p + i)));
	return _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff;
#else
	uint64_t acc = 0;
	for (; i < len; i += 8)
		acc |= word_at(p + i);
	return acc == 0;
#endif
}

static inline bool bytes_all_zero(const char *p, size_t len)
{
	if (len >= 512 && canary_cpu_avx2)
		return bytes_all_zero_wide(p, len);
	return bytes_all_zero_narrow(p, len);
}

/* The same for a slot, len a multiple of 16 (16 at least): up to 64 bytes
 * by loads that overlap at the end, no loop. With leaf set, nothing is
 * called (no AVX2 for big slots): the caller saves no registers for it. */
static inline __attribute__((always_inline)) bool slot_bytes_zero(const char *p, size_t len,
								  bool leaf)
{
#ifdef __SSE2__
	if (len <= 64) {
		__m128i a = _mm_or_si128(_mm_loadu_si128((const __m128i *)p),
					 _mm_loadu_si128((const __m128i *)(p + len - 16)));
		if (len > 32)
			a = _mm_or_si128(a, _mm_or_si128(
				_mm_loadu_si128((const __m128i *)(p + 16)),
				_mm_loadu_si128((const __m128i *)(p + len - 32))));
		return _mm_movemask_epi8(_mm_cmpeq_epi8(a, _mm_setzero_si128())) == 0xffff;
	}
#endif
	return leaf ? bytes_all_zero_narrow(p, len) : bytes_all_zero(p, len);
}

/* Offset of the first non-zero byte of [0, len), or NO_DAMAGE; len is a
 * multiple of 8. */
static inline size_t zero_damage(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = word_at(p + i);
		if (w)
			return i + (size_t)__builtin_ctzll(w) / 8;
	}
	return NO_DAMAGE;
}

/*
 * The last bytes of a slot are also the bytes just before the next slot: a
 * write there may be an overflow of this block or an underflow of the next,
 * and a report of damage that reaches them names both (next), so that the
 * user looks at both. NEAR_END is how far from the end that holds: one
 * word, the widest store a program makes through a pointer one element
 * before its block.
 */
#define NEAR_END 8

/* Whether bytes [from, to) differ from the canary within the last NEAR_END. */
static inline bool canary_damage_near_end(const char *base, size_t from, size_t to, uint64_t pat)
{
	return canary_damage(base, to - from > NEAR_END ? to - NEAR_END : from, to, pat) != NO_DAMAGE;
}

void canary_report(const char *base, size_t bad, size_t class_size, uint64_t gen);
/* The same, naming next too (NULL: nothing follows, or the damage is not
 * near the end). */
void canary_report_near(const char *base, const char *next, size_t bad, size_t class_size,
			uint64_t gen);
void zero_report(char *p, size_t bad, size_t len, uint64_t gen);
void zero_report_near(char *p, const char *next, size_t bad, size_t len, uint64_t gen);
/* The sweep found byte bad of a free slot changed (next as above). */
void free_slot_report(const char *p, const char *next, size_t bad, size_t len, uint64_t gen);

/* Check bytes [from, to) of the block at base against pattern pat; report
 * a heap overflow if the canary was changed. class_size and gen go into the
 * report. */
static inline void canary_check(const char *base, size_t from, size_t to, uint64_t pat,
				size_t class_size, uint64_t gen)
{
	if (__builtin_expect(!canary_intact(base, from, to, pat), 0))
		canary_report(base, canary_damage(base, from, to, pat), class_size, gen);
}

/* Check a slot about to be reused is all zero; report a write after free
 * (and zero it, if the report returns) otherwise. */
static inline void zero_check(char *p, size_t len, uint64_t gen)
{
	if (__builtin_expect(!bytes_all_zero(p, len), 0))
		zero_report(p, zero_damage(p, len), len, gen);
}

#endif
