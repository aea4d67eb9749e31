package import SluiceIO
import SluiceLLM
package import SluiceSettings
package import SluiceRouting

/// Per-worker space for one decision's candidates, grown to the largest pool seen and reused.
/// Its candidates are always initialized (the read loop assigns their fields in place).
package final class RouterScratch {
    private var buffer = RouterScratch.make(64)

    private static func make(_ n: Int) -> UnsafeMutableBufferPointer<Candidate> {
        let b = UnsafeMutableBufferPointer<Candidate>.allocate(capacity: n)
        b.initialize(repeating: Candidate(index: 0, id: 0, homeHash: 0))
        return b
    }

    func candidates(_ n: Int) -> UnsafeMutableBufferPointer<Candidate> {
        if buffer.count < n {
            buffer.deallocate()
            buffer = Self.make(max(n, buffer.count * 2))
        }
        return buffer
    }

    deinit { buffer.deallocate() }
}

/// What the route phase decided: the endpoint, why, and what the cost model expects there.
/// The route phase hands it to the attempt's ``EndpointLease`` (as a ``RoutePrediction``),
/// which reports `uncachedTokens` to the endpoint's counters
/// (`EndpointRuntime.prefillStarted(tokens:)` at send, `firstToken(tokens:)`, `finished`) and
/// `predictedTTFT`, `queuedTokens`, `decoding` back with the observed TTFT
/// (`EndpointRuntime.observe(ttft:…)`); the access log takes `predictedTTFT`.
package struct RouteDecision {
    package let endpoint: UpstreamPool.Endpoint
    package let reason: RouteReason
    /// Seconds; nil for round robin and the weighted profile.
    package let predictedTTFT: Double?
    let promptTokens: Int
    let hitTokens: Int
    package let uncachedTokens: Int
    let queuedTokens: Int
    let decoding: Int
}

/// The pick phase: read → decide → commit. It reads endpoint state (health, the gateway's
/// in-flight and lease counters, scraped queue, running and KV use, adapters, learned latency
/// coefficients) and the shared prefix index into candidates, lets the pool's
/// ``RoutingProfile`` decide (pure, SluiceRouting), and the caller commits the choice.
package enum Router {
    /// One decision. `promptTokens`: the prompt's estimated tokens (`TokenReservation.promptTokens`;
    /// 0 when unknown: then what its prefix blocks cover, 16 tokens a block).
    package static func route(pool: UpstreamPool, scored: Bool, adapter: String?, prefixHashes: UnsafeBufferPointer<UInt64>,
                      promptTokens: Int, index: PrefixIndex, excluding: Int?, now: Instant, staleness: Duration,
                      flow: GatewaySettings.FlowControl? = nil,
                      scratch: RouterScratch, random: inout SplitMix64) -> RouteDecision? {
        let eps = pool.endpoints
        if eps.isEmpty { return nil }
        let prompt = max(promptTokens, prefixHashes.count * Self.blockTokens)
        if pool.policy == .roundRobin || !scored {
            guard let e = pool.pick(excluding: excluding, now: now) else { return nil }
            var chosen = e
            if let flow, adapter == nil {
                // Under flow control, the next one in turn with room (if any has).
                var next = e
                for _ in 0..<eps.count {
                    if PoolFlow.room(next.runtime, flow: flow, now: now, staleness: staleness) != 0 { chosen = next; break }
                    guard let n = pool.pick(excluding: excluding, now: now) else { break }
                    next = n
                }
            }
            return RouteDecision(endpoint: chosen, reason: .roundRobin, predictedTTFT: nil, promptTokens: prompt, hitTokens: 0,
                                 uncachedTokens: prompt, queuedTokens: 0, decoding: 0)
        }
        // Read: every endpoint but the one that just failed, as the profile's filters see it.
        // Candidates go into the worker's scratch space: a decision allocates nothing.
        let cands = scratch.candidates(eps.count)
        var n = 0
        let runtimes = pool.runtimes
        let staleNanos = UInt64(max(0, staleness.nanoseconds))
        for i in 0..<runtimes.count where i != excluding || runtimes.count == 1 {
            // Fields are assigned in place: a Candidate built in the closure and copied out
            // went through a stack temporary whose 32-bit and 8-bit stores the copy's 64-bit
            // loads could not forward from (a stall per endpoint: most of a decision at 256).
            let slot = cands.baseAddress! + n
            runtimes[i]._withUnsafeGuaranteedRef { rt in
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
                let inflight = rt.inflight.load(ordering: .relaxed)
                let running = fresh ? rt.runningNow.load(ordering: .relaxed) : 0
                slot.pointee.index = i
                slot.pointee.id = rt.id
                slot.pointee.admitted = rt.isAdmitted(at: now)
                slot.pointee.inflight = inflight
                slot.pointee.waiting = fresh ? rt.waitingNow.load(ordering: .relaxed) : 0
                slot.pointee.kvUse = fresh ? Double(bitPattern: rt.kvUseBits.load(ordering: .relaxed)) : 0
                slot.pointee.adapter = state
                slot.pointee.homeHash = rt.addressHash
                slot.pointee.prefixBlocks = 0
                slot.pointee.running32 = Int32(clamping: running)
                slot.pointee.meanUncached32 = Float(bitPattern: rt.meanUncachedBits.load(ordering: .relaxed))
                slot.pointee.coefficients32 = rt.coefficients32
                if rt.leaseReported.load(ordering: .relaxed) {
                    slot.pointee.pendingRequests32 = Int32(clamping: max(0, rt.pendingRequests.load(ordering: .relaxed)))
                    slot.pointee.pendingTokens32 = Int32(clamping: max(0, rt.pendingTokens.load(ordering: .relaxed)))
                    slot.pointee.decoding32 = Int32(clamping: max(0, rt.decodingNow.load(ordering: .relaxed)))
                } else {
                    // No request with a prompt has been sent here yet through a lease (only
                    // requests without one, or none): what is in flight beyond what the server
                    // runs counts as queued, each at the mean uncached prompt routed there (the
                    // cost model's estimate: tokens not reported, -1); what it runs, as decoding.
                    slot.pointee.pendingRequests32 = Int32(clamping: max(0, inflight - running))
                    slot.pointee.pendingTokens32 = -1
                    slot.pointee.decoding32 = Int32(clamping: running)
                }
            }
            n += 1
        }
        let profile = pool.profile
        var request = RoutingRequest(adapterRequested: adapter != nil, promptTokens: prompt, blockTokens: Self.blockTokens)
        if prefixHashes.count > 0 && profile.usesPrefix {
            request.promptBlocks = prefixHashes.count
            request.firstBlock = prefixHashes[0]
            // With one candidate there is nothing to choose (no filter reads prefix matches),
            // so the index is not asked: a sidecar in front of one model server, or a pool down
            // to one endpoint, skips a lookup per prompt block. What it is sent is still
            // recorded, for when the pool grows.
            if n > 1 { index.match(prefixHashes, into: cands, count: n) }
        }
        // After the prefix match: under the cost model, a full endpoint that holds more of the
        // prompt than any open one stays a candidate (see keepToRoom).
        if let flow, adapter == nil {
            keepToRoom(cands, count: n, runtimes: runtimes, flow: flow, now: now, staleness: staleness,
                       keepHolders: profile.costModel != nil)
        }
        guard let d = profile.decide(cands, count: n, request: request, random: &random) else {
            // Nothing passes the filters: every endpoint ejected, or none has the adapter.
            if adapter == nil, let e = pool.pick(excluding: excluding, now: now) {
                return RouteDecision(endpoint: e, reason: .panic, predictedTTFT: nil, promptTokens: prompt, hitTokens: 0,
                                     uncachedTokens: prompt, queuedTokens: 0, decoding: 0)
            }
            return nil
        }
        let e = eps[cands[d.position].index]
        // Commit (the part that is the router's): the mean uncached prompt routed there.
        e.runtime.noteRouted(uncachedTokens: d.uncachedTokens)
        return RouteDecision(endpoint: e, reason: d.reason, predictedTTFT: d.predictedTTFT, promptTokens: prompt,
                             hitTokens: d.hitTokens, uncachedTokens: d.uncachedTokens, queuedTokens: d.queuedTokens,
                             decoding: d.decoding)
    }

    /// Prompt tokens a 64-byte prefix block stands for (~4 bytes a token).
    static let blockTokens = PrefixHasher.defaultBlockSize / 4
}

