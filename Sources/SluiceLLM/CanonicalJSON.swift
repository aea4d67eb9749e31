/// The canonical form of a JSON request body, for response-cache keys: two requests that differ
/// only in whitespace or in the order of object members get the same bytes.
///
/// Rules: whitespace outside strings is removed; object members are sorted by their decoded key
/// bytes (stable, so duplicate keys keep their order); strings, numbers and literals are written
/// exactly as sent (`1` and `1.0`, or `"a"` and `"\u0061"`, stay different: a missed cache hit,
/// never a wrong one); arrays keep their order (message order matters). Top-level members named
/// in `dropping` are left out (the gateway drops `model`, which it keys by the resolved target,
/// and `user`, which does not change the output).
///
/// Not on the proxy's hot path: only requests that may be cached are canonicalized.
public enum CanonicalJSON {
    /// Appends the canonical form of `body` to `out`. Throws on malformed JSON (the request
    /// scanner has already validated bodies that reach here).
    public static func append(_ body: UnsafeRawBufferPointer, dropping: [StaticString] = [],
                              to out: inout [UInt8]) throws(RequestScanError) {
        var c = JSONCursor(body)
        try value(&c, body, dropping: dropping, to: &out)
        try c.expectEnd()
    }

    public static func canonical(_ body: [UInt8], dropping: [StaticString] = []) throws(RequestScanError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(body.count)
        var failure: RequestScanError?
        body.withUnsafeBytes { b in
            do throws(RequestScanError) { try append(b, dropping: dropping, to: &out) } catch { failure = error }
        }
        if let failure { throw failure }
        return out
    }

    private struct Member {
        var key: [UInt8]
        var keyRaw: ByteRange
        var valueStart: Int
    }

    /// Writes the value at the cursor (recursing through containers; depth is bounded by the
    /// cursor's `maxDepth`).
    private static func value(_ c: inout JSONCursor, _ body: UnsafeRawBufferPointer, dropping: [StaticString],
                              to out: inout [UInt8]) throws(RequestScanError) {
        let first = try c.peek()
        switch first {
        case UInt8(ascii: "{"):
            out.append(UInt8(ascii: "{"))
            guard try c.enterObject() else {
                out.append(UInt8(ascii: "}"))
                return
            }
            var members: [Member] = []
            repeat {
                let k = try c.scanKey()
                var decoded: [UInt8] = []
                decoded.reserveCapacity(k.range.count)
                if k.escaped {
                    JSONString.forEachDecodedByte(body, k.range) { decoded.append($0) }
                } else {
                    decoded.append(contentsOf: UnsafeRawBufferPointer(rebasing: body[k.range.start..<k.range.end]))
                }
                let dropped = dropping.contains { s in
                    decoded.count == s.utf8CodeUnitCount
                        && decoded.withUnsafeBufferPointer { $0.elementsEqual(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
                }
                _ = try c.peek()
                let start = c.pos
                try c.skipValue()
                if !dropped { members.append(Member(key: decoded, keyRaw: k.range, valueStart: start)) }
            } while try c.objectNext()
            // Stable sort by decoded key: equal keys keep their order.
            let order = members.indices.sorted { a, b in
                let x = members[a].key, y = members[b].key
                return x.lexicographicallyPrecedes(y) || (x == y && a < b)
            }
            for (n, i) in order.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                let m = members[i]
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: body[m.keyRaw.start..<m.keyRaw.end]))
                out.append(UInt8(ascii: "\""))
                out.append(UInt8(ascii: ":"))
                // Nested members are never dropped: `dropping` names top-level members only.
                var inner = JSONCursor(body)
                inner.pos = m.valueStart
                inner.depth = c.depth + 1
                try value(&inner, body, dropping: [], to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            out.append(UInt8(ascii: "["))
            guard try c.enterArray() else {
                out.append(UInt8(ascii: "]"))
                return
            }
            var n = 0
            repeat {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                n += 1
                try value(&c, body, dropping: [], to: &out)
            } while try c.arrayNext()
            out.append(UInt8(ascii: "]"))
        default:
            // A scalar: copy its exact text.
            let start = c.pos
            try c.skipValue()
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: body[start..<c.pos]))
        }
    }
}
