import SluiceSettings
import SluiceIO
import SluiceRouting

/// What `/admin/stats` (and the dashboard that polls it) shows: the pools' endpoints as they
/// are now, and request rate, error rate and TTFT percentiles over the last minute.
///
/// The rates come from the same per-worker metric snapshots a `/metrics` scrape takes: while
/// someone polls, the control loop takes one snapshot a second and keeps the last 61 (a minute
/// of one-second differences). Ten seconds after the last poll the timer stops and the ring is
/// emptied, so a gateway nobody watches pays nothing for the page. Everything here runs on the
/// control loop.
final class DashboardStats {
    /// The counters the page needs, out of one merged snapshot (not the whole snapshot: with
    /// many endpoints and models that is thousands of slots a second).
    struct Sample {
        var at: Instant
        /// By pool, in `pools` order.
        var pools: [PoolSample]
        var cache: [Double]
        var limits: [Double]
        /// By split model, then arm.
        var arms: [[Double]]
    }

    struct PoolSample {
        var requests = 0.0
        /// 5xx answers (Sluice's own and the model servers').
        var errors = 0.0
        /// Non-cumulative TTFT histogram counts (`GatewayMetrics.latencyBuckets` and +Inf).
        var ttft: [Double] = []
        var prefixHits = 0.0
        var routed = 0.0
    }

    static let cacheOutcomes = ["hit", "miss", "bypass", "error", "stored", "store_error"]
    static let limitOutcomes = ["allowed", "limited", "error", "local"]
    /// Samples kept: a minute of one-second rates.
    static let capacity = 61
    /// Sampling stops this long after the last poll (tests shorten it).
    var idleAfter = Duration.seconds(10)
    /// TTFT percentiles are computed over this many seconds (a second holds too few requests).
    static let ttftWindow = 5

    unowned let gateway: Gateway
    let loop: EventLoop
    private(set) var samples: [Sample] = []
    private var timer: Timer?
    private var lastPoll = Instant(nanoseconds: 0)
    /// Snapshots taken so far (tests: none while nobody polls).
    private(set) var snapshots = 0
    /// The pools (and split arms) the samples were taken for: a reload that changes them
    /// starts the history again rather than subtract unrelated counters.
    private var layout: [String] = []

    init(gateway: Gateway, loop: EventLoop) {
        self.gateway = gateway
        self.loop = loop
    }

    var isSampling: Bool { timer != nil }

    /// A poll: starts sampling if it was idle and returns the document.
    func poll() -> [UInt8] {
        let now = Instant.now()
        lastPoll = now
        if timer == nil {
            samples.removeAll()
            takeSample(now)
            let t = Timer { [unowned self] in self.tick() }
            timer = t
            loop.schedule(t, after: .seconds(1))
        }
        return render(now)
    }

    func stop() {
        if let t = timer { loop.cancel(t) }
        timer = nil
        samples.removeAll()
    }

    private func tick() {
        let now = Instant.now()
        if now.since(lastPoll) > idleAfter {
            timer = nil
            samples.removeAll()
            return
        }
        takeSample(now)
        if let t = timer { loop.schedule(t, after: .seconds(1)) }
    }

    private func splitModels(_ s: GatewaySettings) -> [GatewaySettings.Model] { s.models.filter { !$0.split.isEmpty } }

    private func takeSample(_ now: Instant) {
        let s = gateway.currentSettings
        let m = gateway.metrics
        let layout = s.pools.map(\.name) + splitModels(s).flatMap { [$0.name] + $0.split.map(\.model) }
        if layout != self.layout {
            samples.removeAll()
            self.layout = layout
        }
        let merged = PrometheusExposition.merge(gateway.metricSnapshots().values, slots: m.schema.slotCount)
        snapshots += 1
        func v(_ slot: Int) -> Double { slot < merged.count ? merged[slot] : 0 }
        var pools: [PoolSample] = []
        for p in s.pools {
            let slots = m.slots(pool: p.name)
            var ps = PoolSample()
            for (i, slot) in slots.requests.enumerated() where GatewayMetrics.classes[i] != "aborted" { ps.requests += v(slot) }
            ps.errors = v(slots.requests[GatewayMetrics.classIndex(500)])
            ps.ttft = (0...GatewayMetrics.latencyBuckets.count).map { v(slots.ttft + $0) }
            ps.prefixHits = v(slots.routes[RouteReason.prefixHit.ordinal])
            ps.routed = slots.routes.reduce(0) { $0 + v($1) }
            pools.append(ps)
        }
        let cache = Self.cacheOutcomes.map { v(m.schema.series(m.cache, [$0])) }
        let limits = Self.limitOutcomes.map { v(m.schema.series(m.rateLimit, [$0])) }
        let arms = splitModels(s).map { model in model.split.map { v(m.schema.series(m.modelRequests, [model.name, $0.model])) } }
        if samples.count == Self.capacity { samples.removeFirst() }
        samples.append(Sample(at: now, pools: pools, cache: cache, limits: limits, arms: arms))
    }

