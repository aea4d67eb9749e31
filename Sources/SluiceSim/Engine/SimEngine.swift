public import SluiceIO

/// A simulated vLLM engine: continuous batching over a waiting queue, a block KV cache with
/// prefix caching and LRU eviction, LoRA slots, and vLLM's counters. Pure: no I/O, no clock
/// (time comes in as ``Instant``s), randomness from a seeded generator. Not thread-safe: one
/// owner (the server's event loop) drives it.
///
/// Life of a request (vLLM V1's scheduler, simplified):
/// ```
/// submit ──▶ waiting ──(seq slot, LoRA slot, KV blocks, token budget)──▶ running
///               ▲                                                          │ step: prefill chunk
///               └──────────── preempted (KV full: blocks freed) ◀──────────┤ or one decode token
///                                                                          ▼
///                                                   finished (length / stop / abort / error)
/// ```
/// Driving it: after ``submit(_:now:)`` or ``abort(_:now:)``, arm a timer for
/// ``nextDeadline``; when it fires call ``advance(to:into:)`` and arm it again if
/// ``nextDeadline`` is not nil. With no work the deadline is nil: an idle engine costs nothing.
///
/// A step starts as soon as the previous one ends (or when work arrives at an idle engine),
/// schedules running sequences first (decodes, then unfinished prefill chunks), then admits
/// waiting ones in FIFO order, skipping those whose adapter cannot get a slot (`deferred`), and
/// stopping at the first that does not fit in the KV cache (`capacity`). Its length follows
/// ``SimEngineConfig``'s time model; its tokens are emitted when it ends.
public final class SimEngine {
    public let config: SimEngineConfig
    private var cache: SimKVCache
    private var seqs: [UInt64: Seq] = [:]
    private var waiting: [UInt64] = []
    private var running: [UInt64] = []
    private var nextID: UInt64 = 1
    private var rng: SimRandom
    private var stepEnd: Instant?
    private var idleWorkSince: Instant?
    public private(set) var stats = SimStats()

    // LoRA state. `active` keeps arrival order for the lora_requests_info label.
    private var active: [(name: String, count: Int)] = []
    private var runningAdapters: [String: Int] = [:]
    /// Adapters in slots, least recently used first.
    public private(set) var residentAdapters: [String] = []
    /// Every `vllm:lora_requests_info` series so far, in order of first appearance.
    public private(set) var loraInfo: [SimLoRAInfoSeries] = []

    final class Seq {
        let id: UInt64
        let adapter: String?
        let promptTokens: Int
        let hashes: [UInt64]
        let maxTokens: Int
        let n: Int
        let arrival: Instant
        var generated = 0
        var computed = 0
        var scheduled = 0
        var registered = 0
        var blocks: [Int32] = []
        var admitted = false
        var firstScheduled: Instant?
        var firstToken: Instant?
        var lastToken: Instant?
        var preemptions = 0
        var prefillComputed = 0

        init(id: UInt64, adapter: String?, promptTokens: Int, hashes: [UInt64], maxTokens: Int, n: Int, arrival: Instant) {
            self.id = id
            self.adapter = adapter
            self.promptTokens = promptTokens
            self.hashes = hashes
            self.maxTokens = maxTokens
            self.n = n
            self.arrival = arrival
        }

        var total: Int { promptTokens + generated }
    }

    public init(config: SimEngineConfig = SimEngineConfig(), now: Instant = Instant(nanoseconds: 0)) {
        var c = config
        c.blockTokens = max(1, c.blockTokens)
        c.maxLoras = max(1, c.maxLoras)
        c.maxNumSeqs = max(1, c.maxNumSeqs)
        c.maxNumBatchedTokens = max(1, c.maxNumBatchedTokens)
        self.config = c
        cache = SimKVCache(numBlocks: c.numBlocks)
        rng = SimRandom(seed: c.seed)
        recordLoRAState(at: now)
    }

    // MARK: state

