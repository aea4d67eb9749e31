/// One endpoint's latency coefficients, in seconds: what the cost model (``CostModel``)
/// multiplies and the learner (``LatencyLearner``) fits from observed TTFTs and token gaps.
///
/// An engine step (vLLM's continuous batching) lasts `stepBase + stepPerSequence × D` with `D`
/// sequences decoding, plus `prefillPerToken` for every prompt token it prefills; a first token
/// also pays `overhead` (HTTP, tokenisation, scheduling) once.
public struct LatencyCoefficients: Sendable, Equatable {
    /// Fixed part of every time to first token.
    public var overhead: Double
    /// Prefill time per uncached prompt token.
    public var prefillPerToken: Double
    /// An engine step with nothing to decode.
    public var stepBase: Double
    /// What each decoding sequence adds to a step.
    public var stepPerSequence: Double

    @inlinable
    public init(overhead: Double, prefillPerToken: Double, stepBase: Double, stepPerSequence: Double) {
        self.overhead = overhead
        self.prefillPerToken = prefillPerToken
        self.stepBase = stepBase
        self.stepPerSequence = stepPerSequence
    }

    /// Seeds before anything is observed: a small model on the reference CPU machine
    /// (../shared/vllm-cpu: ~3 ms a step alone, ~9 ms to a short prompt's first token), which is
    /// also what `sluice sim` models (2 ms a step + 0.15 ms a sequence, 20 µs a prompt token).
    /// Only the ratios between endpoints matter for a pick, and the learner replaces them
    /// within a few dozen requests.
    public static let defaults = LatencyCoefficients(overhead: 0.001, prefillPerToken: 20e-6, stepBase: 0.002,
                                                     stepPerSequence: 0.00015)
    /// The range each coefficient is kept in (a learner fed garbage cannot leave it): from a
    /// large GPU (0.01 µs a token) to a very slow CPU (10 ms a token).
    public static let lower = LatencyCoefficients(overhead: 0, prefillPerToken: 1e-8, stepBase: 1e-5, stepPerSequence: 0)
    public static let upper = LatencyCoefficients(overhead: 2, prefillPerToken: 0.01, stepBase: 2, stepPerSequence: 0.1)

    /// Each coefficient clamped to [``lower``, ``upper``] (NaN goes to the default).
    public func clamped() -> LatencyCoefficients {
        func c(_ v: Double, _ lo: Double, _ hi: Double, _ d: Double) -> Double { v.isNaN ? d : min(max(v, lo), hi) }
        let lo = Self.lower, hi = Self.upper, d = Self.defaults
        return LatencyCoefficients(overhead: c(overhead, lo.overhead, hi.overhead, d.overhead),
                                   prefillPerToken: c(prefillPerToken, lo.prefillPerToken, hi.prefillPerToken, d.prefillPerToken),
                                   stepBase: c(stepBase, lo.stepBase, hi.stepBase, d.stepBase),
                                   stepPerSequence: c(stepPerSequence, lo.stepPerSequence, hi.stepPerSequence, d.stepPerSequence))
    }

    /// One engine step with `decoding` sequences decoding.
    @inlinable @inline(__always) public func step(decoding: Int) -> Double { stepBase + stepPerSequence * Double(decoding) }
}