    // MARK: the document

    /// Per second between consecutive samples: `value(sample)` differences over their time.
    func ratePoints(_ value: (Sample) -> Double) -> [Double?] {
        guard samples.count > 1 else { return [] }
        return (1..<samples.count).map { i in
            let dt = samples[i].at.seconds(since: samples[i - 1].at)
            return dt > 0 ? max(0, value(samples[i]) - value(samples[i - 1])) / dt : nil
        }
    }

    /// A TTFT percentile at each sample over the trailing `ttftWindow` seconds; nil where no
    /// first token was seen in that window.
    func ttftPoints(pools: [Int], quantile q: Double) -> [Double?] {
        guard samples.count > 1 else { return [] }
        let n = GatewayMetrics.latencyBuckets.count + 1
        return (1..<samples.count).map { i in
            let j = max(0, i - Self.ttftWindow)
            var counts = Array(repeating: 0.0, count: n)
            for p in pools where p < samples[i].pools.count && p < samples[j].pools.count {
                for b in 0..<n { counts[b] += max(0, samples[i].pools[p].ttft[b] - samples[j].pools[p].ttft[b]) }
            }
            return Self.quantile(q, counts: counts, bounds: GatewayMetrics.latencyBuckets)
        }
    }

    /// The `q` quantile of a histogram (non-cumulative `counts`, the last one +Inf), linear
    /// within the bucket it falls in, as Prometheus's `histogram_quantile`; a rank in the +Inf
    /// bucket answers the highest finite bound. Nil without observations.
    static func quantile(_ q: Double, counts: [Double], bounds: [Double]) -> Double? {
        let total = counts.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = q * total
        var cumulative = 0.0
        for (i, c) in counts.enumerated() {
            if cumulative + c >= rank && c > 0 {
                guard i < bounds.count else { return bounds.last }
                let lower = i == 0 ? 0 : bounds[i - 1]
                return lower + (bounds[i] - lower) * (rank - cumulative) / c
            }
            cumulative += c
        }
        return bounds.last
    }

