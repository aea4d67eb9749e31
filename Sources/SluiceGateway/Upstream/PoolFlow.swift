import SluiceIO
import SluiceRouting
import SluiceSettings
import Synchronization

/// What the workers of a process share about one pool: the round-robin position and the flow
/// control queue (kept across reloads, by pool name).
final class SharedPool: Sendable {
    let roundRobin = SharedCounter()
    let flow = PoolFlow()
}

/// A pool's flow control, shared by every worker: the requests waiting while all its
/// endpoints are saturated (a ``FairQueue`` behind a lock held only to add, take or remove
/// one), and the dispatch that hands them back to their own worker's loop as room appears.
///
/// Room is counted, not guessed: an endpoint whose concurrency was learned has
/// `capacity + max_waiting − in flight` slots; one not learned yet has room while its scraped
/// queue is short. Requests handed out but not yet leased an endpoint (`pending`) take slots
/// too, so a burst of releases cannot over-dispatch.
final class PoolFlow: @unchecked Sendable {
    /// A queued request: its exchange (kept alive while it waits) and the loop it lives on.
    struct Waiter: @unchecked Sendable {
        let exchange: Exchange
        let loop: EventLoop
    }

    private struct State {
        var queue: FairQueue<Waiter>?
        /// Counted leases in flight per tenant (see ``leaseBegan(tenant:)``).
        var inflight: [String: Int] = [:]
        /// Slots kept for a tenant's next request, until a time (ns).
        var holds: [(tenant: String, until: UInt64)] = []
    }
    private let state = Mutex(State())
    /// Slots held now (a mirror of the holds, for the request path's lock-free check).
    let held = Atomic<Int>(0)
    /// When a sheddable request was last refused (monotonic nanoseconds; 0: never): batch
    /// traffic is filling the pool, which is contention for the bands above it too.
    let lastShedAt = Atomic<UInt64>(0)
    /// Mirrors of the queue's size for lock-free checks on the request path.
    let queued = Atomic<Int>(0)
    let queuedBytes = Atomic<Int>(0)
    /// Requests dispatched that have not taken their endpoint yet.
    let pending = Atomic<Int>(0)
    /// Dispatches per second (EWMA, bits of a Double), for Retry-After.
    private let drainRate = Mutex<(rate: Double, last: UInt64, count: Int)>((0, 0, 0))
    /// Queued per band (gauges).
    let queuedCritical = Atomic<Int>(0)
    let queuedStandard = Atomic<Int>(0)
    let queuedSheddable = Atomic<Int>(0)

    init() {}

    // MARK: room

    /// Slots for more requests on `rt` (nil: not bounded — its concurrency is not learned yet
    /// and it is not saturated by its scrape).
    static func room(_ rt: EndpointRuntime, flow: GatewaySettings.FlowControl, now: Instant, staleness: Duration) -> Int? {
        if !rt.isAdmitted(at: now) { return 0 }
        let scraped = rt.scrapedAtNanos.load(ordering: .relaxed)
        let fresh = scraped != 0 && (now.nanoseconds <= scraped || now.nanoseconds - scraped <= UInt64(max(0, staleness.nanoseconds)))
        if fresh && Double(bitPattern: rt.kvUseBits.load(ordering: .relaxed)) >= flow.maxKVUse { return 0 }
        let cap = rt.learnedCapacity.load(ordering: .relaxed)
        if cap > 0 { return max(0, cap + flow.maxWaiting + rt.probe.load(ordering: .relaxed) - rt.inflight.load(ordering: .relaxed)) }
        if fresh && rt.waitingNow.load(ordering: .relaxed) > flow.maxWaiting { return 0 }
        return nil
    }

    /// Free slots in `pool` beyond those already handed out (`Int.max`: unbounded). With
    /// `headroom` (a share of the pool's learned slots, at least one when above 0) that many
    /// fewer: what `sheddable` requests may not take.
    static func freeSlots(_ pool: UpstreamPool, _ s: GatewaySettings, now: Instant, pending: Int, headroom: Double = 0) -> Int {
        var total = 0, slots = 0
        for rt in pool.runtimes {
            let r = rt.takeUnretainedValue()
            guard let free = room(r, flow: s.flow, now: now, staleness: s.telemetry.staleness) else { return .max }
            total += free
            let cap = r.learnedCapacity.load(ordering: .relaxed)
            if cap > 0 { slots += cap + s.flow.maxWaiting }
        }
        let reserved = headroom > 0 ? max(1, Int((Double(slots) * headroom).rounded(.up))) : 0
        return total - pending - reserved
    }

