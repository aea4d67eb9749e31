/// The cost model as a scorer: predicts this request's time to first token at each candidate
/// (``CostModel``: queued prefill ahead + its own uncached prefill, × the endpoint's learned
/// per-token cost, + decode interference) into ``Candidate/predictedTTFT``, and its cost (the
/// TTFT + the delay its prefill imposes on the sequences decoding there) into
/// ``Candidate/cost``, and scores the cost relative to the best.
/// Formula: s = least / cost, `least` the smallest cost among the candidates (1 for the
/// cheapest, → 0 for a far costlier one). ``LeastTTFTPicker`` reads the costs themselves.
public struct PredictedTTFTScorer: RoutingScorer {
    public var name: String { "predicted_ttft" }
    public var model: CostModel
    public init(model: CostModel = CostModel()) { self.model = model }

    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        var least = Double.infinity
        for k in 0..<count {
            let e = model.predict(c[k], context.request)
            c[k].predictedTTFT = e.ttft
            c[k].cost = e.cost
            least = min(least, e.cost)
        }
        for k in 0..<count { c[k].score += weight * (least / max(c[k].cost, 1e-12)) }
    }
}