extension Router {
    /// Under flow control, an endpoint with no room left (its learned concurrency plus
    /// `max_waiting` in flight) is passed over while another has room: a request dispatched from
    /// the gateway's queue goes where it runs now, not into a full server's own FIFO behind
    /// others. Adapter requests are left alone: loading the adapter elsewhere costs more than a
    /// short wait where it is.
    ///
    /// `keepHolders` (the cost model): a full endpoint holding a longer prefix of the prompt
    /// than every open one is kept, and the cost model weighs its queue (the gateway's pending
    /// prefill there and the server's waiting queue) against the prefill its hit saves. Passed
    /// over, the request is a new prefix among the open endpoints: it prefills the whole prompt
    /// again and leaves a second copy of the prefix in another cache. "Full" is often a burst
    /// of prefills, not a server at its `--max-num-seqs` (a server whose prompts wait for the
    /// step's token budget shows `waiting > 0` below its concurrency, and that is what the
    /// concurrency was learned at), so the exclusion split hot prefixes for nothing: in
    /// `routing-suite --quick` shape 1 (2026-12-08, 3 runs) 35 of ~900 requests a run went out
    /// as new prefixes with flow control on and 16 (the 16 groups' first) with it off; hit rate
    /// 0.87 against 0.95, 7,100 against 8,700 tokens/s.
    private static func keepToRoom(_ cands: UnsafeMutableBufferPointer<Candidate>, count n: Int, runtimes: [Unmanaged<EndpointRuntime>],
                                   flow: GatewaySettings.FlowControl, now: Instant, staleness: Duration, keepHolders: Bool) {
        var full = 0, open = 0, openBlocks = 0
        for k in 0..<n where cands[k].admitted {
            if PoolFlow.room(runtimes[cands[k].index].takeUnretainedValue(), flow: flow, now: now, staleness: staleness) == 0 {
                full += 1
            } else {
                open += 1
                openBlocks = max(openBlocks, cands[k].prefixBlocks)
            }
        }
        guard full > 0 && open > 0 else { return }
        for k in 0..<n where cands[k].admitted && !(keepHolders && cands[k].prefixBlocks > openBlocks) {
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
