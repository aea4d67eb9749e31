public import SluiceSettings
public import SluiceIO
import Synchronization

/// What the gateway knows about one endpoint, shared by every worker and the control loop, and
/// kept across config reloads (keyed by the endpoint's authority): health, the gateway's own
/// in-flight count, and the latest scraped telemetry.
///
/// Workers read and update it with relaxed atomics; the telemetry snapshot sits behind a mutex
/// held only to copy a small struct.
public final class EndpointRuntime: Sendable {
    public let authority: String
    public let address: SocketAddress
    /// Process-unique id (the prefix index's key).
    let id: Int
    /// A hash of the authority: the same on every replica, for rendezvous hashing.
    let addressHash: UInt64
    private static let nextID = Atomic<Int>(0)

    /// Requests in flight through any worker (incremented at pick, decremented at completion).
    let inflight = Atomic<Int>(0)
    /// Consecutive failures seen by the data path (connect errors, resets, 5xx) or health checks.
    let consecutiveFailures = Atomic<Int>(0)
    /// Monotonic ns until which the endpoint is ejected (0 = admitted).
    let ejectedUntil = Atomic<UInt64>(0)
    /// How many times it was ejected (for the backoff and the metric).
    let ejections = Atomic<Int>(0)
    /// The latest scraped state. Read it freely; write it only through ``updateTelemetry(_:)``.
    let telemetry = Mutex<EndpointTelemetry>(EndpointTelemetry())
    /// The scraped fields every routing decision reads, mirrored into atomics so a decision
    /// takes no lock per endpoint (locks were most of a decision's cost at 256 endpoints).
    /// Each is read relaxed: a decision may mix two scrapes, which a heuristic tolerates.
    let scrapedAtNanos = Atomic<UInt64>(0)
    let waitingNow = Atomic<Int>(0)
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
    let learnedCapacity = Atomic<Int>(0)
    /// 1 while one request more than the learned capacity may be sent, to find out whether it
    /// runs more (the estimate could only fall otherwise, as flow control keeps its queue
    /// empty): offered while it runs at its capacity with nothing waiting, withdrawn when it
    /// queues (then offered again a window later) or is seen running more (then offered again
    /// at once: capacity grows by one per scrape until requests wait there).
    let probe = Atomic<Int>(0)
    // The current window (the control loop's alone: one scrape at a time).
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

    /// Changes the telemetry and republishes the fields routing reads.
    func updateTelemetry(_ change: (inout EndpointTelemetry) -> Void) {
        let (at, waiting, kv) = telemetry.withLock { t in
            change(&t)
            return (t.scrapedAt.nanoseconds, t.waiting, t.kvUse)
        }
        scrapedAtNanos.store(at, ordering: .relaxed)
        waitingNow.store(waiting, ordering: .relaxed)
        kvUseBits.store(kv.bitPattern, ordering: .relaxed)
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
