/// What ``ResponseScanner`` found in a response body or one SSE `data:` payload.
public struct ScannedResponse: Sendable, Equatable {
    /// `usage`, when present and not null.
    public var usage: Usage?
    /// The first non-null `choices[].finish_reason`.
    public var finishReason: FinishReason?
    /// Number of elements of `choices`; nil when there is no `choices` array.
    public var choiceCount: Int?
    /// Some choice carries generated output: a non-empty `delta.content`, `delta.reasoning_content`
    /// (or `delta.reasoning`), a non-empty `delta.tool_calls`, or a non-empty `text`. For a stream
    /// this marks the first token; `message` (non-streaming) is not looked at.
    public var hasToken = false
    /// The body has a non-null top-level `error` (vLLM reports failures mid-stream this way).
    public var hasError = false

    public init() {}

    /// A usage-only stream chunk: `"choices":[]` together with `usage` (what `include_usage` adds).
    public var isUsageOnly: Bool { choiceCount == 0 && usage != nil }
}
