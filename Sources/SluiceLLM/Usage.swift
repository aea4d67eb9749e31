/// Token counts an OpenAI-compatible server reports in `usage`.
///
/// Contract: counts are as reported; a missing `total_tokens` is filled in as prompt + completion.
public struct Usage: Sendable, Equatable, Hashable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens + completionTokens
    }
}
