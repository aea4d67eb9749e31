/// Scans an OpenAI request body (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`) in
/// one pass: validates it as strict RFC 8259 JSON and picks out what the gateway needs.
///
/// Contract:
/// - Reads `body` in place and allocates nothing; prompt segments go into the caller's `segments`
///   buffer (overflow sets ``ScannedRequest/segmentsOverflowed``; scanning continues).
/// - Rejects: syntax errors, trailing data, nesting beyond `maxDepth`, invalid escapes or UTF-8,
///   unpaired surrogates, a top level that is not an object, known fields of the wrong type, and a
///   missing `model`. Unknown fields are validated and skipped.
/// - Does not check value ranges the upstream checks (`temperature` bounds, `n` > 0, …).
///
/// ```
/// let r = try RequestScanner().scan(body, endpoint: .chatCompletions, segments: buf)
/// ```
public struct RequestScanner: Sendable {
    /// Maximum nesting of arrays and objects (the top-level object is depth 1).
    public var maxDepth: Int

    public init(maxDepth: Int = 64) {
        self.maxDepth = maxDepth
    }

    public func scan(
        _ body: UnsafeRawBufferPointer,
        endpoint: OpenAIEndpoint,
        segments: UnsafeMutableBufferPointer<PromptSegment>
    ) throws(RequestScanError) -> ScannedRequest {
        var run = Run(body, maxDepth: maxDepth, endpoint: endpoint, segments: segments)
        try run.top()
        return run.result
    }
}

extension RequestScanner {
    /// The state of one scan.
    struct Run {
        var c: JSONCursor
        let endpoint: OpenAIEndpoint
        let segments: UnsafeMutableBufferPointer<PromptSegment>
        var result = ScannedRequest()
        var maxTokens: Int?
        var maxCompletionTokens: Int?
        /// Where the last integer read by `int` started (error offsets).
        var lastNumberStart = 0

        init(_ body: UnsafeRawBufferPointer, maxDepth: Int, endpoint: OpenAIEndpoint, segments: UnsafeMutableBufferPointer<PromptSegment>) {
            c = JSONCursor(body, maxDepth: maxDepth)
            self.endpoint = endpoint
            self.segments = segments
        }

        typealias E = RequestScanError

        mutating func top() throws(E) {
            let first = try c.peek()
            guard first == UInt8(ascii: "{") else {
                // Report syntax first: "[1," is a syntax error, "[1]" is a type error.
                try c.skipValue()
                try c.expectEnd()
                throw E(offset: 0, kind: .notAnObject)
            }
            var haveModel = false
            if try c.enterObject() {
                repeat {
                    result.memberCount += 1
                    let keyStart = c.pos
                    let (key, escaped) = try c.scanKey()
                    if try member(key, escaped, keyStart: keyStart) { haveModel = true }
                } while try c.objectNext()
            }
            result.closingBrace = c.pos - 1
            try c.expectEnd()
            guard haveModel else { throw E(offset: result.closingBrace, kind: .missingModel) }
            result.maxTokens = maxCompletionTokens ?? maxTokens
        }

        /// Handles one top-level member whose key has been read; returns true if it was `model`.
        mutating func member(_ key: ByteRange, _ escaped: Bool, keyStart: Int) throws(E) -> Bool {
            // Dispatch on length first: most keys are rejected by one integer compare.
            switch c.keyLength(key, escaped) {
            case 1 where c.keyIs(key, escaped, "n"):
                result.n = try count(.n)
            case 4 where c.keyIs(key, escaped, "user"):
                if let (r, e) = try string(.user, nullable: true) { result.user = r; result.userEscaped = e }
                else { result.user = nil }
            case 4 where c.keyIs(key, escaped, "seed"):
                result.seed = try int(.seed)
            case 5 where c.keyIs(key, escaped, "model"):
                let (r, e) = try string(.model, nullable: false)!
                result.model = r
                result.modelEscaped = e
                return true
            case 5 where endpoint == .embeddings && c.keyIs(key, escaped, "input"):
                try promptLike(.input)
            case 6 where c.keyIs(key, escaped, "stream"):
                result.stream = try bool(.stream)
            case 6 where endpoint == .completions && c.keyIs(key, escaped, "prompt"):
                try promptLike(.prompt)
            case 8 where endpoint == .chatCompletions && c.keyIs(key, escaped, "messages"):
                try messages()
            case 10 where c.keyIs(key, escaped, "max_tokens"):
                maxTokens = try count(.maxTokens)
            case 11 where c.keyIs(key, escaped, "temperature"):
                result.temperature = try double(.temperature)
            case 14 where c.keyIs(key, escaped, "stream_options"):
                try streamOptions(keyStart: keyStart)
            case 21 where c.keyIs(key, escaped, "max_completion_tokens"):
                maxCompletionTokens = try count(.maxCompletionTokens)
            default:
                try c.skipValue()
            }
            return false
        }

