/// KV-cache headroom: endpoints with more free KV cache admit new sequences without preempting.
/// Formula: s = 1 − kvUse, kvUse clamped to [0, 1].
public struct KVUseScorer: RoutingScorer {
    public var name: String { "kv_use" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        for k in 0..<count { c[k].score += weight * (1 - min(max(c[k].kvUse, 0), 1)) }
    }
}