    public var runningCount: Int { running.count }
    public var waitingCount: Int { waiting.count }
    /// Waiting requests held back by the LoRA slot limit (vLLM's reason="deferred").
    public var deferredCount: Int { waiting.reduce(0) { $0 + (isDeferred(seqs[$1]!) ? 1 : 0) } }
    /// Fraction of KV blocks referenced by live sequences (`vllm:kv_cache_usage_perc`).
    public var kvUsage: Double { cache.usage }
    public var numBlocks: Int { cache.numBlocks }
    public var usedBlocks: Int { cache.usedBlocks }
    /// Blocks currently holding a cached prefix block (live or idle).
    public var cachedBlocks: Int { cache.cachedBlocks }
    public var evictedBlocks: Int { cache.evictions }
    public var hasWork: Bool { !waiting.isEmpty || !running.isEmpty }
    /// Adapters with at least one request in the engine, in order of arrival.
    public var activeAdapters: [String] { active.map(\.name) }
    /// When ``advance(to:into:)`` next has something to do; nil when idle.
    public var nextDeadline: Instant? { stepEnd ?? idleWorkSince }
    /// Output tokens sampled so far for request `id` (nil once it left the engine).
    public func generated(_ id: UInt64) -> Int? { seqs[id]?.generated }
    public func promptTokens(_ id: UInt64) -> Int? { seqs[id]?.promptTokens }
    public func contains(_ id: UInt64) -> Bool { seqs[id] != nil }

    /// Chained block hashes of a prompt's full blocks in `adapter`'s namespace: block k's hash
    /// covers bytes [4·k·B, 4·(k+1)·B) and every block before it, so equal prefixes give equal
    /// leading hashes and a LoRA request never matches base-model blocks.
    public static func blockHashes(prompt: [UInt8], adapter: String?, blockTokens: Int) -> [UInt64] {
        let tokens = SimRequest.tokens(forBytes: prompt.count)
        let full = tokens / blockTokens
        var out: [UInt64] = []
        out.reserveCapacity(full)
        var h = SimRandom.hash(adapter ?? "", seed: 0x5EED_0F_AD_A9_7E45)
        let bytesPerBlock = 4 * blockTokens
        for k in 0..<full {
            let start = k * bytesPerBlock
            let end = min(prompt.count, start + bytesPerBlock)
            h = SimRandom.hash(prompt[start..<end], seed: h)
            out.append(h)
        }
        return out
    }

    // MARK: events in

    /// Queues a request and returns its id.
    @discardableResult
    public func submit(_ request: SimRequest, now: Instant) -> UInt64 {
        let id = nextID
        nextID += 1
        let s = Seq(id: id, adapter: request.adapter, promptTokens: request.promptTokens,
                         hashes: Self.blockHashes(prompt: request.prompt, adapter: request.adapter, blockTokens: config.blockTokens),
                         maxTokens: max(0, request.maxTokens), n: max(1, request.n), arrival: now)
        seqs[id] = s
        waiting.append(id)
        if let a = s.adapter {
            if let i = active.firstIndex(where: { $0.name == a }) { active[i].count += 1 } else { active.append((a, 1)) }
        }
        if stepEnd == nil && idleWorkSince == nil { idleWorkSince = now }
        return id
    }

    /// Removes a request (its client went away). Its blocks are released at once; a step in
    /// flight simply loses its share.
    public func abort(_ id: UInt64, now: Instant) {
        guard seqs[id] != nil else { return }
        finish(id, .abort, at: now)
    }

    /// Forgets an adapter's slot (it was unloaded); requests already queued for it still run.
    public func unloadAdapter(_ name: String) {
        residentAdapters.removeAll { $0 == name }
    }

    // MARK: time

    /// Runs every step that ends at or before `now`, appending what they produced to `events`.
    public func advance(to now: Instant, into events: inout [SimEvent]) {
        while true {
            if let end = stepEnd {
                guard end <= now else { return }
                stepEnd = nil
                completeStep(at: end, into: &events)
                if hasWork { beginStep(at: end, into: &events) }
            } else if let since = idleWorkSince {
                guard since <= now else { return }
                idleWorkSince = nil
                if hasWork { beginStep(at: now, into: &events) }
            } else {
                return
            }
        }
    }

    /// Runs the engine until it is idle or `limit` passes (tests, offline simulation).
    public func runUntilIdle(limit: Instant, into events: inout [SimEvent]) {
        while let d = nextDeadline, d <= limit { advance(to: d, into: &events) }
    }

    // MARK: steps

    private func blocksFor(_ tokens: Int) -> Int { (tokens + config.blockTokens - 1) / config.blockTokens }

    private func isDeferred(_ s: Seq) -> Bool {
        guard let a = s.adapter else { return false }
        return runningAdapters[a] == nil && runningAdapters.count >= config.maxLoras
    }

