/// Decoding of JSON string contents that scanners returned as raw ranges.
///
/// Contract: the input range must be the contents of a string the scanners already validated
/// (between the quotes). Decoding is on demand and into caller memory: the hot path compares raw
/// bytes and only calls these when a value actually contains escapes.
public enum JSONString {
    /// Decodes the escaped contents at `range` of `buffer` into `out` as UTF-8. Returns the number
    /// of bytes written, or nil if `out` is too small (the decoded form is never longer than the raw
    /// form, so `out.count >= range.count` always suffices).
    public static func unescape(
        _ buffer: UnsafeRawBufferPointer, _ range: ByteRange, into out: UnsafeMutableRawBufferPointer
    ) -> Int? {
        var n = 0
        var ok = true
        forEachDecodedByte(buffer, range) { b in
            if n < out.count { out[n] = b; n += 1 } else { ok = false }
        }
        return ok ? n : nil
    }

    /// Decodes to a `String` (tests, logs, error messages; allocates).
    public static func decode(_ buffer: UnsafeRawBufferPointer, _ range: ByteRange) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(range.count)
        forEachDecodedByte(buffer, range) { bytes.append($0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether the (possibly escaped) contents at `range` decode to exactly `literal`.
    public static func equals(
        _ buffer: UnsafeRawBufferPointer, _ range: ByteRange, escaped: Bool, _ literal: StaticString
    ) -> Bool {
        let n = literal.utf8CodeUnitCount
        let lit = literal.utf8Start
        if !escaped {
            guard range.count == n else { return false }
            for k in 0..<n where buffer[range.start + k] != lit[k] { return false }
            return true
        }
        var i = 0
        var same = true
        forEachDecodedByte(buffer, range) { b in
            if i < n && lit[i] == b { i += 1 } else { same = false }
        }
        return same && i == n
    }

    /// Calls `body` with each decoded UTF-8 byte. Escapes are trusted to be valid (validated by the
    /// scanner), but malformed input still cannot read out of `range`.
    @inline(__always)
    static func forEachDecodedByte(
        _ buffer: UnsafeRawBufferPointer, _ range: ByteRange, _ body: (UInt8) -> Void
    ) {
        var i = range.start
        let end = range.end
        while i < end {
            let c = buffer[i]
            if c != UInt8(ascii: "\\") || i + 1 >= end {
                body(c)
                i += 1
                continue
            }
            let e = buffer[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): body(0x08)
            case UInt8(ascii: "f"): body(0x0C)
            case UInt8(ascii: "n"): body(0x0A)
            case UInt8(ascii: "r"): body(0x0D)
            case UInt8(ascii: "t"): body(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex4(buffer, i, end) else { return }
                i += 4
                if scalar >= 0xD800 && scalar <= 0xDBFF, i + 6 <= end, buffer[i] == UInt8(ascii: "\\"),
                    let low = hex4(buffer, i + 2, end), low >= 0xDC00 && low <= 0xDFFF
                {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                // An unpaired surrogate (not produced by a validated scan) becomes U+FFFD.
                let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                for b in UTF8.encode(s)! { body(b) }
            default: body(e)  // '"', '\\', '/'
            }
        }
    }

    @inline(__always)
    static func hex4(_ buffer: UnsafeRawBufferPointer, _ i: Int, _ end: Int) -> UInt32? {
        guard i + 4 <= end else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let d = SWAR.hexValue(buffer[i + k]) else { return nil }
            v = v << 4 | UInt32(d)
        }
        return v
    }
}
