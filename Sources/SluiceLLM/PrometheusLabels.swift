/// Iterates the labels of one sample (see ``PrometheusText/labels(of:in:)``).
public struct PrometheusLabels: Sequence, IteratorProtocol {
    let bytes: UnsafeRawBufferPointer
    var pos: Int
    let end: Int

    public mutating func next() -> PrometheusLabel? {
        // The syntax was validated by the parser; this only finds the pieces again.
        while pos < end && (PrometheusText.isSpace(bytes[pos]) || bytes[pos] == UInt8(ascii: ",")) { pos += 1 }
        guard pos < end else { return nil }
        let ns = pos
        while pos < end && PrometheusText.isNameChar(bytes[pos]) { pos += 1 }
        let name = ByteRange(start: ns, end: pos)
        while pos < end && bytes[pos] != UInt8(ascii: "\"") { pos += 1 }
        pos += 1
        let vs = pos
        var escaped = false
        while pos < end && bytes[pos] != UInt8(ascii: "\"") {
            if bytes[pos] == UInt8(ascii: "\\") { escaped = true; pos += 1 }
            pos += 1
        }
        let value = ByteRange(start: vs, end: Swift.min(pos, end))
        pos += 1
        return PrometheusLabel(name: name, value: value, escaped: escaped)
    }
}
