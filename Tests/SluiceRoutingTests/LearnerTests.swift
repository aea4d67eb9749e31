@testable import SluiceRouting
import Testing

/// The online learner (``LatencyLearner``, ``RobustLineFit``): it converges on synthetic data,
/// shrugs off outliers, follows a change, and stays in bounds. Time and noise are injected.
@Suite struct LearnerTests {
    /// A hidden endpoint: TTFT and gaps from known coefficients, with ±`noise` relative jitter.
    struct Truth {
        var k: LatencyCoefficients
        var chunk = 2048
        func ttft(tokens: Int, decoding: Int) -> Double {
            k.overhead + k.prefillPerToken * Double(tokens)
                + (0.5 + Double(max(1, (tokens + chunk - 1) / chunk))) * k.step(decoding: decoding)
        }
        func gap(decoding: Int) -> Double { k.step(decoding: decoding) }
    }

    static func close(_ a: Double, _ b: Double, _ tolerance: Double) -> Bool { abs(a - b) <= tolerance * abs(b) }

    /// Feeds `n` requests (one TTFT and one mean gap each, 20 ms apart) drawn from `truth`;
    /// `outlier(i)` may multiply a sample.
    static func feed(_ l: inout LatencyLearner, _ truth: Truth, n: Int, seed: UInt64, noise: Double = 0.05, start: Double = 0,
                     outlier: (Int) -> Double = { _ in 1 }) {
        var rng = SplitMix64(seed: seed)
        for i in 0..<n {
            let tokens = Int(rng.next() % 8000), decoding = Int(rng.next() % 32)
            let jitter = 1 + noise * (2 * rng.nextUnit() - 1)
            let now = start + Double(i) * 0.02
            l.observeGap(truth.gap(decoding: decoding) * (1 + noise * (2 * rng.nextUnit() - 1)) * outlier(i), decoding: decoding, at: now)
            l.observeTTFT(truth.ttft(tokens: tokens, decoding: decoding) * jitter * outlier(i), tokens: tokens, decoding: decoding, at: now)
        }
    }

    static let truths: [LatencyCoefficients] = [
        // the simulator's
        LatencyCoefficients(overhead: 0.001, prefillPerToken: 20e-6, stepBase: 0.002, stepPerSequence: 0.00015),
        // a slower CPU: 3x the prefill, bigger steps
        LatencyCoefficients(overhead: 0.004, prefillPerToken: 60e-6, stepBase: 0.006, stepPerSequence: 0.0004),
        // a GPU: 50x faster prefill, millisecond steps
        LatencyCoefficients(overhead: 0.002, prefillPerToken: 0.4e-6, stepBase: 0.008, stepPerSequence: 0.0001),
    ]

    @Test(arguments: truths)
    func convergesOnSyntheticData(_ k: LatencyCoefficients) {
        var l = LatencyLearner()
        Self.feed(&l, Truth(k: k), n: 600, seed: 3)
        let c = l.coefficients
        #expect(Self.close(c.prefillPerToken, k.prefillPerToken, 0.1), "\(c) vs \(k)")
        #expect(Self.close(c.stepBase, k.stepBase, 0.1), "\(c) vs \(k)")
        #expect(Self.close(c.stepPerSequence, k.stepPerSequence, 0.15), "\(c) vs \(k)")
        // Predictions, the point of it all, within 10 % over the range.
        let truth = Truth(k: k)
        let model = CostModel()
        for (tokens, decoding) in [(100, 0), (2000, 8), (6000, 24)] {
            let cand = Candidate(index: 0, id: 0, homeHash: 0, decoding: decoding, coefficients: c)
            let predicted = model.predict(cand, RoutingRequest(promptTokens: tokens)).ttft
            #expect(Self.close(predicted, truth.ttft(tokens: tokens, decoding: decoding), 0.1))
        }
    }

    /// A small CPU vLLM: 12x the seeds' prefill per token, 15x their step. Within 20 requests
    /// (a quick benchmark run is ~100) the fit has the prefill per token, and a miss's
    /// prediction, within 10 %; with the prefill prior at 2x the seed it had 80 µs a token after
    /// 20 requests and 140 µs after 200.
    @Test func learnsASlowEndpointWithinAFewRequests() {
        let k = LatencyCoefficients(overhead: 0.01, prefillPerToken: 250e-6, stepBase: 0.03, stepPerSequence: 0.003)
        let truth = Truth(k: k)
        var l = LatencyLearner()
        var rng = SplitMix64(seed: 5)
        for i in 0..<20 {
            // A quarter of them misses (1,000-1,300 tokens), the rest hits (50-350 uncached).
            let tokens = i % 4 == 0 ? 1000 + Int(rng.next() % 300) : 50 + Int(rng.next() % 300), decoding = Int(rng.next() % 4)
            let now = Double(i) * 0.1
            l.observeGap(truth.gap(decoding: decoding) * (1 + 0.1 * (2 * rng.nextUnit() - 1)), decoding: decoding, at: now)
            l.observeTTFT(truth.ttft(tokens: tokens, decoding: decoding) * (1 + 0.1 * (2 * rng.nextUnit() - 1)),
                          tokens: tokens, decoding: decoding, at: now)
        }
        let c = l.coefficients
        #expect(Self.close(c.prefillPerToken, k.prefillPerToken, 0.1), "\(c)")
        // A miss's prediction (1,200 tokens, 2 decoding) within 10 %.
        let cand = Candidate(index: 0, id: 0, homeHash: 0, decoding: 2, coefficients: c)
        #expect(Self.close(CostModel().predict(cand, RoutingRequest(promptTokens: 1200)).ttft, truth.ttft(tokens: 1200, decoding: 2), 0.1))
    }

