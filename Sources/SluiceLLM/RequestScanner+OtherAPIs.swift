/// The bodies beyond OpenAI's three inference endpoints: Anthropic Messages, the Responses API,
/// rerank/score, pooling/classify, tokenize/detokenize and KServe v2 infer (see the table on
/// ``RequestScanner/scan(_:for:segments:)``). Same rules as the OpenAI scan: in place, no
/// allocation, strict JSON, known fields type-checked, unknown ones validated and skipped.
extension RequestScanner.Run {
    /// Handles one top-level member of a non-OpenAI body whose key has been read.
    mutating func otherMember(_ key: ByteRange, _ escaped: Bool, keyStart: Int) throws(E) {
        let len = c.keyLength(key, escaped)
        if len == 5 && c.keyIs(key, escaped, "model") {
            try model()
            return
        }
        switch schema {
        case .messages, .countTokens: try anthropicMember(key, escaped, len)
        case .responses: try responsesMember(key, escaped, len)
        case .rerank: try rerankMember(key, escaped, len)
        case .score: try scoreMember(key, escaped, len)
        case .pooling, .classify, .tokenize: try poolingMember(key, escaped, len)
        case .detokenize:
            if len == 6 && c.keyIs(key, escaped, "tokens") { try tokens() } else { try c.skipValue() }
        case .v2Infer, .chat, .completions, .embeddings:
            try c.skipValue()
        }
    }

    /// Checks that need the whole body.
    mutating func finishOther() throws(E) {
        if schema == .messages && result.maxTokens == nil {
            throw E(offset: result.closingBrace, kind: .missingField(.maxTokens))
        }
    }

    // MARK: leading fields

    /// Moves the segments from `first` on in front of those before it: a field that leads the
    /// prompt (`system`, `instructions`, a rerank `query`) but came later in the JSON. In place,
    /// by three reversals. When segments overflowed the order is best effort (what was dropped is
    /// gone); ``ScannedRequest/promptBytes`` counts everything either way.
    mutating func promote(from first: Int) {
        let count = result.segmentCount
        guard first > 0, first < count else { return }
        reverse(0, first)
        reverse(first, count)
        reverse(0, count)
    }

    mutating func reverse(_ from: Int, _ to: Int) {
        var i = from
        var j = to - 1
        while i < j {
            segments.swapAt(i, j)
            i += 1
            j -= 1
        }
    }

    // MARK: Anthropic Messages

    mutating func anthropicMember(_ key: ByteRange, _ escaped: Bool, _ len: Int) throws(E) {
        switch len {
        case 6 where c.keyIs(key, escaped, "system"):
            try system(key, escaped)
        case 6 where schema == .messages && c.keyIs(key, escaped, "stream"):
            result.stream = try bool(.stream)
        case 8 where c.keyIs(key, escaped, "messages"):
            try anthropicMessages()
        case 8 where schema == .messages && c.keyIs(key, escaped, "metadata"):
            try metadata()
        case 10 where schema == .messages && c.keyIs(key, escaped, "max_tokens"):
            // Required and an integer (`null` is not one).
            if try c.peek() == UInt8(ascii: "n") { throw try typeError(.maxTokens, .integer) }
            maxTokens = try count(.maxTokens)
        case 11 where schema == .messages && c.keyIs(key, escaped, "temperature"):
            result.temperature = try double(.temperature)
        default:
            try c.skipValue()
        }
    }

