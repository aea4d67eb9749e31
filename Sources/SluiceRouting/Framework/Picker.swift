/// Takes one candidate once the scores are in.
public protocol RoutingPicker: Sendable {
    var name: String { get }
    /// The chosen position in `c[0..<count]` (`count` ≥ 1).
    func pick(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, random: inout SplitMix64) -> Int
}
