import SluiceIO

/// How a pool picks an endpoint (`pools[].routing`).
public enum RoutingPolicy: String, Sendable {
    /// Filters (health, adapter), then weighted scores: prefix affinity 3, queue 2, KV use 2,
    /// gateway in-flight 1; rendezvous hashing of the first prompt block places a new prefix;
    /// a load guard keeps a cache miss from piling onto a busy endpoint.
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
    }

    static func pick(pool: UpstreamPool, features: RequestFeatures?, prefixHashes: UnsafeBufferPointer<UInt64>,
                     index: PrefixIndex, excluding: Int?, now: Instant, staleness: Duration) -> (UpstreamPool.Endpoint, RouteReason)? {
        let eps = pool.endpoints
        if eps.isEmpty { return nil }
        if pool.policy == .roundRobin || features == nil {
            guard let e = pool.pick(excluding: excluding, now: now) else { return nil }
            return (e, .roundRobin)
        }
        // Filters: admitted (health), not the endpoint that just failed, able to serve the adapter.
        var cands: [Candidate] = []
        cands.reserveCapacity(eps.count)
        let adapter = features?.adapter
        for (i, e) in eps.enumerated() where i != excluding || eps.count == 1 {
            guard e.runtime.isAdmitted(at: now) else { continue }
            let t = e.runtime.telemetry.withLock { $0 }
            let fresh = t.scrapedAt.nanoseconds != 0 && now.since(t.scrapedAt) <= staleness
            var adapterScore = 1.0
            if let a = adapter {
                // GIE's LoRA affinity: 1 loaded/running, 0.8 a free slot, 0.6 waiting, 0 full.
                if t.adaptersRunning.contains(a) || t.adaptersLoaded.contains(a) { adapterScore = 1 }
                else if t.adaptersWaiting.contains(a) { adapterScore = 0.6 }
                else if !fresh && t.scrapedAt.nanoseconds == 0 { adapterScore = 0.5 }  // not scraped yet
                else { continue }  // not registered there (a free slot would need on-demand loading, not built yet)
            }
            let inflight = Double(e.runtime.inflight.load(ordering: .relaxed))
            let queue = fresh ? Double(t.waiting) : 0
            cands.append(Candidate(index: i, load: queue + inflight, kv: fresh ? t.kvUse : 0, adapterScore: adapterScore,
                                   prefix: 0, rendezvous: e.runtime.addressHash))
        }
        if cands.isEmpty {
            // Nothing passes the filters: every endpoint ejected or none has the adapter.
            if adapter == nil, let e = pool.pick(excluding: excluding, now: now) { return (e, .panic) }
            return nil
        }
        if cands.count == 1 { return (eps[cands[0].index], .onlyCandidate) }
        let minLoad = cands.map(\.load).min()!
        let maxLoad = cands.map(\.load).max()!
        if pool.policy == .leastLoaded {
            let best = cands.filter { $0.load == minLoad }.min { $0.rendezvous < $1.rendezvous }!
            return (eps[best.index], .leastLoaded)
        }
        // Prefix affinity from the shared index.
        let blocks = prefixHashes.count
        var anyPrefix = false
        if blocks > 0 {
            let matched = index.match(prefixHashes, endpointIDs: cands.map { eps[$0.index].runtime.id })
            for k in cands.indices {
                let m = matched[eps[cands[k].index].runtime.id] ?? 0
                cands[k].prefix = Double(m) / Double(blocks)
                if m > 0 { anyPrefix = true }
            }
        }
        // Load guard: an endpoint far busier than the least loaded one is not eligible, even
        // with a cache hit (SGLang's failure: piling onto a busy worker after a miss).
        let bound = max(minLoad * 2, minLoad + 8)
        var eligible = cands.filter { $0.load <= bound }
        if eligible.isEmpty { eligible = cands }
        var bestScore = -Double.infinity
        var best = eligible[0]
        var reason = RouteReason.leastLoaded
        let first = blocks > 0 ? prefixHashes[0] : 0
        // New prefix: rendezvous hashing of its first block over the eligible endpoints, so
        // replicas that share nothing still agree where it goes.
        var rendezvousPick = -1
        if !anyPrefix && blocks > 0 {
            rendezvousPick = eligible.max { ModelTable.mix($0.rendezvous ^ first) < ModelTable.mix($1.rendezvous ^ first) }!.index
        }
        for c in eligible {
            let queueScore = maxLoad > minLoad ? 1 - (c.load - minLoad) / (maxLoad - minLoad) : 1
            var score = 3 * c.prefix + 2 * queueScore + 2 * (1 - c.kv) + 1 * c.adapterScore
            if c.index == rendezvousPick { score += 1.5 }
            if score > bestScore || (score == bestScore && c.rendezvous > best.rendezvous) {
                bestScore = score
                best = c
            }
        }
        if best.prefix > 0 { reason = .prefixHit } else if best.index == rendezvousPick { reason = .rendezvous }
        else if adapter != nil { reason = .adapter }
        return (eps[best.index], reason)
    }
}
