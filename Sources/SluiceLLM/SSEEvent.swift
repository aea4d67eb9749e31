/// One server-sent event found by ``SSEScanner``, with what its `data:` payload says.
///
/// Contract: `start..<end` are absolute offsets in the response body stream (counted from its first
/// byte across all chunks). Consecutive events tile the stream: an event starts where the previous
/// one ended, so blank lines before an event belong to it. `end` is just past the line end of the
/// blank line that terminated it; with CRLF line ends that is its CR, and the LF starts the next
/// event's range (completing at the CR means an event is never held back waiting for one more byte,
/// and keeps ranges the same however the stream is split).
public struct SSEEvent: Sendable, Equatable {
    public var start: Int
    public var end: Int
    /// False when the event was too large to keep for inspection (or had several `data:` lines):
    /// none of the fields below is meaningful then; relay it untouched.
    public var inspected: Bool
    /// Number of `data:` lines (0 for a comment-only keep-alive).
    public var dataLines: Int
    /// The payload is `[DONE]`.
    public var isDone: Bool
    /// The payload is not valid JSON (and not `[DONE]`).
    public var isMalformed: Bool
    /// What the payload says (choices, usage, finish reason, error).
    public var payload: ScannedResponse

    public init(start: Int, end: Int, inspected: Bool = true, dataLines: Int = 0, isDone: Bool = false,
                isMalformed: Bool = false, payload: ScannedResponse = ScannedResponse()) {
        self.start = start
        self.end = end
        self.inspected = inspected
        self.dataLines = dataLines
        self.isDone = isDone
        self.isMalformed = isMalformed
        self.payload = payload
    }

    public var range: ByteRange { ByteRange(start: start, end: end) }
    /// The event carries generated output (the first one marks time to first token).
    public var hasToken: Bool { payload.hasToken }
    public var usage: Usage? { payload.usage }
    public var finishReason: FinishReason? { payload.finishReason }
    /// A `"choices":[]` chunk with `usage`: the one to strip when the gateway added `include_usage`.
    public var isUsageOnly: Bool { payload.isUsageOnly }
    public var hasError: Bool { payload.hasError }
}
