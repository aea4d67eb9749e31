/// A strict RFC 8259 JSON reader over bytes in place: the primitives every scanner in this target
/// is built from.
///
/// Contract: `pos` only moves forward; each `scan…`/`skip…` method either consumes exactly one
/// lexical element (or one whole value) and leaves `pos` just past it, or throws with the offset of
/// the first byte it could not accept. Strings are validated (escapes, surrogate pairs, UTF-8 per
/// RFC 3629, no raw control characters) but never decoded; callers get the raw range and a flag
/// telling whether it contains escapes. Nesting is bounded by `maxDepth` so recursion is bounded.
@usableFromInline
struct JSONCursor {
    @usableFromInline let p: UnsafePointer<UInt8>
    @usableFromInline let end: Int
    @usableFromInline var pos: Int
    @usableFromInline var depth: Int = 0
    @usableFromInline let maxDepth: Int

    @usableFromInline
    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) {
        // An empty buffer may have no base address; any non-null pointer will do since `end` is 0.
        if let b = bytes.baseAddress {
            p = b.assumingMemoryBound(to: UInt8.self)
        } else {
            p = UnsafePointer(bitPattern: 1)!
        }
        end = bytes.count
        pos = 0
        self.maxDepth = maxDepth
    }

    typealias E = RequestScanError

    // MARK: whitespace and punctuation

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            let c = p[pos]
            // ' ', '\t', '\n', '\r' only (RFC 8259 §2).
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    /// The next non-whitespace byte, or throws unexpectedEnd. Leaves `pos` on it.
    @inline(__always)
    mutating func peek() throws(E) -> UInt8 {
        skipWhitespace()
        guard pos < end else { throw .syntax(.unexpectedEnd, at: pos) }
        return p[pos]
    }

    /// Consumes `:` after a key.
    @inline(__always)
    mutating func expectColon() throws(E) {
        let c = try peek()
        guard c == UInt8(ascii: ":") else { throw .syntax(.expectedColon, at: pos) }
        pos += 1
    }

    /// After an object member: consumes `,` (returns true: another member follows) or `}` (false).
    @inline(__always)
    mutating func objectNext() throws(E) -> Bool {
        let c = try peek()
        pos += 1
        if c == UInt8(ascii: ",") { return true }
        if c == UInt8(ascii: "}") { depth -= 1; return false }
        pos -= 1
        throw .syntax(.expectedCommaOrObjectEnd, at: pos)
    }

    /// After an array element: consumes `,` (true) or `]` (false).
    @inline(__always)
    mutating func arrayNext() throws(E) -> Bool {
        let c = try peek()
        pos += 1
        if c == UInt8(ascii: ",") { return true }
        if c == UInt8(ascii: "]") { depth -= 1; return false }
        pos -= 1
        throw .syntax(.expectedCommaOrArrayEnd, at: pos)
    }

    /// At `{`: consumes it. Returns false for an empty object `{}` (also consumed).
    /// Otherwise `pos` is left on the first key's quote.
    @inline(__always)
    mutating func enterObject() throws(E) -> Bool {
        depth += 1
        if depth > maxDepth { throw .syntax(.tooDeep, at: pos) }
        pos += 1
        let c = try peek()
        if c == UInt8(ascii: "}") { pos += 1; depth -= 1; return false }
        return true
    }

    /// At `[`: consumes it. Returns false for `[]` (also consumed).
    @inline(__always)
    mutating func enterArray() throws(E) -> Bool {
        depth += 1
        if depth > maxDepth { throw .syntax(.tooDeep, at: pos) }
        pos += 1
        let c = try peek()
        if c == UInt8(ascii: "]") { pos += 1; depth -= 1; return false }
        return true
    }

    /// Reads a member key and the colon after it. `pos` must be on the next non-whitespace byte.
    @inline(__always)
    mutating func scanKey() throws(E) -> (range: ByteRange, escaped: Bool) {
        let c = try peek()
        guard c == UInt8(ascii: "\"") else { throw .syntax(.expectedKey, at: pos) }
        let k = try scanString()
        try expectColon()
        return k
    }

    // MARK: strings

    /// At the opening quote: validates the string and returns the range of its contents (between
    /// the quotes, still escaped) and whether it contains any backslash escape.
    @usableFromInline
    mutating func scanString() throws(E) -> (range: ByteRange, escaped: Bool) {
        pos += 1
        let start = pos
        var escaped = false
        while true {
            // Straight to the next byte that needs a look: '"', '\\', a control byte or non-ASCII.
            pos = SWAR.firstStringSpecial(p, from: pos, end: end)
            guard pos < end else { throw .syntax(.unexpectedEnd, at: end) }
            let c = p[pos]
            if c == UInt8(ascii: "\"") {
                pos += 1
                return (ByteRange(start: start, end: pos - 1), escaped)
            } else if c == UInt8(ascii: "\\") {
                escaped = true
                try scanEscape()
            } else if c < 0x20 {
                throw .syntax(.controlCharacterInString, at: pos)
            } else if c < 0x80 {
                pos += 1
            } else {
                try scanUTF8(c)
            }
        }
    }

    /// At a backslash inside a string.
    @inline(__always)
    mutating func scanEscape() throws(E) {
        guard pos + 1 < end else { throw .syntax(.unexpectedEnd, at: end) }
        switch p[pos + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
            UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            pos += 2
        case UInt8(ascii: "u"):
            let at = pos
            let u = try hex4(at: pos + 2)
            pos += 6
            if u >= 0xD800 && u <= 0xDBFF {
                // A high surrogate must be followed by an escaped low surrogate.
                guard pos + 1 < end, p[pos] == UInt8(ascii: "\\"), p[pos + 1] == UInt8(ascii: "u") else {
                    if pos >= end || (p[pos] == UInt8(ascii: "\\") && pos + 1 >= end) {
                        throw .syntax(.unexpectedEnd, at: end)
                    }
                    throw .syntax(.invalidUnicodeEscape, at: at)
                }
                let low = try hex4(at: pos + 2)
                guard low >= 0xDC00 && low <= 0xDFFF else { throw .syntax(.invalidUnicodeEscape, at: at) }
                pos += 6
            } else if u >= 0xDC00 && u <= 0xDFFF {
                throw .syntax(.invalidUnicodeEscape, at: at)
            }
        default:
            throw .syntax(.invalidEscape, at: pos)
        }
    }

    @inline(__always)
    func hex4(at i: Int) throws(E) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 {
            guard i + k < end else { throw .syntax(.unexpectedEnd, at: end) }
            guard let d = SWAR.hexValue(p[i + k]) else { throw .syntax(.invalidUnicodeEscape, at: i - 2) }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// At a non-ASCII lead byte `c`: validates one UTF-8 sequence (RFC 3629 table: no overlongs,
    /// no surrogates, nothing above U+10FFFF).
    @inline(__always)
    mutating func scanUTF8(_ c: UInt8) throws(E) {
        let n: Int
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: n = 1
        case 0xE0: n = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: n = 2
        case 0xED: n = 2; hi = 0x9F
        case 0xF0: n = 3; lo = 0x90
        case 0xF1...0xF3: n = 3
        case 0xF4: n = 3; hi = 0x8F
        default: throw .syntax(.invalidUTF8, at: pos)
        }
        guard pos + n < end else {
            // Still check what is there so a bad byte is reported as such, not as truncation.
            var i = pos + 1
            while i < end {
                let b = p[i]
                if i == pos + 1 ? (b < lo || b > hi) : (b & 0xC0 != 0x80) { throw .syntax(.invalidUTF8, at: pos) }
                i += 1
            }
            throw .syntax(.unexpectedEnd, at: end)
        }
        let b1 = p[pos + 1]
        guard b1 >= lo && b1 <= hi else { throw .syntax(.invalidUTF8, at: pos) }
        if n >= 2 { guard p[pos + 2] & 0xC0 == 0x80 else { throw .syntax(.invalidUTF8, at: pos) } }
        if n == 3 { guard p[pos + 3] & 0xC0 == 0x80 else { throw .syntax(.invalidUTF8, at: pos) } }
        pos += n + 1
    }

    // MARK: numbers and literals

    /// Validates a number token (RFC 8259 §6) starting at `pos`. Returns its range and whether it
    /// is an integer (no fraction, no exponent).
    @usableFromInline
    mutating func scanNumber() throws(E) -> (range: ByteRange, isInteger: Bool) {
        let start = pos
        var isInteger = true
        if p[pos] == UInt8(ascii: "-") { pos += 1 }
        guard pos < end else { throw .syntax(.unexpectedEnd, at: end) }
        let first = p[pos]
        if first == UInt8(ascii: "0") {
            pos += 1
            if pos < end && SWAR.isDigit(p[pos]) { throw .syntax(.leadingZero, at: start) }
        } else if first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") {
            pos += 1
            while pos < end && SWAR.isDigit(p[pos]) { pos += 1 }
        } else {
            throw .syntax(.invalidNumber, at: start)
        }
        if pos < end && p[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard pos < end else { throw .syntax(.unexpectedEnd, at: end) }
            guard SWAR.isDigit(p[pos]) else { throw .syntax(.invalidNumber, at: start) }
            while pos < end && SWAR.isDigit(p[pos]) { pos += 1 }
        }
        if pos < end && (p[pos] | 0x20) == UInt8(ascii: "e") {
            isInteger = false
            pos += 1
            if pos < end && (p[pos] == UInt8(ascii: "+") || p[pos] == UInt8(ascii: "-")) { pos += 1 }
            guard pos < end else { throw .syntax(.unexpectedEnd, at: end) }
            guard SWAR.isDigit(p[pos]) else { throw .syntax(.invalidNumber, at: start) }
            while pos < end && SWAR.isDigit(p[pos]) { pos += 1 }
        }
        return (ByteRange(start: start, end: pos), isInteger)
    }

    /// At `t`, `f` or `n`: consumes `true`, `false` or `null`. Returns the byte it started with.
    @inline(__always)
    mutating func scanLiteral() throws(E) -> UInt8 {
        let c = p[pos]
        let word: StaticString = c == UInt8(ascii: "t") ? "true" : c == UInt8(ascii: "f") ? "false" : "null"
        let n = word.utf8CodeUnitCount
        let w = word.utf8Start
        for k in 0..<n {
            guard pos + k < end else { throw .syntax(.unexpectedEnd, at: end) }
            guard p[pos + k] == w[k] else { throw .syntax(.invalidLiteral, at: pos) }
        }
        pos += n
        return c
    }

    // MARK: whole values

    /// Validates and skips one value of any type (recursing into containers up to `maxDepth`).
    @usableFromInline
    mutating func skipValue() throws(E) {
        let c = try peek()
        switch c {
        case UInt8(ascii: "\""):
            _ = try scanString()
        case UInt8(ascii: "{"):
            guard try enterObject() else { return }
            repeat {
                _ = try scanKey()
                try skipValue()
            } while try objectNext()
        case UInt8(ascii: "["):
            guard try enterArray() else { return }
            repeat {
                try skipValue()
            } while try arrayNext()
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            _ = try scanLiteral()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            _ = try scanNumber()
        default:
            throw .syntax(.expectedValue, at: pos)
        }
    }

    /// After the top-level value: only whitespace may remain.
    @usableFromInline
    mutating func expectEnd() throws(E) {
        skipWhitespace()
        if pos != end { throw .syntax(.trailingData, at: pos) }
    }

    // MARK: key matching

    /// The decoded length of a key (its raw length unless it has escapes), for dispatching on length.
    @inline(__always)
    func keyLength(_ range: ByteRange, _ escaped: Bool) -> Int {
        escaped ? decodedLength(range) : range.count
    }

    /// Kept out of line so that `keyLength`'s common case inlines to a subtraction.
    @inline(never)
    func decodedLength(_ range: ByteRange) -> Int {
        var n = 0
        JSONString.forEachDecodedByte(UnsafeRawBufferPointer(start: p, count: end), range) { _ in n += 1 }
        return n
    }

    /// Whether the key at `range` equals `literal` (ASCII). Escaped keys are compared decoded.
    @inline(__always)
    func keyIs(_ range: ByteRange, _ escaped: Bool, _ literal: StaticString) -> Bool {
        if !escaped {
            let n = literal.utf8CodeUnitCount
            guard range.count == n else { return false }
            return Bytes.equal(p + range.start, literal.utf8Start, n)
        }
        return JSONString.equals(UnsafeRawBufferPointer(start: p, count: end), range, escaped: true, literal)
    }

}

