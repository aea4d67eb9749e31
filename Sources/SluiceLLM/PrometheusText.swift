/// A pull parser for the Prometheus text exposition format (version 0.0.4), as vLLM and the Python
/// client emit it.
///
/// Contract: ``next()`` returns each sample in order and nil at the end; `# HELP`, `# TYPE` and
/// other comment lines and blank lines are skipped; CRLF line ends are accepted. Everything else
/// is checked (metric and label names, label syntax and escapes, the value, the optional integer
/// timestamp, nothing after it) and a bad line throws; the parser never reads outside `bytes`.
/// Values accept decimal and exponent forms, `+Inf`, `-Inf`, `Inf` and `NaN` (case-insensitive).
/// The body must outlive the parser and the ranges it returns.
public struct PrometheusText {
    public let bytes: UnsafeRawBufferPointer
    var pos = 0
    var lineNumber = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    typealias E = PrometheusParseError

    func fail(_ r: E.Reason, _ at: Int) -> E { E(offset: at, line: lineNumber, reason: r) }

    @inline(__always) static func isNameStart(_ c: UInt8) -> Bool {
        (c | 0x20) &- UInt8(ascii: "a") < 26 || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
    }
    @inline(__always) static func isNameChar(_ c: UInt8) -> Bool { isNameStart(c) || SWAR.isDigit(c) }
    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// The next sample, or nil at the end of the body.
    public mutating func next() throws(PrometheusParseError) -> PrometheusSample? {
        let n = bytes.count
        while pos < n {
            lineNumber += 1
            var lineEnd = pos
            while lineEnd < n && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            let start = pos
            pos = lineEnd + 1
            var end = lineEnd
            if end > start && bytes[end - 1] == 0x0D { end -= 1 }
            var i = start
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            if i == end || bytes[i] == UInt8(ascii: "#") { continue }
            return try sample(i, end)
        }
        return nil
    }