        // MARK: typed values

        /// A string value; nil for `null` when `nullable`.
        mutating func string(_ f: RequestScanError.Field, nullable: Bool) throws(E) -> (ByteRange, Bool)? {
            let ch = try c.peek()
            if ch == UInt8(ascii: "\"") { return try c.scanString() }
            if nullable && ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return nil }
            throw try typeError(f, .string)
        }

        mutating func bool(_ f: RequestScanError.Field) throws(E) -> Bool? {
            let ch = try c.peek()
            switch ch {
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                let l = try c.scanLiteral()
                return l == UInt8(ascii: "n") ? nil : l == UInt8(ascii: "t")
            default:
                throw try typeError(f, .boolean)
            }
        }

        mutating func double(_ f: RequestScanError.Field) throws(E) -> Double? {
            let ch = try c.peek()
            if ch == UInt8(ascii: "-") || SWAR.isDigit(ch) {
                let (r, _) = try c.scanNumber()
                return JSONNumber.double(c.p, r)
            }
            if ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return nil }
            throw try typeError(f, .number)
        }

        mutating func int(_ f: RequestScanError.Field) throws(E) -> Int64? {
            let ch = try c.peek()
            if ch == UInt8(ascii: "-") || SWAR.isDigit(ch) {
                let (r, isInteger) = try c.scanNumber()
                lastNumberStart = r.start
                guard isInteger else { throw E(offset: r.start, kind: .wrongType(f, expected: .integer)) }
                guard let v = JSONNumber.int64(c.p, r) else { throw E(offset: r.start, kind: .outOfRange(f)) }
                return v
            }
            if ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return nil }
            throw try typeError(f, .integer)
        }

        /// A count the client sets (`max_tokens`, `max_completion_tokens`, `n`): an integer in
        /// 1...``ScannedRequest/maxCount`` or null. vLLM and OpenAI reject non-positive values;
        /// the upper bound keeps the gateway's own arithmetic (token reservations: prompt +
        /// max_tokens × n) far from overflow.
        mutating func count(_ f: RequestScanError.Field) throws(E) -> Int? {
            guard let v = try int(f) else { return nil }
            guard v >= 1 && v <= Int64(ScannedRequest.maxCount) else {
                throw E(offset: lastNumberStart, kind: .notInRange(f, min: 1, max: Int64(ScannedRequest.maxCount)))
            }
            return Int(v)
        }

        /// The error for a value of the wrong type at `pos`. The value is validated first, so a
        /// syntax error inside it is reported as such (it is the more useful message).
        mutating func typeError(_ f: RequestScanError.Field, _ expected: RequestScanError.Expected) throws(E) -> E {
            let at = c.pos
            try c.skipValue()
            return E(offset: at, kind: .wrongType(f, expected: expected))
        }

        // MARK: stream_options

        mutating func streamOptions(keyStart: Int) throws(E) {
            let ch = try c.peek()
            let start = c.pos
            result.includeUsage = nil
            result.includeUsageValue = nil
            if ch == UInt8(ascii: "n") {
                _ = try c.scanLiteral()
            } else if ch == UInt8(ascii: "{") {
                if try c.enterObject() {
                    repeat {
                        let (key, escaped) = try c.scanKey()
                        if c.keyLength(key, escaped) == 13 && c.keyIs(key, escaped, "include_usage") {
                            _ = try c.peek()  // past whitespace: the range is the literal's
                            let at = c.pos
                            result.includeUsage = try bool(.includeUsage)
                            result.includeUsageValue = ByteRange(start: at, end: c.pos)
                        } else {
                            try c.skipValue()
                        }
                    } while try c.objectNext()
                }
            } else {
                throw try typeError(.streamOptions, .object)
            }
            result.streamOptionsValue = ByteRange(start: start, end: c.pos)
            result.streamOptionsMember = ByteRange(start: keyStart, end: c.pos)
        }

        // MARK: prompt text

        /// Starts over the prompt: a duplicate prompt key replaces the earlier one.
        mutating func resetPrompt() {
            result.segmentCount = 0
            result.segmentsOverflowed = false
            result.promptBytes = 0
            result.promptTokenIDs = 0
            result.messageCount = 0
        }

        @inline(__always)
        mutating func addSegment(_ r: ByteRange, _ kind: PromptSegment.Kind, _ escaped: Bool) {
            result.promptBytes += r.count
            if result.segmentCount < segments.count {
                segments[result.segmentCount] = PromptSegment(range: r, kind: kind, escaped: escaped)
                result.segmentCount += 1
            } else {
                result.segmentsOverflowed = true
            }
        }

        /// `prompt` / `input`: a string, or an array whose elements are strings, token IDs, or
        /// arrays of token IDs.
        mutating func promptLike(_ f: RequestScanError.Field) throws(E) {
            resetPrompt()
            let ch = try c.peek()
            if ch == UInt8(ascii: "\"") {
                let (r, e) = try c.scanString()
                addSegment(r, .text, e)
                return
            }
            guard ch == UInt8(ascii: "[") else { throw try typeError(f, .promptLike) }
            guard try c.enterArray() else { return }
            repeat {
                let el = try c.peek()
                if el == UInt8(ascii: "\"") {
                    let (r, e) = try c.scanString()
                    addSegment(r, .text, e)
                } else if el == UInt8(ascii: "-") || SWAR.isDigit(el) {
                    try tokenID(f)
                } else if el == UInt8(ascii: "[") {
                    if try c.enterArray() {
                        repeat {
                            let t = try c.peek()
                            guard t == UInt8(ascii: "-") || SWAR.isDigit(t) else { throw try typeError(f, .promptLike) }
                            try tokenID(f)
                        } while try c.arrayNext()
                    }
                } else {
                    throw try typeError(f, .promptLike)
                }
            } while try c.arrayNext()
        }

        mutating func tokenID(_ f: RequestScanError.Field) throws(E) {
            let (r, isInteger) = try c.scanNumber()
            guard isInteger else { throw E(offset: r.start, kind: .wrongType(f, expected: .promptLike)) }
            result.promptTokenIDs += 1
        }

        /// `messages`: an array of message objects.
        mutating func messages() throws(E) {
            resetPrompt()
            let ch = try c.peek()
            guard ch == UInt8(ascii: "[") else { throw try typeError(.messages, .array) }
            guard try c.enterArray() else { return }
            repeat {
                try message()
            } while try c.arrayNext()
        }

        mutating func message() throws(E) {
            let ch = try c.peek()
            guard ch == UInt8(ascii: "{") else { throw try typeError(.message, .object) }
            result.messageCount += 1
            // Segments of this message start here; a role seen after content is moved to this slot.
            let first = result.segmentCount
            var sawRole = false
            guard try c.enterObject() else { return }
            repeat {
                let (key, escaped) = try c.scanKey()
                if c.keyLength(key, escaped) == 4 && c.keyIs(key, escaped, "role") {
                    guard let (r, e) = try string(.role, nullable: false) else { continue }
                    if sawRole { continue }  // a duplicate role: keep the first, it is already framed
                    sawRole = true
                    let stored = result.segmentCount < segments.count
                    addSegment(r, .role, e)
                    if stored && result.segmentCount - 1 > first {
                        // Rotate the role in front of this message's text segments.
                        let role = segments[result.segmentCount - 1]
                        var i = result.segmentCount - 1
                        while i > first { segments[i] = segments[i - 1]; i -= 1 }
                        segments[first] = role
                    }
                } else if c.keyLength(key, escaped) == 7 && c.keyIs(key, escaped, "content") {
                    try content()
                } else {
                    try c.skipValue()
                }
            } while try c.objectNext()
        }

        /// A message's `content`: a string, null, or an array of content parts whose `text` counts.
        mutating func content() throws(E) {
            let ch = try c.peek()
            switch ch {
            case UInt8(ascii: "\""):
                let (r, e) = try c.scanString()
                addSegment(r, .text, e)
            case UInt8(ascii: "n"):
                _ = try c.scanLiteral()  // `null`: an assistant message with tool calls only
            case UInt8(ascii: "["):
                guard try c.enterArray() else { return }
                repeat {
                    let el = try c.peek()
                    guard el == UInt8(ascii: "{") else { throw try typeError(.contentPart, .object) }
                    guard try c.enterObject() else { continue }
                    repeat {
                        let (key, escaped) = try c.scanKey()
                        if c.keyLength(key, escaped) == 4 && c.keyIs(key, escaped, "text") {
                            if let (r, e) = try string(.text, nullable: true) { addSegment(r, .text, e) }
                        } else {
                            try c.skipValue()
                        }
                    } while try c.objectNext()
                } while try c.arrayNext()
            default:
                throw try typeError(.content, .contentLike)
            }
        }
    }
}
