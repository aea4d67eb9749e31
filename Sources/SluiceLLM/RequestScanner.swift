/// Scans a request body in one pass: validates it as strict RFC 8259 JSON and picks out what the
/// gateway needs. ``scan(_:endpoint:segments:)`` reads the three OpenAI inference bodies (and
/// requires `model`, as the gateway always has); ``scan(_:for:segments:)`` reads every JSON body of
/// ``LLMEndpoint`` (Anthropic Messages, the Responses API, rerank/score/pooling/classify,
/// tokenize/detokenize, KServe v2 infer) and requires `model` only where vLLM does
/// (``LLMEndpoint/Traits/modelRequired``).
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
        segments: UnsafeMutableBufferPointer<PromptSegment>,
        requireModel: Bool = true
    ) throws(RequestScanError) -> ScannedRequest {
        var run = Run(body, maxDepth: maxDepth, schema: Schema(endpoint), requireModel: requireModel, segments: segments)
        try run.top()
        return run.result
    }

    /// Scans the JSON body of any endpoint of the table. What each one contributes:
    ///
    /// | endpoint | prompt segments (in the order the model reads them) | also |
    /// |---|---|---|
    /// | chat, completions, embeddings | as ``scan(_:endpoint:segments:)`` | |
    /// | messages, count_tokens | `system` (framed as role `system`: a string or text blocks), then each message's role and text (string content, text blocks, `tool_result` contents) | `max_tokens` required on messages; `metadata.user_id` → ``ScannedRequest/user`` |
    /// | responses | `instructions` (framed as role `instructions`), then `input`: a string, or items with their role and text (`content` string or parts, `output` of tool results) | `max_output_tokens` → ``ScannedRequest/maxTokens``; ``ScannedRequest/previousResponseID``, `store`, `background` |
    /// | rerank | `query`, then `documents` (strings or `{"text"}` objects) | |
    /// | score | `text_1`/`queries`/`data_1`, then `text_2`/`documents`/`items`/`data_2` | |
    /// | pooling, classify | `input` (as embeddings) or chat `messages` | |
    /// | tokenize | `prompt` or chat `messages` | |
    /// | detokenize | none: `tokens` counted as ``ScannedRequest/promptTokenIDs`` | |
    /// | v2 infer | none (validated only; the model is in the path) | |
    ///
    /// Leading fields (`system`, `instructions`, `query`, the first score input) are moved in
    /// front of the rest when the JSON lists them later, so key order does not change the prefix
    /// hashes. For endpoints without a JSON body (``LLMEndpoint/Traits/body``) nothing is read and
    /// an empty result is returned.
    public func scan(
        _ body: UnsafeRawBufferPointer,
        for endpoint: LLMEndpoint,
        segments: UnsafeMutableBufferPointer<PromptSegment>
    ) throws(RequestScanError) -> ScannedRequest {
        guard let schema = Schema(endpoint) else { return ScannedRequest() }
        let t = endpoint.traits
        var run = Run(body, maxDepth: maxDepth, schema: schema, requireModel: t.modelRequired && t.model == .jsonField, segments: segments)
        try run.top()
        return run.result
    }
}

extension RequestScanner {
    /// Which body layout a scan reads (internal: the public names are ``OpenAIEndpoint`` and
    /// ``LLMEndpoint``). The three OpenAI ones come first: `isOpenAI` is one compare.
    enum Schema: UInt8 {
        case chat, completions, embeddings
        case messages, countTokens, responses, rerank, score, pooling, classify, tokenize, detokenize, v2Infer

        init(_ e: OpenAIEndpoint) {
            switch e {
            case .chatCompletions: self = .chat
            case .completions: self = .completions
            case .embeddings: self = .embeddings
            }
        }

