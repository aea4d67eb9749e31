import Glibc

/// Finds `usage`, `finish_reason`, generated output and `error` in a response JSON body in place
/// (a non-streaming body, or one SSE event's data), in the dialect of the API that answered
/// (``ResponseDialect``; OpenAI's by default).
///
/// Contract: returns nil when the bytes are not valid JSON or not an object (the gateway relays
/// such bodies untouched; it just learns nothing from them). Allocates nothing.
public enum ResponseScanner {
    public static func scan(_ body: UnsafeRawBufferPointer, maxDepth: Int = 64) -> ScannedResponse? {
        var c = JSONCursor(body, maxDepth: maxDepth)
        do {
            let r = try scanObject(&c)
            try c.expectEnd()
            return r
        } catch {
            return nil
        }
    }

    /// ``scan(_:maxDepth:)`` in `dialect`.
    public static func scan(_ body: UnsafeRawBufferPointer, dialect: ResponseDialect, maxDepth: Int = 64) -> ScannedResponse? {
        if dialect == .openAI { return scan(body, maxDepth: maxDepth) }
        var c = JSONCursor(body, maxDepth: maxDepth)
        do {
            let r = dialect == .anthropic ? try anthropicObject(&c) : try responsesObject(&c)
            try c.expectEnd()
            return r
        } catch {
            return nil
        }
    }

    typealias E = RequestScanError

    /// What the end of a JSON response body says when the body was too large to keep whole
    /// (the gateway keeps only its last bytes): the last `usage` object and `finish_reason`
    /// found as object keys in `tail`. vLLM and OpenAI write `usage` after `choices`, so it is
    /// in the tail. A key is recognised by its unescaped quote right after `{` or `,` (and
    /// whitespace): inside a string every quote is escaped, so generated text cannot pose as one.
    public static func scanTail(_ tail: UnsafeRawBufferPointer) -> ScannedResponse {
        var r = ScannedResponse()
        if let at = lastKey(tail, "usage") {
            var c = JSONCursor(UnsafeRawBufferPointer(rebasing: tail[at...]))
            var u = ScannedResponse()
            if (try? usage(&c, &u)) != nil { r.usage = u.usage; r.usageFields = u.usageFields }
        }
        if let at = lastKey(tail, "finish_reason") {
            var c = JSONCursor(UnsafeRawBufferPointer(rebasing: tail[at...]))
            if (try? c.peek()) == UInt8(ascii: "\""), let (range, esc) = try? c.scanString() {
                r.finishReason = esc ? .other : FinishReason(UnsafeRawBufferPointer(start: c.p + range.start, count: range.count))
            }
        }
        r.hasToken = true
        return r
    }

    /// The offset of the value of the last member named `key` in `b` (see ``scanTail(_:)``).
    static func lastKey(_ b: UnsafeRawBufferPointer, _ key: StaticString) -> Int? {
        let k = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        let n = k.count + 2
        var i = b.count - n
        func isSpace(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 10 || c == 13 }
        while i >= 1 {
            defer { i -= 1 }
            guard b[i] == UInt8(ascii: "\""), b[i + n - 1] == UInt8(ascii: "\""),
                  memcmp(b.baseAddress! + i + 1, k.baseAddress!, k.count) == 0 else { continue }
            var p = i - 1
            while p > 0 && isSpace(b[p]) { p -= 1 }
            guard b[p] == UInt8(ascii: "{") || b[p] == UInt8(ascii: ",") else { continue }
            var q = i + n
            while q < b.count && isSpace(b[q]) { q += 1 }
            guard q < b.count, b[q] == UInt8(ascii: ":") else { continue }
            q += 1
            while q < b.count && isSpace(b[q]) { q += 1 }
            return q < b.count ? q : nil
        }
        return nil
    }

    static func scanObject(_ c: inout JSONCursor) throws(E) -> ScannedResponse? {
        guard try c.peek() == UInt8(ascii: "{") else { return nil }
        var r = ScannedResponse()
        guard try c.enterObject() else { return r }
        repeat {
            let (key, escaped) = try c.scanKey()
            if c.keyLength(key, escaped) == 7 && c.keyIs(key, escaped, "choices") {
                if try c.peek() == UInt8(ascii: "[") {
                    var count = 0
                    if try c.enterArray() {
                        repeat {
                            count += 1
                            try choice(&c, &r)
                        } while try c.arrayNext()
                    }
                    r.choiceCount = count
                } else {
                    try c.skipValue()
                }
            } else if c.keyLength(key, escaped) == 5 && c.keyIs(key, escaped, "usage") {
                try usage(&c, &r)
            } else if c.keyLength(key, escaped) == 5 && c.keyIs(key, escaped, "error") {
                let ch = try c.peek()
                try c.skipValue()
                if ch != UInt8(ascii: "n") { r.hasError = true }
            } else {
                try c.skipValue()
            }
        } while try c.objectNext()
        return r
    }