    /// 10 % of samples 10x too slow (a GC pause, a preemption): the fit moves little. Clipping
    /// is symmetric and these outliers all lie on one side, so each still pulls by the clip
    /// bound: the intercept (overhead) rises by a few milliseconds (short prompts predicted up to
    /// 20 % long), the slopes hardly move; plain least squares is thrown off by more than half.
    @Test(arguments: truths)
    func robustToOutliers(_ k: LatencyCoefficients) {
        var l = LatencyLearner()
        Self.feed(&l, Truth(k: k), n: 600, seed: 5, outlier: { $0 % 10 == 7 ? 10 : 1 })
        let c = l.coefficients
        #expect(Self.close(c.prefillPerToken, k.prefillPerToken, 0.3), "\(c) vs \(k)")
        #expect(Self.close(c.stepBase, k.stepBase, 0.2), "\(c) vs \(k)")
        let truth = Truth(k: k)
        for (tokens, decoding) in [(100, 0), (2000, 8), (6000, 24)] {
            let cand = Candidate(index: 0, id: 0, homeHash: 0, decoding: decoding, coefficients: c)
            let predicted = CostModel().predict(cand, RoutingRequest(promptTokens: tokens)).ttft
            let actual = truth.ttft(tokens: tokens, decoding: decoding)
            #expect(abs(predicted - actual) <= 0.2 * actual, "\(predicted) vs \(actual)")
        }
        // Without clipping (plain least squares) the same data moves the prefill cost by > 50 %.
        var plain = LatencyLearner()
        plain.setClip(.infinity)
        Self.feed(&plain, Truth(k: k), n: 600, seed: 5, outlier: { $0 % 10 == 7 ? 10 : 1 })
        #expect(!Self.close(plain.coefficients.prefillPerToken, k.prefillPerToken, 0.5))
    }

    /// The endpoint changes (a bigger model, a slower GPU): old samples fade and the fit follows.
    @Test func followsAChange() {
        var l = LatencyLearner(halfLife: 10)
        let before = Self.truths[0], after = Self.truths[1]
        Self.feed(&l, Truth(k: before), n: 500, seed: 1)
        #expect(Self.close(l.coefficients.prefillPerToken, before.prefillPerToken, 0.1))
        Self.feed(&l, Truth(k: after), n: 4000, seed: 2, start: 20)
        #expect(Self.close(l.coefficients.prefillPerToken, after.prefillPerToken, 0.1), "\(l.coefficients)")
        #expect(Self.close(l.coefficients.stepBase, after.stepBase, 0.15), "\(l.coefficients)")
    }

    /// Before any sample the seeds hold; garbage (NaN, negative, infinite) changes nothing; the
    /// coefficients stay within their bounds whatever comes in.
    @Test func seedsBoundsAndGarbage() {
        var l = LatencyLearner()
        #expect(l.coefficients == .defaults)
        l.observeTTFT(.nan, tokens: 100, decoding: 0, at: 1)
        l.observeTTFT(-1, tokens: 100, decoding: 0, at: 1)
        l.observeGap(.infinity, decoding: 3, at: 1)
        #expect(l.coefficients == .defaults)
        for i in 0..<2000 { l.observeTTFT(50, tokens: 1, decoding: 0, at: Double(i)) }
        for i in 0..<2000 { l.observeGap(1e-9, decoding: 1000, at: Double(i)) }
        let c = l.coefficients, lo = LatencyCoefficients.lower, hi = LatencyCoefficients.upper
        #expect(c.overhead >= lo.overhead && c.overhead <= hi.overhead)
        #expect(c.prefillPerToken >= lo.prefillPerToken && c.prefillPerToken <= hi.prefillPerToken)
        #expect(c.stepBase >= lo.stepBase && c.stepBase <= hi.stepBase)
        #expect(c.stepPerSequence >= lo.stepPerSequence && c.stepPerSequence <= hi.stepPerSequence)
        #expect(LatencyCoefficients(overhead: .nan, prefillPerToken: -1, stepBase: 9, stepPerSequence: 0.001).clamped()
                == LatencyCoefficients(overhead: 0.001, prefillPerToken: 1e-8, stepBase: 2, stepPerSequence: 0.001))
    }

    /// A weighted sample counts about like that many samples of the same value (the residual
    /// scale moves once instead of four times), and more than one sample.
    @Test func weightsCountAsRepeatedSamples() {
        let fit = RobustLineFit(a: 0, b: 0, sigmaA: 1, sigmaB: 1, residualScale: 1, boundsA: -10...10, boundsB: -10...10, halfLife: 0, clip: .infinity)
        var one = fit, four = fit, many = fit
        one.observe(x: 2, y: 5, at: 0)
        four.observe(x: 2, y: 5, weight: 4, at: 0)
        for _ in 0..<4 { many.observe(x: 2, y: 5, at: 0) }
        #expect(abs(four.predict(2) - many.predict(2)) < 0.1)
        #expect(abs(four.predict(2) - 5) < abs(one.predict(2) - 5))
    }

    @Test(arguments: [(0.0, 1.0), (1, 2), (0.5, 1.414_213_562_373_095), (3.25, 9.513_656_920_021_768), (100, 18_446_744_073_709_551_616)])
    func powersOfTwo(_ x: Double, _ expected: Double) {
        #expect(abs(RobustLineFit.pow2(x) - expected) <= 1e-9 * expected)
    }
}