    // MARK: the queue

    enum Admission {
        case queued(UInt64)
        case refused(FairQueue<Waiter>.Refusal)
    }

    func enqueue(_ w: Waiter, tenant: String, band: PriorityBand, cost: Int, bytes: Int, now: Instant, settings s: GatewaySettings) -> Admission {
        let limits = FairQueue<Waiter>.Limits(maxRequests: s.flow.maxQueued, maxBytes: s.flow.maxQueuedBytes,
                                              maxRequestsPerTenant: s.flow.maxQueuedPerTenant, maxBytesPerTenant: s.flow.maxQueuedBytesPerTenant)
        let r = state.withLock { st -> Result<UInt64, FairQueue<Waiter>.Refusal> in
            // A reload that changes the policy takes effect once the queue is empty (the
            // requests in it keep their places).
            if st.queue == nil || (st.queue!.isEmpty && st.queue!.policy != s.flow.fairness) {
                st.queue = FairQueue(policy: s.flow.fairness, limits: limits)
            }
            st.queue!.limits = limits
            return st.queue!.enqueue(w, tenant: tenant, band: band, cost: cost, bytes: bytes, now: now.nanoseconds)
        }
        switch r {
        case .success(let id):
            queued.add(1, ordering: .relaxed)
            queuedBytes.add(bytes, ordering: .relaxed)
            bandCounter(band, 1)
            return .queued(id)
        case .failure(let why):
            return .refused(why)
        }
    }

    /// Takes request `id` out (its client left, or it waited too long); false if it was
    /// dispatched meanwhile.
    func remove(_ id: UInt64, band: PriorityBand, bytes: Int) -> Bool {
        guard state.withLock({ $0.queue?.remove(id) }) != nil else { return false }
        queued.add(-1, ordering: .relaxed)
        queuedBytes.add(-bytes, ordering: .relaxed)
        bandCounter(band, -1)
        return true
    }

    private func bandCounter(_ b: PriorityBand, _ delta: Int) {
        switch b {
        case .critical: queuedCritical.add(delta, ordering: .relaxed)
        case .standard: queuedStandard.add(delta, ordering: .relaxed)
        case .sheddable: queuedSheddable.add(delta, ordering: .relaxed)
        }
    }

    func queued(_ b: PriorityBand) -> Int {
        switch b {
        case .critical: queuedCritical.load(ordering: .relaxed)
        case .standard: queuedStandard.load(ordering: .relaxed)
        case .sheddable: queuedSheddable.load(ordering: .relaxed)
        }
    }

    /// Hands waiting requests to their loops while `pool` has room (called by any worker when
    /// room may have appeared: a request ended, a tick of a worker holding waiters).
    func dispatch(_ pool: UpstreamPool, _ s: GatewaySettings, now: Instant) {
        guard queued.load(ordering: .relaxed) > 0 else { return }
        var out: [(Waiter, UInt64, PriorityBand)] = []
        state.withLock { st in
            guard st.queue != nil else { return }
            dropExpiredHolds(&st, now: now)
            var free = Self.freeSlots(pool, s, now: now, pending: pending.load(ordering: .relaxed) + st.holds.count)
            while free > 0, let e = st.queue!.dequeue() {
                out.append((e.item, e.enqueuedAt, e.band))
                pending.add(1, ordering: .relaxed)
                free -= 1
            }
        }
        guard !out.isEmpty else { return }
        queued.add(-out.count, ordering: .relaxed)
        for (w, _, band) in out {
            queuedBytes.add(-w.exchange.ctx.queue.bytes, ordering: .relaxed)
            bandCounter(band, -1)
            w.loop.execute { QueuePhase.dispatched(w.exchange) }
        }
        drainRate.withLock { d in
            d.count += out.count
            let elapsed = now.nanoseconds &- d.last
            if d.last == 0 { d.last = now.nanoseconds } else if elapsed >= 500_000_000 {
                let r = Double(d.count) / (Double(elapsed) / 1e9)
                d.rate = d.rate == 0 ? r : 0.7 * d.rate + 0.3 * r
                d.count = 0
                d.last = now.nanoseconds
            }
        }
    }

