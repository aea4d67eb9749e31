/// Takes the highest score; equal best scores are broken uniformly at random (reservoir
/// sampling over the ties, one draw per tie) from the caller's seeded generator.
public struct BestScorePicker: RoutingPicker {
    public var name: String { "best_score" }
    public init() {}
    public func pick(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext,
                     random: inout SplitMix64) -> Int {
        var best = 0
        var ties: UInt64 = 1
        for k in 1..<max(count, 1) {
            let s = c[k].score
            if s > c[best].score {
                best = k
                ties = 1
            } else if s == c[best].score {
                ties += 1
                if random.next() % ties == 0 { best = k }
            }
        }
        return best
    }
}
