import Testing
@testable import SluiceRedis

@Suite struct RateLimitPureTests {
    @Test func keysAreScopedAndEscaped() {
        #expect(RateLimitKeys.key(limitName: "requests", tenant: "team-a") == b("sluice:rl:v1:requests:team-a"))
        #expect(RateLimitKeys.key(limitName: "requests@tiny-llama", tenant: "t") == b("sluice:rl:v1:requests@tiny-llama:t"))
        // Separators inside names cannot forge another (limit, tenant) pair.
        #expect(RateLimitKeys.key(limitName: "x:a", tenant: "b") != RateLimitKeys.key(limitName: "x", tenant: "a:b"))
        #expect(RateLimitKeys.key(limitName: "r", tenant: "a b*%") == b("sluice:rl:v1:r:a%20b%2A%25"))
    }

    @Test func commandLayout() {
        let rpm = RateLimit.perMinute(600)
        let tpm = RateLimit(limit: 1000, period: .milliseconds(1500), burst: 200)
        let checks = [RateLimitCheck(key: b("k1"), limit: rpm, cost: 1), RateLimitCheck(key: b("k2"), limit: tpm, cost: 75)]
        let cmd = RateLimiter.command(checks, settle: false)
        let expected = RedisCommand([b("EVALSHA"), b(RateLimiter.script.sha1), b("2"), b("k1"), b("k2"), b("0"),
                                     b("600"), b("60000"), b("600"), b("1"),
                                     b("1000"), b("1500"), b("200"), b("75")])
        #expect(cmd == expected)
        let settle = RateLimiter.command([RateLimitCheck(key: b("k"), limit: rpm, cost: -5)], settle: true)
        #expect(settle == RedisCommand([b("EVALSHA"), b(RateLimiter.script.sha1), b("1"), b("k"), b("1"),
                                        b("600"), b("60000"), b("600"), b("-5")]))
    }

    @Test func decodesReplies() {
        let checks = [RateLimitCheck(key: b("a"), limit: .perMinute(10), cost: 1),
                      RateLimitCheck(key: b("b"), limit: .perMinute(100), cost: 500)]
        let reply = RedisValue.array([.integer(0), .integer(1), .integer(9), .integer(6000), .integer(0),
                                      .integer(0), .integer(100), .integer(0), .integer(-1)])
        let d = RateLimiter.decode(reply, checks)
        #expect(d == RateLimitDecision(allowed: false, results: [
            RateLimitResult(allowed: true, limit: 10, remaining: 9, resetAfter: .milliseconds(6000), retryAfter: .zero),
            RateLimitResult(allowed: false, limit: 100, remaining: 100, resetAfter: .zero, retryAfter: nil),
        ]))
        #expect(d?.retryAfterSeconds == nil)  // can never fit: no retry hint
        #expect(RateLimiter.decode(.array([.integer(1)]), checks) == nil)
        #expect(RateLimiter.decode(.bulk(nil), checks) == nil)
        #expect(RateLimiter.decode(.array(Array(repeating: .bulk(b("1")), count: 9)), checks) == nil)
    }

    @Test(arguments: [(Int64(1), 1), (999, 1), (1000, 1), (1001, 2), (59_500, 60), (0, 1)])
    func retryAfterIsWholeSecondsAtLeastOne(_ ms: Int64, _ seconds: Int) {
        let d = RateLimitDecision(allowed: false, results: [
            RateLimitResult(allowed: false, limit: 1, remaining: 0, resetAfter: .zero, retryAfter: .milliseconds(ms)),
            RateLimitResult(allowed: true, limit: 1, remaining: 0, resetAfter: .zero, retryAfter: .zero),
        ])
        #expect(d.retryAfterSeconds == seconds)
        #expect(RateLimitDecision(allowed: true, results: d.results).retryAfterSeconds == nil)
    }

    @Test(arguments: [
        (Int64(0), "0ms"), (20, "20ms"), (999, "999ms"), (1000, "1s"), (1500, "1.5s"), (1250, "1.25s"),
        (1001, "1.001s"), (60_000, "1m0s"), (360_000, "6m0s"), (61_500, "1m1.5s"), (3_723_000, "1h2m3s"),
        (3_600_000, "1h0m0s"),
    ])
    func resetHeaderUsesOpenAIsDurationSyntax(_ ms: Int64, _ text: String) {
        #expect(RateLimitHeaders.resetValue(.milliseconds(ms)) == text)
    }

    @Test func burstDefaultsToLimit() {
        #expect(RateLimit.perMinute(60).burst == 60)
        #expect(RateLimit.perMinute(60, burst: 5).burst == 5)
        #expect(RateLimit(limit: 3, period: .microseconds(10)).periodMilliseconds == 1)
    }
}
