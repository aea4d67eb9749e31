import SluiceSettings
import Glibc
import SluiceHTTP
import SluiceIO
import SluiceLLM
import Synchronization

/// Scrapes each endpoint's Prometheus `/metrics` (queue, running, KV-cache use, LoRA adapters,
/// KV capacity) and `/v1/models` (registered adapters) on the control loop, on an interval, and
/// publishes the result in the endpoint's shared ``EndpointRuntime/telemetry`` for routing.
///
/// One keep-alive client per endpoint; a scrape still in flight when the next is due is skipped
/// (a slow server gets fewer scrapes, not a pile of them). Failed scrapes leave the old values,
/// whose age (`scrapedAt`) routing compares with the staleness bound.
///
/// An endpoint whose scrape fails or is not vLLM's metrics (a server that is down, or not a model
/// server at all) is scraped less and less often: the pause doubles from one interval up to
/// ``maxBackoff``, and the first good scrape ends it. Scraping a plain HTTP upstream every 50 ms
/// forever cost a few milliseconds of CPU per second for nothing. While every endpoint is pausing
/// the timer sleeps to the end of the earliest pause instead of waking every interval to find
/// nothing due (20 wakeups a second of the control thread, ~1.4 ms of CPU a second here, for a
/// sidecar in front of one plain HTTP server); an endpoint added meanwhile (a reload, DNS) is
/// first scraped when it wakes, at most ``maxBackoff`` later.
final class TelemetryScraper {
    /// The longest pause after failed scrapes: how stale a restarted server's telemetry can be.
    static let maxBackoff = Duration.seconds(2)
    private struct Backoff {
        var pause: Duration
        var resumeAt: Instant
    }
    private var backoff: [String: Backoff] = [:]
    unowned let gateway: Gateway
    unowned let loop: EventLoop
    private var clients: [String: HTTPClient] = [:]
    private var inFlight: Set<String> = []
    private var modelsInFlight: Set<String> = []
    private var timer: Timer?
    /// Timer firings so far (read by tests from other threads: an idle scraper sleeps).
    let ticks = Atomic<Int>(0)

    init(gateway: Gateway, loop: EventLoop) {
        self.gateway = gateway
        self.loop = loop
    }

    func start() {
        scheduleNext()
    }

    func stop() {
        if let t = timer { loop.cancel(t) }
        for c in clients.values { c.close() }
        clients.removeAll()
    }

    private func scheduleNext(at due: Instant? = nil) {
        let interval = gateway.currentSettings.telemetry.interval
        guard interval > .zero else { return }
        let t = timer ?? Timer { [unowned self] in
            self.scheduleNext(at: self.scrapeAll())
        }
        timer = t
        loop.schedule(t, at: due ?? loop.now + interval)
    }

    /// Scrapes every endpoint not pausing after failed scrapes; returns when the next scrape is
    /// due: one interval from now, or the end of the earliest pause when every endpoint is pausing.
    private func scrapeAll() -> Instant {
        let settings = gateway.currentSettings
        let tick = ticks.add(1, ordering: .relaxed).newValue
        // Adapters change rarely: /v1/models every 20th scrape (a second at the default 50 ms).
        let refreshModels = tick % 20 == 1
        var live = Set<String>()
        var due = loop.now + max(settings.telemetry.interval, Self.maxBackoff)
        for pool in settings.pools {
            for e in pool.endpoints {
                live.insert(e.authority)
                if let b = backoff[e.authority], loop.now < b.resumeAt {
                    due = min(due, b.resumeAt)
                    continue
                }
                // KServe v2 servers have no OpenAI model list (nor LoRA adapters to find in one).
                scrape(e, settings: settings, models: refreshModels && pool.serverProtocol == .openAI)
                due = min(due, loop.now + settings.telemetry.interval)
            }
        }
        for (k, c) in clients where !live.contains(k) {
            c.close()
            clients.removeValue(forKey: k)
            backoff.removeValue(forKey: k)
        }
        return due
    }