    /// `system`: a string or an array of text blocks (or null), framed as a role named by the key
    /// itself (the body has no role string for it), and moved in front of the messages.
    mutating func system(_ key: ByteRange, _ escaped: Bool) throws(E) {
        let ch = try c.peek()
        if ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return }
        guard ch == UInt8(ascii: "\"") || ch == UInt8(ascii: "[") else { throw try typeError(.system, .contentLike) }
        let first = result.segmentCount
        addSegment(key, .role, escaped)
        if ch == UInt8(ascii: "\"") {
            let (r, e) = try c.scanString()
            addSegment(r, .text, e)
        } else {
            try blocks(nested: false)
        }
        promote(from: first)
    }

    /// `metadata`: an object (or null) whose `user_id` (a string or null) is the end user.
    mutating func metadata() throws(E) {
        let ch = try c.peek()
        if ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return }
        guard ch == UInt8(ascii: "{") else { throw try typeError(.metadata, .object) }
        guard try c.enterObject() else { return }
        repeat {
            let (k, e) = try c.scanKey()
            if c.keyLength(k, e) == 7 && c.keyIs(k, e, "user_id") {
                if let (r, esc) = try string(.userID, nullable: true) {
                    result.user = r
                    result.userEscaped = esc
                } else {
                    result.user = nil
                }
            } else {
                try c.skipValue()
            }
        } while try c.objectNext()
    }

    /// `messages`: an array of `{role, content}` whose content is a string or content blocks.
    mutating func anthropicMessages() throws(E) {
        let ch = try c.peek()
        guard ch == UInt8(ascii: "[") else { throw try typeError(.messages, .array) }
        guard try c.enterArray() else { return }
        repeat {
            let m = try c.peek()
            guard m == UInt8(ascii: "{") else { throw try typeError(.message, .object) }
            result.messageCount += 1
            let first = result.segmentCount
            var sawRole = false
            guard try c.enterObject() else { continue }
            repeat {
                let (key, escaped) = try c.scanKey()
                let len = c.keyLength(key, escaped)
                if len == 4 && c.keyIs(key, escaped, "role") {
                    guard let (r, e) = try string(.role, nullable: false) else { continue }
                    if sawRole { continue }
                    sawRole = true
                    addRole(r, e, first: first)
                } else if len == 7 && c.keyIs(key, escaped, "content") {
                    let v = try c.peek()
                    if v == UInt8(ascii: "\"") {
                        let (r, e) = try c.scanString()
                        addSegment(r, .text, e)
                    } else if v == UInt8(ascii: "[") {
                        try blocks(nested: false)
                    } else {
                        throw try typeError(.content, .contentLike)
                    }
                } else {
                    try c.skipValue()
                }
            } while try c.objectNext()
        } while try c.arrayNext()
    }

    /// An array of content blocks, at the cursor's `[`: each block's `text` is prompt text, and a
    /// `tool_result`'s `content` (a string or, one level down, blocks with `text`) too.
    mutating func blocks(nested: Bool) throws(E) {
        guard try c.enterArray() else { return }
        repeat {
            let b = try c.peek()
            guard b == UInt8(ascii: "{") else { throw try typeError(.block, .object) }
            guard try c.enterObject() else { continue }
            repeat {
                let (key, escaped) = try c.scanKey()
                let len = c.keyLength(key, escaped)
                if len == 4 && c.keyIs(key, escaped, "text") {
                    if let (r, e) = try string(.text, nullable: true) { addSegment(r, .text, e) }
                } else if !nested && len == 7 && c.keyIs(key, escaped, "content") {
                    let v = try c.peek()
                    if v == UInt8(ascii: "\"") {
                        let (r, e) = try c.scanString()
                        addSegment(r, .text, e)
                    } else if v == UInt8(ascii: "[") {
                        try blocks(nested: true)
                    } else {
                        try c.skipValue()
                    }
                } else {
                    try c.skipValue()
                }
            } while try c.objectNext()
        } while try c.arrayNext()
    }

    // MARK: Responses API

    mutating func responsesMember(_ key: ByteRange, _ escaped: Bool, _ len: Int) throws(E) {
        switch len {
        case 4 where c.keyIs(key, escaped, "user"):
            if let (r, e) = try string(.user, nullable: true) { result.user = r; result.userEscaped = e } else { result.user = nil }
        case 5 where c.keyIs(key, escaped, "input"):
            try responsesInput()
        case 5 where c.keyIs(key, escaped, "store"):
            result.store = try bool(.store)
        case 6 where c.keyIs(key, escaped, "stream"):
            result.stream = try bool(.stream)
        case 10 where c.keyIs(key, escaped, "background"):
            result.background = try bool(.background)
        case 11 where c.keyIs(key, escaped, "temperature"):
            result.temperature = try double(.temperature)
        case 12 where c.keyIs(key, escaped, "instructions"):
            let ch = try c.peek()
            if ch == UInt8(ascii: "n") { _ = try c.scanLiteral(); return }
            guard ch == UInt8(ascii: "\"") else { throw try typeError(.instructions, .string) }
            let first = result.segmentCount
            addSegment(key, .role, escaped)
            let (r, e) = try c.scanString()
            addSegment(r, .text, e)
            promote(from: first)
        case 17 where c.keyIs(key, escaped, "max_output_tokens"):
            maxTokens = try count(.maxOutputTokens)
        case 20 where c.keyIs(key, escaped, "previous_response_id"):
            if let (r, e) = try string(.previousResponseID, nullable: true) {
                result.previousResponseID = r
                result.previousResponseIDEscaped = e
            } else {
                result.previousResponseID = nil
                result.previousResponseIDEscaped = false
            }
        default:
            try c.skipValue()
        }
    }

    /// `input`: a string (one user turn), or an array of items: messages (`role`, and `content`
    /// as a string or parts with `text`) and tool results (`output`).
    mutating func responsesInput() throws(E) {
        let ch = try c.peek()
        if ch == UInt8(ascii: "\"") {
            let (r, e) = try c.scanString()
            addSegment(r, .text, e)
            return
        }
        guard ch == UInt8(ascii: "[") else { throw try typeError(.input, .contentLike) }
        guard try c.enterArray() else { return }
        repeat {
            let m = try c.peek()
            guard m == UInt8(ascii: "{") else { throw try typeError(.item, .object) }
            result.messageCount += 1
            let first = result.segmentCount
            var sawRole = false
            guard try c.enterObject() else { continue }
            repeat {
                let (key, escaped) = try c.scanKey()
                let len = c.keyLength(key, escaped)
                if len == 4 && c.keyIs(key, escaped, "role") {
                    guard let (r, e) = try string(.role, nullable: false) else { continue }
                    if sawRole { continue }
                    sawRole = true
                    addRole(r, e, first: first)
                } else if len == 7 && c.keyIs(key, escaped, "content") {
                    let v = try c.peek()
                    if v == UInt8(ascii: "\"") {
                        let (r, e) = try c.scanString()
                        addSegment(r, .text, e)
                    } else if v == UInt8(ascii: "[") {
                        try blocks(nested: true)
                    } else {
                        try c.skipValue()
                    }
                } else if len == 6 && c.keyIs(key, escaped, "output") {
                    if try c.peek() == UInt8(ascii: "\"") {
                        let (r, e) = try c.scanString()
                        addSegment(r, .text, e)
                    } else {
                        try c.skipValue()
                    }
                } else {
                    try c.skipValue()
                }
            } while try c.objectNext()
        } while try c.arrayNext()
    }

    // MARK: rerank and score

    mutating func rerankMember(_ key: ByteRange, _ escaped: Bool, _ len: Int) throws(E) {
        switch len {
        case 5 where c.keyIs(key, escaped, "query"):
            let first = result.segmentCount
            try scoreInput(.query, list: false)
            promote(from: first)
        case 9 where c.keyIs(key, escaped, "documents"):
            try scoreInput(.documents, list: true)
        default:
            try c.skipValue()
        }
    }

    mutating func scoreMember(_ key: ByteRange, _ escaped: Bool, _ len: Int) throws(E) {
        var field: RequestScanError.Field?
        var leading = false
        switch len {
        case 5 where c.keyIs(key, escaped, "items"): field = .items
        case 6 where c.keyIs(key, escaped, "text_1"): field = .text1; leading = true
        case 6 where c.keyIs(key, escaped, "text_2"): field = .text2
        case 6 where c.keyIs(key, escaped, "data_1"): field = .data1; leading = true
        case 6 where c.keyIs(key, escaped, "data_2"): field = .data2
        case 7 where c.keyIs(key, escaped, "queries"): field = .queries; leading = true
        case 9 where c.keyIs(key, escaped, "documents"): field = .documents
        default: break
        }
        guard let f = field else { try c.skipValue(); return }
        let first = result.segmentCount
        try scoreInput(f, list: true)
        if leading { promote(from: first) }
    }

    /// A score input: a string (text), an object (multimodal content: validated, not read), or
    /// (when `list`) an array of those.
    mutating func scoreInput(_ f: RequestScanError.Field, list: Bool) throws(E) {
        let ch = try c.peek()
        switch ch {
        case UInt8(ascii: "\""):
            let (r, e) = try c.scanString()
            addSegment(r, .text, e)
        case UInt8(ascii: "{"):
            try c.skipValue()
        case UInt8(ascii: "[") where list:
            guard try c.enterArray() else { return }
            repeat {
                let el = try c.peek()
                if el == UInt8(ascii: "\"") {
                    let (r, e) = try c.scanString()
                    addSegment(r, .text, e)
                } else if el == UInt8(ascii: "{") {
                    try c.skipValue()
                } else {
                    throw try typeError(f, .promptLike)
                }
            } while try c.arrayNext()
        default:
            throw try typeError(f, list ? .promptLike : .string)
        }
    }

    // MARK: pooling, classify, tokenize, detokenize

    mutating func poolingMember(_ key: ByteRange, _ escaped: Bool, _ len: Int) throws(E) {
        switch len {
        case 4 where c.keyIs(key, escaped, "user"):
            if let (r, e) = try string(.user, nullable: true) { result.user = r; result.userEscaped = e } else { result.user = nil }
        case 5 where schema != .tokenize && c.keyIs(key, escaped, "input"):
            try promptLike(.input)
        case 6 where schema == .tokenize && c.keyIs(key, escaped, "prompt"):
            try promptLike(.prompt)
        case 8 where c.keyIs(key, escaped, "messages"):
            try messages()
        default:
            try c.skipValue()
        }
    }

    /// `tokens`: an array of non-negative integers (counted as token IDs).
    mutating func tokens() throws(E) {
        resetPrompt()
        let ch = try c.peek()
        guard ch == UInt8(ascii: "[") else { throw try typeError(.tokens, .tokenIDs) }
        guard try c.enterArray() else { return }
        repeat {
            let t = try c.peek()
            guard SWAR.isDigit(t) else { throw try typeError(.tokens, .tokenIDs) }
            let (r, isInteger) = try c.scanNumber()
            guard isInteger else { throw E(offset: r.start, kind: .wrongType(.tokens, expected: .tokenIDs)) }
            result.promptTokenIDs += 1
        } while try c.arrayNext()
    }
}

// MARK: paths outside the table

extension RequestScanner {
    /// The top-level `model` string of a JSON object body (the last one, as Python reads it),
    /// for a path outside ``LLMEndpoint``'s table that `passthrough: default_pool` sends on:
    /// nil when the body is not a JSON object, is malformed, or names no model as a string.
    /// Validates the whole body (strict JSON); allocation-free.
    public static func topLevelModel(_ body: UnsafeRawBufferPointer, maxDepth: Int = 64) -> (range: ByteRange, escaped: Bool)? {
        var c = JSONCursor(body, maxDepth: maxDepth)
        do throws(RequestScanError) {
            guard try c.peek() == UInt8(ascii: "{") else { return nil }
            var found: (range: ByteRange, escaped: Bool)? = nil
            if try c.enterObject() {
                repeat {
                    let (key, escaped) = try c.scanKey()
                    let isModel = c.keyIs(key, escaped, "model")
                    let next = try c.peek()
                    if isModel && next == UInt8(ascii: "\"") {
                        found = try c.scanString()
                    } else {
                        if isModel { found = nil }
                        try c.skipValue()
                    }
                } while try c.objectNext()
            }
            try c.expectEnd()
            return found
        } catch {
            return nil
        }
    }
}
