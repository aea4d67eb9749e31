public import SluiceSettings
public import SluiceIO
import SluiceRouting
public import SluiceLLM
package import Synchronization

/// What the gateway knows about one endpoint, shared by every worker and the control loop, and
/// kept across config reloads (keyed by the endpoint's authority): health, the gateway's own
/// in-flight count, and the latest scraped telemetry.
///
/// Workers read and update it with relaxed atomics; the telemetry snapshot sits behind a mutex
/// held only to copy a small struct.
public final class EndpointRuntime: Sendable {
    // Layout: what every routing decision reads comes first, together (stored properties are
    // laid out in declaration order), so reading an endpoint touches 2-3 cache lines; the
    // address, the locked telemetry and the learner come after. Spread over the object (the
    // telemetry struct between them), the reads of 256 endpoints doubled a decision's time.

    /// Process-unique id (the prefix index's key).
    package let id: Int
    /// A hash of the authority: the same on every replica, for rendezvous hashing.
    let addressHash: UInt64
    private static let nextID = Atomic<Int>(0)

    /// Requests in flight through any worker (incremented at pick, decremented at completion).
    package let inflight = Atomic<Int>(0)
    /// Consecutive failures seen by the data path (connect errors, resets, 5xx) or health checks.
    let consecutiveFailures = Atomic<Int>(0)
    /// Monotonic ns until which the endpoint is ejected (0 = admitted).
    package let ejectedUntil = Atomic<UInt64>(0)
    /// How many times it was ejected (for the backoff and the metric).
    let ejections = Atomic<Int>(0)
    /// The scraped fields every routing decision reads, mirrored into atomics so a decision
    /// takes no lock per endpoint (locks were most of a decision's cost at 256 endpoints).
    /// Each is read relaxed: a decision may mix two scrapes, which a heuristic tolerates.
    let scrapedAtNanos = Atomic<UInt64>(0)
    let waitingNow = Atomic<Int>(0)
    let runningNow = Atomic<Int>(0)
    let kvUseBits = Atomic<UInt64>(0)
    /// How many requests the model server runs at once, as learned from its scrapes (0: not
    /// yet). First learned as its `num_requests_running` when requests wait there (it can take
    /// no more), and raised whenever it is seen running more. A scrape can fall between a
    /// request finishing and the scheduler's next step (one running fewer while one waits), so
    /// a single lower count means nothing; it is lowered only after a whole `capacityMemory`
    /// window in which requests waited there but it never ran as many (what fits in its KV
    /// cache fell with longer prompts), to the most it ran then; and forgotten after a window
    /// in which it neither reached it nor queued (the load fell: the next saturation measures
    /// it again). Flow control keeps the gateway's requests in flight there at most this plus
    /// `flow_control.max_waiting` plus ``probe``.
    package let learnedCapacity = Atomic<Int>(0)
    /// 1 while one request more than the learned capacity may be sent, to find out whether it
    /// runs more (the estimate could only fall otherwise, as flow control keeps its queue
    /// empty): offered while it runs at its capacity with nothing waiting, withdrawn when it
    /// queues (then offered again a window later) or is seen running more (then offered again
    /// at once: capacity grows by one per scrape until requests wait there).
    let probe = Atomic<Int>(0)
    /// Requests sent there without a first token yet, and their uncached prompt tokens.
    package let pendingRequests = Atomic<Int>(0)
    package let pendingTokens = Atomic<Int>(0)
    /// Requests decoding there (first token seen, not finished).
    package let decodingNow = Atomic<Int>(0)
    /// Set by the first ``prefillStarted(tokens:)``: until the request path reports requests
    /// here, the router estimates the pending prefill from the in-flight count and the scrape.
    package let leaseReported = Atomic<Bool>(false)
    /// The mean uncached prompt tokens of requests routed here (EWMA over the last ~16, as
    /// `Float` bits): what one request of the server's waiting queue is taken to cost.
    let meanUncachedBits = Atomic<UInt32>(0)
    /// The learned coefficients (``LatencyLearner``), published as `Float` bits two to a word
    /// (overhead | prefill per token, step base | step per sequence: what a candidate holds) so
    /// a decision reads them without a lock in two loads; the learner itself is behind
    /// ``learner``'s lock, taken once per observation.
    let coefficientsLow = Atomic<UInt64>(EndpointRuntime.pack(LatencyCoefficients.defaults.overhead, LatencyCoefficients.defaults.prefillPerToken))
    let coefficientsHigh = Atomic<UInt64>(EndpointRuntime.pack(LatencyCoefficients.defaults.stepBase, LatencyCoefficients.defaults.stepPerSequence))

