@testable import SluiceGateway
import SluiceRedis
import Testing

/// The in-process fallback limiter: the GCRA of the Redis script, with each limit shared out
/// over the workers.
@Suite struct LocalRateLimiterTests {
    let second: Int64 = 1_000_000_000

    func check(_ key: String, limit: Int, burst: Int? = nil, cost: Int = 1) -> RateLimitCheck {
        RateLimitCheck(key: Array(key.utf8), limit: .perMinute(limit, burst: burst), cost: cost)
    }

    @Test func burstThenSteadyRate() {
        var l = LocalRateLimiter(share: 1)
        // 60/min with a burst of 3: three at once, then one per second.
        for left in [2, 1, 0] {
            let d = l.check([check("a", limit: 60, burst: 3)], now: 0)
            #expect(d.allowed)
            #expect(d.results[0].remaining == left)
        }
        let denied = l.check([check("a", limit: 60, burst: 3)], now: 0)
        #expect(!denied.allowed)
        #expect(denied.retryAfterSeconds == 1)
        #expect(!l.check([check("a", limit: 60, burst: 3)], now: second / 2).allowed)
        #expect(l.check([check("a", limit: 60, burst: 3)], now: second).allowed)
        // Other keys are other buckets.
        #expect(l.check([check("b", limit: 60, burst: 3)], now: second).allowed)
    }

    @Test func allOrNothingAcrossLimits() {
        var l = LocalRateLimiter(share: 1)
        #expect(l.check([check("r", limit: 10), check("t", limit: 100, cost: 100)], now: 0).allowed)
        // Tokens are exhausted: the request limit is not charged either.
        let d = l.check([check("r", limit: 10), check("t", limit: 100, cost: 50)], now: 0)
        #expect(!d.allowed)
        #expect(d.results[0].allowed && !d.results[1].allowed)
        #expect(d.results[0].remaining == 9)
        // A cost above the burst can never fit: no retry hint.
        #expect(l.check([check("x", limit: 10, cost: 11)], now: 0).retryAfterSeconds == nil)
    }

    @Test func settlementRefundsAndCharges() {
        var l = LocalRateLimiter(share: 1)
        #expect(l.check([check("t", limit: 100, cost: 80)], now: 0).results[0].remaining == 20)
        l.settle([check("t", limit: 100, cost: -70)], now: 0)
        #expect(l.check([check("t", limit: 100, cost: 10)], now: 0).results[0].remaining == 80)
        l.settle([check("t", limit: 100, cost: 200)], now: 0)
        #expect(!l.check([check("t", limit: 100, cost: 1)], now: 0).allowed)
    }

    @Test func eachWorkerGetsItsShare() {
        var l = LocalRateLimiter(share: 4)
        var allowed = 0
        for _ in 0..<100 where l.check([check("a", limit: 40)], now: 0).allowed { allowed += 1 }
        #expect(allowed == 10)
    }

    @Test func fullBucketsAreSweptAtCapacity() {
        var l = LocalRateLimiter(share: 1, capacity: 100)
        for i in 0..<100 { _ = l.check([check("k\(i)", limit: 60)], now: 0) }
        #expect(l.count == 100)
        // A minute later every bucket is full again and is dropped on the next insert.
        _ = l.check([check("new", limit: 60)], now: 61 * second)
        #expect(l.count == 1)
    }
}

/// Costs come from clients (token estimates) and settlements: whatever they are, the limiter's
/// arithmetic saturates instead of trapping.
@Suite struct LocalRateLimiterArithmeticTests {
    @Test(arguments: [Int.max, Int.max / 2, Int(Int32.max) * Int(Int32.max), -Int.max, Int.min + 1])
    func extremeCostsNeverTrap(_ cost: Int) {
        var l = LocalRateLimiter(share: 1)
        let c = RateLimitCheck(key: Array("k".utf8), limit: .perMinute(1), cost: cost)
        let d = l.check([c], now: 1_000_000_000)
        if cost > 1 { #expect(!d.allowed && d.retryAfterSeconds == nil) }
        l.settle([c], now: 2_000_000_000)
        // After a huge settlement the bucket is in debt, not wrapped around into credit.
        let next = l.check([RateLimitCheck(key: Array("k".utf8), limit: .perMinute(1), cost: 1)], now: 3_000_000_000)
        if cost > 0 { #expect(!next.allowed) }
        #expect(next.results[0].remaining >= 0)
    }

    @Test func clampHandlesEveryDouble() {
        #expect(LocalRateLimiter.clamp(.nan) == 0)
        #expect(LocalRateLimiter.clamp(.infinity) == .max)
        #expect(LocalRateLimiter.clamp(-.infinity) == .min)
        #expect(LocalRateLimiter.clamp(1e300) == .max)
        #expect(LocalRateLimiter.clamp(-2.5) == -2)
    }
}
