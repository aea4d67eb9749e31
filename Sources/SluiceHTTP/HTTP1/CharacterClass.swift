/// RFC 9110 character classes as 256-bit constant bitmaps: a membership test is a shift and a
/// mask on a literal, with no table in memory and no lazy global initialisation (a `static let`
/// table costs a `swift_once` check on every access in the parser's inner loops).
@usableFromInline
enum CharacterClass {
    @inline(__always) @usableFromInline
    static func contains(_ c: UInt8, _ w0: UInt64, _ w1: UInt64, _ w2: UInt64, _ w3: UInt64) -> Bool {
        let word: UInt64
        switch c >> 6 {
        case 0: word = w0
        case 1: word = w1
        case 2: word = w2
        default: word = w3
        }
        return word >> UInt64(c & 63) & 1 == 1
    }

    /// tchar: `!#$%&'*+-.^_`|~`, digits and letters.
    @inline(__always) @usableFromInline
    static func isToken(_ c: UInt8) -> Bool { contains(c, 0x03ff_6cfa_0000_0000, 0x57ff_ffff_c7ff_fffe, 0, 0) }

    /// Bytes allowed in a field value: VCHAR, SP, HTAB and obs-text. Not CR, LF, NUL or other
    /// controls (a bare CR or a vertical tab in a value is how smuggling starts).
    @inline(__always) @usableFromInline
    static func isFieldValue(_ c: UInt8) -> Bool {
        contains(c, 0xffff_ffff_0000_0200, 0x7fff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff)
    }

    /// The number of leading bytes of the little-endian word `w` that are letters, digits or
    /// `-` (0...8): what nearly every header name is made of, tested eight bytes at a time; a
    /// name's other token characters take the byte-wise path after it. Exact for every byte
    /// value (non-ASCII bytes are never counted).
    @inline(__always) @usableFromInline
    static func alphanumericOrDashPrefix(_ w: UInt64) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        // Each test below works on 7-bit bytes (no carry can cross a byte); non-ASCII bytes
        // are masked out of the result instead.
        let low = w & ~highs
        let folded = low | (ones &* 0x20)  // 'A'...'Z' -> 'a'...'z'; digits and '-' keep 0x20
        let letter = (folded &+ ones &* (0x80 - 0x61)) & ~(folded &+ ones &* (0x80 - 0x7B))
        let digit = (low &+ ones &* (0x80 - 0x30)) & ~(low &+ ones &* (0x80 - 0x3A))
        let dash = zeroBytes(low ^ (ones &* 0x2D))  // high bit set where the byte was 0x2D
        // `folded` maps 0x40 ('@'), 0x5B...0x5F and 0x60, 0x7B...0x7F only to non-letters, and
        // never maps a non-letter onto a letter, except that it cannot tell 'A'...'Z' from
        // 'a'...'z' (both letters): exact.
        let good = (letter | digit | dash) & ~w & highs
        let bad = ~good & highs
        return bad == 0 ? 8 : bad.trailingZeroBitCount >> 3
    }

    /// The high bit of every zero byte of `x`, and nothing else (the carry-free form of the
    /// "has zero byte" test, exact per byte).
    @inline(__always) @usableFromInline
    static func zeroBytes(_ x: UInt64) -> UInt64 {
        let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
        return ~(((x & low7) &+ low7) | x | low7)
    }

    /// Bytes allowed in a request-target: visible ASCII (no spaces, controls or obs-text).
    @inline(__always) @usableFromInline
    static func isTarget(_ c: UInt8) -> Bool { contains(c, 0xffff_fffe_0000_0000, 0x7fff_ffff_ffff_ffff, 0, 0) }
}