/// Word-at-a-time byte tests (the classic "has zero byte" bit tricks).
@usableFromInline
enum SWAR {
    @usableFromInline static let ones: UInt64 = 0x0101_0101_0101_0101
    @usableFromInline static let highs: UInt64 = 0x8080_8080_8080_8080

    /// The high bit of every byte that is '"', '\\', below 0x20 or at/above 0x80 (the bytes a JSON
    /// string scan must look at one by one). Bits above the lowest one may be false positives (a
    /// borrow from a flagged byte); the lowest one is exact.
    @inline(__always) @usableFromInline
    static func stringSpecialMask(_ w: UInt64) -> UInt64 {
        let quote = w ^ 0x2222_2222_2222_2222
        let slash = w ^ 0x5C5C_5C5C_5C5C_5C5C
        let z = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash)
        // Bytes below 0x20: w - 0x20 borrows into the high bit (exact for "any" when no high bits,
        // and high bits are caught by `w` itself).
        let lt = (w &- 0x2020_2020_2020_2020) & ~w
        return (z | lt | w) & highs
    }

    @inline(__always) @usableFromInline
    static func isDigit(_ c: UInt8) -> Bool { c &- UInt8(ascii: "0") < 10 }

    @inline(__always) @usableFromInline
    static func hexValue(_ c: UInt8) -> UInt8? {
        if c &- UInt8(ascii: "0") < 10 { return c &- UInt8(ascii: "0") }
        let l = c | 0x20
        if l &- UInt8(ascii: "a") < 6 { return l &- UInt8(ascii: "a") &+ 10 }
        return nil
    }
}
