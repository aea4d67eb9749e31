/// Byte-level helpers for header names and token lists; all in place, no `String`s.
public enum ASCIICase {
    @inlinable static func lower(_ b: UInt8) -> UInt8 { (b >= 65 && b <= 90) ? b | 0x20 : b }

    /// Compares `bytes[range]` with `literal` (which must be lowercase), ignoring ASCII case.
    /// Eight bytes at a time (the last word overlapping the one before it) when it is that long.
    @inlinable
    public static func equal(_ bytes: UnsafeRawBufferPointer, _ range: ByteRange, _ literal: UnsafeRawBufferPointer) -> Bool {
        let n = literal.count
        if range.count != n { return false }
        let s = Int(range.start)
        if n >= 8 {
            let a = bytes.baseAddress! + s, l = literal.baseAddress!
            var i = 0
            while true {
                if !equal8(a.loadUnaligned(fromByteOffset: i, as: UInt64.self), l.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
                    return false
                }
                if i + 8 == n { return true }
                i = min(i + 8, n - 8)
            }
        }
        var i = 0
        while i < n {
            if lower(bytes[s + i]) != literal[i] { return false }
            i += 1
        }
        return true
    }

    /// Whether the word `x` equals the lowercase word `l` ignoring ASCII case: where `l` has a
    /// letter, `x` may have it in either case (x | 0x20 == l exactly then); elsewhere the
    /// bytes must be equal.
    @inlinable @inline(__always)
    static func equal8(_ x: UInt64, _ l: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let low = l & ~highs
        let letter = (low &+ ones &* (0x80 - 0x61)) & ~(low &+ ones &* (0x80 - 0x7B)) & ~l & highs
        return x | (letter >> 2) == l
    }

    @inlinable
    public static func equal(_ bytes: UnsafeRawBufferPointer, _ range: ByteRange, _ literal: StaticString) -> Bool {
        equal(bytes, range, UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Compares two ranges ignoring ASCII case.
    @inlinable
    public static func equal(_ a: UnsafeRawBufferPointer, _ ra: ByteRange, _ b: UnsafeRawBufferPointer, _ rb: ByteRange) -> Bool {
        if ra.count != rb.count { return false }
        var i = 0
        while i < ra.count {
            if lower(a[Int(ra.start) + i]) != lower(b[Int(rb.start) + i]) { return false }
            i += 1
        }
        return true
    }
}

/// Comma-separated token lists (`Connection: close, x-foo`), trimmed of optional whitespace.
public enum Tokens {
    @inlinable
    public static func forEach(in bytes: UnsafeRawBufferPointer, _ range: ByteRange, _ body: (ByteRange) -> Void) {
        var i = Int(range.start)
        let end = Int(range.end)
        while i < end {
            while i < end && (bytes[i] == 32 || bytes[i] == 9 || bytes[i] == 44) { i += 1 }
            let s = i
            while i < end && bytes[i] != 44 { i += 1 }
            var e = i
            while e > s && (bytes[e - 1] == 32 || bytes[e - 1] == 9) { e -= 1 }
            if e > s { body(ByteRange(s, e)) }
        }
    }
}
