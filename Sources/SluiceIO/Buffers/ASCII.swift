/// Small ASCII formatting helpers that write into raw memory without allocating.
public enum ASCII {
    /// Writes `value` in decimal at `p`; returns the number of bytes written (at most 20).
    @inlinable
    public static func writeDecimal(_ value: Int, to p: UnsafeMutableRawPointer) -> Int {
        var v = value.magnitude
        var out = p
        if value < 0 {
            out.storeBytes(of: UInt8(ascii: "-"), as: UInt8.self)
            out += 1
        }
        // Count the digits, then write them from the last one back: no scratch, no copy.
        var digits = 1
        var rest = v
        while rest >= 10 { rest /= 10; digits += 1 }
        var i = digits
        repeat {
            i -= 1
            out.storeBytes(of: UInt8(truncatingIfNeeded: v % 10) &+ 48, toByteOffset: i, as: UInt8.self)
            v /= 10
        } while i > 0
        return digits + (value < 0 ? 1 : 0)
    }

    /// Writes a non-negative `value` in lowercase hexadecimal at `p`; returns the byte count.
    @inlinable
    public static func writeHex(_ value: Int, to p: UnsafeMutableRawPointer) -> Int {
        precondition(value >= 0)
        var digits = 1
        var v = UInt64(value) >> 4
        while v > 0 { digits += 1; v >>= 4 }
        var x = UInt64(value)
        var i = digits
        while i > 0 {
            i -= 1
            let d = UInt8(truncatingIfNeeded: x & 0xF)
            p.storeBytes(of: d < 10 ? d &+ 48 : d &+ 87, toByteOffset: i, as: UInt8.self)
            x >>= 4
        }
        return digits
    }

    /// Writes `value` as exactly 16 lowercase hex digits at `p` (request, trace and span ids).
    @inlinable
    public static func writeHex64(_ value: UInt64, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: hex8(UInt32(truncatingIfNeeded: value >> 32)), as: UInt64.self)
        p.storeBytes(of: hex8(UInt32(truncatingIfNeeded: value)), toByteOffset: 8, as: UInt64.self)
    }

    /// The eight lowercase hex digits of `v` as the bytes of a word, most significant digit
    /// first in memory: each nibble spread to its own byte, then turned into '0'...'9' or
    /// 'a'...'f' in all eight bytes at once.
    @inlinable
    static func hex8(_ v: UInt32) -> UInt64 {
        var x = UInt64(v)
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F  // byte k holds nibble k (least significant first)
        let letters = ((x &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101  // 1 where the nibble is >= 10
        x = x &+ 0x3030_3030_3030_3030 &+ letters &* 0x27  // '0' + n, or 'a' + (n - 10)
        return UInt64(bigEndian: x)  // most significant digit at the lowest address
    }

    /// Lowercases an ASCII byte.
    @inlinable
    public static func lower(_ b: UInt8) -> UInt8 { (b &- 65) < 26 ? b | 0x20 : b }

    /// Case-insensitive ASCII comparison of raw bytes with a lowercase literal.
    @inlinable
    public static func equalsLowercase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        let n = lowercase.utf8CodeUnitCount
        guard bytes.count == n else { return false }
        let l = lowercase.utf8Start
        var i = 0
        while i < n {
            if lower(bytes[i]) != l[i] { return false }
            i += 1
        }
        return true
    }
}
