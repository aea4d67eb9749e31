#ifndef CSLUICE_SIMD_H
#define CSLUICE_SIMD_H

// Vector loops the Swift compiler cannot pick at run time: Swift builds for the baseline of the
// target (SSE2 on x86-64) and has no per-function target attribute, so code for wider vectors
// lives here, behind a CPU check.

/// Whether this CPU (and the OS, which must save the wide registers) runs the AVX2 loops.
int csluice_has_avx2(void);

/// The start of the first 64-byte block of `p[from..<end]` holding a byte a JSON string scan must
/// stop at ('"', '\\', below 0x20, 0x80 and above), or of the last, incomplete block: the same
/// contract as SWAR.skipPlainBlocks, in 32-byte vectors. Call only when csluice_has_avx2().
long csluice_skip_plain_blocks_avx2(const unsigned char *p, long from, long end);

/// The offset of the first '\n' or '\r' in `p[from..<end]`, or `end`: 16 bytes a step (SSE2, the
/// x86-64 baseline; Swift's generic SIMD comparisons compile lane by lane inside a larger loop).
long csluice_line_end(const unsigned char *p, long from, long end);

#endif
