/// Query parameters of a request target, read in place (`/v1/realtime?model=NAME` names its model
/// in the query, as OpenAI's Realtime API does).
///
/// Contract: the query is what follows the first `?` up to a `#` or the end; parameters are split
/// at `&` (and `;` is not a separator); a name matches only unescaped and exactly. Values are
/// returned raw; `encoded` says whether they hold `%XX` or `+` (decode with ``percentDecode``).
public enum QueryString {
    /// The value of the first parameter named `name` in `target`, as offsets into `target`, or nil
    /// when there is none. `a?model` (no `=`) gives an empty value.
    public static func value(named name: StaticString, in target: UnsafeRawBufferPointer) -> (range: ByteRange, encoded: Bool)? {
        guard let q = Bytes.firstIndex(of: UInt8(ascii: "?"), in: target) else { return nil }
        var end = target.count
        if let h = Bytes.firstIndex(of: UInt8(ascii: "#"), in: UnsafeRawBufferPointer(rebasing: target[(q + 1)...])) { end = q + 1 + h }
        let nameBytes = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        var i = q + 1
        while i <= end {
            var j = i
            while j < end && target[j] != UInt8(ascii: "&") { j += 1 }
            // One parameter: i..<j.
            var eq = i
            while eq < j && target[eq] != UInt8(ascii: "=") { eq += 1 }
            if eq - i == nameBytes.count && (nameBytes.isEmpty || Bytes.equal(target.baseAddress! + i, nameBytes.baseAddress!, nameBytes.count)) {
                let start = min(eq + 1, j)
                var encoded = false
                for k in start..<j where target[k] == UInt8(ascii: "%") || target[k] == UInt8(ascii: "+") { encoded = true; break }
                return (ByteRange(start: start, end: j), encoded)
            }
            i = j + 1
        }
        return nil
    }

    /// Decodes `%XX` escapes and `+` (a space, in form encoding; with `plusIsSpace`) of `range` in
    /// `buffer` into `out`. Returns the byte count, or nil when an escape is malformed or `out`
    /// is too small (`out.count >= range.count` always suffices).
    public static func percentDecode(_ buffer: UnsafeRawBufferPointer, _ range: ByteRange, plusIsSpace: Bool = true,
                                     into out: UnsafeMutableRawBufferPointer) -> Int? {
        guard range.start >= 0, range.start <= range.end, range.end <= buffer.count else { return nil }
        var n = 0
        var i = range.start
        while i < range.end {
            var b = buffer[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < range.end else { return nil }
                guard let hi = SWAR.hexValue(buffer[i + 1]), let lo = SWAR.hexValue(buffer[i + 2]) else { return nil }
                b = hi << 4 | lo
                i += 3
            } else {
                if b == UInt8(ascii: "+") && plusIsSpace { b = UInt8(ascii: " ") }
                i += 1
            }
            guard n < out.count else { return nil }
            out[n] = b
            n += 1
        }
        return n
    }
}
