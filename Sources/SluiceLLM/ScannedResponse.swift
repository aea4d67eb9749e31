/// What ``ResponseScanner`` found in a response body or one SSE `data:` payload.
public struct ScannedResponse: Sendable, Equatable {
    /// `usage`, when present and not null (Anthropic's `input_tokens` + cache reads and writes as
    /// prompt tokens, `output_tokens` as completion tokens; the Responses API's likewise).
    public var usage: Usage?
    /// Which counts `usage` really held (the others read as 0); ``UsageTally`` merges by them.
    public var usageFields: Usage.Fields = []
    /// Responses API: the response's `id` (top level of a JSON body, `response.id` in stream
    /// events) as offsets into the bytes scanned (raw string contents), to remember which server
    /// holds it. An ``SSEScanner`` copies it into ``SSEScanner/responseID`` (the event's bytes do
    /// not outlive the read) and leaves it nil in the event. Nil in other dialects.
    public var responseID: ByteRange?
    /// The first non-null `choices[].finish_reason`; Anthropic's `stop_reason` (`end_turn` and
    /// `stop_sequence` → stop, `max_tokens` → length, `tool_use` → toolCalls); the Responses
    /// API's `status` (`completed` → stop, `incomplete` → length or contentFilter, `cancelled` → abort).
    public var finishReason: FinishReason?
    /// Number of elements of `choices`; nil when there is no `choices` array.
    public var choiceCount: Int?
    /// Some choice carries generated output: a non-empty `delta.content`, `delta.reasoning_content`
    /// (or `delta.reasoning`), a non-empty `delta.tool_calls`, or a non-empty `text`. For a stream
    /// this marks the first token; `message` (non-streaming) is not looked at.
    public var hasToken = false
    /// The body has a non-null top-level `error` (vLLM reports failures mid-stream this way), or
    /// is an event of type `error` or `response.failed`, or a response whose status is `failed`.
    public var hasError = false

    public init() {}

    /// A usage-only stream chunk: `"choices":[]` together with `usage` (what `include_usage` adds).
    public var isUsageOnly: Bool { choiceCount == 0 && usage != nil }
}

/// A response id copied out of the stream it was read from (the bytes of an SSE event do not
/// outlive the read that delivered them), inline: no allocation, and kept in the
/// ``SSEScanner`` rather than in every event (events are copied several times on their way).
/// Raw JSON string contents (escapes kept; ids are ASCII in practice: vLLM's are
/// `resp_` + 16 hex digits, OpenAI's `resp_` + 48).
public struct ResponseID: Sendable, Hashable, CustomStringConvertible {
    public static let capacity = 64
    var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    public private(set) var count: Int

    /// A copy of `bytes`; nil when longer than ``capacity``.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= Self.capacity else { return nil }
        count = bytes.count
        withUnsafeMutableBytes(of: &storage) { s in
            for i in 0..<bytes.count { s[i] = bytes[i] }
        }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public static func == (a: ResponseID, b: ResponseID) -> Bool { a.count == b.count && a.bytes == b.bytes }
    public func hash(into h: inout Hasher) { withUnsafeBytes { h.combine(bytes: $0) } }
}
