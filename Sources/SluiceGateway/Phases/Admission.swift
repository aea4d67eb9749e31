import SluiceHTTP
import SluiceIO
import SluiceRouting
import SluiceLLM
import SluiceRedis

/// What the admission phase must do for a request before it is forwarded: rate limits to check
/// and charge, and a response-cache key to look up and store under. Built by `plan()` while the
/// body is at hand; nil when none of it applies, so a gateway without Redis pays nothing.
final class AdmissionTicket {
    // A class, so that the plan and the exchange pass one reference around rather than this
    // whole record (through enum payloads, optionals and copies) for every request.
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

/// How a request fared in admission (metrics and the access log).
enum CacheOutcome: String { case hit, miss, bypass, error }
enum LimitOutcome: String { case allowed, limited, error, local }

extension Worker {
    // MARK: tenants

    /// The tenant of a request. With `auth` configured: the tenant of its API key, or a 401.
    /// Without: `key-` and a hash prefix of the key it sent (so keys never share cache entries
    /// or buckets), or `anonymous`. The key itself is never kept or logged.
    func tenant(headerNamed: (String) -> UnsafeRawBufferPointer?) -> Result<String, OpenAIError> {
        let token = headerNamed("authorization").flatMap(Self.bearerToken)
        guard let auth = settings.auth else {
            guard let token else { return .success("anonymous") }
            var h = SHA256()
            h.update(token)
            return .success("key-" + Hex.string(Array(h.finalize()[0..<8])))
        }
        guard let token else {
            var e = OpenAIError.invalidAPIKey("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            e.headers = [.init("WWW-Authenticate", "Bearer")]
            return .failure(e)
        }
        var h = SHA256()
        h.update(token)
        guard let tenant = auth.keys[h.finalize()] else {
            var e = OpenAIError.invalidAPIKey()
            e.headers = [.init("WWW-Authenticate", "Bearer error=\"invalid_token\"")]
            return .failure(e)
        }
        return .success(tenant)
    }

    /// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1).
    static func bearerToken(_ v: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard v.count > 7, ASCIICase.equal(v, ByteRange(0, 7), "bearer ") else { return nil }
        var s = 7, e = v.count
        while s < e && (v[s] == 32 || v[s] == 9) { s += 1 }
        while e > s && (v[e - 1] == 32 || v[e - 1] == 9) { e -= 1 }
        return s < e ? UnsafeRawBufferPointer(rebasing: v[s..<e]) : nil
    }

    // MARK: the ticket

    /// Rate limits and cache key for an inference request of `tenant` (nil: nothing to do).
    /// `clientModel` is the name the client sent (rate limits are per that name); `target`
    /// identifies what the model resolved to (cache entries are per resolved target).
    func admissionTicket(tenant: String, features f: RequestFeatures, clientModel: String, target: String,
                         body: UnsafeRawBufferPointer, headerNamed: (String) -> UnsafeRawBufferPointer?) -> AdmissionTicket? {
        guard settings.redis != nil else { return nil }
        let t = AdmissionTicket(tenant: tenant)
        t.promptEstimate = TokenReservation.promptTokens(f.scanned)
        t.tokenEstimate = TokenReservation.estimate(f.scanned, endpoint: f.endpoint, defaultMaxTokens: settings.limits.defaultMaxTokens)
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
        if cache.enabled {
            let control = headerNamed("cache-control").map { Array($0) } ?? []
            let opt = headerNamed("x-sluice-cache").map { String(decoding: $0, as: UTF8.self).lowercased() }
            let deterministic = f.endpoint == .embeddings || f.scanned.temperature == 0
                || (cache.seedIsDeterministic && f.scanned.seed != nil)
            if opt != "bypass" && (deterministic || opt == "force") {
                t.cacheLookup = !Self.directive(control, "no-cache")
                t.cacheStore = !Self.directive(control, "no-store")
                if t.cacheLookup || t.cacheStore {
                    // The normalized request: which API, then the body in canonical form
                    // without `model` (keyed by the resolved target) and `user`.
                    var request = Array(String(describing: f.endpoint).utf8)
                    request.append(10)
                    do {
                        try CanonicalJSON.append(body, dropping: ["model", "user"], to: &request)
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

extension Exchange {
    /// The admission phase: check rate limits and look the response up in the cache, both at
    /// once (pipelined on one Redis connection: one round trip), then answer 429, serve the
    /// cached response, or forward.
    func admit(_ t: AdmissionTicket) {
        phase = .admitting
        var waiting = 0
        if !t.limits.isEmpty { waiting += 1 }
        if t.cacheLookup { waiting += 1 }
        if waiting == 0 {
            forward()
            return
        }
        admissionsPending = waiting
        if !t.limits.isEmpty {
            worker.checkLimits(t.limits) { [self] result in
                limitResult = result
                admissionStepDone()
            }
        }
        if t.cacheLookup, let key = t.cacheKey {
            guard let redis = worker.redis else {
                cacheResult = .failure(.unavailable)
                admissionStepDone()
                return
            }
            redis.get(key) { [self] result in
                cacheResult = result
                admissionStepDone()
            }
        }
    }

    private func admissionStepDone() {
        admissionsPending -= 1
        guard admissionsPending == 0, phase == .admitting, let t = ticket else { return }
        let failClosed = worker.settings.redis?.onFailure == .closed
        // Rate limits first: a limited request is not served, not even from the cache.
        if !t.limits.isEmpty {
            var decision: RateLimitDecision
            switch limitResult {
            case .success(let d)?:
                decision = d
                limitOutcome = d.allowed ? .allowed : .limited
            default:
                worker.metrics.add(worker.limitSlots[LimitOutcome.error.rawValue]!)
                if failClosed {
                    fail(.unavailable("Rate limiting is unavailable; try again shortly."))
                    return
                }
                decision = worker.localCheck(t.limits)
                chargedLocally = true
                limitOutcome = decision.allowed ? .local : .limited
            }
            worker.metrics.add(worker.limitSlots[(limitOutcome ?? .allowed).rawValue]!)
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
                fail(e)
                return
            }
            responseHeaders += headers
        }
        if t.cacheLookup {
            switch cacheResult {
            case .success(let value?)?:
                if serveCached(value) {
                    cacheOutcome = .hit
                    worker.metrics.add(worker.cacheSlots[CacheOutcome.hit.rawValue]!)
                    // The pool did no work: give the reserved tokens back.
                    if !t.tokenLimitIndices.isEmpty {
                        worker.settleLimits(t.tokenLimitIndices.map {
                            RateLimitCheck(key: t.limits[$0].key, limit: t.limits[$0].limit, cost: -t.tokenEstimate)
                        }, locally: chargedLocally)
                        t.tokenLimitIndices = []
                    }
                    return
                }
                cacheOutcome = .miss  // not an entry we wrote: overwrite it
            case .success(nil)?:
                cacheOutcome = .miss
            default:
                cacheOutcome = .error
                if failClosed {
                    worker.metrics.add(worker.cacheSlots[CacheOutcome.error.rawValue]!)
                    fail(.unavailable("The response cache is unavailable; try again shortly."))
                    return
                }
            }
            worker.metrics.add(worker.cacheSlots[cacheOutcome!.rawValue]!)
            responseHeaders.append(.init("x-sluice-cache", "miss"))
        } else if t.cacheStore {
            cacheOutcome = .bypass
            worker.metrics.add(worker.cacheSlots[CacheOutcome.bypass.rawValue]!)
        }
        forward()
    }

    /// OpenAI's rate-limit fields for the limits reported.
    private func rateLimitHeaders(_ d: RateLimitDecision, _ t: AdmissionTicket) -> [OpenAIError.Header] {
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

    /// Answers from a cache entry, as if an upstream had sent it. False if `value` is not an
    /// entry (then the request goes on to the pool).
    private func serveCached(_ value: [UInt8]) -> Bool {
        guard let l = value.withUnsafeBytes({ ResponseCacheEntry.layout(of: $0) }) else { return false }
        var text: [UInt8] = Array("HTTP/1.1 \(l.status) OK\r\nContent-Type: ".utf8)
        text += value[l.contentType]
        text += Array("\r\nContent-Length: \(l.body.count)\r\n".utf8)
        let age = WallClock.now().seconds - Int(l.storedAt)
        if l.storedAt > 0 && age >= 0 { text += Array("Age: \(age)\r\n".utf8) }
        text += Array("\r\n".utf8)
        let head = HTTPHead(capacity: 8)
        var parser = HTTP1HeadParser(kind: .response)
        parser.requestMethod = method
        let parsed = text.withUnsafeBytes { parser.parse($0, into: head) }
        guard parsed == .complete else { return false }
        responseHeaders.append(.init("x-sluice-cache", "hit"))
        if settings.proxy.routeHeader { responseHeaders.append(.init("x-sluice-route", RouteReason.cache.rawValue)) }
        phase = .relaying
        text.withUnsafeBytes { client.writeResponseHead(head, $0, exchange: self) }
        if !l.body.isEmpty {
            var buffer = loop.bufferPool.take(minimumCapacity: l.body.count)
            value.withUnsafeBytes { buffer.append(UnsafeRawBufferPointer(rebasing: $0[l.body])) }
            bodyBytes = l.body.count
            client.writeResponseBody(buffer, ranges: nil)
        }
        routeReason = .cache
        finalStatus = l.status
        finish()
        client.exchangeCompleted()
        return true
    }

    // MARK: storing

    /// The response head arrived: start capturing it if it may be stored.
    func beginCapture(status: Int, contentType: UnsafeRawBufferPointer?) {
        guard let t = ticket, t.cacheStore, t.cacheKey != nil, status == 200 else { return }
        var c: [UInt8] = []
        c.reserveCapacity(4096)
        let ct = contentType ?? UnsafeRawBufferPointer(start: nil, count: 0)
        ResponseCacheEntry.appendHeader(status: status, contentType: ct, isStream: features?.stream ?? false,
                                        storedAt: Int64(WallClock.now().seconds), to: &c)
        captureHeaderBytes = c.count
        capture = c
    }

    /// Response body bytes as the client gets them.
    func captureBody(_ buffer: borrowing ByteBuffer, _ ranges: [(Int, Int)]) {
        for r in ranges {
            if capture!.count - captureHeaderBytes + (r.1 - r.0) > settings.cache.maxEntryBytes {
                capture = nil  // too large to store; relayed all the same
                return
            }
            capture!.append(contentsOf: buffer.bytes(r.0, r.1))
        }
    }

    /// The response ended: store it if it is complete and successful.
    func endCapture() {
        guard let value = capture, let key = ticket?.cacheKey else { return }
        capture = nil
        // Complete: a generation that reported why it finished (an embedding has no reason).
        guard features?.endpoint == .embeddings || observer?.finishReason != nil, let redis = worker.redis else { return }
        let w = worker
        redis.set(key, value, expireAfter: settings.cache.ttl) { result in
            if case .failure = result { w.metrics.add(w.cacheSlots["store_error"]!) } else { w.metrics.add(w.cacheSlots["stored"]!) }
        }
    }

    /// At the end: settle token limits with what the response really used (see
    /// ``TokenReservation/charge(reserved:promptEstimate:usage:relayedTokens:)``).
    func settleTokens() {
        guard let t = ticket, !t.tokenLimitIndices.isEmpty else { return }
        let used = TokenReservation.charge(reserved: t.tokenEstimate, promptEstimate: t.promptEstimate,
                                           usage: observer?.usage, relayedTokens: observer?.tokenEvents ?? 0)
        let delta = TokenReservation.saturatingAdd(used, -t.tokenEstimate)
        if delta == 0 { return }
        worker.settleLimits(t.tokenLimitIndices.map {
            RateLimitCheck(key: t.limits[$0].key, limit: t.limits[$0].limit, cost: delta)
        }, locally: chargedLocally)
    }
}
