/// What a decision returns: the chosen candidate, why, and what the cost model expects there
/// (the gateway's lease takes the tokens; the access log the prediction).
public struct RoutingDecision: Sendable, Equatable {
    /// The chosen candidate's position in the candidate buffer (its `index` is the pool position).
    public var position: Int
    public var reason: RouteReason
    /// Predicted seconds to the first token there; nil when the profile does not predict.
    public var predictedTTFT: Double?
    /// Prompt tokens expected cached there (the prefix index's match) and the rest: what the
    /// request adds to the endpoint's queued prefill (`EndpointRuntime.prefillStarted`).
    public var hitTokens: Int
    public var uncachedTokens: Int
    /// Prefill tokens the model counted queued ahead of it, and the sequences decoding there:
    /// the features the learner needs back with the observed TTFT.
    public var queuedTokens: Int
    public var decoding: Int

    public init(position: Int, reason: RouteReason, predictedTTFT: Double? = nil, hitTokens: Int = 0, uncachedTokens: Int = 0,
                queuedTokens: Int = 0, decoding: Int = 0) {
        self.position = position
        self.reason = reason
        self.predictedTTFT = predictedTTFT
        self.hitTokens = hitTokens
        self.uncachedTokens = uncachedTokens
        self.queuedTokens = queuedTokens
        self.decoding = decoding
    }
}
