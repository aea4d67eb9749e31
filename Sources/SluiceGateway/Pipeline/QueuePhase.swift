import SluiceBase
import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRouting
import SluiceSettings

/// Queue: flow control when the pool is saturated. While any endpoint has room and nobody waits
/// ahead, a request goes straight on (a few atomic loads, no lock). Otherwise it waits in the
/// pool's queue (shared by the workers): per priority band (`critical` first; `sheddable` is
/// refused at once), per tenant, served fairly in tokens (or in turns) as endpoints free up;
/// bounded in requests and bytes, per tenant and in all (429 for a tenant's share, 503 for the
/// pool's, with a Retry-After from the pool's drain rate), and in time (`queue_ttl`, then
/// 503). A client that leaves is taken out at once. A pool with no endpoint holds requests up
/// to the TTL, so an endpoint that appears (a reload, DNS, a scale from zero) still serves them.
enum QueuePhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        // A pool with no admitted endpoint does not hold a request that has a fallback model:
        // it goes there at once (issue 26; the queue phase runs again for that model's pool).
        if x.ctx.target.fallbackChain != nil, FallbackPhase.poolIsDown(x), FallbackPhase.advance(x, .noEndpoint) { return .again }
        let g = x.ctx.generation  // read in place: a copy of the settings would retain every field
        guard g.value.flow.enabled, let pool = x.pool else { return .next }
        let band: PriorityBand
        switch priority(x) {
        case .success(let b): band = b
        case .failure(let e): return .respond(LocalResponse(e))
        }
        x.ctx.queue.band = band
        let flow = pool.shared.flow
        let now = x.loop.now
        // A slot kept for this tenant's next request (it ended one moments ago): take it.
        if flow.held.load(ordering: .relaxed) > 0, band != .sheddable {
            nameTenant(x)
            if flow.takeHold(tenant: x.ctx.tenant, now: now) {
                x.ctx.queue.counted = true
                return .next
            }
        }
        // Straight through while there is room and nobody waits ahead: no lock, no added
        // latency. Once the pool has been saturated (its endpoints' concurrency is known), the
        // request counts in its tenant's share.
        if flow.queued.load(ordering: .relaxed) == 0, !pool.endpoints.isEmpty {
            // Sheddable requests leave the pool's headroom to the bands above them.
            let free = PoolFlow.freeSlots(pool, flow: g.value.flow, staleness: g.value.telemetry.staleness, now: now, pending: flow.pending.load(ordering: .relaxed) + flow.held.load(ordering: .relaxed),
                                          headroom: band == .sheddable ? g.value.flow.sheddableHeadroom : 0)
            if free > 0 {
                if free != .max {
                    nameTenant(x)
                    x.ctx.queue.counted = true
                }
                return .next
            }
        }
        let w = x.worker
        if band == .sheddable {
            flow.lastShedAt.store(now.nanoseconds, ordering: .relaxed)
            w.metrics.add(pool.slots.queue[1])
            return .respond(overloaded(flow, "The pool is saturated; sheddable requests are not queued. Retry later."))
        }
        nameTenant(x)
        var bytes = 0
        x.client.withRequest { r in bytes = r.head.length + r.body.count }
        let cost = x.ctx.features.map { TokenReservation.estimate($0.scanned, for: $0.endpoint, defaultMaxTokens: g.value.limits.defaultMaxTokens) } ?? 1
        switch flow.enqueue(PoolFlow.Waiter(exchange: x, loop: x.loop), tenant: x.ctx.tenant, band: band, cost: cost, bytes: bytes, now: now, settings: g.value) {
        case .queued(let id):
            x.ctx.queue.id = id
            x.ctx.queue.enqueuedAt = now
            x.ctx.queue.bytes = bytes
            // The prompt's prefix hashes leave the worker's scratch space while it waits.
            RoutePhase.savePrefixHashes(x)
            x.waitInQueue(until: g.value.flow.queueTTL)
            x.worker.flowWaiting()
            // Room may be there (others were waiting ahead): the fairest goes now.
            flow.dispatch(pool, g.value, now: now)
            return .wait
        case .refused(.tenantFull):
            w.metrics.add(pool.slots.queue[3])
            var e = ErrorResponse(status: 429, message: "Too many of your requests are waiting for this pool; retry later.",
                                  type: "rate_limit_error", param: nil, code: "queue_full")
            e.headers = [.init("Retry-After", String(flow.retryAfterSeconds()))]
            return .respond(LocalResponse(e))
        case .refused(.poolFull):
            w.metrics.add(pool.slots.queue[4])
            return .respond(overloaded(flow, "The pool is saturated and its queue is full; retry later."))
        }
    }

    /// The request's band: an `x-sluice-priority` header its key may set, else its key's band,
    /// else its model's, else `standard`. A header the key may not set is refused (403).
    static func priority(_ x: Exchange) -> Result<PriorityBand, ErrorResponse> {
        var header: [UInt8]?
        x.client.withRequest { r in header = r.head.first(.xSluicePriority).map { Array(r.bytes.slice($0.value)) } }
        if let h = header {
            guard x.ctx.queue.keyPriority?.allowHeader == true else {
                return .failure(ErrorResponse(status: 403, message: "This API key may not set x-sluice-priority.",
                                              type: "permission_error", param: nil, code: "priority_not_allowed"))
            }
            guard let b = PriorityBand(name: String(decoding: h, as: UTF8.self).lowercased()) else {
                return .failure(.client(400, "x-sluice-priority must be critical, standard or sheddable.", code: "invalid_priority"))
            }
            return .success(b)
        }
        if let b = x.ctx.queue.keyPriority?.band { return .success(b) }
        if let b = x.ctx.target.modelPriority { return .success(b) }
        return .success(.standard)
    }

    /// Names the request's tenant for fairness if nothing has yet (see ``tenantForQueue(_:)``).
    static func nameTenant(_ x: Exchange) {
        let g = x.ctx.generation  // read in place: a copy of the settings would retain every field
        if x.ctx.tenant == "anonymous" && g.value.auth == nil && g.value.redis == nil && !g.value.kvIsolation { x.ctx.tenant = tenantForQueue(x) }
    }

    /// Without `auth` (and without Redis, which names tenants already), each distinct API key is
    /// its own tenant for fairness: `key-` and a hash prefix, or `anonymous`.
    static func tenantForQueue(_ x: Exchange) -> String {
        var tenant = "anonymous"
        x.client.withRequest { r in
            if case .success(let t) = AuthenticatePhase.tenant(auth: nil, authorization: r.header(named: "authorization")) { tenant = t }
        }
        return tenant
    }

    static func overloaded(_ flow: PoolFlow, _ message: String) -> LocalResponse {
        var e = ErrorResponse.unavailable(message)
        e.code = "overloaded"
        e.headers = [.init("Retry-After", String(flow.retryAfterSeconds()))]
        return LocalResponse(e)
    }

    // MARK: leaving the queue

    /// Its turn came (on the exchange's loop): on to routing, or, if it left meanwhile, the
    /// slot goes to the next.
    static func dispatched(_ x: Exchange) {
        guard let pool = x.pool else { return }
        let flow = pool.shared.flow
        flow.pending.add(-1, ordering: .relaxed)
        guard x.stage == .pipeline(.queue), x.ctx.queue.id != nil else {
            flow.dispatch(pool, x.settings, now: x.loop.now)
            return
        }
        x.ctx.queue.id = nil
        // A reload while it waited (endpoints added: a scale from zero) made a new pool object:
        // the request goes to the pool as it is now.
        if let current = x.worker.pool(named: pool.name), current !== pool { x.ctx.target.pool = current }
        if x.pool!.endpoints.isEmpty {
            // Dispatched by a worker that has the reload already; this one does not yet: back in
            // line (its own reload dispatches again), its deadline unchanged.
            let g = x.ctx.generation
            let cost = x.ctx.features.map { TokenReservation.estimate($0.scanned, for: $0.endpoint, defaultMaxTokens: g.value.limits.defaultMaxTokens) } ?? 1
            if case .queued(let id) = flow.enqueue(PoolFlow.Waiter(exchange: x, loop: x.loop), tenant: x.ctx.tenant, band: x.ctx.queue.band,
                                                   cost: cost, bytes: x.ctx.queue.bytes, now: x.loop.now, settings: g.value) {
                x.ctx.queue.id = id
                x.worker.flowWaiting()
                return
            }
        }
        let waited = x.loop.now.since(x.ctx.queue.enqueuedAt ?? x.loop.now)
        x.ctx.queue.waited = waited
        x.ctx.queue.counted = true
        x.worker.metrics.add(pool.slots.queue[0])
        x.worker.metrics.observe(pool.slots.queueWait, GatewayMetrics.latencyBuckets, Double(waited.nanoseconds) / 1e9)
        x.resume(.next)
    }

    /// Waited `queue_ttl`: 503 with Retry-After.
    static func expired(_ x: Exchange) {
        guard let pool = x.pool, let id = x.ctx.queue.id else { return }
        guard pool.shared.flow.remove(id, band: x.ctx.queue.band, bytes: x.ctx.queue.bytes) else { return }  // dispatched meanwhile
        x.ctx.queue.id = nil
        x.ctx.queue.waited = x.loop.now.since(x.ctx.queue.enqueuedAt ?? x.loop.now)
        x.worker.metrics.add(pool.slots.queue[2])
        x.respond(overloaded(pool.shared.flow, "The request waited \(x.settings.flow.queueTTL.secondsText) for the saturated pool; retry later."))
    }

    /// The exchange ended while queued (the client left): out of the queue at once.
    static func leave(_ x: Exchange) {
        guard let pool = x.pool, let id = x.ctx.queue.id else { return }
        x.ctx.queue.id = nil
        if pool.shared.flow.remove(id, band: x.ctx.queue.band, bytes: x.ctx.queue.bytes) {
            x.worker.metrics.add(pool.slots.queue[5])
        }
    }
}

extension Duration {
    /// `30 s`, `1.5 s` (messages).
    var secondsText: String {
        let s = Double(nanoseconds) / 1e9
        return s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
    }
}
