/// Learns one endpoint's ``LatencyCoefficients`` online, from what the gateway observes of its
/// requests there and from the server's own histograms. Pure: observations and time (seconds,
/// any monotonic origin) are arguments; the gateway keeps one per endpoint behind a lock and
/// publishes ``coefficients`` for decisions to read.
///
/// Two robust line fits (``RobustLineFit``), seeded with the defaults:
///
/// ```
/// step:    gap  ≈ stepBase + stepPerSequence × D                 from inter-token gaps with D sequences decoding
/// prefill: ttft − steps(T) × step(D) ≈ overhead + prefillPerToken × T
///                                                                from first tokens after T prefill tokens (queued
///                                                                ahead + own uncached), steps(T) as in ``CostModel``
/// ```
///
/// The step fit is read first, so decode interference is taken out of a TTFT before the
/// prefill fit sees it. Samples fade with a half-life (default 60 s), outliers are clipped.
public struct LatencyLearner: Sendable, Equatable {
    public private(set) var step: RobustLineFit
    public private(set) var prefill: RobustLineFit
    public var chunkTokens: Int
    /// How far (× itself) the prefill-per-token seed may be off, as the prior's standard
    /// deviation (the others: 2×). The seed is `sluice sim`'s, but a small CPU vLLM prefills
    /// ~12× slower per token (250 µs against 20 µs): at 2× that was six standard deviations
    /// out, every early sample was clipped, and after 200 requests the fit had 140 µs a token
    /// (0.57×), the rest in the overhead — a miss predicted at ~100 ms took ~300, so the cost
    /// model split hot prefixes for a cheap-looking recompute. At 10× the fit is within 10 %
    /// after 20 requests (LearnerTests.learnsASlowEndpointWithinAFewRequests). The step fit
    /// and the overhead keep 2×: wider, early samples moved them far (while the other fit was
    /// still off) and the outlier and convergence tests failed.
    static let spread = 10.0

    public init(seed: LatencyCoefficients = .defaults, chunkTokens: Int = 2048, halfLife: Double = 60) {
        let s = seed.clamped(), lo = LatencyCoefficients.lower, hi = LatencyCoefficients.upper
        // Prior spreads: the prefill slope ``spread`` times its seed, the others twice theirs.
        step = RobustLineFit(a: s.stepBase, b: s.stepPerSequence, sigmaA: 2 * max(s.stepBase, 0.001), sigmaB: 2 * max(s.stepPerSequence, 0.0001),
                             residualScale: s.stepBase * 0.25, boundsA: lo.stepBase...hi.stepBase,
                             boundsB: lo.stepPerSequence...hi.stepPerSequence, halfLife: halfLife)
        prefill = RobustLineFit(a: s.overhead, b: s.prefillPerToken, sigmaA: 2 * max(s.overhead, 0.005), sigmaB: Self.spread * max(s.prefillPerToken, 1e-5),
                                residualScale: max(s.overhead, 0.001), boundsA: lo.overhead...hi.overhead,
                                boundsB: lo.prefillPerToken...hi.prefillPerToken, halfLife: halfLife)
        self.chunkTokens = max(1, chunkTokens)
    }

    public var coefficients: LatencyCoefficients {
        LatencyCoefficients(overhead: prefill.a, prefillPerToken: prefill.b, stepBase: step.a, stepPerSequence: step.b)
    }

    /// The steps a prefill of `tokens` spans, as the cost model counts them.
    @inline(__always) func steps(_ tokens: Int) -> Double {
        0.5 + Double(max(1, (max(0, tokens) + chunkTokens - 1) / chunkTokens))
    }

    /// A first token `seconds` after the request was sent, with `tokens` prefill tokens to do
    /// (queued ahead + its own uncached) and `decoding` sequences decoding at the time.
    public mutating func observeTTFT(_ seconds: Double, tokens: Int, decoding: Int, weight: Double = 1, at now: Double) {
        guard seconds.isFinite, seconds >= 0 else { return }
        let interference = steps(tokens) * coefficients.step(decoding: max(0, decoding))
        prefill.observe(x: Double(max(0, tokens)), y: seconds - interference, weight: weight, at: now)
    }

    /// The mean gap between output tokens (over `weight` gaps) while `decoding` sequences decoded.
    public mutating func observeGap(_ seconds: Double, decoding: Int, weight: Double = 1, at now: Double) {
        guard seconds.isFinite, seconds >= 0 else { return }
        step.observe(x: Double(max(0, decoding)), y: seconds, weight: weight, at: now)
    }
}

extension LatencyLearner {
    /// Sets both fits' outlier clip (tests: `.infinity` is plain recursive least squares).
    mutating func setClip(_ k: Double) {
        step.clip = k
        prefill.clip = k
    }
}
