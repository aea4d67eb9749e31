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

    /// Bytes allowed in a request-target: visible ASCII (no spaces, controls or obs-text).
    @inline(__always) @usableFromInline
    static func isTarget(_ c: UInt8) -> Bool { contains(c, 0xffff_fffe_0000_0000, 0x7fff_ffff_ffff_ffff, 0, 0) }
}
