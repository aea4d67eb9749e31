/// Ranks candidates: adds `weight × s` to each candidate's score, with `s` in [0, 1] (1 best).
/// Like a filter, it sees the whole list at once.
public protocol RoutingScorer: Sendable {
    /// The config name (`pools[].routing.weights`).
    var name: String { get }
    func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double)
}

extension RoutingScorer {
    /// Adds `weight × (1 − (v − least) / (most − least))` to each candidate, `v = value(candidate)`:
    /// 1 for the least, 0 for the most, scaled over the candidates' range (the Gateway API
    /// Inference Extension's load scaling); `weight` for all when they are equal.
    @inline(__always)
    func addScaledInverse(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, least: Int, most: Int, weight: Double,
                          _ value: (Candidate) -> Int) {
        let range = most - least
        guard range > 0 else {
            for k in 0..<count { c[k].score += weight }
            return
        }
        let scale = weight / Double(range)
        for k in 0..<count { c[k].score += weight - Double(value(c[k]) - least) * scale }
    }
}

/// What scorers share about one decision, computed once over the candidates that passed the
/// filters.
public struct DecisionContext: Sendable, Equatable {
    public var request: RoutingRequest
    public var minLoad = Int.max, maxLoad = Int.min
    public var minInflight = Int.max, maxInflight = Int.min
    /// Whether any candidate holds leading blocks of the prompt.
    public var anyPrefix = false
    /// The position of the prefix's home: the candidate with the highest rendezvous weight
    /// `mix(homeHash ^ firstBlock)`, -1 without prefix blocks. Every replica computes it alike.
    public var home = -1

    /// With `loads` false only ``anyPrefix`` is worked out (the cost model's scorer and picker
    /// read nothing else, and the rest is a mix and four comparisons per candidate).
    public init(request: RoutingRequest, _ c: UnsafeMutableBufferPointer<Candidate>, count: Int, loads: Bool = true) {
        self.request = request
        if !loads {
            for k in 0..<count where c[k].prefixBlocks > 0 {
                anyPrefix = true
                break
            }
            return
        }
        var top: UInt64 = 0
        for k in 0..<count {
            let x = c[k]
            minLoad = min(minLoad, x.load)
            maxLoad = max(maxLoad, x.load)
            minInflight = min(minInflight, x.inflight)
            maxInflight = max(maxInflight, x.inflight)
            if x.prefixBlocks > 0 { anyPrefix = true }
            if request.promptBlocks > 0 {
                let w = SplitMix64.mix(x.homeHash ^ request.firstBlock)
                if home < 0 || w > top {
                    top = w
                    home = k
                }
            }
        }
    }
}
