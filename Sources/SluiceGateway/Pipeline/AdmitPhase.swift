import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRedis
import SluiceRouting
import SluiceSettings

/// What admission must do for a request before it is forwarded: rate limits to check and
/// charge, and a response-cache key to look up and store under. Built by the admit phase while
/// the body is at hand; nil when none of it applies, so a gateway without Redis pays nothing.
final class AdmissionTicket {
    // A class, so that the context holds one reference rather than this whole record.
    var tenant: String
    var limits: [RateLimitCheck] = []
    /// The limits reported in `x-ratelimit-*-requests` / `-tokens` (the first of each kind).
    var requestLimitIndex: Int?
    var tokenLimitIndex: Int?
    /// Token limits, settled with the real usage when the response ends.
    var tokenLimitIndices: [Int] = []
    /// Tokens reserved at admission (prompt estimate + max_tokens × n; see TokenReservation).
    var tokenEstimate = 0
    /// The prompt part of it (what a request that produced nothing still used).
    var promptEstimate = 0
    /// Token limits apply: the response's usage must be known.
    var isMetered: Bool { !tokenLimitIndices.isEmpty }
    var cacheKey: [UInt8]?
    var cacheLookup = false
    var cacheStore = false

    init(tenant: String) {
        self.tenant = tenant
    }
}

