import SluiceRouting
import Testing

/// The SLO guard of a split on an injected clock: when it rolls a candidate back (and why),
/// when it does not (too little evidence, within the thresholds), the window, the ramp, reset.
@Suite struct SplitGuardTests {
    static let bounds: [Double] = [0.1, 0.2, 0.5, 1]
    static let s: UInt64 = 1_000_000_000

    func config(_ edit: (inout SplitGuardConfig) -> Void = { _ in }) -> SplitGuardConfig {
        var c = SplitGuardConfig()
        c.windowNanos = 10 * Self.s
        c.intervalNanos = Self.s
        c.minRequests = 20
        c.errorRateMargin = 0.02
        c.ttftP90Ratio = 1.5
        edit(&c)
        return c
    }

    func guardOf(_ c: SplitGuardConfig, weights: [Double] = [90, 10]) -> SplitGuard {
        SplitGuard(config: c, weights: weights, ttftBounds: Self.bounds, interTokenBounds: Self.bounds, now: 0)
    }

    /// `n` requests, `errors` of them 5xx, every TTFT in bucket `ttftBucket`.
    func counts(_ n: Double, errors: Double = 0, ttftBucket: Int = 0, itlBucket: Int = 0) -> ArmCounts {
        var t = Array(repeating: 0.0, count: Self.bounds.count + 1)
        t[ttftBucket] = n
        var g = Array(repeating: 0.0, count: Self.bounds.count + 1)
        g[itlBucket] = n
        return ArmCounts(requests: n, errors: errors, ttft: t, interToken: g)
    }

    @Test func errorRateBreachRollsTheCandidateBack() {
        var g = guardOf(config())
        #expect(g.evaluate(now: Self.s, counts: [counts(0), counts(0)]).isEmpty)
        let e = g.evaluate(now: 2 * Self.s, counts: [counts(100), counts(25, errors: 5)])
        guard case .rolledBack(arm: 1, let b)? = e.first else { Issue.record("no rollback: \(e)"); return }
        #expect(b.kind == .errorRate && b.candidate == 0.2 && b.limit == 0.02)
        #expect(g.weights == [90, 0])
        #expect(g.isRolledBack(1) && !g.isRolledBack(0))
        #expect(g.states[0] == .baseline)
        // Once rolled back, it stays so (no event again).
        #expect(g.evaluate(now: 3 * Self.s, counts: [counts(200), counts(25, errors: 5)]).isEmpty)
        #expect(g.weights == [90, 0])
    }

