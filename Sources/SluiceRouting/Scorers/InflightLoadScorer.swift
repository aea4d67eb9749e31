/// Gateway-local load: the requests this gateway has in flight to the endpoint, which it knows
/// exactly and at once (a scrape lags by up to an interval).
/// Formula: s = 1 − (inflight − minInflight) / (maxInflight − minInflight); 1 for all when equal.
public struct InflightLoadScorer: RoutingScorer {
    public var name: String { "inflight" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        addScaledInverse(c, count: count, least: context.minInflight, most: context.maxInflight, weight: weight) { $0.inflight }
    }
}