    /// A scrape of `authority` failed or was not vLLM's: pause it for twice as long as last time.
    private func failed(_ authority: String, interval: Duration) {
        let pause = min((backoff[authority]?.pause ?? interval) * 2, Self.maxBackoff)
        backoff[authority] = Backoff(pause: pause, resumeAt: loop.now + pause)
    }

    private func client(for e: GatewaySettings.Endpoint) -> HTTPClient {
        if let c = clients[e.authority], c.address == e.address { return c }
        let c = HTTPClient(address: e.address, host: e.authority, loop: loop)
        clients[e.authority] = c
        return c
    }

    private func scrape(_ e: GatewaySettings.Endpoint, settings: GatewaySettings, models: Bool) {
        let rt = gateway.registry.runtime(for: e)
        let c = client(for: e)
        let timeout = settings.telemetry.timeout
        let interval = settings.telemetry.interval
        if !inFlight.contains(e.authority) {
            inFlight.insert(e.authority)
            c.get(settings.telemetry.metricsPath, timeout: timeout) { [unowned self] result in
                inFlight.remove(e.authority)
                guard case .success(let resp) = result, resp.status == 200 else { return failed(e.authority, interval: interval) }
                let now = Instant.now()
                let recognised = resp.body.withUnsafeBytes { bytes -> Bool in
                    guard let m = try? VLLMMetrics.extract(bytes),
                          m.requestsRunning != nil || m.requestsWaiting != nil || m.kvCacheUsage != nil else { return false }
                    var running: [String] = [], waiting: [String] = []
                    if let l = m.lora {
                        for r in VLLMMetrics.adapterNames(l.running, in: bytes) { running.append(String(decoding: bytes[Int(r.start)..<Int(r.end)], as: UTF8.self)) }
                        for r in VLLMMetrics.adapterNames(l.waiting, in: bytes) { waiting.append(String(decoding: bytes[Int(r.start)..<Int(r.end)], as: UTF8.self)) }
                    }
                    rt.observeConcurrency(running: Self.count(m.requestsRunning), waiting: Self.count(m.requestsWaiting), at: now)
                    var learned: (requests: Double, prefill: Double, tokens: Double, gaps: Double, gap: Double, running: Int)?
                    rt.updateTelemetry { t in
                        learned = Self.histogramDeltas(m, previous: &t)
                        t.scrapedAt = now
                        // What a model server reports is range-checked here, where it enters:
                        // NaN, infinities and absurd values must not trap a conversion.
                        t.waiting = Self.count(m.requestsWaiting)
                        t.running = Self.count(m.requestsRunning)
                        t.kvUse = m.kvCacheUsage.map { $0.isNaN ? 0 : min(max($0, 0), 1) } ?? 0
                        if let b = m.blockSize, let n = m.numGPUBlocks {
                            let (tokens, overflow) = b.multipliedReportingOverflow(by: n)
                            t.kvCapacityTokens = overflow ? Int(Int32.max) : min(tokens, Int(Int32.max))
                        }
                        t.maxLoras = m.lora?.maxLoras ?? t.maxLoras
                        t.adaptersRunning = running
                        t.adaptersWaiting = waiting
                        t.prefixCacheHits = m.prefixCacheHits ?? 0
                        t.prefixCacheQueries = m.prefixCacheQueries ?? 0
                    }
                    if let l = learned {
                        rt.observeScraped(requests: l.requests, prefillSeconds: l.prefill, computedTokens: l.tokens, gaps: l.gaps,
                                          gapSeconds: l.gap, running: l.running, at: now)
                    }
                    return true
                }
                if recognised { backoff[e.authority] = nil } else { failed(e.authority, interval: interval) }
            }
        }
        if models && !modelsInFlight.contains(e.authority) {
            modelsInFlight.insert(e.authority)
            let asked = loop.now
            c.get(settings.telemetry.modelsPath, timeout: timeout) { [unowned self] result in
                modelsInFlight.remove(e.authority)
                guard case .success(let resp) = result, resp.status == 200 else { return }
                let ids = Self.modelIDs(resp.body)
                rt.updateTelemetry { t in
                    // An adapter Sluice loaded after this list was asked for is kept.
                    t.adaptersLoaded = t.adaptersChangedAt > asked ? Array(Set(ids).union(t.adaptersLoaded)).sorted() : ids
                }
            }
        }
    }

