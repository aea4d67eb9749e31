/// Conversion of validated JSON number tokens to values, in place.
///
/// `double` uses Clinger's fast path (a mantissa of at most 2^53 scaled by an exact power of ten up
/// to 10^22 is one correctly rounded operation), which covers what clients send (`0.7`, `1`, `1e-3`);
/// anything else (long mantissas, large exponents) falls back to the standard library parser, which
/// builds a temporary `String` — rare, and correct.
enum JSONNumber {
    static let powersOf10: (Double, Double, Double, Double, Double, Double, Double, Double, Double,
        Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double,
        Double, Double, Double) = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22)

    @inline(__always)
    static func pow10(_ e: Int) -> Double {
        withUnsafeBytes(of: powersOf10) { $0.load(fromByteOffset: e * 8, as: Double.self) }
    }

    /// The value of the number token at `range` (grammar already validated). Also reads the looser
    /// forms Prometheus allows (`+1`, `.5`, `1.`), which callers validate themselves.
    static func double(_ p: UnsafePointer<UInt8>, _ range: ByteRange) -> Double {
        var i = range.start
        let end = range.end
        var negative = false
        if p[i] == UInt8(ascii: "-") { negative = true; i += 1 } else if p[i] == UInt8(ascii: "+") { i += 1 }
        var mantissa: UInt64 = 0
        var digits = 0
        var exp10 = 0
        while i < end, SWAR.isDigit(p[i]) {
            if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(p[i] &- 48); if mantissa != 0 { digits += 1 } }
            else { exp10 += 1 }
            i += 1
        }
        if i < end && p[i] == UInt8(ascii: ".") {
            i += 1
            while i < end, SWAR.isDigit(p[i]) {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(p[i] &- 48); if mantissa != 0 { digits += 1 }; exp10 -= 1 }
                i += 1
            }
        }
        var fast = digits < 19
        if i < end {  // exponent
            i += 1
            var eneg = false
            if p[i] == UInt8(ascii: "+") { i += 1 } else if p[i] == UInt8(ascii: "-") { eneg = true; i += 1 }
            var e = 0
            while i < end, SWAR.isDigit(p[i]) {
                if e < 100_000 { e = e * 10 + Int(p[i] &- 48) }
                i += 1
            }
            exp10 += eneg ? -e : e
        }
        if mantissa == 0 { return negative ? -0.0 : 0.0 }
        if mantissa > 1 << 53 || exp10 < -22 || exp10 > 22 { fast = false }
        if fast {
            var v = Double(mantissa)
            v = exp10 < 0 ? v / pow10(-exp10) : v * pow10(exp10)
            return negative ? -v : v
        }
        let text = String(decoding: UnsafeBufferPointer(start: p + range.start, count: range.count), as: UTF8.self)
        return Double(text) ?? .nan
    }

    /// The value of an integer token at `range`, or nil if it does not fit in Int64.
    static func int64(_ p: UnsafePointer<UInt8>, _ range: ByteRange) -> Int64? {
        var i = range.start
        var negative = false
        if p[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        var v: UInt64 = 0
        while i < range.end {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(p[i] &- 48))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        if negative {
            if v > UInt64(Int64.max) + 1 { return nil }
            return v == UInt64(Int64.max) + 1 ? Int64.min : -Int64(v)
        }
        return v > UInt64(Int64.max) ? nil : Int64(v)
    }
}
