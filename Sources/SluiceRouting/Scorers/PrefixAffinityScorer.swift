/// Prefix-cache affinity: the share of the prompt's leading blocks the prefix index says were
/// sent to the endpoint (so vLLM likely holds them in its prefix cache).
/// Formula: s = prefixBlocks / promptBlocks (0 without blocks).
public struct PrefixAffinityScorer: RoutingScorer {
    public var name: String { "prefix_affinity" }
    public init() {}
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        let blocks = context.request.promptBlocks
        guard blocks > 0, context.anyPrefix else { return }
        let scale = weight / Double(blocks)
        for k in 0..<count where c[k].prefixBlocks > 0 { c[k].score += Double(min(c[k].prefixBlocks, blocks)) * scale }
    }
}
