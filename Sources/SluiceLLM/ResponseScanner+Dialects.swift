/// Which API a response body or SSE event comes from: what ``ResponseScanner`` looks for.
public enum ResponseDialect: UInt8, Sendable {
    /// OpenAI chat/completions (and every OpenAI-shaped JSON answer): `choices`, `usage`, `error`.
    case openAI
    /// Anthropic Messages: `message_start` (`message.usage`), `content_block_delta` (`delta.text`,
    /// `delta.thinking`, `delta.partial_json`), `message_delta` (`delta.stop_reason`, `usage`),
    /// `error`; a JSON body's `usage` and `stop_reason`.
    case anthropic
    /// The Responses API: events with a string `delta` (`response.output_text.delta` and the
    /// other `*.delta` events), `response.created`/`completed`/`incomplete`/`failed` with their
    /// `response` object (`id`, `status`, `usage`), `error`; a JSON body is the response object.
    case responses

    /// The dialect of an endpoint's answers.
    public init(_ stream: LLMEndpoint.StreamFormat) {
        switch stream {
        case .anthropic: self = .anthropic
        case .responses: self = .responses
        case .openAI, .none: self = .openAI
        }
    }
}

extension ResponseScanner {
    // MARK: Anthropic

    static func anthropicObject(_ c: inout JSONCursor) throws(E) -> ScannedResponse? {
        guard try c.peek() == UInt8(ascii: "{") else { return nil }
        var r = ScannedResponse()
        guard try c.enterObject() else { return r }
        repeat {
            let (key, escaped) = try c.scanKey()
            switch c.keyLength(key, escaped) {
            case 4 where c.keyIs(key, escaped, "type"):
                if try c.peek() == UInt8(ascii: "\"") {
                    let (range, esc) = try c.scanString()
                    if !esc && Bytes.equal(range.bytes(in: UnsafeRawBufferPointer(start: c.p, count: c.end)), "error") { r.hasError = true }
                } else {
                    try c.skipValue()
                }
            case 5 where c.keyIs(key, escaped, "usage"):
                try usage(&c, &r)
            case 5 where c.keyIs(key, escaped, "delta"):
                try anthropicDelta(&c, &r)
            case 5 where c.keyIs(key, escaped, "error"):
                let ch = try c.peek()
                try c.skipValue()
                if ch != UInt8(ascii: "n") { r.hasError = true }
            case 7 where c.keyIs(key, escaped, "message"):
                // message_start: the message so far, with the input's usage.
                if try c.peek() == UInt8(ascii: "{"), let inner = try anthropicObject(&c) {
                    if inner.usage != nil { r.usage = inner.usage; r.usageFields = inner.usageFields }
                    if r.finishReason == nil { r.finishReason = inner.finishReason }
                    if inner.hasError { r.hasError = true }
                } else {
                    try c.skipValue()
                }
            case 11 where c.keyIs(key, escaped, "stop_reason"):
                try stopReason(&c, &r)
            default:
                try c.skipValue()
            }
        } while try c.objectNext()
        return r
    }

    static func anthropicDelta(_ c: inout JSONCursor, _ r: inout ScannedResponse) throws(E) {
        guard try c.peek() == UInt8(ascii: "{") else { try c.skipValue(); return }
        guard try c.enterObject() else { return }
        repeat {
            let (key, escaped) = try c.scanKey()
            switch c.keyLength(key, escaped) {
            case 4 where c.keyIs(key, escaped, "text"),
                 8 where c.keyIs(key, escaped, "thinking"),
                 12 where c.keyIs(key, escaped, "partial_json"):
                if try nonEmptyString(&c) { r.hasToken = true }
            case 11 where c.keyIs(key, escaped, "stop_reason"):
                try stopReason(&c, &r)
            default:
                try c.skipValue()
            }
        } while try c.objectNext()
    }

    /// Anthropic's `stop_reason` as a finish reason (the first one wins, as for `choices`).
    static func stopReason(_ c: inout JSONCursor, _ r: inout ScannedResponse) throws(E) {
        guard try c.peek() == UInt8(ascii: "\"") else { try c.skipValue(); return }
        let (range, esc) = try c.scanString()
        guard r.finishReason == nil else { return }
        let b = range.bytes(in: UnsafeRawBufferPointer(start: c.p, count: c.end))
        if esc { r.finishReason = .other }
        else if Bytes.equal(b, "end_turn") || Bytes.equal(b, "stop_sequence") { r.finishReason = .stop }
        else if Bytes.equal(b, "max_tokens") { r.finishReason = .length }
        else if Bytes.equal(b, "tool_use") { r.finishReason = .toolCalls }
        else { r.finishReason = .other }
    }