    /// The `id`s in a `/v1/models` list whose `parent` is a string: the LoRA adapters the
    /// server has registered. A small byte scan (the list is tiny and this is the control loop):
    /// it reads the top-level string members of each object in `data`.
    static func modelIDs(_ body: [UInt8]) -> [String] {
        var out: [String] = []
        var depth = 0
        var i = 0
        var key: [UInt8]? = nil       // the last key read at object depth 2
        var id: String? = nil
        var hasParent = false
        func readString(_ start: Int) -> (String, Int) {
            var j = start + 1
            var bytes: [UInt8] = []
            while j < body.count && body[j] != 34 {
                if body[j] == 92 { j += 1 }  // keep escaped bytes as they are (ids are plain)
                if j < body.count { bytes.append(body[j]) }
                j += 1
            }
            return (String(decoding: bytes, as: UTF8.self), j + 1)
        }
        while i < body.count {
            let c = body[i]
            switch c {
            case 123, 91:  // { [
                depth += 1
                if c == 123 && depth == 3 { id = nil; hasParent = false }
                i += 1
            case 125, 93:  // } ]
                if c == 125 && depth == 3, let id { if hasParent { out.append(id) } }
                depth -= 1
                key = nil
                i += 1
            case 34:
                let (s, next) = readString(i)
                i = next
                var k = i
                while k < body.count && (body[k] == 32 || body[k] == 10 || body[k] == 13 || body[k] == 9) { k += 1 }
                if k < body.count && body[k] == 58 {  // a key
                    key = Array(s.utf8)
                    i = k + 1
                } else if depth == 3, let kk = key {
                    if kk == Array("id".utf8) { id = s }
                    if kk == Array("parent".utf8) { hasParent = true }
                    key = nil
                }
            default:
                i += 1
            }
        }
        return out
    }

    /// What the server's histograms say happened since the previous scrape, for the endpoint's
    /// latency learner: prefills (mean seconds, mean computed tokens) and inter-token gaps
    /// (mean seconds), with the running count as of the previous scrape; nil when nothing new
    /// (or a counter went back: the server restarted). Updates the totals kept in `t`.
    static func histogramDeltas(_ m: VLLMMetrics, previous t: inout EndpointTelemetry)
        -> (requests: Double, prefill: Double, tokens: Double, gaps: Double, gap: Double, running: Int)? {
        defer {
            t.prefillTimeTotals = m.prefillTime
            t.prefillTokensTotals = m.prefillComputedTokens
            t.interTokenTotals = m.interTokenLatency
        }
        var out = (requests: 0.0, prefill: 0.0, tokens: 0.0, gaps: 0.0, gap: 0.0, running: t.running)
        if let a = t.prefillTimeTotals, let b = m.prefillTime, let ta = t.prefillTokensTotals, let tb = m.prefillComputedTokens {
            let n = b.count - a.count
            if n > 0, n == tb.count - ta.count, b.sum >= a.sum, tb.sum >= ta.sum {
                out.requests = n
                out.prefill = (b.sum - a.sum) / n
                out.tokens = (tb.sum - ta.sum) / n
            }
        }
        if let a = t.interTokenTotals, let b = m.interTokenLatency {
            let n = b.count - a.count
            if n > 0, b.sum >= a.sum {
                out.gaps = n
                out.gap = (b.sum - a.sum) / n
            }
        }
        let sane = out.prefill.isFinite && out.tokens.isFinite && out.gap.isFinite
        return sane && (out.requests > 0 || out.gaps > 0) ? out : nil
    }

    /// A gauge read as a count in 0...2^31-1 (NaN and negatives: 0).
    static func count(_ v: Double?) -> Int {
        guard let v, !v.isNaN, v > 0 else { return 0 }
        return v >= Double(Int32.max) ? Int(Int32.max) : Int(v)
    }
}
