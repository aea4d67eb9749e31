import SluiceIO

/// How a pool picks an endpoint (`pools[].routing`).
public enum RoutingPolicy: String, Sendable {
    /// Filters (health, adapter), then weighted scores: prefix affinity 3, queue 2, KV use 2,
    /// gateway in-flight 1, plus 3 for the prefix's home (rendezvous hashing of its first block,
    /// alike on every replica); a load guard keeps a cache miss from piling onto a busy endpoint.
    case `default`
    case roundRobin = "round_robin"
    case leastLoaded = "least_loaded"
}

/// Why an endpoint was chosen (metrics and the optional `x-sluice-route` header).
enum RouteReason: String, CaseIterable {
    case roundRobin = "round_robin"
    case prefixHit = "prefix_hit"
    case rendezvous = "new_prefix"
    case leastLoaded = "least_loaded"
    case adapter = "adapter_affinity"
    case onlyCandidate = "only_candidate"
    case panic = "no_healthy_endpoint"
    /// Served from the response cache: no endpoint was picked.
    case cache = "cache_hit"

    /// Position in `allCases`: per-reason metric slots are an array indexed by it, so counting a
    /// decision is an index, not a dictionary lookup (RouterTableTests checks the order).
    var ordinal: Int {
        switch self {
        case .roundRobin: 0
        case .prefixHit: 1
        case .rendezvous: 2
        case .leastLoaded: 3
        case .adapter: 4
        case .onlyCandidate: 5
        case .panic: 6
        case .cache: 7
        }
    }
}

/// Per-worker space for one decision's candidates, grown to the largest pool seen and reused.
final class RouterScratch {
    private var buffer = UnsafeMutableBufferPointer<Router.Candidate>.allocate(capacity: 64)

    func candidates(_ n: Int) -> UnsafeMutableBufferPointer<Router.Candidate> {
        if buffer.count < n {
            buffer.deallocate()
            buffer = .allocate(capacity: max(n, buffer.count * 2))
        }
        return buffer
    }

    deinit { buffer.deallocate() }
}

/// The pick phase. Reads endpoint state (health, the gateway's in-flight counts, scraped queue
/// and KV use, adapters) and the shared prefix index; the caller commits the choice.
enum Router {
    struct Candidate {
        var index: Int
        var load: Double
        var kv: Double
        var adapterScore: Double
        var prefix: Double
        var rendezvous: UInt64
        /// The runtime's id (the prefix index's key).
        var id: Int
    }

