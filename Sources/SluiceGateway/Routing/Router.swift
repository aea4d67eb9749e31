import SluiceIO
import SluiceSettings
import SluiceRouting

/// Per-worker space for one decision's candidates, grown to the largest pool seen and reused.
final class RouterScratch {
    private var buffer = UnsafeMutableBufferPointer<Candidate>.allocate(capacity: 64)

    func candidates(_ n: Int) -> UnsafeMutableBufferPointer<Candidate> {
        if buffer.count < n {
            buffer.deallocate()
            buffer = .allocate(capacity: max(n, buffer.count * 2))
        }
        return buffer
    }

    deinit { buffer.deallocate() }
}

/// The pick phase: read → decide → commit. It reads endpoint state (health, the gateway's
/// in-flight counts, scraped queue and KV use, adapters) and the shared prefix index into
/// candidates, lets the pool's ``RoutingProfile`` decide (pure, SluiceRouting), and the caller
/// commits the choice.
enum Router {
    static func pick(pool: UpstreamPool, scored: Bool, adapter: String?, prefixHashes: UnsafeBufferPointer<UInt64>,
                     index: PrefixIndex, excluding: Int?, now: Instant, staleness: Duration,
                     flow: GatewaySettings.FlowControl? = nil,
                     scratch: RouterScratch, random: inout SplitMix64) -> (UpstreamPool.Endpoint, RouteReason)? {
        let eps = pool.endpoints
        if eps.isEmpty { return nil }
        if pool.policy == .roundRobin || !scored {
            guard let e = pool.pick(excluding: excluding, now: now) else { return nil }
            guard let flow, adapter == nil else { return (e, .roundRobin) }
            // Under flow control, the next one in turn with room (if any has).
            var next = e
            for _ in 0..<eps.count {
                if PoolFlow.room(next.runtime, flow: flow, now: now, staleness: staleness) != 0 { return (next, .roundRobin) }
                guard let n = pool.pick(excluding: excluding, now: now) else { break }
                next = n
            }
            return (e, .roundRobin)
        }
        // Read: every endpoint but the one that just failed, as the profile's filters see it.
        // Candidates go into the worker's scratch space: a decision allocates nothing.
        let cands = scratch.candidates(eps.count)
        var n = 0
        let runtimes = pool.runtimes
        let staleNanos = UInt64(max(0, staleness.nanoseconds))
        for i in 0..<runtimes.count where i != excluding || runtimes.count == 1 {
            cands[n] = runtimes[i]._withUnsafeGuaranteedRef { rt in
                let scraped = rt.scrapedAtNanos.load(ordering: .relaxed)
                // A worker's clock is read once per loop iteration, so a scrape may look newer than now.
                let fresh = scraped != 0 && (now.nanoseconds <= scraped || now.nanoseconds - scraped <= staleNanos)
                var state = AdapterState.notRequested
                if let a = adapter {
                    // Adapter lists are behind the lock (adapter requests only; copied out: none).
                    state = rt.telemetry.withLock { t in
                        if t.adaptersRunning.contains(a) { return .running }
                        if t.adaptersWaiting.contains(a) { return .waiting }
                        if t.adaptersLoaded.contains(a) {
                            return t.maxLoras > 0 && t.adaptersRunning.count >= t.maxLoras ? .registeredSlotsFull : .registeredSlotFree
                        }
                        return t.scrapedAt.nanoseconds == 0 ? .unknown : .absent
                    }
                }
                return Candidate(index: i, id: rt.id, admitted: rt.isAdmitted(at: now), inflight: rt.inflight.load(ordering: .relaxed),
                                 waiting: fresh ? rt.waitingNow.load(ordering: .relaxed) : 0,
                                 kvUse: fresh ? Double(bitPattern: rt.kvUseBits.load(ordering: .relaxed)) : 0,
                                 adapter: state, homeHash: rt.addressHash)
            }
            n += 1
        }
        if let flow, adapter == nil { keepToRoom(cands, count: n, runtimes: runtimes, flow: flow, now: now, staleness: staleness) }
        let profile = pool.profile
        var request = RoutingRequest(adapterRequested: adapter != nil)
        if prefixHashes.count > 0 && profile.usesPrefix {
            request.promptBlocks = prefixHashes.count
            request.firstBlock = prefixHashes[0]
            // With one candidate there is nothing to choose (no filter reads prefix matches),
            // so the index is not asked: a sidecar in front of one model server, or a pool down
            // to one endpoint, skips a lookup per prompt block. What it is sent is still
            // recorded, for when the pool grows.
            if n > 1 { index.match(prefixHashes, into: cands, count: n) }
        }
        guard let (position, reason) = profile.decide(cands, count: n, request: request, random: &random) else {
            // Nothing passes the filters: every endpoint ejected, or none has the adapter.
            if adapter == nil, let e = pool.pick(excluding: excluding, now: now) { return (e, .panic) }
            return nil
        }
        return (eps[cands[position].index], reason)
    }
}

extension Router {
    /// Under flow control, an endpoint with no room left (its learned concurrency plus
    /// `max_waiting` in flight) is passed over while another has room: a request dispatched from
    /// the gateway's queue goes where it runs now, not into a full server's own FIFO behind
    /// others (its prefix affinity is worth less than that wait). Adapter requests are left
    /// alone: loading the adapter elsewhere costs more than a short wait where it is.
    private static func keepToRoom(_ cands: UnsafeMutableBufferPointer<Candidate>, count n: Int, runtimes: [Unmanaged<EndpointRuntime>],
                                   flow: GatewaySettings.FlowControl, now: Instant, staleness: Duration) {
        var full = 0, open = 0
        for k in 0..<n where cands[k].admitted {
            if PoolFlow.room(runtimes[cands[k].index].takeUnretainedValue(), flow: flow, now: now, staleness: staleness) == 0 { full += 1 } else { open += 1 }
        }
        guard full > 0 && open > 0 else { return }
        for k in 0..<n where cands[k].admitted {
            if PoolFlow.room(runtimes[cands[k].index].takeUnretainedValue(), flow: flow, now: now, staleness: staleness) == 0 { cands[k].admitted = false }
        }
    }

    /// Where to load an adapter no endpoint has: among admitted endpoints with a free LoRA slot
    /// (fewer adapters running than `max_lora`, or not known yet), the least loaded; ties go by
    /// rendezvous hashing of the adapter name, so replicas that share nothing pick alike.
    static func loadTarget(pool: UpstreamPool, adapter: String, now: Instant) -> UpstreamPool.Endpoint? {
        let key = ModelTable.hash(Array(adapter.utf8))
        var best: (UpstreamPool.Endpoint, Double, UInt64)?
        for e in pool.endpoints where e.runtime.isAdmitted(at: now) && e.config.tls == nil {
            let (full, waiting) = e.runtime.telemetry.withLock { t in
                (t.maxLoras > 0 && t.adaptersRunning.count >= t.maxLoras, t.waiting)
            }
            if full { continue }
            let load = Double(e.runtime.inflight.load(ordering: .relaxed) + waiting)
            let tie = SplitMix64.mix(e.runtime.addressHash ^ key)
            if best == nil || load < best!.1 || (load == best!.1 && tie > best!.2) { best = (e, load, tie) }
        }
        return best?.0
    }
}
