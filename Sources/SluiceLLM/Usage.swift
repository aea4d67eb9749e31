/// Token counts an OpenAI-compatible server reports in `usage`.
///
/// Contract: counts are as reported; a missing `total_tokens` is filled in as prompt + completion.
public struct Usage: Sendable, Equatable, Hashable {
    /// The largest count a scanner accepts (2^31 − 1: no model has a context that long, and
    /// sums of such counts cannot overflow).
    public static let maxCount = Int(Int32.max)

    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        // Saturating: counts come from outside (scanners bound them; this is the backstop).
        let (sum, overflow) = promptTokens.addingReportingOverflow(completionTokens)
        self.totalTokens = totalTokens ?? (overflow ? .max : sum)
    }
}
