/// The cost model as a scorer: predicts this request's time to first token at each candidate
/// (``CostModel``: queued prefill ahead + its own uncached prefill, × the endpoint's learned
/// per-token cost, + decode interference) into ``Candidate/predictedTTFT``, and scores it
/// relative to the best.
/// Formula: s = least / ttft, `least` the smallest prediction among the candidates (1 for the
/// fastest, → 0 for a far slower one). ``LeastTTFTPicker`` reads the predictions themselves.
public struct PredictedTTFTScorer: RoutingScorer {
    public var name: String { "predicted_ttft" }
    public var model: CostModel
    public init(model: CostModel = CostModel()) { self.model = model }

    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        var least = Double.infinity
        for k in 0..<count {
            let t = model.predict(c[k], context.request).ttft
            c[k].predictedTTFT = t
            least = min(least, t)
        }
        for k in 0..<count { c[k].score += weight * (least / max(c[k].predictedTTFT, 1e-12)) }
    }
}
