/// Takes the candidate with the least cost (``PredictedTTFTScorer`` fills ``Candidate/cost``:
/// the predicted time to first token + the delay its prefill imposes on others). Candidates
/// alike to the best — within `band = max(absoluteBand, relativeBand × least)` of it and
/// expecting the same prefix hit —
/// are a tie, broken by rendezvous hashing of the prompt's first block (`argmax
/// mix(homeHash ⊕ firstBlock)`), so that replicas sharing nothing, whose learned coefficients
/// differ slightly, still place a new prefix alike; without prompt blocks, uniformly at random
/// from the caller's seeded generator.
///
/// A new prefix (no candidate holds any of it) goes to its home when the home's predicted TTFT
/// is within `homeBand × P × prefillPerToken` of the cheapest candidate's (a share of the
/// prefill the prompt costs, which its next hit saves), whatever the interference term says:
/// replicas that share nothing see different loads (each its own requests in flight), and a
/// prefix placed off its home by one replica and on it by another is prefilled and cached
/// twice; its first prefill delays the sequences decoding wherever it goes, its later turns
/// are what placement decides. An endpoint with a whole prefill queued is outside the band, so
/// a cold burst still spreads.
///
/// Only alike candidates tie: a holder of the prefix whose queue makes it a little slower
/// than an idle endpoint does not win by the band (a cold burst of one prefix spreads), and an
/// idle endpoint does not take a hit's request by it either.
public struct LeastTTFTPicker: RoutingPicker {
    public var name: String { "least_ttft" }
    /// Seconds within which two predictions are alike.
    public var absoluteBand: Double
    /// The same as a fraction of the least prediction.
    public var relativeBand: Double
    /// The band for a new prefix, as a share of its prefill.
    public var homeBand: Double

    public init(absoluteBand: Double = 0.001, relativeBand: Double = 0.05, homeBand: Double = 0.25) {
        self.absoluteBand = absoluteBand
        self.relativeBand = relativeBand
        self.homeBand = homeBand
    }

    public func pick(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext,
                     random: inout SplitMix64) -> Int {
        var best = 0
        for k in 1..<max(count, 1) where c[k].cost < c[best].cost { best = k }
        let blocks = c[best].prefixBlocks
        let request = context.request
        let limit = c[best].cost + max(absoluteBand, relativeBand * c[best].cost)
        var chosen = best
        if request.promptBlocks > 0 && !context.anyPrefix {
            // A new prefix: by predicted TTFT within the home band (see above).
            let band = max(absoluteBand, homeBand * Double(request.promptTokens) * Double(c[best].coefficients32.y))
            let ttftLimit = c[best].predictedTTFT + band
            var top = SplitMix64.mix(c[best].homeHash ^ request.firstBlock)
            for k in 0..<count where k != best && (c[k].cost <= limit || c[k].predictedTTFT <= ttftLimit) {
                let w = SplitMix64.mix(c[k].homeHash ^ request.firstBlock)
                if w > top {
                    top = w
                    chosen = k
                }
            }
        } else if request.promptBlocks > 0 {
            var top = SplitMix64.mix(c[best].homeHash ^ request.firstBlock)
            for k in 0..<count where k != best && c[k].cost <= limit && c[k].prefixBlocks == blocks {
                let w = SplitMix64.mix(c[k].homeHash ^ request.firstBlock)
                if w > top {
                    top = w
                    chosen = k
                }
            }
        } else {
            var ties: UInt64 = 1
            for k in 0..<count where k != best && c[k].cost <= limit && c[k].prefixBlocks == blocks {
                ties += 1
                if random.next() % ties == 0 { chosen = k }
            }
        }
        return chosen
    }
}