    static func pack(_ a: Double, _ b: Double) -> UInt64 {
        UInt64(Float(a).bitPattern) | UInt64(Float(b).bitPattern) << 32
    }

    /// The published coefficients as a candidate holds them.
    @inline(__always) var coefficients32: SIMD4<Float> {
        let lo = coefficientsLow.load(ordering: .relaxed), hi = coefficientsHigh.load(ordering: .relaxed)
        return SIMD4(Float(bitPattern: UInt32(truncatingIfNeeded: lo)), Float(bitPattern: UInt32(truncatingIfNeeded: lo >> 32)),
                     Float(bitPattern: UInt32(truncatingIfNeeded: hi)), Float(bitPattern: UInt32(truncatingIfNeeded: hi >> 32)))
    }

    // The capacity learner's current window (the control loop's alone: one scrape at a time;
    // after the fields decisions read, which stay together).
    private let windowStart = Atomic<UInt64>(0)
    private let reachedCapacity = Atomic<Bool>(false)
    private let mostRunningWhileWaiting = Atomic<Int>(0)
    private let probedAt = Atomic<UInt64>(0)
    static let capacityMemory: UInt64 = 10_000_000_000

    /// A scrape's running and waiting counts (the control loop: one scrape at a time).
    func observeConcurrency(running: Int, waiting: Int, at now: Instant) {
        var cap = learnedCapacity.load(ordering: .relaxed)
        if cap == 0 {
            guard waiting > 0 && running > 0 else { return }
            learnedCapacity.store(running, ordering: .relaxed)
            windowStart.store(now.nanoseconds, ordering: .relaxed)
            reachedCapacity.store(true, ordering: .relaxed)
            mostRunningWhileWaiting.store(0, ordering: .relaxed)
            probe.store(0, ordering: .relaxed)
            probedAt.store(0, ordering: .relaxed)
            return
        }
        if running > cap {
            // It ran more (a probe's request, or more sent before): learned, and probed again
            // at once — it may run more still. Only a probe that ends up waiting there waits a
            // window before the next.
            cap = running
            learnedCapacity.store(cap, ordering: .relaxed)
            probe.store(0, ordering: .relaxed)
            probedAt.store(0, ordering: .relaxed)
        }
        if running >= cap { reachedCapacity.store(true, ordering: .relaxed) }
        if waiting > 0 {
            probe.store(0, ordering: .relaxed)
            if running > mostRunningWhileWaiting.load(ordering: .relaxed) { mostRunningWhileWaiting.store(running, ordering: .relaxed) }
        } else if running >= cap, probe.load(ordering: .relaxed) == 0,
                  probedAt.load(ordering: .relaxed) == 0 || now.nanoseconds &- probedAt.load(ordering: .relaxed) > Self.capacityMemory {
            probe.store(1, ordering: .relaxed)
            probedAt.store(now.nanoseconds, ordering: .relaxed)
        }
        guard now.nanoseconds &- windowStart.load(ordering: .relaxed) > Self.capacityMemory else { return }
        if !reachedCapacity.load(ordering: .relaxed) {
            let most = mostRunningWhileWaiting.load(ordering: .relaxed)
            learnedCapacity.store(most, ordering: .relaxed)  // 0: forgotten
            if most == 0 { probe.store(0, ordering: .relaxed) }
        }
        windowStart.store(now.nanoseconds, ordering: .relaxed)
        reachedCapacity.store(false, ordering: .relaxed)
        mostRunningWhileWaiting.store(0, ordering: .relaxed)
    }

    public let authority: String
    public let address: SocketAddress
    /// The latest scraped state. Read it freely; write it only through ``updateTelemetry(_:)``.
    let telemetry = Mutex<EndpointTelemetry>(EndpointTelemetry())
    /// The endpoint's latency learner (see the coefficients above).
    let learner = Mutex(LatencyLearner())

    /// Changes the telemetry and republishes the fields routing reads.
    package func updateTelemetry(_ change: (inout EndpointTelemetry) -> Void) {
        let (at, waiting, running, kv) = telemetry.withLock { t in
            change(&t)
            return (t.scrapedAt.nanoseconds, t.waiting, t.running, t.kvUse)
        }
        scrapedAtNanos.store(at, ordering: .relaxed)
        waitingNow.store(waiting, ordering: .relaxed)
        runningNow.store(running, ordering: .relaxed)
        kvUseBits.store(kv.bitPattern, ordering: .relaxed)
    }

