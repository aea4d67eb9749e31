/// The prefix's home: where rendezvous hashing of the prompt's first block puts it among the
/// candidates, `argmax mix(homeHash ⊕ firstBlock)`. Every replica computes the same home while
/// sharing nothing, so they send a new prefix to the same endpoint.
/// Formula: s = 1 for the home, 0 elsewhere; with `newPrefixesOnly`, only while no candidate
/// holds any of the prompt's blocks (after that, prefix affinity and load decide).
public struct PrefixHomeScorer: RoutingScorer {
    public var name: String { "prefix_home" }
    public var newPrefixesOnly: Bool
    public init(newPrefixesOnly: Bool = false) { self.newPrefixesOnly = newPrefixesOnly }
    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        guard context.home >= 0, !(newPrefixesOnly && context.anyPrefix) else { return }
        c[context.home].score += weight
    }
}
