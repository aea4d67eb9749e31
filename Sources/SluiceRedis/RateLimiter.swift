/// Rate limits enforced atomically in Redis: one EVALSHA per request checks and charges every
/// limit that applies (requests and tokens, per tenant and per model) using Redis's own clock
/// (`TIME` inside the script), so every gateway process sharing the Redis enforces one limit.
///
/// Tokens are reserved at admission from an estimate and settled after the response with
/// ``reconcile(_:completion:)`` (positive: charge more, negative: refund). Settlement may push a
/// bucket into debt (usage above the estimate is still counted), which later checks then wait out.
///
/// Key and argument construction and reply decoding are static and pure (tested without Redis);
/// the instance only sends.
///
/// Confined to its client's loop thread.
public final class RateLimiter: @unchecked Sendable {
    public let client: RedisClient

    public init(client: RedisClient) { self.client = client }

    /// GCRA over several limits; see ``RateLimit``. TAT (theoretical arrival time) is kept in µs
    /// as the key's value and expires when the bucket is full again.
    public static let script = RedisScript(#"""
        -- Sluice rate limiter v1: GCRA over one or more limits, all-or-nothing, Redis's clock.
        -- KEYS[i]: one bucket per limit.
        -- ARGV[1]: 0 = check (charge every limit only if each has room), 1 = settle (apply every
        --          cost unconditionally; costs may be negative).
        -- ARGV[2 + 4(i-1) ...]: limit, period (ms), burst, cost of KEYS[i].
        -- Returns {allowed, then per key: allowed, remaining, reset ms, retry-after ms (-1: never)}.
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local settle = ARGV[1] == '1'
        local all = 1
        local st = {}
        for i = 1, #KEYS do
          local b = 2 + (i - 1) * 4
          local limit = tonumber(ARGV[b])
          local interval = tonumber(ARGV[b + 1]) * 1000 / limit
          local burst = tonumber(ARGV[b + 2])
          local cost = tonumber(ARGV[b + 3])
          local tat = tonumber(redis.call('GET', KEYS[i]))
          if tat == nil or tat < now then tat = now end
          local new_tat = tat + cost * interval
          if new_tat < now then new_tat = now end
          local ok, retry = 1, 0
          if not settle then
            if cost > burst then
              ok, retry = 0, -1
            else
              -- 1 µs of slack absorbs float rounding of the stored TAT.
              local wait = new_tat - burst * interval - now
              if wait > 1 then ok, retry = 0, wait end
            end
          end
          if ok == 0 then all = 0 end
          st[i] = {tat, new_tat, interval, burst, ok, retry}
        end
        local out = {all}
        for i = 1, #KEYS do
          local s = st[i]
          local final = s[1]
          if all == 1 then
            final = s[2]
            local ttl = math.ceil((final - now) / 1000)
            if ttl > 0 then
              redis.call('SET', KEYS[i], string.format('%.0f', final), 'PX', ttl)
            else
              redis.call('DEL', KEYS[i])
            end
          end
          local remaining = math.floor((s[4] * s[3] - (final - now)) / s[3] + 1e-6)
          if remaining < 0 then remaining = 0 end
          out[#out + 1] = s[5]
          out[#out + 1] = remaining
          out[#out + 1] = math.ceil((final - now) / 1000)
          if s[6] < 0 then out[#out + 1] = -1 else out[#out + 1] = math.ceil(s[6] / 1000) end
        end
        return out
        """#)

    // MARK: I/O

    /// Checks every limit in `checks`; charges all of them only if every one has room.
    public func check(_ checks: [RateLimitCheck],
                      completion: @escaping (Result<RateLimitDecision, RedisError>) -> Void)
    {
        run(Self.command(checks, settle: false), checks, completion)
    }

    /// Checks and charges one limit.
    public func check(key: [UInt8], limit: RateLimit, cost: Int,
                      completion: @escaping (Result<RateLimitResult, RedisError>) -> Void)
    {
        check([RateLimitCheck(key: key, limit: limit, cost: cost)]) { result in
            completion(result.map { $0.results[0] })
        }
    }

    /// Applies corrections (each check's `cost` is actual − reserved) unconditionally.
    public func reconcile(_ corrections: [RateLimitCheck],
                          completion: @escaping (Result<RateLimitDecision, RedisError>) -> Void)
    {
        run(Self.command(corrections, settle: true), corrections, completion)
    }

    public func reconcile(key: [UInt8], limit: RateLimit, delta: Int,
                          completion: @escaping (Result<RateLimitResult, RedisError>) -> Void)
    {
        reconcile([RateLimitCheck(key: key, limit: limit, cost: delta)]) { result in
            completion(result.map { $0.results[0] })
        }
    }

    private func run(_ command: RedisCommand, _ checks: [RateLimitCheck],
                     _ completion: @escaping (Result<RateLimitDecision, RedisError>) -> Void)
    {
        client.evaluate(command, script: Self.script) { result in
            completion(result.flatMap { value in
                if case .error(let m) = value { return .failure(.server(m)) }
                guard let d = Self.decode(value, checks) else { return .failure(.unexpectedReply) }
                return .success(d)
            })
        }
    }

    // MARK: pure

    /// The EVALSHA call for `checks`.
    public static func command(_ checks: [RateLimitCheck], settle: Bool) -> RedisCommand {
        var cmd = script.call(keyCount: checks.count)
        for c in checks { cmd.append(c.key) }
        cmd.append(settle ? "1" : "0")
        for c in checks {
            cmd.append(c.limit.limit)
            cmd.append(c.limit.periodMilliseconds)
            cmd.append(c.limit.burst)
            cmd.append(c.cost)
        }
        return cmd
    }

    /// Decodes the script's reply; nil if it does not have the expected shape.
    public static func decode(_ value: RedisValue, _ checks: [RateLimitCheck]) -> RateLimitDecision? {
        guard case .array(let items) = value, items.count == 1 + 4 * checks.count else { return nil }
        var ints: [Int] = []
        ints.reserveCapacity(items.count)
        for item in items {
            guard case .integer(let i) = item else { return nil }
            ints.append(i)
        }
        var results: [RateLimitResult] = []
        results.reserveCapacity(checks.count)
        for (i, c) in checks.enumerated() {
            let b = 1 + 4 * i
            let retry = ints[b + 3]
            results.append(RateLimitResult(
                allowed: ints[b] == 1, limit: c.limit.limit, remaining: max(0, ints[b + 1]),
                resetAfter: .milliseconds(max(0, ints[b + 2])),
                retryAfter: retry < 0 ? nil : .milliseconds(retry)))
        }
        return RateLimitDecision(allowed: ints[0] == 1, results: results)
    }
}
