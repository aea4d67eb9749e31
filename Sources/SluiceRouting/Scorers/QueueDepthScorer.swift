/// Queue depth: the endpoint's load (the gateway's in-flight requests there plus vLLM's waiting
/// queue), scaled over the candidates' range as the Gateway API Inference Extension does.
/// Formula: s = 1 − (load − minLoad) / (maxLoad − minLoad); 1 for all when the loads are equal.
public struct QueueDepthScorer: RoutingScorer {
    public var name: String { "queue_depth" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        let range = context.maxLoad - context.minLoad
        guard range > 0 else {
            for k in 0..<count { c[k].score += weight }
            return
        }
        let scale = weight / Double(range)
        for k in 0..<count { c[k].score += weight - Double(c[k].load - context.minLoad) * scale }
    }
}
