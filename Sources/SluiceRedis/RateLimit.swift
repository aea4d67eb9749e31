/// A limit: `limit` units (requests or tokens) per `period`, with a bucket of `burst` units.
///
/// Enforced as GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp):
/// each unit "costs" `period / limit` of time; a request of cost c is admitted when the bucket's
/// theoretical arrival time after charging it, minus `burst · period / limit`, is not in the
/// future. So up to `burst` units can go at once, and after that `limit` per `period`.
public struct RateLimit: Sendable, Hashable {
    public var limit: Int
    public var period: Duration
    public var burst: Int

    /// `burst` defaults to `limit` (a full period's worth at once, as OpenAI's limits behave).
    public init(limit: Int, period: Duration, burst: Int? = nil) {
        precondition(limit > 0 && period > .zero, "a limit needs a positive rate")
        self.limit = limit
        self.period = period
        self.burst = max(1, burst ?? limit)
    }

    public static func perMinute(_ limit: Int, burst: Int? = nil) -> RateLimit {
        RateLimit(limit: limit, period: .seconds(60), burst: burst)
    }

    /// The period in whole milliseconds (at least 1), as the script takes it.
    var periodMilliseconds: Int { max(1, Int(period.nanoseconds / 1_000_000)) }
}

/// One limit to check (or settle) for a request.
public struct RateLimitCheck: Sendable, Equatable {
    /// From ``RateLimitKeys/key(limitName:tenant:)``.
    public var key: [UInt8]
    public var limit: RateLimit
    /// Units to charge: 1 for a request limit, estimated tokens for a token limit. For
    /// settlement, the correction (actual − estimated; negative refunds).
    public var cost: Int

    public init(key: [UInt8], limit: RateLimit, cost: Int) {
        self.key = key
        self.limit = limit
        self.cost = cost
    }
}

/// The state of one limit after a check.
public struct RateLimitResult: Sendable, Equatable {
    /// Whether this limit alone had room.
    public var allowed: Bool
    /// The configured limit (`x-ratelimit-limit-*`).
    public var limit: Int
    /// Units left right now (`x-ratelimit-remaining-*`).
    public var remaining: Int
    /// Time until the bucket is full again (`x-ratelimit-reset-*`).
    public var resetAfter: Duration
    /// When denied: how long until the cost fits; nil when it never will (cost above the
    /// burst). Zero when allowed.
    public var retryAfter: Duration?

    public init(allowed: Bool, limit: Int, remaining: Int, resetAfter: Duration, retryAfter: Duration?) {
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.resetAfter = resetAfter
        self.retryAfter = retryAfter
    }
}

/// The outcome of checking all of a request's limits at once: it is admitted (and charged
/// against every limit) only if every limit has room; otherwise nothing is charged.
public struct RateLimitDecision: Sendable, Equatable {
    public var allowed: Bool
    /// One per check, in the order given.
    public var results: [RateLimitResult]

    public init(allowed: Bool, results: [RateLimitResult]) {
        self.allowed = allowed
        self.results = results
    }

    /// For a 429's `Retry-After`: whole seconds, at least 1; nil when allowed or when the request
    /// can never fit (its cost exceeds a burst: answer that without a retry hint).
    public var retryAfterSeconds: Int? {
        if allowed { return nil }
        var longest: Duration = .zero
        for r in results where !r.allowed {
            guard let d = r.retryAfter else { return nil }
            if d > longest { longest = d }
        }
        let ns = longest.nanoseconds  // saturating
        return max(1, Int(ns / 1_000_000_000 + (ns % 1_000_000_000 > 0 ? 1 : 0)))
    }
}

/// Rate-limit keys: `sluice:rl:v1:<limit name>:<tenant>`, both parts escaped (see
/// ``ResponseCacheKeys`` for why). A limit name says what is counted and, for per-model limits,
/// for which model: `requests`, `tokens`, `requests@tiny-llama`.
public enum RateLimitKeys {
    public static let prefix = "sluice:rl:v1:"

    public static func key(limitName: String, tenant: String) -> [UInt8] {
        var out = Array(prefix.utf8)
        KeyComponent.append(limitName.utf8, to: &out)
        out.append(UInt8(ascii: ":"))
        KeyComponent.append(tenant.utf8, to: &out)
        return out
    }
}

/// Formats durations the way OpenAI's `x-ratelimit-reset-*` headers do (Go's duration syntax):
/// `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
public enum RateLimitHeaders {
    public static func resetValue(_ d: Duration) -> String {
        let ms = max(0, Int(d.nanoseconds / 1_000_000))
        if ms < 1000 { return "\(ms)ms" }
        let hours = ms / 3_600_000
        let minutes = ms / 60_000 % 60
        let seconds = ms / 1000 % 60
        let millis = ms % 1000
        var s = ""
        if hours > 0 { s += "\(hours)h" }
        if hours > 0 || minutes > 0 { s += "\(minutes)m" }
        s += "\(seconds)"
        if millis > 0 {
            var frac = String(millis)
            while frac.count < 3 { frac = "0" + frac }
            while frac.hasSuffix("0") { frac.removeLast() }
            s += ".\(frac)"
        }
        return s + "s"
    }
}
