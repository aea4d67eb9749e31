import SluiceRedis

/// The rate limiter a worker falls back to while Redis is unreachable (`redis.on_failure: open`):
/// the same GCRA as the Redis script, in memory, with each limit and burst divided by `share`
/// (the number of workers of this process), so the process as a whole keeps roughly the
/// configured rate. Approximate by design: several Sluice processes each apply the full share,
/// and buckets start empty when Redis goes away.
///
/// Pure (time is passed in); confined to its worker.
struct LocalRateLimiter {
    /// Theoretical arrival time per bucket key, in nanoseconds of the caller's clock.
    private var tat: [[UInt8]: Int64] = [:]
    let share: Int
    /// Buckets kept at most; full ones (TAT in the past) are swept when it is reached.
    let capacity: Int

    init(share: Int, capacity: Int = 100_000) {
        self.share = max(1, share)
        self.capacity = capacity
    }

    var count: Int { tat.count }

    /// Checks every limit; charges all of them only if each has room (like the script).
    mutating func check(_ checks: [RateLimitCheck], now: Int64) -> RateLimitDecision {
        apply(checks, now: now, settle: false)
    }

    /// Applies corrections unconditionally (negative costs refund).
    mutating func settle(_ corrections: [RateLimitCheck], now: Int64) {
        _ = apply(corrections, now: now, settle: true)
    }

    private mutating func apply(_ checks: [RateLimitCheck], now: Int64, settle: Bool) -> RateLimitDecision {
        if tat.count >= capacity { tat = tat.filter { $0.value > now } }
        var allowed = true
        var states: [(tat: Int64, newTAT: Int64, interval: Double, burst: Int, ok: Bool, retry: Int64?)] = []
        states.reserveCapacity(checks.count)
        for c in checks {
            let limit = max(1, c.limit.limit / share)
            let burst = max(1, c.limit.burst / share)
            let interval = Double(c.limit.period.nanoseconds) / Double(limit)
            let t = max(tat[c.key] ?? now, now)
            // In floating point, then clamped back: a cost is a client's token estimate (or a
            // settlement), and cost × interval can pass Int64's range (the Redis script
            // computes in doubles for the same reason).
            let newTAT = max(Self.clamp(Double(t) + Double(c.cost) * interval), now)
            var ok = true
            var retry: Int64? = 0
            if !settle {
                if c.cost > burst {
                    ok = false
                    retry = nil
                } else {
                    let wait = Self.clamp(Double(newTAT) - Double(burst) * interval - Double(now))
                    if wait > 1000 {
                        ok = false
                        retry = wait
                    }
                }
            }
            if !ok { allowed = false }
            states.append((t, newTAT, interval, burst, ok, retry))
        }
        var results: [RateLimitResult] = []
        for (i, c) in checks.enumerated() {
            let s = states[i]
            let final = allowed ? s.newTAT : s.tat
            if allowed { tat[c.key] = final }
            let ahead = final &- now  // both within [now, Int64.max]: cannot overflow
            let remaining = max(0, Self.clampInt((Double(s.burst) * s.interval - Double(ahead)) / s.interval + 1e-6))
            results.append(RateLimitResult(allowed: s.ok, limit: c.limit.limit, remaining: remaining,
                                           resetAfter: .nanoseconds(ahead),
                                           retryAfter: s.retry.map { .nanoseconds($0) }))
        }
        return RateLimitDecision(allowed: allowed, results: results)
    }

    /// `v` rounded toward zero into Int64's range (NaN: 0).
    static func clamp(_ v: Double) -> Int64 {
        if v.isNaN { return 0 }
        if v >= 9.2e18 { return .max }
        if v <= -9.2e18 { return .min }
        return Int64(v)
    }

    static func clampInt(_ v: Double) -> Int { Int(clamp(v)) }
}