    private func beginStep(at t: Instant, into events: inout [SimEvent]) {
        stats.steps += 1
        var budget = config.maxNumBatchedTokens
        var prefillTokens = 0
        var decodes = 0
        var loads = 0
        var preempted = false

        // Running sequences first; KV pressure preempts the most recently admitted.
        var i = 0
        while i < running.count {
            let s = seqs[running[i]]!
            let pending = s.total - s.computed
            let chunk = min(pending, budget)
            if chunk <= 0 { i += 1; continue }
            let need = blocksFor(s.computed + chunk) - s.blocks.count
            var fits = true
            while need > cache.freeCount {
                let victim = running.last!
                if victim == s.id { fits = false; break }
                preempt(victim)
                preempted = true
            }
            if !fits {
                if running.count == 1 {
                    // Alone and still too big for the whole cache: it can never finish.
                    finish(s.id, .error, at: t)
                    events.append(SimEvent(id: s.id, kind: .finished(.error), time: t))
                } else {
                    preempt(s.id)
                    preempted = true
                }
                continue
            }
            for _ in 0..<max(0, need) { s.blocks.append(cache.allocate()!) }
            s.scheduled = chunk
            if pending == 1 && s.generated > 0 { decodes += 1 } else { prefillTokens += chunk }
            budget -= chunk
            i += 1
        }

        // Then admissions, unless this step had to preempt (vLLM does the same).
        var w = 0
        while !preempted && w < waiting.count && running.count < config.maxNumSeqs && budget > 0 {
            let s = seqs[waiting[w]]!
            if isDeferred(s) { w += 1; continue }
            let B = config.blockTokens
            // At least one token must be computed, so a prompt never hits on its last token.
            let maxHit = min(s.hashes.count, (s.total - 1) / B)
            var hits: [Int32] = []
            var hitsIdle = 0
            for k in 0..<maxHit {
                guard let b = cache.lookup(s.hashes[k]) else { break }
                hits.append(b)
                if cache.isFree(b) { hitsIdle += 1 }
            }
            let hitTokens = hits.count * B
            let chunk = min(s.total - hitTokens, budget)
            let need = blocksFor(hitTokens + chunk) - hits.count
            if need > cache.freeCount - hitsIdle {
                if running.isEmpty && blocksFor(s.total) > cache.numBlocks {
                    finish(s.id, .error, at: t)
                    events.append(SimEvent(id: s.id, kind: .finished(.error), time: t))
                    continue
                }
                break  // capacity: later requests wait behind this one
            }
            for b in hits { cache.touch(b) }
            s.blocks = hits
            for _ in 0..<need { s.blocks.append(cache.allocate()!) }
            s.computed = hitTokens
            s.registered = hits.count
            if !s.admitted {
                s.admitted = true
                s.firstScheduled = t
                s.prefillComputed = s.promptTokens - hitTokens
                stats.prefixCacheQueries += UInt64(s.promptTokens)
                stats.prefixCacheHits += UInt64(hitTokens)
                stats.promptTokens += UInt64(s.promptTokens)
            }
            if let a = s.adapter {
                if !residentAdapters.contains(a) {
                    if residentAdapters.count >= config.maxLoras,
                       let idle = residentAdapters.firstIndex(where: { runningAdapters[$0] == nil }) {
                        residentAdapters.remove(at: idle)
                    }
                    loads += 1
                    stats.loraLoads += 1
                } else {
                    residentAdapters.removeAll { $0 == a }
                }
                residentAdapters.append(a)
                runningAdapters[a, default: 0] += 1
            }
            waiting.remove(at: w)
            running.append(s.id)
            s.scheduled = chunk
            prefillTokens += chunk
            budget -= chunk
        }

        guard hasWork else { return }
        var ns = Double(config.stepBaseNanoseconds)
            + Double(decodes) * Double(config.decodeNanosecondsPerSequence)
            + Double(prefillTokens) * Double(config.prefillNanosecondsPerToken)
            + Double(loads) * Double(config.loraLoadNanoseconds)
        ns *= config.timeScale
        if config.jitter > 0 { ns *= 1 + config.jitter * (rng.nextUnit() * 2 - 1) }
        stepEnd = t + .nanoseconds(Int64(max(1_000, ns)))
    }

