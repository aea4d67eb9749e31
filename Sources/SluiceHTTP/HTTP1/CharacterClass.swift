/// RFC 9110 character classes as 256-entry tables, so each byte is one load.
@usableFromInline
enum CharacterClass {
    /// tchar: `!#$%&'*+-.^_`|~`, digits and letters.
    @usableFromInline static let token: [Bool] = (0..<256).map { b in
        switch UInt8(b) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(UInt8(b))
        }
    }

    /// Bytes allowed in a field value: VCHAR, SP, HTAB and obs-text. Not CR, LF, NUL or
    /// other controls (a bare CR or a vertical tab in a value is how smuggling starts).
    @usableFromInline static let fieldValue: [Bool] = (0..<256).map { b in
        b == 9 || (b >= 32 && b != 127)
    }

    /// Bytes allowed in a request-target: visible ASCII (no spaces, no controls, no obs-text).
    @usableFromInline static let target: [Bool] = (0..<256).map { b in b > 32 && b < 127 }
}