    @Test(arguments: [(19.0, 19.0, false), (20.0, 0.0, false), (20.0, 1.0, true), (100.0, 2.0, false), (100.0, 3.0, true)])
    func errorRateNeedsEvidenceAndMargin(_ n: Double, _ errors: Double, _ rolled: Bool) {
        // The baseline has no errors; margin 2 %: 1 of 20 (5 %) breaches, 2 of 100 (2 %) does
        // not, 3 of 100 does; 19 requests are too few to judge even if all failed.
        var g = guardOf(config())
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100), counts(n, errors: errors)])
        #expect(g.isRolledBack(1) == rolled)
    }

    @Test func baselineErrorsRaiseTheBar() {
        var g = guardOf(config())
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100, errors: 10), counts(100, errors: 11)])
        #expect(!g.isRolledBack(1))
        _ = g.evaluate(now: 2 * Self.s, counts: [counts(200, errors: 20), counts(200, errors: 30)])
        #expect(g.isRolledBack(1))
    }

    @Test func ttftBreachNeedsBothArmsObserved() {
        var g = guardOf(config())
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        // Baseline p90 in the first bucket (0.09), candidate in the third (0.47): > 1.5x.
        _ = g.evaluate(now: Self.s, counts: [counts(10), counts(30, ttftBucket: 2)])
        #expect(!g.isRolledBack(1), "baseline has too few observations")
        let e = g.evaluate(now: 2 * Self.s, counts: [counts(30), counts(30, ttftBucket: 2)])
        guard case .rolledBack(arm: 1, let b)? = e.first else { Issue.record("no rollback: \(e)"); return }
        #expect(b.kind == .ttftP90)
        #expect(abs(b.baseline - 0.09) < 1e-9 && abs(b.candidate - 0.47) < 1e-9)
    }

    @Test func sameLatencyIsNoBreachAndTTFTCheckCanBeOff() {
        var g = guardOf(config())
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100, ttftBucket: 2), counts(100, ttftBucket: 2)])
        #expect(!g.isRolledBack(1))
        var off = guardOf(config { $0.ttftP90Ratio = nil })
        _ = off.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = off.evaluate(now: Self.s, counts: [counts(100), counts(100, ttftBucket: 4)])
        #expect(!off.isRolledBack(1))
    }

    @Test func interTokenIsCheckedOnlyWhenConfigured() {
        var plain = guardOf(config())
        _ = plain.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = plain.evaluate(now: Self.s, counts: [counts(100), counts(100, itlBucket: 3)])
        #expect(!plain.isRolledBack(1))
        var g = guardOf(config { $0.interTokenP90Ratio = 2 })
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        let e = g.evaluate(now: Self.s, counts: [counts(100), counts(100, itlBucket: 3)])
        guard case .rolledBack(arm: 1, let b)? = e.first else { Issue.record("no rollback: \(e)"); return }
        #expect(b.kind == .interTokenP90)
    }

    @Test func oldFailuresLeaveTheWindow() {
        // Errors early on, then none: once the bad stretch is older than the window, the
        // figures no longer hold it (min_requests keeps the early stretch from being judged).
        var g = guardOf(config { $0.minRequests = 50 })
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(10), counts(10, errors: 10)])
        #expect(!g.isRolledBack(1))
        _ = g.evaluate(now: 12 * Self.s, counts: [counts(200), counts(200, errors: 10)])
        // Base is the sample at 1 s (the newest at or before 12 - 10 = 2 s): 190 requests, 0 errors.
        #expect(g.windows[1].requests == 190 && g.windows[1].errors == 0)
        #expect(!g.isRolledBack(1))
    }

    @Test func baselineIsNeverRolledBack() {
        var g = guardOf(config { $0.baseline = 1 }, weights: [10, 90])
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100), counts(100, errors: 100)])
        #expect(!g.isRolledBack(1) && !g.isRolledBack(0))
        _ = g.evaluate(now: 2 * Self.s, counts: [counts(200, errors: 150), counts(200, errors: 100)])
        #expect(g.isRolledBack(0) && g.weights == [0, 90])
    }

    @Test func threeArmsOnlyTheBadOneGoes() {
        var g = guardOf(config(), weights: [80, 10, 10])
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100), counts(50, errors: 10), counts(50)])
        #expect(g.weights == [80, 0, 10])
    }

    @Test func rampStepsWhileTheGuardHolds() {
        var g = guardOf(config { $0.ramp = [1, 5, 25] }, weights: [50, 50])
        #expect(g.rampStep == 0 && g.weights == [0.99, 0.01])
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        // Not a whole window yet.
        #expect(g.evaluate(now: 5 * Self.s, counts: [counts(500), counts(50)]).isEmpty)
        #expect(g.evaluate(now: 10 * Self.s, counts: [counts(1000), counts(100)]) == [.rampAdvanced(step: 1, percent: 5)])
        #expect(g.weights == [0.95, 0.05])
        // Too few candidate requests in the next window: the step holds.
        #expect(g.evaluate(now: 20 * Self.s, counts: [counts(2000), counts(110)]).isEmpty)
        #expect(g.evaluate(now: 21 * Self.s, counts: [counts(2100), counts(200)]) == [.rampAdvanced(step: 2, percent: 25)])
        #expect(g.evaluate(now: 31 * Self.s, counts: [counts(3100), counts(300)]) == [.rampCompleted])
        #expect(g.rampStep == nil && g.weights == [50, 50])
    }

    @Test func rollbackDuringRampSendsEverythingToBaseline() {
        var g = guardOf(config { $0.ramp = [1, 5] }, weights: [50, 50])
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100), counts(20, errors: 20)])
        #expect(g.isRolledBack(1) && g.rampStep == nil)
        #expect(g.weights == [50, 0])
    }

    @Test func resetRestoresArmsAndForgetsTheWindow() {
        var g = guardOf(config { $0.ramp = [10] })
        _ = g.evaluate(now: 0, counts: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(100), counts(20, errors: 20)])
        #expect(g.isRolledBack(1))
        g.reset(now: 2 * Self.s)
        #expect(!g.isRolledBack(1) && g.rampStep == 0 && g.lastEvaluation == nil)
        // The failures before the reset are not held against the arm.
        _ = g.evaluate(now: 3 * Self.s, counts: [counts(100), counts(20, errors: 20)])
        _ = g.evaluate(now: 4 * Self.s, counts: [counts(200), counts(40, errors: 20)])
        #expect(!g.isRolledBack(1))
        #expect(g.windows[1].requests == 20 && g.windows[1].errors == 0)
    }

    @Test(arguments: [
        ([10.0, 0, 0, 0, 0], 0.09), ([0.0, 10, 0, 0, 0], 0.19), ([5.0, 5, 0, 0, 0], 0.18),
        ([0.0, 0, 0, 0, 10], 1.0), ([0.0, 0, 0, 0, 0], -1.0),
    ])
    func quantileInterpolatesLikePrometheus(_ counts: [Double], _ want: Double) {
        let q = SplitGuard.quantile(0.9, counts, Self.bounds)
        if want < 0 { #expect(q == nil) } else { #expect(abs(q! - want) < 1e-9) }
    }
}

extension SplitGuardTests {
    @Test func aGivenBaseStartsTheWindow() {
        // Counts recorded before the first evaluation are judged when the base is known.
        var g = SplitGuard(config: config(), weights: [50, 50], ttftBounds: Self.bounds, interTokenBounds: Self.bounds, now: 0,
                           base: [counts(0), counts(0)])
        _ = g.evaluate(now: Self.s, counts: [counts(30), counts(30, errors: 30)])
        #expect(g.isRolledBack(1))
        // Without it, the first evaluation is the base.
        var h = guardOf(config())
        _ = h.evaluate(now: Self.s, counts: [counts(30), counts(30, errors: 30)])
        #expect(!h.isRolledBack(1))
        // A reset with a base judges from there.
        h.reset(now: 2 * Self.s, base: [counts(30), counts(30, errors: 30)])
        _ = h.evaluate(now: 3 * Self.s, counts: [counts(60), counts(60, errors: 30)])
        #expect(!h.isRolledBack(1) && h.windows[1].requests == 30)
    }
}
