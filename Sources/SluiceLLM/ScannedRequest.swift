/// What ``RequestScanner`` found in a request body: offsets into the body and small values, no heap.
///
/// Contract: every `ByteRange` indexes the body that was scanned. Optional values are nil when the
/// field is absent or JSON `null`. When a key appears twice, the last occurrence wins (as in
/// Python's `json`, which vLLM uses), except that prompt segments from an earlier duplicate of the
/// prompt field are discarded with it.
public struct ScannedRequest: Sendable, Equatable {
    /// The largest `max_tokens`, `max_completion_tokens` or `n` accepted (2^31 − 1).
    public static let maxCount = Int(Int32.max)

    /// Contents of the `model` string (raw, between the quotes); empty without ``hasModel``.
    public var model = ByteRange(start: 0, end: 0)
    /// The body names a model. False only where the model is optional (``LLMEndpoint/Traits/modelRequired``)
    /// and it is absent or `null`: the server's (the pool's default) model applies.
    public var hasModel = false
    /// True if `model` contains backslash escapes (decode with ``JSONString`` before comparing).
    public var modelEscaped = false

    public var stream: Bool?
    /// `stream_options.include_usage`.
    public var includeUsage: Bool?
    /// The `include_usage` value's literal (`true`, `false` or `null`), when present.
    public var includeUsageValue: ByteRange?
    /// The whole `stream_options` value (from `{` to `}` inclusive, or `null`).
    public var streamOptionsValue: ByteRange?
    /// The whole `stream_options` member: from its key's opening quote to the end of its value, so
    /// it can be replaced in place (the separating comma is not included).
    public var streamOptionsMember: ByteRange?
    /// Offset of the top-level object's closing `}`; insert new members just before it.
    public var closingBrace = 0
    /// Number of top-level members (0 means an inserted member needs no leading comma).
    public var memberCount = 0

    public var temperature: Double?
    public var seed: Int64?
    /// In 1...``maxCount`` when present.
    public var n: Int?
    /// `max_completion_tokens` if present, else `max_tokens` (vLLM's precedence); the Responses
    /// API's `max_output_tokens`; in 1...``maxCount``.
    public var maxTokens: Int?
    /// Contents of the `user` string (Anthropic: `metadata.user_id`).
    public var user: ByteRange?
    public var userEscaped = false

    /// Responses API: contents of `previous_response_id` (the follow-up must reach the server
    /// that produced that response).
    public var previousResponseID: ByteRange?
    public var previousResponseIDEscaped = false
    /// Responses API: `store` (vLLM's default: true) and `background`.
    public var store: Bool?
    public var background: Bool?

    /// Number of chat messages (0 for other endpoints).
    public var messageCount = 0
    /// Raw bytes of all prompt text (roles and text segments), counted even past segment overflow.
    public var promptBytes = 0
    /// Number of token IDs given directly in `prompt`/`input` (token-array prompts).
    public var promptTokenIDs = 0
    /// Number of segments written to the caller's buffer.
    public var segmentCount = 0
    /// True if there were more segments than the buffer holds; those written are still valid and in order.
    public var segmentsOverflowed = false

    public init() {}
}