    // MARK: gateway-local load for the cost model (no scrape lag)
    //
    // The request path reports each request's life here, through its endpoint lease, exactly
    // once per call:
    //
    //     prefillStarted(tokens: u)  ── sent ──▶ firstToken(tokens: u) ── decoding ──▶ finished(tokens: u, sawFirstToken: true)
    //            │                                                                 ▲
    //            └──────────── error / abort / retry before any token ─────────────┘ finished(tokens: u, sawFirstToken: false)
    //
    // `u` is the decision's `uncachedTokens` every time (the same number in and out, so the
    // counters return to zero). All workers share these counters: a decision on any worker
    // sees every request the gateway has queued there at once, where the scrape is up to an
    // interval old. The scrape corrects them (waiting beyond this gateway's own, running), it
    // never waits for them.


    /// A request was sent here with `tokens` uncached prompt tokens (the decision's
    /// `uncachedTokens`). Call once per request sent (each retry is a new request).
    public func prefillStarted(tokens: Int) {
        let t = max(0, tokens)
        pendingRequests.add(1, ordering: .relaxed)
        pendingTokens.add(t, ordering: .relaxed)
        if !leaseReported.load(ordering: .relaxed) { leaseReported.store(true, ordering: .relaxed) }
    }

    /// Its first token arrived (the first byte of the response body, for a non-streamed
    /// response): its prefill is done, it decodes. At most once per request, after
    /// ``prefillStarted(tokens:)`` with the same `tokens`.
    public func firstToken(tokens: Int) {
        pendingRequests.subtract(1, ordering: .relaxed)
        pendingTokens.subtract(max(0, tokens), ordering: .relaxed)
        decodingNow.add(1, ordering: .relaxed)
    }

    /// The request ended (completed, failed, aborted, or given up for a retry elsewhere):
    /// releases what it holds. Exactly once per ``prefillStarted(tokens:)``; `sawFirstToken`
    /// says whether ``firstToken(tokens:)`` was called.
    public func finished(tokens: Int, sawFirstToken: Bool) {
        if sawFirstToken {
            decodingNow.subtract(1, ordering: .relaxed)
        } else {
            pendingRequests.subtract(1, ordering: .relaxed)
            pendingTokens.subtract(max(0, tokens), ordering: .relaxed)
        }
    }

    /// Feeds the learner one observed time to first token: `ttft` seconds after the request was
    /// sent, which the decision predicted with `queuedAhead` prefill tokens ahead of its
    /// `uncachedTokens` and `decoding` sequences decoding (all three from the decision).
    /// `promptTokens` is the whole prompt (kept for the record; the fit uses uncached tokens).
    public func observe(ttft: Duration, promptTokens: Int, uncachedTokens: Int, queuedAhead: Int, decoding: Int, at now: Instant) {
        let seconds = Double(ttft.nanoseconds) / 1e9
        let tokens = max(0, queuedAhead) &+ max(0, uncachedTokens)
        publish(learner.withLock { l in
            l.observeTTFT(seconds, tokens: tokens, decoding: decoding, at: Self.seconds(now))
            return l.coefficients
        })
    }

    /// Feeds the learner a request's decode: `outputTokens` tokens over `decodeTime` after its
    /// first, while about `decoding` sequences decoded there (the endpoint's count at the end).
    public func observeDecode(decodeTime: Duration, outputTokens: Int, decoding: Int, at now: Instant) {
        guard outputTokens > 1 else { return }
        let gap = Double(decodeTime.nanoseconds) / 1e9 / Double(outputTokens - 1)
        publish(learner.withLock { l in
            l.observeGap(gap, decoding: decoding, at: Self.seconds(now))
            return l.coefficients
        })
    }

    /// Observations from the server's own histograms over one scrape interval (the telemetry
    /// scraper): `requests` prefills that took `prefillSeconds` on average for `computedTokens`
    /// each (vLLM's prefill time excludes the queue), and `gaps` inter-token gaps averaging
    /// `gapSeconds` with `running` sequences running.
    func observeScraped(requests: Double, prefillSeconds: Double, computedTokens: Double, gaps: Double, gapSeconds: Double,
                        running: Int, at now: Instant) {
        publish(learner.withLock { l in
            let t = Self.seconds(now)
            if gaps > 0 { l.observeGap(gapSeconds, decoding: running, weight: min(gaps, 64), at: t) }
            if requests > 0 {
                l.observeTTFT(prefillSeconds, tokens: Int(computedTokens.rounded()), decoding: running, weight: min(requests, 16), at: t)
            }
            return l.coefficients
        })
    }

    private static func seconds(_ i: Instant) -> Double { Double(i.nanoseconds) / 1e9 }

    private func publish(_ c: LatencyCoefficients) {
        coefficientsLow.store(Self.pack(c.overhead, c.prefillPerToken), ordering: .relaxed)
        coefficientsHigh.store(Self.pack(c.stepBase, c.stepPerSequence), ordering: .relaxed)
    }