    private func completeStep(at t: Instant, into events: inout [SimEvent]) {
        var tokens = 0
        for id in running {
            guard let s = seqs[id], s.scheduled > 0 else { continue }
            s.computed += s.scheduled
            tokens += s.scheduled
            s.scheduled = 0
            let full = min(s.hashes.count, s.computed / config.blockTokens)
            while s.registered < full {
                cache.register(s.blocks[s.registered], hash: s.hashes[s.registered])
                s.registered += 1
            }
            guard s.computed == s.total else { continue }
            if s.maxTokens == 0 {
                if s.firstToken == nil { s.firstToken = t }
                finish(id, .stop, at: t)
                events.append(SimEvent(id: id, kind: .finished(.stop), time: t))
                continue
            }
            s.generated += 1
            stats.generationTokens += 1
            if let last = s.lastToken {
                stats.interTokenLatency.observe(t.seconds(since: last))
            } else {
                s.firstToken = t
                stats.timeToFirstToken.observe(t.seconds(since: s.arrival))
            }
            s.lastToken = t
            events.append(SimEvent(id: id, kind: .token(index: s.generated - 1), time: t))
            if s.generated >= s.maxTokens {
                finish(id, .length, at: t)
                events.append(SimEvent(id: id, kind: .finished(.length), time: t))
            }
        }
        if tokens > 0 { stats.iterationTokens.observe(Double(tokens)) }
        recordLoRAState(at: t)
    }

    private func preempt(_ id: UInt64) {
        let s = seqs[id]!
        running.removeAll { $0 == id }
        releaseBlocks(s)
        s.computed = 0
        s.scheduled = 0
        s.registered = 0
        s.preemptions += 1
        stats.preemptions += 1
        leaveRunningAdapter(s)
        waiting.insert(id, at: 0)
    }

    private func releaseBlocks(_ s: Seq) {
        // Tail first, so a sequence's last blocks are evicted before its first (vLLM's order):
        // the shared prefix lives longest.
        for b in s.blocks.reversed() { cache.release(b) }
        s.blocks = []
    }

    private func leaveRunningAdapter(_ s: Seq) {
        guard let a = s.adapter, let c = runningAdapters[a] else { return }
        if c <= 1 { runningAdapters.removeValue(forKey: a) } else { runningAdapters[a] = c - 1 }
    }

    private func finish(_ id: UInt64, _ reason: SimFinishReason, at t: Instant) {
        guard let s = seqs.removeValue(forKey: id) else { return }
        if let i = running.firstIndex(of: id) {
            running.remove(at: i)
            leaveRunningAdapter(s)
        } else {
            waiting.removeAll { $0 == id }
        }
        releaseBlocks(s)
        if let a = s.adapter, let i = active.firstIndex(where: { $0.name == a }) {
            active[i].count -= 1
            if active[i].count == 0 { active.remove(at: i) }
        }
        stats.finished[reason, default: 0] += 1
        guard reason == .length || reason == .stop else { return }
        stats.requestPromptTokens.observe(Double(s.promptTokens))
        stats.requestGenerationTokens.observe(Double(s.generated))
        stats.maxGenerationTokens.observe(Double(s.maxTokens))
        stats.paramsN.observe(Double(s.n))
        stats.paramsMaxTokens.observe(Double(s.maxTokens))
        stats.requestPreemptions.observe(Double(s.preemptions))
        stats.prefillComputedTokens.observe(Double(s.prefillComputed))
        stats.e2eLatency.observe(t.seconds(since: s.arrival))
        let scheduled = s.firstScheduled ?? t
        let first = s.firstToken ?? t
        stats.queueTime.observe(scheduled.seconds(since: s.arrival))
        stats.inferenceTime.observe(t.seconds(since: scheduled))
        stats.prefillTime.observe(first.seconds(since: scheduled))
        let decode = t.seconds(since: first)
        stats.decodeTime.observe(decode)
        stats.timePerOutputToken.observe(s.generated > 1 ? decode / Double(s.generated - 1) : 0)
    }

    /// vLLM updates its lora_requests_info series on every logged step: the series for the
    /// current state gets the current time; series for earlier states keep theirs.
    private func recordLoRAState(at t: Instant) {
        let label = active.map(\.name).joined(separator: ",")
        if let i = loraInfo.firstIndex(where: { $0.adapters == label }) {
            loraInfo[i].updated = t
        } else {
            loraInfo.append(SimLoRAInfoSeries(adapters: label, updated: t))
        }
    }
}