    // MARK: Responses API

    static func responsesObject(_ c: inout JSONCursor) throws(E) -> ScannedResponse? {
        guard try c.peek() == UInt8(ascii: "{") else { return nil }
        var r = ScannedResponse()
        try responseMembers(&c, &r, topLevel: true)
        return r
    }

    /// The members of an event (`topLevel`) or of a response object: `id`, `status`, `usage`,
    /// `error`, `incomplete_details` of the response; `type`, `delta` and the nested `response`
    /// of an event (a JSON body is a response object, read the same way).
    static func responseMembers(_ c: inout JSONCursor, _ r: inout ScannedResponse, topLevel: Bool) throws(E) {
        guard try c.enterObject() else { return }
        var status: FinishReason?
        var failed = false
        var incomplete = FinishReason.length
        repeat {
            let (key, escaped) = try c.scanKey()
            switch c.keyLength(key, escaped) {
            case 2 where c.keyIs(key, escaped, "id"):
                if try c.peek() == UInt8(ascii: "\"") {
                    r.responseID = try c.scanString().range
                } else {
                    try c.skipValue()
                }
            case 4 where topLevel && c.keyIs(key, escaped, "type"):
                if try c.peek() == UInt8(ascii: "\"") {
                    let (range, esc) = try c.scanString()
                    let b = range.bytes(in: UnsafeRawBufferPointer(start: c.p, count: c.end))
                    if !esc && (Bytes.equal(b, "error") || Bytes.equal(b, "response.failed")) { r.hasError = true }
                } else {
                    try c.skipValue()
                }
            case 5 where topLevel && c.keyIs(key, escaped, "delta"):
                if try nonEmptyString(&c) { r.hasToken = true }
            case 5 where c.keyIs(key, escaped, "usage"):
                try usage(&c, &r)
            case 5 where c.keyIs(key, escaped, "error"):
                let ch = try c.peek()
                try c.skipValue()
                if ch != UInt8(ascii: "n") { r.hasError = true }
            case 6 where c.keyIs(key, escaped, "status"):
                if try c.peek() == UInt8(ascii: "\"") {
                    let (range, esc) = try c.scanString()
                    let b = range.bytes(in: UnsafeRawBufferPointer(start: c.p, count: c.end))
                    if esc { status = nil }
                    else if Bytes.equal(b, "completed") { status = .stop }
                    else if Bytes.equal(b, "incomplete") { status = .length }
                    else if Bytes.equal(b, "cancelled") { status = .abort }
                    else if Bytes.equal(b, "failed") { failed = true; status = nil }
                    else { status = nil }
                } else {
                    try c.skipValue()
                }
            case 8 where topLevel && c.keyIs(key, escaped, "response"):
                if try c.peek() == UInt8(ascii: "{") {
                    try responseMembers(&c, &r, topLevel: false)
                } else {
                    try c.skipValue()
                }
            case 18 where c.keyIs(key, escaped, "incomplete_details"):
                incomplete = try incompleteReason(&c)
            default:
                try c.skipValue()
            }
        } while try c.objectNext()
        if failed { r.hasError = true }
        if let s = status { r.finishReason = s == .length ? incomplete : s }
    }

    /// `incomplete_details.reason`: `content_filter` or (anything else) the output limit.
    static func incompleteReason(_ c: inout JSONCursor) throws(E) -> FinishReason {
        guard try c.peek() == UInt8(ascii: "{") else { try c.skipValue(); return .length }
        var reason = FinishReason.length
        guard try c.enterObject() else { return reason }
        repeat {
            let (key, escaped) = try c.scanKey()
            if c.keyLength(key, escaped) == 6 && c.keyIs(key, escaped, "reason"), try c.peek() == UInt8(ascii: "\"") {
                let (range, _) = try c.scanString()
                if Bytes.equal(range.bytes(in: UnsafeRawBufferPointer(start: c.p, count: c.end)), "content_filter") { reason = .contentFilter }
            } else {
                try c.skipValue()
            }
        } while try c.objectNext()
        return reason
    }
}