    mutating func sample(_ s: Int, _ end: Int) throws(E) -> PrometheusSample {
        var i = s
        guard Self.isNameStart(bytes[i]) else { throw fail(.invalidName, i) }
        while i < end && Self.isNameChar(bytes[i]) { i += 1 }
        let name = ByteRange(start: s, end: i)
        var labels = ByteRange(start: i, end: i)
        // Blanks may separate the name from the label set (as the Go parser allows).
        var j = i
        while j < end && Self.isSpace(bytes[j]) { j += 1 }
        if j < end && bytes[j] == UInt8(ascii: "{") {
            i = j
            i += 1
            let ls = i
            i = try scanLabels(i, end)
            labels = ByteRange(start: ls, end: i)
            i += 1  // '}'
        }
        guard i < end && Self.isSpace(bytes[i]) else { throw fail(i < end ? .invalidName : .invalidValue, i) }
        while i < end && Self.isSpace(bytes[i]) { i += 1 }
        let vs = i
        while i < end && !Self.isSpace(bytes[i]) { i += 1 }
        guard let value = Self.parseValue(bytes, ByteRange(start: vs, end: i)) else { throw fail(.invalidValue, vs) }
        while i < end && Self.isSpace(bytes[i]) { i += 1 }
        var timestamp: Int64?
        if i < end {
            let ts = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            let ds = i
            while i < end && SWAR.isDigit(bytes[i]) { i += 1 }
            guard i > ds, let t = JSONNumber.int64(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), ByteRange(start: ts, end: i))
            else { throw fail(.invalidTimestamp, ts) }
            timestamp = t
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            if i < end { throw fail(.trailingGarbage, i) }
        }
        return PrometheusSample(name: name, labels: labels, value: value, timestamp: timestamp)
    }

    /// Validates `name="value",…` up to the closing brace; returns the brace's offset.
    func scanLabels(_ from: Int, _ end: Int) throws(E) -> Int {
        var i = from
        while true {
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            guard i < end else { throw fail(.invalidLabel, i) }
            if bytes[i] == UInt8(ascii: "}") { return i }
            guard Self.isNameStart(bytes[i]) && bytes[i] != UInt8(ascii: ":") else { throw fail(.invalidLabel, i) }
            while i < end && Self.isNameChar(bytes[i]) && bytes[i] != UInt8(ascii: ":") { i += 1 }
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            guard i < end && bytes[i] == UInt8(ascii: "=") else { throw fail(.invalidLabel, i) }
            i += 1
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            guard i < end && bytes[i] == UInt8(ascii: "\"") else { throw fail(.invalidLabel, i) }
            i += 1
            while true {
                guard i < end else { throw fail(.unterminatedLabelValue, i) }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { break }
                if c == UInt8(ascii: "\\") {
                    guard i + 1 < end else { throw fail(.unterminatedLabelValue, i) }
                    let e = bytes[i + 1]
                    guard e == UInt8(ascii: "\\") || e == UInt8(ascii: "\"") || e == UInt8(ascii: "n") else {
                        throw fail(.invalidEscape, i)
                    }
                    i += 2
                } else {
                    i += 1
                }
            }
            i += 1
            while i < end && Self.isSpace(bytes[i]) { i += 1 }
            guard i < end else { throw fail(.invalidLabel, i) }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            guard bytes[i] == UInt8(ascii: "}") else { throw fail(.invalidLabel, i) }
            return i
        }
    }

    /// Parses a sample value: a decimal/exponent number or Inf/NaN; nil if it is neither.
    public static func parseValue(_ bytes: UnsafeRawBufferPointer, _ r: ByteRange) -> Double? {
        guard r.count > 0, let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        var i = r.start
        var negative = false
        if bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { negative = bytes[i] == UInt8(ascii: "-"); i += 1 }
        // Special values, case-insensitively.
        let rest = r.end - i
        if rest == 3 || rest == 8 {
            var word: UInt64 = 0
            for k in 0..<rest where k < 8 { word |= UInt64(bytes[i + k] | 0x20) << (8 * UInt64(k)) }
            if rest == 3 && word == 0x666E69 { return negative ? -.infinity : .infinity }  // "inf"
            if rest == 8 && word == 0x7974_696E_6966_6E69 { return negative ? -.infinity : .infinity }  // "infinity"
            if rest == 3 && word == 0x6E616E { return .nan }  // "nan"
        }
        var digits = 0
        while i < r.end && SWAR.isDigit(bytes[i]) { i += 1; digits += 1 }
        if i < r.end && bytes[i] == UInt8(ascii: ".") {
            i += 1
            while i < r.end && SWAR.isDigit(bytes[i]) { i += 1; digits += 1 }
        }
        guard digits > 0 else { return nil }
        if i < r.end && (bytes[i] | 0x20) == UInt8(ascii: "e") {
            i += 1
            if i < r.end && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
            let es = i
            while i < r.end && SWAR.isDigit(bytes[i]) { i += 1 }
            guard i > es else { return nil }
        }
        guard i == r.end else { return nil }
        return JSONNumber.double(base, r)
    }

    // MARK: labels

    /// The labels of `sample` (validated when the sample was parsed).
    public static func labels(of sample: PrometheusSample, in bytes: UnsafeRawBufferPointer) -> PrometheusLabels {
        PrometheusLabels(bytes: bytes, pos: sample.labels.start, end: sample.labels.end)
    }

    /// The raw value of the label called `name`, if the sample has it.
    public static func label(_ name: StaticString, of sample: PrometheusSample, in bytes: UnsafeRawBufferPointer) -> PrometheusLabel? {
        let lit = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        for l in labels(of: sample, in: bytes) where l.name.bytes(in: bytes).elementsEqual(lit) { return l }
        return nil
    }

    /// Whether the sample's name is exactly `name`.
    public static func nameIs(_ sample: PrometheusSample, _ name: StaticString, in bytes: UnsafeRawBufferPointer) -> Bool {
        sample.name.count == name.utf8CodeUnitCount
            && sample.name.bytes(in: bytes).elementsEqual(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    /// Decodes a label value's escapes into `out`; returns the length, or nil if `out` is too small.
    public static func unescape(_ bytes: UnsafeRawBufferPointer, _ r: ByteRange, into out: UnsafeMutableRawBufferPointer) -> Int? {
        var n = 0
        var i = r.start
        while i < r.end {
            var c = bytes[i]
            if c == UInt8(ascii: "\\") && i + 1 < r.end {
                i += 1
                c = bytes[i] == UInt8(ascii: "n") ? 0x0A : bytes[i]
            }
            guard n < out.count else { return nil }
            out[n] = c
            n += 1
            i += 1
        }
        return n
    }

    /// A label value as a `String` (tests and logs; allocates).
    public static func decode(_ bytes: UnsafeRawBufferPointer, _ r: ByteRange) -> String {
        var out = [UInt8](repeating: 0, count: r.count)
        let n = out.withUnsafeMutableBytes { unescape(bytes, r, into: $0) ?? 0 }
        return String(decoding: out[0..<n], as: UTF8.self)
    }
}