    /// The published coefficients (relaxed reads: a decision may mix two updates, which moves a
    /// prediction by a fraction of one update).
    var coefficients: LatencyCoefficients {
        let k = coefficients32
        return LatencyCoefficients(overhead: Double(k.x), prefillPerToken: Double(k.y), stepBase: Double(k.z), stepPerSequence: Double(k.w))
    }

    /// A request with `tokens` uncached prompt tokens was routed here: the mean moves 1/16 of
    /// the way (the first sets it). A lost update between two workers only skips one sample.
    func noteRouted(uncachedTokens tokens: Int) {
        let old = Float(bitPattern: meanUncachedBits.load(ordering: .relaxed))
        let v = Float(max(0, tokens))
        meanUncachedBits.store((old == 0 ? v : old + (v - old) / 16).bitPattern, ordering: .relaxed)
    }

    public init(authority: String, address: SocketAddress) {
        self.authority = authority
        self.address = address
        id = Self.nextID.add(1, ordering: .relaxed).newValue
        addressHash = ModelTable.hash(Array(authority.utf8))
    }

    /// Admitted now? An ejected endpoint comes back when its backoff has passed.
    func isAdmitted(at now: Instant) -> Bool {
        ejectedUntil.load(ordering: .relaxed) <= now.nanoseconds
    }

    /// Records a failure; ejects after `threshold` in a row, with exponential backoff
    /// (`base` × 2^(ejections so far), capped at `maxBackoff`).
    func recordFailure(at now: Instant, threshold: Int, base: Duration, maxBackoff: Duration) {
        let n = consecutiveFailures.add(1, ordering: .relaxed).newValue
        guard n >= threshold, isAdmitted(at: now) else { return }
        let k = min(ejections.add(1, ordering: .relaxed).oldValue, 10)
        let backoff = min(base.nanoseconds << Int64(k), maxBackoff.nanoseconds)
        ejectedUntil.store(now.nanoseconds + UInt64(backoff), ordering: .relaxed)
    }

    func recordSuccess() {
        if consecutiveFailures.load(ordering: .relaxed) != 0 { consecutiveFailures.store(0, ordering: .relaxed) }
        if ejections.load(ordering: .relaxed) != 0 && ejectedUntil.load(ordering: .relaxed) == 0 {
            ejections.store(0, ordering: .relaxed)
        }
    }

    /// Re-admits at once (a health check passed).
    func readmit() {
        ejectedUntil.store(0, ordering: .relaxed)
        consecutiveFailures.store(0, ordering: .relaxed)
    }
}

/// Scraped model-server state (filled by the telemetry loop).
public struct EndpointTelemetry: Sendable {
    public var scrapedAt = Instant(nanoseconds: 0)
    public var healthy = true
    public var waiting = 0
    public var running = 0
    public var kvUse = 0.0
    public var kvCapacityTokens = 0
    public var maxLoras = 0
    public var adaptersRunning: [String] = []
    public var adaptersWaiting: [String] = []
    public var adaptersLoaded: [String] = []
    /// When Sluice itself last registered an adapter there (on-demand loading): a `/v1/models`
    /// answer requested before that may not list it yet.
    public var adaptersChangedAt = Instant(nanoseconds: 0)
    /// vLLM's prefix-cache counters (tokens), to report hit rates per endpoint.
    public var prefixCacheHits = 0.0
    public var prefixCacheQueries = 0.0
    /// The latency histograms' totals at the previous scrape (the learner reads differences).
    public var prefillTimeTotals: VLLMMetrics.HistogramTotals?
    public var prefillTokensTotals: VLLMMetrics.HistogramTotals?
    public var interTokenTotals: VLLMMetrics.HistogramTotals?
    public init() {}
}

/// The registry of endpoint runtimes, so a reload finds the state of endpoints that remain.
public final class EndpointRegistry: Sendable {
    private let byAuthority = Mutex<[String: EndpointRuntime]>([:])
    public init() {}

    public func runtime(for e: GatewaySettings.Endpoint) -> EndpointRuntime {
        byAuthority.withLock { map in
            if let r = map[e.authority], r.address == e.address { return r }
            let r = EndpointRuntime(authority: e.authority, address: e.address)
            map[e.authority] = r
            return r
        }
    }

    public var all: [EndpointRuntime] { byAuthority.withLock { Array($0.values) }.sorted { $0.authority < $1.authority } }

    /// Drops endpoints no pool references any more.
    public func retain(_ authorities: Set<String>) {
        byAuthority.withLock { map in map = map.filter { authorities.contains($0.key) } }
    }
}
