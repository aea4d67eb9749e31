/// Builds small JSON documents for admin responses (off the request path).
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needComma: [Bool] = [false]

    private mutating func separator() {
        if needComma[needComma.count - 1] { bytes.append(44) }
        needComma[needComma.count - 1] = true
    }

    mutating func beginObject(_ key: String? = nil) { if let key { self.key(key) } else { separator() }; bytes.append(123); needComma.append(false) }
    mutating func endObject() { bytes.append(125); needComma.removeLast() }
    mutating func beginArray(_ key: String? = nil) { if let key { self.key(key) } else { separator() }; bytes.append(91); needComma.append(false) }
    mutating func endArray() { bytes.append(93); needComma.removeLast() }

    private mutating func key(_ k: String) {
        separator()
        JSON.appendString(k, to: &bytes)
        bytes.append(58)
    }

    mutating func field(_ k: String, _ v: String?) {
        key(k)
        if let v { JSON.appendString(v, to: &bytes) } else { bytes += "null".utf8 }
    }
    mutating func field(_ k: String, _ v: Int) { key(k); bytes += String(v).utf8 }
    mutating func field(_ k: String, _ v: Double) { key(k); bytes += (v.isFinite ? String(v) : "null").utf8 }
    mutating func field(_ k: String, _ v: Bool) { key(k); bytes += (v ? "true" : "false").utf8 }
    mutating func field(_ k: String, _ v: [String]) {
        key(k)
        bytes.append(91)
        for (i, s) in v.enumerated() {
            if i > 0 { bytes.append(44) }
            JSON.appendString(s, to: &bytes)
        }
        bytes.append(93)
    }
    mutating func value(_ s: String) { separator(); JSON.appendString(s, to: &bytes) }
    /// A series (the dashboard's sparklines): numbers rounded to a millionth, `null` for gaps.
    mutating func field(_ k: String, _ v: [Double?]) {
        key(k)
        bytes.append(91)
        for (i, x) in v.enumerated() {
            if i > 0 { bytes.append(44) }
            if let x, x.isFinite { bytes += PrometheusExposition.number((x * 1e6).rounded() / 1e6).utf8 } else { bytes += "null".utf8 }
        }
        bytes.append(93)
    }
}

/// `value` as 16 lowercase hex digits (request ids in logs).
func hex16(_ value: UInt64) -> String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
