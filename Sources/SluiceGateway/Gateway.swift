import Glibc
public import SluiceSettings
public import SluiceIO
import SluiceRouting
public import Synchronization
public import SluiceTracing

/// The gateway: N worker loops serving the configured listeners.
///
/// `start` returns once every worker listens; `stop(grace:)` drains them (stop accepting, let
/// in-flight requests finish up to the grace period) and joins the threads.
public final class Gateway: @unchecked Sendable {
    /// The version Sluice reports (`sluice --version`, the trace resource's `service.version`).
    public static let version = "0.1.0"
    private let state: Mutex<(settings: GatewaySettings, generation: Int)>
    /// The settings as configured (DNS pools without endpoints); `state` holds the effective
    /// ones with discovered endpoints filled in.
    private let desired: Mutex<GatewaySettings>
    private let discovered = Mutex<[String: [GatewaySettings.Endpoint]]>([:])
    /// The access log writer (nil when off).
    let accessLog: AccessLog?
    /// OpenTelemetry trace export (`tracing:`): its thread runs only while a section is configured;
    /// `start`, a reload and `stop` configure it.
    public let tracer = TraceExporter(version: Gateway.version)
    /// One span recorder per worker, by loop index: `spanRecorders[loop.index]` belongs to that
    /// worker's thread (the request path's record phase calls it; see SpanRecorder).
    public let spanRecorders: [SpanRecorder]
    /// Which endpoint got which prompt-prefix blocks, shared by all workers.
    let prefixIndex = PrefixIndex()
    /// Stored response id → endpoint (Responses API follow-ups), shared by all workers; sized
    /// by the settings at start (`responses.max_ids`, `responses.ttl`; a reload keeps it).
    private(set) var responseAffinity = ResponseAffinity()
    /// WebSocket tunnels open across the workers (`realtime.max_connections`).
    let tunnelCount = SharedCounter()
    /// The guarded splits' live weights (issue 26), shared by workers and the control loop;
    /// made anew by each config load.
    let rollouts = Rollouts()
    /// Metric families and series, shared by all workers.
    public let metrics = GatewayMetrics()
    /// Client connections open across all workers (for `limits.maxConnections`).
    let connectionCount = SharedCounter()
    /// Round-robin positions by pool name, shared by workers and kept across reloads.
    private let counters = Mutex<[String: SharedPool]>([:])
    /// Endpoint state shared by workers and the control loop, kept across reloads.
    public let registry = EndpointRegistry()
    let group: WorkerGroup
    private let workers = Mutex<[Worker?]>([])
    private let drainedCount = Atomic<Int>(0)
    private let startedCount = Atomic<Int>(0)
    private let startError = Mutex<SyscallError?>(nil)
    private(set) var control: ControlPlane!
    /// On-demand LoRA loads, shared by all workers (its HTTP calls run on the control loop).
    private(set) var adapterLoader: AdapterLoader!
    private let draining = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)

    /// How `dns:` pools are resolved (runs on the control loop). getaddrinfo by default; tests
    /// set their own before `start()` to control the answers.
    public var dnsResolver: @Sendable (_ host: String, _ port: UInt16) throws -> [SocketAddress] = { host, port in
        try SocketAddress.resolve(host: host, port: port)
    }

    /// The settings in force (a reload replaces them).
    public var currentSettings: GatewaySettings { state.withLock { $0.settings } }
    /// Incremented by every applied reload (the first config is generation 1).
    public var generation: Int { state.withLock { $0.generation } }

    /// The control loop (admin, health checks, discovery, reloads).
    public var controlLoop: EventLoop { control.loop }

    /// Config reloads that failed (the old config stayed in force).
    public let reloadFailures = Atomic<Int>(0)
    /// Unix time (seconds) of the last successful config load.
    public let loadedAt = Atomic<Int>(WallClock.now().seconds)

    /// Where the config came from and a digest of its text (for `/admin/config`); set by the
    /// program that loads it.
    public let configSource = Mutex<(path: String, digest: String)>(("(flags)", ""))

    /// The last reload: whether it applied, when (unix seconds), and why not (for `/admin/stats`).
    public let lastReload = Mutex<(ok: Bool, at: Int, message: String)?>(nil)

    func recordReload(failed: Bool) {
        if failed { reloadFailures.add(1, ordering: .relaxed) } else { loadedAt.store(WallClock.now().seconds, ordering: .relaxed) }
        lastReload.withLock { $0 = (!failed, WallClock.now().seconds, failed ? "see the log" : "") }
    }

    /// Why the last reload failed, as the program that loaded the file reports it (the config
    /// issues, which name paths and lines, never secret values); shown by `/admin/stats`.
    public func noteReloadFailure(_ message: String) {
        lastReload.withLock { r in
            if r?.ok == false { r?.message = String(message.prefix(2000)) }
        }
    }

    /// The admin listener's port, when one is configured.
    public var adminPort: UInt16? { control?.adminPort }

    public init(settings: GatewaySettings) throws(SyscallError) {
        state = Mutex((settings, 1))
        desired = Mutex(settings)
        accessLog = AccessLog(settings.accessLog)
        let n = settings.workers > 0 ? settings.workers : Threads.availableCPUs
        group = try WorkerGroup(count: n)
        workers.withLock { $0 = Array(repeating: nil, count: n) }
        spanRecorders = group.loops.map { [tracer] in SpanRecorder(exporter: tracer, loop: $0) }
        rollouts.configure(settings, now: UInt64(Instant.now().nanoseconds), fresh: true)
    }

    public var workerCount: Int { group.loops.count }

    /// Starts the workers and waits until each listens (or one failed to bind).
    public func start() throws(SyscallError) {
        let settings = effective(currentSettings)
        state.withLock { $0.settings = settings }
        tracer.configure(settings.tracing)
        let shared = sharedCounters(for: settings)
        // The control loop exists (not yet running) before the workers, so they can queue work
        // on it (adapter loads) from their first request.
        control = try ControlPlane(gateway: self)
        adapterLoader = AdapterLoader(control: control.loop)
        let loader = adapterLoader!
        responseAffinity = ResponseAffinity(capacity: settings.responses.maxIDs, ttl: settings.responses.ttl)
        let responseAffinity = responseAffinity
        group.start(name: "sluice-worker") { [self] loop in
            let w = Worker(loop: loop, settings: settings, shared: shared, registry: registry, connections: connectionCount, metrics: metrics, prefixIndex: prefixIndex, adapterLoader: loader, accessLog: accessLog,
                           responseAffinity: responseAffinity, tunnels: tunnelCount, spans: spanRecorders[loop.index]) { [self] in
                drainedCount.add(1, ordering: .acquiringAndReleasing)
            }
            w.rollouts = rollouts
            do throws(SyscallError) {
                try w.start()
                // Unmanaged hand-off: the worker lives on its loop's thread; the group only
                // keeps it to reach it later through loop.execute.
                workers.withLock { $0[loop.index] = w }
            } catch {
                startError.withLock { $0 = error }
            }
            startedCount.add(1, ordering: .acquiringAndReleasing)
        }
        while startedCount.load(ordering: .acquiring) < group.loops.count { usleep(1000) }
        if let e = startError.withLock({ $0 }) {
            group.stop()
            group.join()
            tracer.configure(nil)
            throw e
        }
        do {
            try control.start(adminAddress: settings.admin)
        } catch {
            stop(grace: .zero)
            throw error
        }
        started.store(true, ordering: .releasing)
    }

    private func sharedCounters(for s: GatewaySettings) -> [String: SharedPool] {
        counters.withLock { map in
            for p in s.pools where map[p.name] == nil { map[p.name] = SharedPool() }
            return map
        }
    }

    /// The flow-control state of each pool (gauges).
    var poolFlows: [String: PoolFlow] { counters.withLock { $0.mapValues(\.flow) } }

    /// Publishes new settings to every worker and waits until each has switched. Listener
    /// changes bind new sockets and close removed ones; the worker count and the admin address
    /// need a restart (they are kept). Throws if a new listener cannot bind, in which case the
    /// workers that did switch are switched back.
    public func apply(_ new: GatewaySettings) throws(SyscallError) {
        let previous = desired.withLock { d -> GatewaySettings in let p = d; d = new; return p }
        // A reload resets every SLO guard (issue 26).
        rollouts.configure(new, now: UInt64(Instant.now().nanoseconds))
        do {
            try publish(effective(new))
        } catch {
            desired.withLock { $0 = previous }
            throw error
        }
        control?.reconfigure(new)
        tracer.configure(new.tracing)
    }

    /// The settings as configured (DNS pools without their discovered endpoints).
    public var desiredSettings: GatewaySettings { desired.withLock { $0 } }

    /// The settings with discovered endpoints in DNS pools.
    private func effective(_ s: GatewaySettings) -> GatewaySettings {
        var s = s
        let found = discovered.withLock { $0 }
        for i in s.pools.indices where s.pools[i].dns != nil {
            s.pools[i].endpoints = found[s.pools[i].name] ?? []
        }
        return s
    }

    /// DNS discovery found `endpoints` for `pool`: publish them if they changed.
    func updateDiscovered(pool: String, _ endpoints: [GatewaySettings.Endpoint]) {
        let changed = discovered.withLock { d -> Bool in
            if d[pool] == endpoints { return false }
            d[pool] = endpoints
            return true
        }
        guard changed else { return }
        try? publish(effective(desired.withLock { $0 }))
    }

    private func publish(_ new: GatewaySettings) throws(SyscallError) {
        var new = new
        let old = currentSettings
        new.workers = old.workers
        new.admin = old.admin
        let shared = sharedCounters(for: new)
        let ws = workers.withLock { $0 }
        let errors = Mutex<[SyscallError]>([])
        let done = Atomic<Int>(0)
        let target = new
        for (i, w) in ws.enumerated() {
            guard let w else { done.add(1, ordering: .relaxed); continue }
            group.loops[i].execute { [registry] in
                do throws(SyscallError) { try w.apply(target, shared: shared, registry: registry) } catch { errors.withLock { $0.append(error) } }
                done.add(1, ordering: .acquiringAndReleasing)
            }
        }
        while done.load(ordering: .acquiring) < ws.count { usleep(200) }
        if let e = errors.withLock({ $0.first }) {
            // Roll back the workers to the old settings (their old listeners are still open
            // when only a new bind failed).
            done.store(0, ordering: .relaxed)
            for (i, w) in ws.enumerated() {
                guard let w else { done.add(1, ordering: .relaxed); continue }
                group.loops[i].execute { [registry] in
                    try? w.apply(old, shared: shared, registry: registry)
                    done.add(1, ordering: .acquiringAndReleasing)
                }
            }
            while done.load(ordering: .acquiring) < ws.count { usleep(200) }
            throw e
        }
        state.withLock { $0 = (new, $0.generation + 1) }
        registry.retain(Set(new.pools.flatMap { $0.endpoints.map(\.authority) }))
    }

    /// Ready to take traffic: started, not draining, and every pool has an admitted endpoint.
    public func readiness() -> (Bool, String) {
        if !started.load(ordering: .acquiring) { return (false, "starting") }
        if draining.load(ordering: .acquiring) { return (false, "draining") }
        let now = Instant.now()
        for p in currentSettings.pools where !p.endpoints.contains(where: { registry.runtime(for: $0).isAdmitted(at: now) }) {
            return (false, "pool '\(p.name)' has no healthy endpoint")
        }
        return (true, "")
    }

    /// What a scrape reads from each worker, on the worker's own loop.
    struct WorkerSnapshot {
        var lag = 0.0
        /// Buffer-pool bytes held by connections and requests, and kept free for reuse.
        var buffersInUse = 0
        var buffersFree = 0
    }

    /// Each worker's metric values, copied on its own loop (a scrape), and each worker's
    /// event-loop lag (how long the copy task waited in the loop's queue before it ran, which is
    /// how long any cross-thread work, and roughly any ready event, waits there) and buffers.
    func metricSnapshots() -> (values: [[Double]], workers: [WorkerSnapshot]) {
        let ws = workers.withLock { $0 }
        let results = Mutex<[[Double]]>([])
        let snapshots = Mutex<[WorkerSnapshot]>(Array(repeating: WorkerSnapshot(), count: ws.count))
        let done = Atomic<Int>(0)
        for (i, w) in ws.enumerated() {
            guard let w else { done.add(1, ordering: .relaxed); continue }
            let posted = Instant.now()
            let loop = group.loops[i]
            loop.execute {
                let waited = Instant.now().seconds(since: posted)
                let v = w.metrics.values
                let pool = loop.bufferPool
                let snapshot = WorkerSnapshot(lag: waited, buffersInUse: pool.outstandingBytes, buffersFree: pool.freeBytes)
                results.withLock { $0.append(v) }
                snapshots.withLock { $0[i] = snapshot }
                done.add(1, ordering: .acquiringAndReleasing)
            }
        }
        while done.load(ordering: .acquiring) < ws.count { usleep(100) }
        return (results.withLock { $0 }, snapshots.withLock { $0 })
    }

    /// Client connections open now.
    public var openConnections: Int { connectionCount.value.load(ordering: .relaxed) }

    /// Connections accepted by each worker so far (read on the worker threads).
    public func acceptedPerWorker() -> [Int] {
        let ws = workers.withLock { $0 }
        return ws.enumerated().map { i, w in
            guard let w else { return 0 }
            let box = Mutex<Int>(0)
            let done = Atomic<Bool>(false)
            let worker = w
            group.loops[i].execute {
                box.withLock { $0 = worker.accepted }
                done.store(true, ordering: .releasing)
            }
            while !done.load(ordering: .acquiring) { usleep(200) }
            return box.withLock { $0 }
        }
    }

    /// Graceful stop: stop accepting, wait up to `grace` for in-flight requests, close the
    /// rest, stop the loops and join their threads.
    public func stop(grace: Duration) {
        // Readiness turns false first, so a load balancer stops sending; listeners keep
        // accepting for the drain delay while that propagates.
        draining.store(true, ordering: .releasing)
        let delay = currentSettings.timeouts.drainDelay
        if delay > .zero && started.load(ordering: .acquiring) {
            usleep(UInt32(clamping: delay.nanoseconds / 1000))
        }
        let ws = workers.withLock { $0 }
        for (i, w) in ws.enumerated() {
            guard let w else { drainedCount.add(1, ordering: .relaxed); continue }
            let worker = w
            group.loops[i].execute { worker.beginDrain() }
        }
        let deadline = Instant.now() + grace
        while drainedCount.load(ordering: .acquiring) < ws.count && Instant.now() < deadline { usleep(2000) }
        for (i, w) in ws.enumerated() {
            guard let w else { continue }
            let worker = w
            group.loops[i].execute { worker.closeAll() }
        }
        group.stop()
        group.join()
        workers.withLock { $0 = [] }
        control?.stop()
        control = nil
        // After the workers: their last spans were handed over at the end of their last
        // iterations; what is queued gets one export, bounded by tracing.export_timeout.
        tracer.stop()
        accessLog?.close()
    }
}