        init?(_ e: LLMEndpoint) {
            switch e {
            case .chatCompletions: self = .chat
            case .completions: self = .completions
            case .embeddings: self = .embeddings
            case .messages: self = .messages
            case .messagesCountTokens: self = .countTokens
            case .responses: self = .responses
            case .rerank: self = .rerank
            case .score: self = .score
            case .pooling: self = .pooling
            case .classify: self = .classify
            case .tokenize: self = .tokenize
            case .detokenize: self = .detokenize
            case .v2Infer: self = .v2Infer
            case .responseRetrieve, .responseCancel, .audioTranscriptions, .audioTranslations, .realtime,
                 .v2ModelMetadata, .v2ModelReady, .v2HealthLive, .v2HealthReady:
                return nil
            }
        }

        @inline(__always) var isOpenAI: Bool { rawValue <= Schema.embeddings.rawValue }
    }
}

extension RequestScanner {
    /// The state of one scan.
    struct Run {
        var c: JSONCursor
        let schema: Schema
        let requireModel: Bool
        let segments: UnsafeMutableBufferPointer<PromptSegment>
        var result = ScannedRequest()
        var maxTokens: Int?
        var maxCompletionTokens: Int?
        /// Where the last integer read by `int` started (error offsets).
        var lastNumberStart = 0
        /// Segments from this index on belong to the fields read after a leading field's place
        /// (see ``promoteLeading(from:)``); -1 until such a field was seen.
        var bodyStart = -1

        init(_ body: UnsafeRawBufferPointer, maxDepth: Int, schema: Schema, requireModel: Bool, segments: UnsafeMutableBufferPointer<PromptSegment>) {
            c = JSONCursor(body, maxDepth: maxDepth)
            self.schema = schema
            self.requireModel = requireModel
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
            if try c.enterObject() {
                repeat {
                    result.memberCount += 1
                    let keyStart = c.pos
                    let (key, escaped) = try c.scanKey()
                    if schema.isOpenAI {
                        try member(key, escaped, keyStart: keyStart)
                    } else {
                        try otherMember(key, escaped, keyStart: keyStart)
                    }
                } while try c.objectNext()
            }
            result.closingBrace = c.pos - 1
            try c.expectEnd()
            guard result.hasModel || !requireModel else { throw E(offset: result.closingBrace, kind: .missingModel) }
            result.maxTokens = maxCompletionTokens ?? maxTokens
            if !schema.isOpenAI { try finishOther() }
        }

        /// Handles one top-level member of an OpenAI body whose key has been read.
        mutating func member(_ key: ByteRange, _ escaped: Bool, keyStart: Int) throws(E) {
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
                try model()
            case 5 where schema == .embeddings && c.keyIs(key, escaped, "input"):
                try promptLike(.input)
            case 6 where c.keyIs(key, escaped, "stream"):
                result.stream = try bool(.stream)
            case 6 where schema == .completions && c.keyIs(key, escaped, "prompt"):
                try promptLike(.prompt)
            case 8 where schema == .chat && c.keyIs(key, escaped, "messages"):
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
        }

        /// `model`: a string (or `null` where the model is optional: the server's own applies).
        @inline(__always)
        mutating func model() throws(E) {
            if let (r, e) = try string(.model, nullable: !requireModel) {
                result.model = r
                result.modelEscaped = e
                result.hasModel = true
            } else {
                result.model = ByteRange.empty
                result.modelEscaped = false
                result.hasModel = false
            }
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

        /// Adds a message's role as its first segment (`first` is where the message's segments
        /// start): a role read after the message's text is rotated in front of it.
        @inline(__always)
        mutating func addRole(_ r: ByteRange, _ e: Bool, first: Int) {
            let stored = result.segmentCount < segments.count
            addSegment(r, .role, e)
            if stored && result.segmentCount - 1 > first {
                let role = segments[result.segmentCount - 1]
                var i = result.segmentCount - 1
                while i > first { segments[i] = segments[i - 1]; i -= 1 }
                segments[first] = role
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
                    addRole(r, e, first: first)
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