/// Admit: rate limits and the cache lookup, both at once (pipelined on one Redis connection:
/// one round trip), then a 429, the cached response, or on to routing. While Redis is
/// unreachable, limits fall back to the worker's local limiter (`redis.on_failure: open`) or
/// the request gets a 503 (`closed`).
enum AdmitPhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        guard x.settings.redis != nil, let f = x.ctx.features, let pool = x.pool else { return .next }
        var ticket: AdmissionTicket?
        x.client.withRequest { r in
            let model = x.ctx.target.resolvedModel.map { String(decoding: $0, as: UTF8.self) } ?? x.ctx.target.clientModel ?? ""
            ticket = self.ticket(x.settings, tenant: x.ctx.tenant, features: f, clientModel: x.ctx.target.clientModel ?? "",
                                 target: pool.name + "/" + model, request: r)
        }
        guard let t = ticket else { return .next }
        x.ctx.admission.ticket = t
        var waiting = 0
        if !t.limits.isEmpty { waiting += 1 }
        if t.cacheLookup { waiting += 1 }
        if waiting == 0 { return .next }
        // Redis answers on a later iteration: keep the prefix hashes out of the worker's
        // scratch space, which requests inspected meanwhile reuse.
        RoutePhase.savePrefixHashes(x)
        x.ctx.admission.pending = waiting
        let w = x.worker
        // The completions hold the exchange (strongly): a client that leaves meanwhile ends it,
        // and `resume` then does nothing.
        if !t.limits.isEmpty {
            w.checkLimits(t.limits) { result in
                x.ctx.admission.limitResult = result
                stepDone(x)
            }
        }
        if t.cacheLookup, let key = t.cacheKey {
            if let redis = w.redis {
                redis.get(key) { result in
                    x.ctx.admission.cacheResult = result
                    stepDone(x)
                }
            } else {
                w.loop.deferUntilEndOfIteration {
                    x.ctx.admission.cacheResult = .failure(.unavailable)
                    stepDone(x)
                }
            }
        }
        return .wait
    }

    /// Rate limits and cache key for an inference request of `tenant` (nil: nothing to do).
    /// `clientModel` is the name the client sent (rate limits are per that name); `target`
    /// identifies what the model resolved to (cache entries are per resolved target).
    static func ticket(_ settings: GatewaySettings, tenant: String, features f: RequestFeatures, clientModel: String, target: String,
                       request r: DownstreamRequest) -> AdmissionTicket? {
        let t = AdmissionTicket(tenant: tenant)
        t.promptEstimate = TokenReservation.promptTokens(f.scanned)
        t.tokenEstimate = TokenReservation.estimate(f.scanned, for: f.endpoint, defaultMaxTokens: settings.limits.defaultMaxTokens)
        // Per model scope (all models, then this model), the tenant's own rule wins over `*`.
        for model in [nil, clientModel] as [String?] {
            let rule = settings.rateLimits.first { $0.model == model && $0.tenant == tenant }
                ?? settings.rateLimits.first { $0.model == model && $0.tenant == "*" }
            guard let rule else { continue }
            let suffix = model.map { "@" + $0 } ?? ""
            if let rpm = rule.requestsPerMinute {
                if t.requestLimitIndex == nil { t.requestLimitIndex = t.limits.count }
                t.limits.append(RateLimitCheck(key: RateLimitKeys.key(limitName: "requests" + suffix, tenant: tenant),
                                               limit: .perMinute(rpm, burst: rule.requestBurst), cost: 1))
            }
            if let tpm = rule.tokensPerMinute {
                if t.tokenLimitIndex == nil { t.tokenLimitIndex = t.limits.count }
                t.tokenLimitIndices.append(t.limits.count)
                t.limits.append(RateLimitCheck(key: RateLimitKeys.key(limitName: "tokens" + suffix, tenant: tenant),
                                               limit: .perMinute(tpm, burst: rule.tokenBurst), cost: t.tokenEstimate))
            }
        }
        let cache = settings.cache
        if cache.enabled && f.traits.cache != .never {
            let control = r.header(named: "cache-control").map { Array($0) } ?? []
            let opt = r.header(named: "x-sluice-cache").map { String(decoding: $0, as: UTF8.self).lowercased() }
            let deterministic = f.traits.cache == .deterministic || f.scanned.temperature == 0
                || (cache.seedIsDeterministic && f.scanned.seed != nil)
            if opt != "bypass" && (deterministic || opt == "force") {
                t.cacheLookup = !directive(control, "no-cache")
                t.cacheStore = !directive(control, "no-store")
                if t.cacheLookup || t.cacheStore {
                    // The normalized request: which API, then the body in canonical form
                    // without `model` (keyed by the resolved target) and `user`.
                    var request = Array(f.endpoint.description.utf8)
                    request.append(10)
                    do {
                        try CanonicalJSON.append(r.body, dropping: ["model", "user"], to: &request)
                        t.cacheKey = ResponseCacheKeys.key(scope: cache.scope == .shared ? .shared : .tenant(tenant),
                                                           model: target, request: request)
                    } catch {
                        t.cacheLookup = false
                        t.cacheStore = false
                    }
                }
            }
        }
        return t.limits.isEmpty && t.cacheKey == nil ? nil : t
    }

    /// Whether a `Cache-Control` value holds `directive` (case-insensitive, comma-separated).
    static func directive(_ value: [UInt8], _ directive: String) -> Bool {
        let d = Array(directive.utf8)
        for part in value.split(separator: UInt8(ascii: ",")) {
            var p = part[...]
            while let c = p.first, c == 32 || c == 9 { p = p.dropFirst() }
            while let c = p.last, c == 32 || c == 9 { p = p.dropLast() }
            if p.count == d.count && zip(p, d).allSatisfy({ ($0 | 0x20) == $1 }) { return true }
        }
        return false
    }

    /// One Redis reply arrived; with the last, decide.
    private static func stepDone(_ x: Exchange) {
        x.ctx.admission.pending -= 1
        guard x.ctx.admission.pending == 0, let t = x.ctx.admission.ticket else { return }
        x.resume(decide(x, t))
    }

    /// Rate limits first (a limited request is not served, not even from the cache), then the
    /// cache.
    static func decide(_ x: Exchange, _ t: AdmissionTicket) -> PhaseAction {
        let w = x.worker
        let failClosed = x.settings.redis?.onFailure == .closed
        if !t.limits.isEmpty {
            var decision: RateLimitDecision
            switch x.ctx.admission.limitResult {
            case .success(let d)?:
                decision = d
                x.ctx.admission.limitOutcome = d.allowed ? .allowed : .limited
            default:
                w.metrics.add(w.limitSlots[LimitOutcome.error.rawValue]!)
                if failClosed { return .respond(LocalResponse(.unavailable("Rate limiting is unavailable; try again shortly."))) }
                decision = w.localCheck(t.limits)
                x.ctx.admission.chargedLocally = true
                x.ctx.admission.limitOutcome = decision.allowed ? .local : .limited
            }
            w.metrics.add(w.limitSlots[(x.ctx.admission.limitOutcome ?? .allowed).rawValue]!)
            let headers = rateLimitHeaders(decision, t)
            if !decision.allowed {
                let denied = decision.results.firstIndex { !$0.allowed } ?? 0
                let kind: OpenAIError.RateLimitKind = t.tokenLimitIndices.contains(denied) ? .tokens : .requests
                var e = OpenAIError.rateLimited(kind, limit: t.limits[denied].limit.limit,
                                                retryAfterSeconds: decision.retryAfterSeconds.map(Double.init))
                if decision.retryAfterSeconds == nil {
                    e.message = "Request too large for the \(kind.rawValue) limit of \(t.limits[denied].limit.limit) per minute (it needs \(t.limits[denied].cost))."
                }
                e.headers = headers
                if let s = decision.retryAfterSeconds { e.headers.append(.init("Retry-After", String(s))) }
                return .respond(LocalResponse(e))
            }
            x.ctx.response.headers += headers
        }
        if t.cacheLookup {
            switch x.ctx.admission.cacheResult {
            case .success(let value?)?:
                if let hit = cachedResponse(x, value) {
                    x.ctx.admission.cacheOutcome = .hit
                    w.metrics.add(w.cacheSlots[CacheOutcome.hit.rawValue]!)
                    // The pool did no work: give the reserved tokens back.
                    if !t.tokenLimitIndices.isEmpty {
                        w.settleLimits(t.tokenLimitIndices.map {
                            RateLimitCheck(key: t.limits[$0].key, limit: t.limits[$0].limit, cost: -t.tokenEstimate)
                        }, locally: x.ctx.admission.chargedLocally)
                        t.tokenLimitIndices = []
                    }
                    return .respond(hit)
                }
                x.ctx.admission.cacheOutcome = .miss  // not an entry we wrote: overwrite it
            case .success(nil)?:
                x.ctx.admission.cacheOutcome = .miss
            default:
                x.ctx.admission.cacheOutcome = .error
                if failClosed {
                    w.metrics.add(w.cacheSlots[CacheOutcome.error.rawValue]!)
                    return .respond(LocalResponse(.unavailable("The response cache is unavailable; try again shortly.")))
                }
            }
            w.metrics.add(w.cacheSlots[x.ctx.admission.cacheOutcome!.rawValue]!)
            x.ctx.response.headers.append(.init("x-sluice-cache", "miss"))
        } else if t.cacheStore {
            x.ctx.admission.cacheOutcome = .bypass
            w.metrics.add(w.cacheSlots[CacheOutcome.bypass.rawValue]!)
        }
        return .next
    }

    /// OpenAI's rate-limit fields for the limits reported.
    static func rateLimitHeaders(_ d: RateLimitDecision, _ t: AdmissionTicket) -> [OpenAIError.Header] {
        var h: [OpenAIError.Header] = []
        for (kind, index) in [("requests", t.requestLimitIndex), ("tokens", t.tokenLimitIndex)] {
            guard let i = index, i < d.results.count else { continue }
            let r = d.results[i]
            h.append(.init("x-ratelimit-limit-\(kind)", String(r.limit)))
            h.append(.init("x-ratelimit-remaining-\(kind)", String(r.remaining)))
            h.append(.init("x-ratelimit-reset-\(kind)", RateLimitHeaders.resetValue(r.resetAfter)))
        }
        return h
    }

    /// A cache entry as the response Sluice answers with (status, content type and body as
    /// stored: a stream is replayed byte for byte); nil if `value` is not an entry of ours.
    static func cachedResponse(_ x: Exchange, _ value: [UInt8]) -> LocalResponse? {
        guard let l = value.withUnsafeBytes({ ResponseCacheEntry.layout(of: $0) }) else { return nil }
        var r = LocalResponse(status: l.status, contentType: "", body: Array(value[l.body]))
        r.contentType = Array(value[l.contentType])
        r.headers = x.ctx.response.headers
        r.headers.append(.init("x-sluice-cache", "hit"))
        let age = WallClock.now().seconds - Int(l.storedAt)
        if l.storedAt > 0 && age >= 0 { r.headers.append(.init("Age", String(age))) }
        if x.settings.proxy.routeHeader { r.headers.append(.init("x-sluice-route", RouteReason.cache.rawValue)) }
        x.ctx.attempt.routeReason = .cache
        return r
    }
}

extension Worker {
    // MARK: Redis or the local limiter

    func checkLimits(_ checks: [RateLimitCheck], _ done: @escaping (Result<RateLimitDecision, RedisError>) -> Void) {
        guard let limiter = rateLimiter else {
            loop.deferUntilEndOfIteration { done(.failure(.unavailable)) }
            return
        }
        limiter.check(checks, completion: done)
    }

    func localCheck(_ checks: [RateLimitCheck]) -> RateLimitDecision {
        localLimiter.check(checks, now: Int64(loop.now.nanoseconds))
    }

    func settleLimits(_ corrections: [RateLimitCheck], locally: Bool) {
        if locally || rateLimiter == nil {
            localLimiter.settle(corrections, now: Int64(loop.now.nanoseconds))
        } else {
            rateLimiter!.reconcile(corrections) { [unowned self] result in
                if case .failure = result {
                    // Redis went away after admission: keep the correction locally.
                    localLimiter.settle(corrections, now: Int64(loop.now.nanoseconds))
                }
            }
        }
    }
}
