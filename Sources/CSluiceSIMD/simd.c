#include "CSluiceSIMD.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int csluice_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    // OSXSAVE (the OS manages extended state) and AVX, then XCR0 must enable XMM and YMM state.
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX)) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & bit_AVX2) != 0;
}

// A special byte, in two compares as in SWAR.special: '\\' by equality, and the rest by one
// signed compare of v ^ 0x02 with 0x21 (the XOR turns '"' into 0x20 and keeps control bytes
// below 0x20 and bytes >= 0x80 negative; every other printable byte stays at 0x21 or above).
__attribute__((target("avx2")))
static inline __m256i special(__m256i v) {
    const __m256i flip = _mm256_set1_epi8(0x02), bound = _mm256_set1_epi8(0x21), backslash = _mm256_set1_epi8('\\');
    return _mm256_or_si256(_mm256_cmpgt_epi8(bound, _mm256_xor_si256(v, flip)), _mm256_cmpeq_epi8(v, backslash));
}

__attribute__((target("avx2")))
long csluice_skip_plain_blocks_avx2(const unsigned char *p, long from, long end) {
    long i = from;
    // Two blocks a round while there are two (one test for both; the block holding the first
    // special byte is told apart only when there is one), then the last single block.
    while (i + 128 <= end) {
        __m256i a = special(_mm256_loadu_si256((const __m256i *)(p + i)));
        __m256i b = special(_mm256_loadu_si256((const __m256i *)(p + i + 32)));
        __m256i c = special(_mm256_loadu_si256((const __m256i *)(p + i + 64)));
        __m256i d = special(_mm256_loadu_si256((const __m256i *)(p + i + 96)));
        __m256i first = _mm256_or_si256(a, b), second = _mm256_or_si256(c, d);
        __m256i both = _mm256_or_si256(first, second);
        if (!_mm256_testz_si256(both, both)) return _mm256_testz_si256(first, first) ? i + 64 : i;
        i += 128;
    }
    while (i + 64 <= end) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        __m256i m = _mm256_or_si256(special(a), special(b));
        if (!_mm256_testz_si256(m, m)) break;
        i += 64;
    }
    return i;
}

#else

int csluice_has_avx2(void) { return 0; }
long csluice_skip_plain_blocks_avx2(const unsigned char *p, long from, long end) { (void)p; (void)end; return from; }

#endif

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

long csluice_line_end(const unsigned char *p, long from, long end) {
    long i = from;
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
    while (i + 16 <= end) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        int m = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)));
        if (m) return i + __builtin_ctz((unsigned)m);
        i += 16;
    }
#endif
    while (i < end && p[i] != '\n' && p[i] != '\r') i++;
    return i;
}