    /// Seconds until a request queued now would likely be served (Retry-After): the queue's
    /// length over its drain rate, 1…60.
    func retryAfterSeconds() -> Int {
        let rate = drainRate.withLock { $0.rate }
        let n = Double(queued.load(ordering: .relaxed) + 1)
        guard rate > 0 else { return 5 }
        return max(1, min(60, Int((n / rate).rounded(.up))))
    }

    /// Queued requests by tenant (gauges, for configured tenants).
    func queuedBy(tenant: String) -> Int { state.withLock { $0.queue?.totals(tenant).count ?? 0 } }

    // MARK: shares and held slots

    /// A lease of a request counted in its tenant's share began (the pool was saturated lately:
    /// its endpoints' concurrency is known). Only then is the lock taken per request.
    func leaseBegan(tenant: String) {
        state.withLock { $0.inflight[tenant, default: 0] += 1 }
    }

    /// A counted lease ended: the tenant's share goes down and, if the tenant is using less
    /// than its fair share while others wait (queued, or sheddable requests being refused for a
    /// request above that band), the slot is kept for its next request for
    /// `flow_control.slot_hold` (returned: when the hold ends, nil if none); then whoever is
    /// waiting goes.
    @discardableResult
    func leaseEnded(tenant: String, band: PriorityBand = .standard, pool: UpstreamPool, _ s: GatewaySettings, now: Instant) -> Instant? {
        let shedAt = lastShedAt.load(ordering: .relaxed)
        let shedding = band != .sheddable && shedAt != 0 && now.nanoseconds &- shedAt < 1_000_000_000
        let hold = state.withLock { st -> Instant? in
            if let n = st.inflight[tenant] { st.inflight[tenant] = n > 1 ? n - 1 : nil }
            let waiting = st.queue.map { !$0.isEmpty } ?? false
            guard s.flow.slotHold > .zero, waiting || shedding, (st.queue?.totals(tenant).count ?? 0) == 0 else { return nil }
            dropExpiredHolds(&st, now: now)
            // Its fair share: the pool's slots over the tenants with requests in flight or waiting.
            var slots = 0
            for rt in pool.runtimes {
                let cap = rt.takeUnretainedValue().learnedCapacity.load(ordering: .relaxed)
                guard cap > 0 else { return nil }
                slots += cap + s.flow.maxWaiting
            }
            var tenants = st.inflight.count + 1
            if let q = st.queue {
                for t in q.queuedTenants where st.inflight[t] == nil && t != tenant { tenants += 1 }
            }
            if st.inflight[tenant] != nil { tenants -= 1 }
            let mine = (st.inflight[tenant] ?? 0) + st.holds.reduce(0) { $0 + ($1.tenant == tenant ? 1 : 0) }
            guard (mine + 1) * tenants <= slots else { return nil }
            let until = now + s.flow.slotHold
            st.holds.append((tenant, until.nanoseconds))
            held.store(st.holds.count, ordering: .relaxed)
            return until
        }
        dispatch(pool, s, now: now)
        return hold
    }

    /// Takes a slot held for `tenant`, if one is (its next request goes at once).
    func takeHold(tenant: String, now: Instant) -> Bool {
        state.withLock { st in
            dropExpiredHolds(&st, now: now)
            guard let i = st.holds.firstIndex(where: { $0.tenant == tenant }) else { return false }
            st.holds.remove(at: i)
            held.store(st.holds.count, ordering: .relaxed)
            return true
        }
    }

    private func dropExpiredHolds(_ st: inout State, now: Instant) {
        guard !st.holds.isEmpty else { return }
        st.holds.removeAll { $0.until <= now.nanoseconds }
        held.store(st.holds.count, ordering: .relaxed)
    }
}