    /// A non-empty string value (contents at least one byte).
    @inline(__always)
    static func nonEmptyString(_ c: inout JSONCursor) throws(E) -> Bool {
        guard try c.peek() == UInt8(ascii: "\"") else { try c.skipValue(); return false }
        return try !c.scanString().range.isEmpty
    }

    static func choice(_ c: inout JSONCursor, _ r: inout ScannedResponse) throws(E) {
        guard try c.peek() == UInt8(ascii: "{") else { try c.skipValue(); return }
        guard try c.enterObject() else { return }
        repeat {
            let (key, escaped) = try c.scanKey()
            switch c.keyLength(key, escaped) {
            case 4 where c.keyIs(key, escaped, "text"):
                if try nonEmptyString(&c) { r.hasToken = true }
            case 5 where c.keyIs(key, escaped, "delta"):
                try delta(&c, &r)
            case 13 where c.keyIs(key, escaped, "finish_reason"):
                if try c.peek() == UInt8(ascii: "\"") {
                    let (range, esc) = try c.scanString()
                    if r.finishReason == nil {
                        r.finishReason = esc ? .other : FinishReason(UnsafeRawBufferPointer(start: c.p + range.start, count: range.count))
                    }
                } else {
                    try c.skipValue()
                }
            default:
                try c.skipValue()
            }
        } while try c.objectNext()
    }

    static func delta(_ c: inout JSONCursor, _ r: inout ScannedResponse) throws(E) {
        guard try c.peek() == UInt8(ascii: "{") else { try c.skipValue(); return }
        guard try c.enterObject() else { return }
        repeat {
            let (key, escaped) = try c.scanKey()
            switch c.keyLength(key, escaped) {
            case 7 where c.keyIs(key, escaped, "content"),
                9 where c.keyIs(key, escaped, "reasoning"),
                17 where c.keyIs(key, escaped, "reasoning_content"):
                if try nonEmptyString(&c) { r.hasToken = true }
            case 10 where c.keyIs(key, escaped, "tool_calls"):
                if try c.peek() == UInt8(ascii: "[") {
                    if try c.enterArray() {
                        r.hasToken = true
                        repeat { try c.skipValue() } while try c.arrayNext()
                    }
                } else {
                    try c.skipValue()
                }
            default:
                try c.skipValue()
            }
        } while try c.objectNext()
    }

    /// A `usage` object: OpenAI's `prompt_tokens`/`completion_tokens`/`total_tokens`, Anthropic's
    /// and the Responses API's `input_tokens`/`output_tokens` (Anthropic's cache reads and writes,
    /// which it leaves out of `input_tokens`, are added to the prompt). Sets `r.usage` and
    /// `r.usageFields`; `null` or another type leaves them alone.
    static func usage(_ c: inout JSONCursor, _ r: inout ScannedResponse) throws(E) {
        guard try c.peek() == UInt8(ascii: "{") else { try c.skipValue(); return }
        var prompt = 0
        var cached = 0
        var completion = 0
        var total: Int?
        var fields: Usage.Fields = []
        if try c.enterObject() {
            repeat {
                let (key, escaped) = try c.scanKey()
                switch c.keyLength(key, escaped) {
                case 12 where c.keyIs(key, escaped, "total_tokens"):
                    total = try count(&c)
                    if total != nil { fields.insert(.total) }
                case 12 where c.keyIs(key, escaped, "input_tokens"),
                     13 where c.keyIs(key, escaped, "prompt_tokens"):
                    if let v = try count(&c) { prompt = v; fields.insert(.prompt) }
                case 13 where c.keyIs(key, escaped, "output_tokens"),
                     17 where c.keyIs(key, escaped, "completion_tokens"):
                    if let v = try count(&c) { completion = v; fields.insert(.completion) }
                case 23 where c.keyIs(key, escaped, "cache_read_input_tokens"),
                     27 where c.keyIs(key, escaped, "cache_creation_input_tokens"):
                    if let v = try count(&c) { cached += v; fields.insert(.prompt) }
                default:
                    try c.skipValue()
                }
            } while try c.objectNext()
        }
        r.usage = Usage(promptTokens: prompt + cached, completionTokens: completion, totalTokens: cached == 0 ? total : nil)
        r.usageFields = fields
    }

    /// A token count: an integer in 0...``Usage/maxCount``; other values (null, floats, negative,
    /// huge) read as nil. The bound keeps sums and products of counts from overflowing.
    static func count(_ c: inout JSONCursor) throws(E) -> Int? {
        let ch = try c.peek()
        guard SWAR.isDigit(ch) else { try c.skipValue(); return nil }
        let (range, isInteger) = try c.scanNumber()
        guard isInteger, let v = JSONNumber.int64(c.p, range), v <= Int64(Usage.maxCount) else { return nil }
        return Int(v)
    }
}