    private func render(_ now: Instant) -> [UInt8] {
        let s = gateway.currentSettings
        var w = JSONWriter()
        w.beginObject()
        w.field("time", WallClock.now().seconds)
        w.field("interval_seconds", 1)
        w.field("window_seconds", max(0, samples.count - 1))
        w.field("workers", gateway.workerCount)
        w.field("connections", gateway.openConnections)

        // Config in force and the last reload.
        let src = gateway.configSource.withLock { $0 }
        let reload = gateway.lastReload.withLock { $0 }
        w.beginObject("config")
        w.field("generation", gateway.generation)
        w.field("source", src.path)
        w.field("digest", src.digest)
        w.field("loaded_at", gateway.loadedAt.load(ordering: .relaxed))
        w.field("reload_failures", gateway.reloadFailures.load(ordering: .relaxed))
        w.beginObject("last_reload")
        if let r = reload {
            w.field("result", r.ok ? "ok" : "failed")
            w.field("at", r.at)
            w.field("error", r.ok ? nil : r.message)
        } else {
            w.field("result", "none")
        }
        w.endObject()
        w.endObject()

        let allPools = Array(s.pools.indices)
        w.beginObject("totals")
        w.field("requests_per_second", ratePoints { $0.pools.reduce(0) { $0 + $1.requests } })
        w.field("errors_per_second", ratePoints { $0.pools.reduce(0) { $0 + $1.errors } })
        w.field("ttft_p50_seconds", ttftPoints(pools: allPools, quantile: 0.5))
        w.field("ttft_p90_seconds", ttftPoints(pools: allPools, quantile: 0.9))
        w.endObject()

        w.beginArray("pools")
        for (pi, pool) in s.pools.enumerated() {
            w.beginObject()
            w.field("name", pool.name)
            w.field("routing", pool.routing.rawValue)
            w.field("discovery", pool.dns.map { "dns \($0.host):\($0.port)" })
            w.field("requests_per_second", ratePoints { pi < $0.pools.count ? $0.pools[pi].requests : 0 })
            w.field("errors_per_second", ratePoints { pi < $0.pools.count ? $0.pools[pi].errors : 0 })
            w.field("ttft_p50_seconds", ttftPoints(pools: [pi], quantile: 0.5))
            w.field("ttft_p90_seconds", ttftPoints(pools: [pi], quantile: 0.9))
            // Share of this pool's routing decisions over the window that were prefix hits.
            if let first = samples.first, let last = samples.last, pi < first.pools.count, pi < last.pools.count,
               last.pools[pi].routed > first.pools[pi].routed {
                w.field("prefix_hit_share", (last.pools[pi].prefixHits - first.pools[pi].prefixHits) / (last.pools[pi].routed - first.pools[pi].routed))
            } else {
                w.field("prefix_hit_share", nil as String?)
            }
            w.beginArray("endpoints")
            for e in pool.endpoints {
                let rt = gateway.registry.runtime(for: e)
                let t = rt.telemetry.withLock { $0 }
                let scraped = t.scrapedAt.nanoseconds != 0
                w.beginObject()
                w.field("endpoint", e.authority)
                w.field("healthy", rt.isAdmitted(at: now))
                w.field("consecutive_failures", rt.consecutiveFailures.load(ordering: .relaxed))
                w.field("ejections", rt.ejections.load(ordering: .relaxed))
                w.field("inflight", rt.inflight.load(ordering: .relaxed))
                w.field("telemetry_age_seconds", scraped ? now.seconds(since: t.scrapedAt) : -1)
                w.field("waiting", scraped ? t.waiting : 0)
                w.field("running", scraped ? t.running : 0)
                w.field("kv_use", scraped ? t.kvUse : 0)
                w.field("prefix_cache_hit_rate", t.prefixCacheQueries > 0 ? t.prefixCacheHits / t.prefixCacheQueries : 0)
                w.field("max_loras", t.maxLoras)
                w.field("adapters_running", t.adaptersRunning)
                w.field("adapters_waiting", t.adaptersWaiting)
                w.field("adapters_loaded", t.adaptersLoaded)
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w.endArray()

        // Outcome counters since start, and their rates over the window.
        func outcomes(_ key: String, _ names: [String], _ value: @escaping (Sample, Int) -> Double) {
            w.beginObject(key)
            for (i, name) in names.enumerated() {
                w.beginObject(name)
                w.field("total", samples.last.map { value($0, i) } ?? 0)
                let rates = ratePoints { value($0, i) }
                w.field("per_second", rates.last.flatMap { $0 } ?? 0)
                w.endObject()
            }
            w.endObject()
        }
        outcomes("rate_limits", Self.limitOutcomes) { $0.limits[$1] }
        outcomes("cache", Self.cacheOutcomes) { $0.cache[$1] }
        w.field("rate_limit_rules", s.rateLimits.count)
        w.field("cache_enabled", s.cache.enabled)

        w.beginArray("splits")
        for (mi, model) in splitModels(s).enumerated() {
            w.beginObject()
            w.field("model", model.name)
            switch model.sticky {
            case .none: w.field("sticky", "none")
            case .user: w.field("sticky", "user")
            case .header(let h): w.field("sticky", "header:\(h)")
            }
            let total = model.split.reduce(0) { $0 + $1.weight }
            w.beginArray("arms")
            for (ai, arm) in model.split.enumerated() {
                w.beginObject()
                w.field("model", arm.model)
                w.field("weight", arm.weight)
                w.field("weight_share", total > 0 ? arm.weight / total : 0)
                w.field("requests", samples.last.map { mi < $0.arms.count && ai < $0.arms[mi].count ? $0.arms[mi][ai] : 0 } ?? 0)
                w.endObject()
            }
            w.endArray()
            // The SLO guard (issue 26): its state, the weights in force and each arm's window
            // figures; null for a split without one.
            SplitGuardRunner.writeGuard(&w, gateway.rollouts.control(for: model.name))
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }
}