    static func pick(pool: UpstreamPool, scored: Bool, adapter: String?, prefixHashes: UnsafeBufferPointer<UInt64>,
                     index: PrefixIndex, excluding: Int?, now: Instant, staleness: Duration,
                     scratch: RouterScratch) -> (UpstreamPool.Endpoint, RouteReason)? {
        let eps = pool.endpoints
        if eps.isEmpty { return nil }
        if pool.policy == .roundRobin || !scored {
            guard let e = pool.pick(excluding: excluding, now: now) else { return nil }
            return (e, .roundRobin)
        }
        // Filters: admitted (health), not the endpoint that just failed, able to serve the
        // adapter. Candidates go into the worker's scratch space: a decision allocates nothing.
        let cands = scratch.candidates(eps.count)
        var n = 0
        var minLoad = Double.infinity, maxLoad = -Double.infinity
        let runtimes = pool.runtimes
        for i in 0..<runtimes.count where i != excluding || runtimes.count == 1 {
            let candidate = runtimes[i]._withUnsafeGuaranteedRef { rt -> Candidate? in
                guard rt.isAdmitted(at: now) else { return nil }
                let scraped = rt.scrapedAtNanos.load(ordering: .relaxed)
                // A worker's clock is read once per loop iteration, so a scrape may look newer than now.
                let fresh = scraped != 0 && (now.nanoseconds <= scraped || now.nanoseconds - scraped <= UInt64(max(0, staleness.nanoseconds)))
                var adapterScore = 1.0
                if let a = adapter {
                    // GIE's LoRA affinity: 1 loaded/running, 0.6 waiting; not registered there:
                    // filtered out (on-demand loading picks where to register it). Adapter lists
                    // are behind the lock (adapter requests only; copied out: none).
                    adapterScore = rt.telemetry.withLock { t in
                        if t.adaptersRunning.contains(a) || t.adaptersLoaded.contains(a) { return 1 }
                        if t.adaptersWaiting.contains(a) { return 0.6 }
                        return t.scrapedAt.nanoseconds == 0 ? 0.5 : -1  // 0.5: not scraped yet
                    }
                    if adapterScore < 0 { return nil }
                }
                let waiting = fresh ? Double(rt.waitingNow.load(ordering: .relaxed)) : 0
                let load = Double(rt.inflight.load(ordering: .relaxed)) + waiting
                let kv = fresh ? Double(bitPattern: rt.kvUseBits.load(ordering: .relaxed)) : 0
                return Candidate(index: i, load: load, kv: kv, adapterScore: adapterScore, prefix: 0, rendezvous: rt.addressHash,
                                 id: rt.id)
            }
            guard let c = candidate else { continue }
            cands[n] = c
            n += 1
            minLoad = min(minLoad, c.load)
            maxLoad = max(maxLoad, c.load)
        }
        if n == 0 {
            // Nothing passes the filters: every endpoint ejected or none has the adapter.
            if adapter == nil, let e = pool.pick(excluding: excluding, now: now) { return (e, .panic) }
            return nil
        }
        if n == 1 { return (eps[cands[0].index], .onlyCandidate) }
        if pool.policy == .leastLoaded {
            var best = -1
            for k in 0..<n where cands[k].load == minLoad && (best < 0 || cands[k].rendezvous < cands[best].rendezvous) { best = k }
            return (eps[cands[best].index], .leastLoaded)
        }
        // Prefix affinity from the shared index: at most one endpoint holds the longest run.
        let blocks = prefixHashes.count
        if blocks > 0, let m = index.match(prefixHashes, accepts: { id in
            for k in 0..<n where cands[k].id == id { return true }
            return false
        }) {
            for k in 0..<n where cands[k].id == m.endpoint { cands[k].prefix = Double(m.blocks) / Double(blocks) }
        }
        // Load guard: an endpoint far busier than the least loaded one is not eligible, even
        // with a cache hit (SGLang's failure: piling onto a busy worker after a miss). The least
        // loaded one always is.
        let bound = max(minLoad * 2, minLoad + 8)
        let first = blocks > 0 ? prefixHashes[0] : 0
        // The prefix's home: rendezvous hashing of its first block over the eligible endpoints,
        // which every replica computes alike, sharing nothing (consistent hashing with bounded
        // load: the guard above is the bound).
        var rendezvousPick = -1
        if blocks > 0 {
            var top: UInt64 = 0
            for k in 0..<n where cands[k].load <= bound {
                let h = ModelTable.mix(cands[k].rendezvous ^ first)
                if rendezvousPick < 0 || h > top {
                    top = h
                    rendezvousPick = cands[k].index
                }
            }
        }
        var bestScore = -Double.infinity
        var best = -1
        for k in 0..<n where cands[k].load <= bound {
            let c = cands[k]
            let queueScore = maxLoad > minLoad ? 1 - (c.load - minLoad) / (maxLoad - minLoad) : 1
            var score = 3 * c.prefix + 2 * queueScore + 2 * (1 - c.kv) + 1 * c.adapterScore
            // The home is where the other replicas send this prefix: worth as much as a full
            // prefix hit, and counted even when this replica's own index says the prefix is
            // elsewhere. With the bonus for unseen prefixes only, each replica's load view
            // pulled grown chats to different endpoints: 3 replicas reached 93-96 % of one
            // replica's hit rate; counted always, 101 % (Benchmarks/routing-quality.py, 2026-12-05).
            if c.index == rendezvousPick { score += 3 }
            if best < 0 || score > bestScore || (score == bestScore && c.rendezvous > cands[best].rendezvous) {
                bestScore = score
                best = k
            }
        }
        let chosen = cands[best]
        var reason = RouteReason.leastLoaded
        if chosen.prefix > 0 { reason = .prefixHit } else if chosen.index == rendezvousPick { reason = .rendezvous }
        else if adapter != nil { reason = .adapter }
        return (eps[chosen.index], reason)
    }
}

extension Router {
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
            let tie = ModelTable.mix(e.runtime.addressHash ^ key)
            if best == nil || load < best!.1 || (load == best!.1 && tie > best!.2) { best = (e, load, tie) }
        }
        return best?.0
    }
}
