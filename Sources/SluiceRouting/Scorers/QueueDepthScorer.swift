/// Queue depth: the endpoint's load (the gateway's in-flight requests there plus vLLM's waiting
/// queue), scaled over the candidates' range as the Gateway API Inference Extension does.
/// Formula: s = 1 − (load − minLoad) / (maxLoad − minLoad); 1 for all when the loads are equal.
public struct QueueDepthScorer: RoutingScorer {
    public var name: String { "queue_depth" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        addScaledInverse(c, count: count, least: context.minLoad, most: context.maxLoad, weight: weight) { $0.load }
    }
}
