/// Gateway-local load: the requests this gateway has in flight to the endpoint, which it knows
/// exactly and at once (a scrape lags by up to an interval).
/// Formula: s = 1 − (inflight − minInflight) / (maxInflight − minInflight); 1 for all when equal.
public struct InflightLoadScorer: RoutingScorer {
    public var name: String { "inflight" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        let range = context.maxInflight - context.minInflight
        guard range > 0 else {
            for k in 0..<count { c[k].score += weight }
            return
        }
        let scale = weight / Double(range)
        for k in 0..<count { c[k].score += weight - Double(c[k].inflight - context.minInflight) * scale }
    }
}
