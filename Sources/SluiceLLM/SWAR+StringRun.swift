internal import CSluiceSIMD

extension SWAR {
    /// Whether a JSON string scan must look at byte `c` by itself: '"', '\\', a control byte
    /// (below 0x20) or a non-ASCII byte (0x80 and above). The definition ``firstStringSpecial``
    /// is tested against.
    @inline(__always) @usableFromInline
    static func isStringSpecial(_ c: UInt8) -> Bool {
        c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 || c >= 0x80
    }

    /// The offset of the first byte in `from..<end` of `p` that ``isStringSpecial(_:)``, or `end`
    /// when there is none: how far a JSON string scan may skip.
    ///
    /// Keys, roles, model names and most short values end within three words of eight, tested
    /// here one by one (a word's lowest flag gives the exact offset). A run still going after 24
    /// bytes is a prompt, where a gateway spends its CPU (a 220 KB chat body took ~2.3
    /// instructions per byte by words alone): it goes on out of line, in vectors
    /// (``longRun(_:from:end:)``), so that short strings pay nothing for them.
    @inline(__always) @usableFromInline
    static func firstStringSpecial(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        if from &+ 24 <= end {
            var m = wordMask(p, from)
            if m != 0 { return from &+ (m.trailingZeroBitCount &>> 3) }
            m = wordMask(p, from &+ 8)
            if m != 0 { return from &+ 8 &+ (m.trailingZeroBitCount &>> 3) }
            m = wordMask(p, from &+ 16)
            if m != 0 { return from &+ 16 &+ (m.trailingZeroBitCount &>> 3) }
            return longRun(p, from: from &+ 24, end: end)
        }
        return tail(p, from: from, end: end)
    }

    /// ``firstStringSpecial(_:from:end:)`` past the first 24 bytes: whole blocks skipped by
    /// vectors, then the exact offset by words and bytes.
    @inline(never) @usableFromInline
    static func longRun(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        tail(p, from: skipPlainBlocks(p, from: from, end: end), end: end)
    }

    /// Whether ``skipPlainBlocks(_:from:end:)`` runs in 32-byte vectors (AVX2) on this CPU.
    static let hasAVX2 = csluice_has_avx2() != 0

    /// Skips whole 64-byte blocks of `from..<end` that hold no special byte; returns the start of
    /// the first block that does, or of the last, incomplete one. In 32-byte vectors where the
    /// CPU has them (~0.25 instructions per byte, a 220 KB prompt's scan ~5 -> ~3 µs), else in
    /// 16-byte ones (``skipPlainBlocks16(_:from:end:)``).
    @inline(__always) @usableFromInline
    static func skipPlainBlocks(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        if hasAVX2 { return csluice_skip_plain_blocks_avx2(p, from, end) }
        return skipPlainBlocks16(p, from: from, end: end)
    }

    /// Words, then single bytes.
    @inline(__always) @usableFromInline
    static func tail(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        var i = from
        while i &+ 8 <= end {
            let m = wordMask(p, i)
            if m != 0 { return i &+ (m.trailingZeroBitCount &>> 3) }
            i &+= 8
        }
        while i < end && !isStringSpecial(p[i]) { i &+= 1 }
        return i
    }

    /// ``stringSpecialMask(_:)`` of the word at `p + i` (read little-endian).
    @inline(__always) @usableFromInline
    static func wordMask(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt64 {
        stringSpecialMask(UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)))
    }

    /// ``skipPlainBlocks(_:from:end:)`` in the baseline vectors of every target.
    ///
    /// Four 16-byte vectors a round, two compares each (``special(_:)``), one test for all four:
    /// ~0.6 instructions per byte on x86-64 (SSE2), against ~2.3 by words.
    @inline(__always) @usableFromInline
    static func skipPlainBlocks16(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        var i = from
        let raw = UnsafeRawPointer(p)
        while i &+ 64 <= end {
            let a = raw.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)
            let b = raw.loadUnaligned(fromByteOffset: i &+ 16, as: SIMD16<UInt8>.self)
            let c = raw.loadUnaligned(fromByteOffset: i &+ 32, as: SIMD16<UInt8>.self)
            let d = raw.loadUnaligned(fromByteOffset: i &+ 48, as: SIMD16<UInt8>.self)
            if anySpecial(a, b, c, d) { break }
            i &+= 64
        }
        return i
    }

    /// Whether any byte of the four vectors is special (see ``isStringSpecial(_:)``).
    @inline(__always) @usableFromInline
    static func anySpecial(_ a: SIMD16<UInt8>, _ b: SIMD16<UInt8>, _ c: SIMD16<UInt8>, _ d: SIMD16<UInt8>) -> Bool {
        let m = special(a) .| special(b) .| special(c) .| special(d)
        // The mask is 16 bytes of 0 or 0xFF; read as two words it is tested with one OR. The
        // standard library's `any(_:)` is a lane-by-lane reduction through a call (~30
        // instructions on x86-64); this is a compare and a move-mask.
        let w = unsafeBitCast(m, to: SIMD2<UInt64>.self)
        return w[0] | w[1] != 0
    }

    /// The special bytes of `v`, in two compares: '\\' by equality, and the rest by one signed
    /// compare of `v ^ 0x02` with 0x21. The XOR turns '"' (0x22) into 0x20 and keeps control
    /// bytes below 0x20 and bytes ≥ 0x80 negative, while every other byte from 0x20 to 0x7F stays
    /// at or above 0x21 (the only byte it brings to 0x20 is '"').
    @inline(__always) @usableFromInline
    static func special(_ v: SIMD16<UInt8>) -> SIMDMask<SIMD16<Int8>> {
        let t = SIMD16<Int8>(truncatingIfNeeded: v ^ SIMD16(repeating: 0x02))
        return (t .< SIMD16(repeating: 0x21)) .| (v .== SIMD16(repeating: UInt8(ascii: "\\")))
    }
}
