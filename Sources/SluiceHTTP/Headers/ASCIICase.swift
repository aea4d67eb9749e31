/// Byte-level helpers for header names and token lists; all in place, no `String`s.
public enum ASCIICase {
    @inlinable static func lower(_ b: UInt8) -> UInt8 { (b >= 65 && b <= 90) ? b | 0x20 : b }

    /// Compares `bytes[range]` with `literal` (which must be lowercase), ignoring ASCII case.
    @inlinable
    public static func equal(_ bytes: UnsafeRawBufferPointer, _ range: ByteRange, _ literal: UnsafeRawBufferPointer) -> Bool {
        if range.count != literal.count { return false }
        var i = 0
        let s = Int(range.start)
        while i < literal.count {
            if lower(bytes[s + i]) != literal[i] { return false }
            i += 1
        }
        return true
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
