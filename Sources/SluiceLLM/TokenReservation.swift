/// What a request is charged against token rate limits before it runs, and the arithmetic of
/// settling it afterwards. Every input comes from a client or a model server, so every sum and
/// product saturates instead of trapping (the scanners already bound each count to 2^31 − 1).
public enum TokenReservation {
    /// The prompt's tokens as estimated from the request: text bytes / 4, rounded up (about
    /// four bytes a token for English with common tokenizers), plus token IDs given directly.
    public static func promptTokens(_ r: ScannedRequest) -> Int {
        saturatingAdd(r.promptBytes / 4 + (r.promptBytes % 4 == 0 ? 0 : 1), r.promptTokenIDs)
    }

    /// The completion tokens a request may produce: `max_tokens` (or `defaultMaxTokens` when it
    /// names none: vLLM then generates up to the end of the context window) × `n`; none for
    /// embeddings.
    public static func completionTokens(_ r: ScannedRequest, endpoint: OpenAIEndpoint, defaultMaxTokens: Int) -> Int {
        if endpoint == .embeddings { return 0 }
        return saturatingMultiply(r.maxTokens ?? max(0, defaultMaxTokens), max(1, r.n ?? 1))
    }

    /// Prompt plus completion.
    public static func estimate(_ r: ScannedRequest, endpoint: OpenAIEndpoint, defaultMaxTokens: Int) -> Int {
        saturatingAdd(promptTokens(r), completionTokens(r, endpoint: endpoint, defaultMaxTokens: defaultMaxTokens))
    }

    /// The completion tokens any endpoint of the table may produce: as above for those that
    /// generate (`max_tokens`, Anthropic's `max_tokens`, the Responses API's `max_output_tokens`,
    /// or `defaultMaxTokens`), none for the others (pooling, tokenizing, counting, v2 infer).
    public static func completionTokens(_ r: ScannedRequest, for endpoint: LLMEndpoint, defaultMaxTokens: Int) -> Int {
        guard endpoint.traits.producesTokens else { return 0 }
        return saturatingMultiply(r.maxTokens ?? max(0, defaultMaxTokens), max(1, r.n ?? 1))
    }

    /// Prompt plus completion, for any endpoint of the table.
    public static func estimate(_ r: ScannedRequest, for endpoint: LLMEndpoint, defaultMaxTokens: Int) -> Int {
        saturatingAdd(promptTokens(r), completionTokens(r, for: endpoint, defaultMaxTokens: defaultMaxTokens))
    }

    /// What a finished request is charged: the usage the model server reported; without one
    /// (the client left, the stream was cut, an error answer) at least the reservation, or the
    /// prompt estimate plus the tokens relayed if that is more, so leaving early never costs
    /// less than staying.
    public static func charge(reserved: Int, promptEstimate: Int, usage: Usage?, relayedTokens: Int) -> Int {
        if let u = usage { return saturatingAdd(u.promptTokens, u.completionTokens) }
        return max(reserved, saturatingAdd(promptEstimate, relayedTokens))
    }

    @inlinable
    public static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
        let (v, o) = a.addingReportingOverflow(b)
        return o ? (b > 0 ? .max : .min) : v
    }

    @inlinable
    public static func saturatingMultiply(_ a: Int, _ b: Int) -> Int {
        let (v, o) = a.multipliedReportingOverflow(by: b)
        return o ? ((a < 0) != (b < 0) ? .min : .max) : v
    }
}
