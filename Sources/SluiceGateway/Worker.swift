package import SluiceSettings
package import SluiceTracing
import Glibc
package import SluiceIO
import SluiceHTTP
import SluiceRedis
package import SluiceRouting
import SluiceLLM
import Synchronization

/// The settings of one config generation as one object. A request keeps the generation it
/// started under (a reload does not change its timeouts or retries) for the price of one
/// retain: copying the struct instead would copy ~700 bytes into every exchange and retain
/// every array and string in it, per request.
final class SettingsGeneration {
    let value: GatewaySettings
    init(_ value: GatewaySettings) { self.value = value }
}

/// One worker thread's share of the gateway: its event loop, its listeners (SO_REUSEPORT: the
/// kernel spreads connections across workers), its client connections and its upstream pools.
/// Everything here is confined to the loop's thread.
package final class Worker: @unchecked Sendable {
    let loop: EventLoop
    /// The settings in force, as one object per generation (see ``SettingsGeneration``).
    private(set) var generation: SettingsGeneration
    /// Read in place (no copy of the struct): `worker.settings.timeouts.idle` loads one field.
    package var settings: GatewaySettings { _read { yield generation.value } }
    /// Listeners by their configured address (which may say port 0 in tests).
    private(set) var listeners: [(address: SocketAddress, listener: Listener)] = []
    package private(set) var pools: [UpstreamPool] = []
    private var clients: [ObjectIdentifier: any DownstreamConnection] = [:]
    /// Exchange timers handed back by finished exchanges, for the next ones (no allocation
    /// per request for the timer). Bounded: beyond it they are freed.
    var spareExchangeTimers: [ExchangeTimer] = []
    /// Traces of finished exchanges, for the next ones (tracing on).
    var spareTraces: [TraceState] = []
    /// Re-checks the pools' flow-control queues while any request waits (room can appear
    /// without a request ending here: telemetry, endpoints added or re-admitted, other workers).
    private lazy var flowTimer = Timer { [unowned self] in self.flowTick() }

    /// Dispatches what the pools' queues hold if there is room, and keeps checking while any
    /// request waits.
    func flowTick() {
        var waiting = false
        for p in pools where p.shared.flow.queued.load(ordering: .relaxed) > 0 {
            p.shared.flow.dispatch(p, settings, now: loop.now)
            waiting = waiting || p.shared.flow.queued.load(ordering: .relaxed) > 0
        }
        if waiting && !flowTimer.isArmed { loop.schedule(flowTimer, after: .milliseconds(50)) }
    }

    /// A request of this worker's waits in a pool's queue: check every 50 ms until none does.
    /// Room also appears without a lease ending here (a scrape, an ejection ending, a first
    /// token, another worker's request ending): without the tick, a request queued while no
    /// request of this worker was in flight would wait for its TTL.
    func flowWaiting() {
        if !flowTimer.isArmed { loop.schedule(flowTimer, after: .milliseconds(50)) }
    }

    /// Dispatches again at `deadline` (a held slot is released then), or sooner if due sooner.
    func flowTick(at deadline: Instant) {
        if flowTimer.isArmed && flowTimer.deadline <= deadline { return }
        loop.schedule(flowTimer, at: deadline)
    }

    /// Makes upstream connections instead of `UpstreamConnection.connect` (tests: a fake
    /// upstream, no socket). Nil in production.
    var connectUpstream: ((UpstreamPool.Endpoint) throws -> any Upstream)?
    private(set) var draining = false
    private var requestCounter: UInt64 = 0
    private let requestIDSeed: UInt64
    /// Connections accepted so far (tests check that every worker gets a share).
    private(set) var accepted = 0
    private let onDrained: @Sendable () -> Void

    /// The complete 503 response for connections over the limit, built once.
    private let overloadedResponse: [UInt8] = {
        let e = ErrorResponse(status: 503, message: "Too many connections.", type: "server_error", param: nil, code: "overloaded")
        let body = e.body()
        var h: [UInt8] = []
        HTTP1ResponseHead.write(503, fields: [("Content-Type", "application/json")], framing: .length(body.count), close: true, into: &h)
        return h + body
    }()

    /// The `models:` section compiled for lookups (rebuilt when settings change).
    private(set) var modelTable: ModelTable
    /// Shadow copies of sampled requests (issue 26).
    private(set) lazy var shadows = ShadowSender(worker: self)
    /// The guarded splits' live weights (the gateway's; set once after init, on this thread).
    var rollouts: Rollouts? {
        didSet { modelTable = ModelTable(settings, metrics: catalog, rollouts: rollouts) }
    }
    /// Unix time the settings were loaded (the `created` of Sluice's model list).
    private(set) var loadedAt = WallClock.now().seconds
    /// The worker's own seeded generator: split arms, routing tie breaks.
    package var random: SplitMix64

    /// A uniform draw in [0, 1) (split arms).
    func nextRandom() -> Double { random.nextUnit() }

    /// This worker's metric values (written only here; scrapes copy them on this loop).
    let metrics = MetricsShard()
    let catalog: GatewayMetrics
    /// Slots of requests Sluice answered itself (no pool).
    private(set) lazy var localSlots: GatewayMetrics.PoolSlots = catalog.slots(pool: "")

    /// Scratch space for the inspect phase (prompt segments, prefix hashes) and the router.
    package let inspectScratch = InspectScratch()
    package let routerScratch = RouterScratch()

    /// Access log lines of this iteration, handed to the writer at its end (one lock per batch).
    let accessLog: AccessLog?
    /// This worker's span recorder (the gateway's `spanRecorders[loop.index]`): head sampling
    /// at a request's start, its spans at its end (``TraceSpans``).
    let spans: SpanRecorder
    private var pendingLog: [UInt8] = []

    func log(_ line: [UInt8]) {
        guard let a = accessLog else { return }
        if pendingLog.isEmpty {
            loop.deferUntilEndOfIteration { [unowned self] in
                a.enqueue(pendingLog)
                pendingLog.removeAll(keepingCapacity: true)
            }
        }
        pendingLog += line
    }

    /// `sluice_endpoint_requests_total` slots: (endpoint raw value, or the last for other) ×
    /// status class, flattened.
    let endpointSlots: [Int]
    let tunnelSlots: [String: Int]
    let tunnelByteSlots: [Int]

    /// Rows of ``endpointSlots`` before `other` (`allCases` builds an array per call).
    private static let endpointKinds = LLMEndpoint.allCases.count

    func endpointSlot(_ e: LLMEndpoint?, status: Int) -> Int {
        let row = e.map { Int($0.rawValue) } ?? Self.endpointKinds
        return endpointSlots[row * GatewayMetrics.classes.count + GatewayMetrics.classIndex(status)]
    }

    /// The shared prefix index (the gateway's).
    package let prefixIndex: PrefixIndex
    /// On-demand LoRA loading (the gateway's).
    let adapterLoader: AdapterLoader
    /// Stored response id → endpoint (the gateway's, shared by the workers).
    let responseAffinity: ResponseAffinity
    /// WebSocket tunnels open (or being opened) across the workers (`realtime.max_connections`).
    let tunnels: SharedCounter

    /// Takes a tunnel slot if fewer than `realtime.max_connections` are taken.
    func acquireTunnelSlot() -> Bool {
        let max = settings.realtime.maxConnections
        if tunnels.value.add(1, ordering: .relaxed).newValue > max {
            tunnels.value.add(-1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// A client connection became a tunnel: the tunnel takes its place among the clients
    /// (the connection count is unchanged: it is the same connection).
    func adoptTunnel(_ t: Tunnel, replacing c: AnyObject) {
        clients.removeValue(forKey: ObjectIdentifier(c))
        clients[ObjectIdentifier(t)] = t
    }

    /// This worker's Redis connections (nil without `redis:`), the limiter on them, and the
    /// local limiter used while Redis is unreachable.
    private(set) var redis: RedisClient?
    private(set) var rateLimiter: RateLimiter?
    var localLimiter: LocalRateLimiter
    /// Metric slots of admission outcomes, by outcome name. Registered up front, so every
    /// outcome is exported (as 0 until it happens) and rate() works from the first scrape.
    let cacheSlots: [String: Int]
    let limitSlots: [String: Int]

    /// Workers of this process (the local limiter's share of each limit).
    static func workerCount(_ s: GatewaySettings) -> Int { s.workers > 0 ? s.workers : Threads.availableCPUs }

    /// Opens (or, when the settings changed, reopens) the Redis connections. On the loop.
    private func connectRedis(_ new: GatewaySettings.Redis?) {
        let old = redis?.connections.first?.configuration
        if let o = old, let n = new?.configuration, o.url == n.url, o.address == n.address,
           o.commandTimeout == n.commandTimeout, o.connectionsPerLoop == n.connectionsPerLoop { return }
        redis?.close()
        redis = nil
        rateLimiter = nil
        guard let n = new else { return }
        let client = RedisClient(loop: loop, configuration: n.configuration)
        client.start()
        redis = client
        rateLimiter = RateLimiter(client: client)
    }

    /// Connections open across all workers (shared with the gateway).
    private let connections: SharedCounter

    package init(loop: EventLoop, settings: GatewaySettings, shared: [String: SharedPool], registry: EndpointRegistry,
         connections: SharedCounter, metrics: GatewayMetrics, prefixIndex: PrefixIndex, adapterLoader: AdapterLoader, accessLog: AccessLog?,
         responseAffinity: ResponseAffinity = ResponseAffinity(), tunnels: SharedCounter = SharedCounter(),
         spans: SpanRecorder? = nil, onDrained: @escaping @Sendable () -> Void) {
        self.catalog = metrics
        cacheSlots = Dictionary(uniqueKeysWithValues:
            ["hit", "miss", "bypass", "error", "stored", "store_error"].map { ($0, metrics.schema.series(metrics.cache, [$0])) })
        limitSlots = Dictionary(uniqueKeysWithValues:
            ["allowed", "limited", "error", "local"].map { ($0, metrics.schema.series(metrics.rateLimit, [$0])) })
        endpointSlots = (LLMEndpoint.allCases.map(\.description) + ["other"]).flatMap { e in
            GatewayMetrics.classes.map { metrics.schema.series(metrics.endpointRequests, [e, $0]) }
        }
        tunnelSlots = Dictionary(uniqueKeysWithValues:
            ["opened", "closed", "idle_closed", "refused"].map { ($0, metrics.schema.series(metrics.tunnels, [$0])) })
        tunnelByteSlots = ["client_to_server", "server_to_client"].map { metrics.schema.series(metrics.tunnelBytes, [$0]) }
        self.accessLog = accessLog
        // Without the gateway's (tests, benchmarks): a recorder of an exporter never configured,
        // so tracing is off.
        self.spans = spans ?? SpanRecorder(exporter: TraceExporter(), loop: loop)
        self.prefixIndex = prefixIndex
        self.adapterLoader = adapterLoader
        self.responseAffinity = responseAffinity
        self.tunnels = tunnels
        self.loop = loop
        self.connections = connections
        self.generation = SettingsGeneration(settings)
        self.modelTable = ModelTable(settings, metrics: metrics)
        self.random = SplitMix64(seed: UInt64.random(in: .min ... .max))
        self.onDrained = onDrained
        self.localLimiter = LocalRateLimiter(share: Self.workerCount(settings))
        self.metrics.enabled = settings.metrics
        loop.bufferPool.spareLimit = settings.limits.spareBufferBytes
        let seed = UInt64.random(in: .min ... .max)
        requestIDSeed = seed ^ UInt64(loop.index) << 56
        pools = settings.pools.map { UpstreamPool(config: $0, shared: shared[$0.name] ?? SharedPool(), registry: registry, worker: self) }
    }

    var defaultPool: UpstreamPool? { pools.first }

    func pool(named name: String) -> UpstreamPool? { pools.first { $0.name == name } }

    /// The current endpoint object for an upstream connection returning to the pool.
    func currentEndpoint(authority: String, address: SocketAddress) -> UpstreamPool.Endpoint? {
        for p in pools {
            for e in p.endpoints where e.config.authority == authority && e.config.address == address { return e }
        }
        return nil
    }

    /// Returns an upstream connection after a complete exchange; it is kept if its endpoint
    /// has room. A worker operation, not a pool's: after a reload the pool that made the
    /// connection may be gone, and the connection goes to the endpoint's current object (or
    /// closes if the endpoint was removed).
    func checkin(_ c: UpstreamConnection) {
        // Without a reload since the connection was made its endpoint object is the current
        // one; only then is the search (over every endpoint of every pool) needed.
        guard let ep = c.endpoint.isCurrent ? c.endpoint
                : currentEndpoint(authority: c.endpoint.config.authority, address: c.endpoint.config.address) else {
            c.close()
            return
        }
        if draining || ep.idle.count >= settings.upstream.keepalivePerEndpoint {
            c.close()
            return
        }
        c.becomeIdle(maxIdle: settings.upstream.maxIdleTime, in: ep)
        ep.idle.append(c)
    }

    /// Forgets an idle connection that closed.
    func removeIdle(_ c: UpstreamConnection) {
        if let i = c.idleIn?.idle.firstIndex(where: { $0 === c }) { c.idleIn?.idle.remove(at: i) }
    }

    /// Switches to new settings (a reload): listeners that went away close, new ones bind,
    /// pools are rebuilt keeping the endpoints (and idle connections) that remain. Requests in
    /// flight keep the pool and settings they started with.
    func apply(_ new: GatewaySettings, shared: [String: SharedPool], registry: EndpointRegistry) throws(SyscallError) {
        let oldAddresses = Set(settings.listen.map(\.address))
        let newAddresses = Set(new.listen.map(\.address))
        var bound: [(address: SocketAddress, listener: Listener)] = []
        for l in new.listen where !oldAddresses.contains(l.address) {
            do {
                let address = l.address
                bound.append((address, try Listener(address: address, loop: loop) { [unowned self] fd in self.accept(fd, on: address) }))
            } catch {
                for b in bound { b.listener.close() }
                throw error
            }
        }
        listeners.removeAll { l in
            if newAddresses.contains(l.address) { return false }
            l.listener.close()  // connections already accepted carry on
            return true
        }
        listeners += bound
        var previous: [String: UpstreamPool.Endpoint] = [:]
        for p in pools { for e in p.endpoints { previous[e.config.authority] = e } }
        generation = SettingsGeneration(new)
        connectRedis(new.redis)
        metrics.enabled = new.metrics
        loop.bufferPool.spareLimit = new.limits.spareBufferBytes
        if Self.workerCount(new) != localLimiter.share { localLimiter = LocalRateLimiter(share: Self.workerCount(new)) }
        modelTable = ModelTable(new, metrics: catalog, rollouts: rollouts)
        loadedAt = WallClock.now().seconds
        pools = new.pools.map { UpstreamPool(config: $0, shared: shared[$0.name] ?? SharedPool(), registry: registry, worker: self, previous: previous) }
        // Endpoints that appeared (a scale from zero) can take requests waiting for them.
        flowTick()
        // Idle connections to endpoints that are gone close now.
        let kept = Set(pools.flatMap { $0.endpoints.map { ObjectIdentifier($0.runtime) } })
        for e in previous.values where !kept.contains(ObjectIdentifier(e.runtime)) {
            let idle = e.idle
            e.idle.removeAll()
            for c in idle { c.close() }
        }
        // The endpoints that remain have new objects holding their idle connections; the old
        // objects must let go of them, or old endpoint → idle connection → old endpoint is a
        // cycle that leaks every connection idle at a reload (found by LeakSanitizer).
        for e in previous.values {
            e.idle.removeAll()
            e.isCurrent = false
        }
    }

    func start() throws(SyscallError) {
        connectRedis(settings.redis)
        for l in settings.listen {
            let address = l.address
            let listener = try Listener(address: address, loop: loop) { [unowned self] fd in self.accept(fd, on: address) }
            listeners.append((l.address, listener))
        }
    }

    /// A connection on the listener bound to `address`. Its TLS context is looked up in the
    /// settings in force now, not captured when the listener was bound: a reload with rotated
    /// certificates applies to the next handshake on a listener that stayed.
    private func accept(_ fd: Int32, on address: SocketAddress) {
        let tls = settings.listen.first { $0.address == address }?.tls
        if draining || clients.count >= settings.limits.maxConnectionsPerWorker
            || connections.value.load(ordering: .relaxed) >= settings.limits.maxConnections {
            // Over the limit: answer 503 (best effort: the socket buffer is empty) and close.
            _ = overloadedResponse.withUnsafeBytes { try? Sys.send(fd, $0.baseAddress!, $0.count) }
            Sys.close(fd)
            return
        }
        accepted += 1
        let transport = tls.map { Transport(tls: fd, context: $0.current) } ?? Transport(plain: fd)
        let c = ClientConnection(transport: transport, worker: self)
        do {
            try c.start()
        } catch {
            Sys.close(fd)
            return
        }
        clients[ObjectIdentifier(c)] = c
        connections.value.add(1, ordering: .relaxed)
    }

    /// Hands a connection whose client opened with the HTTP/2 preface to an HTTP/2 session.
    func upgradeToHTTP2(from c: ClientConnection, transport: Transport, registration: Registration?, peer: [UInt8], bytes: UnsafeRawBufferPointer) {
        clients.removeValue(forKey: ObjectIdentifier(c))
        let h2 = HTTP2ServerConnection(transport: transport, loop: loop, delegate: self, peer: peer, initialBytes: bytes)
        clients[ObjectIdentifier(h2)] = h2
        do {
            try h2.start(registrationFrom: registration)
        } catch {
            clients.removeValue(forKey: ObjectIdentifier(h2))
            transport.close()
        }
    }

    func clientClosed(_ c: any DownstreamConnection) {
        if clients.removeValue(forKey: ObjectIdentifier(c)) != nil { connections.value.add(-1, ordering: .relaxed) }
        if draining && clients.isEmpty { finishDrain() }
    }

    var clientCount: Int { clients.count }

    /// A request id: unique per worker run (seeded counter through a bijective mixer, so ids
    /// don't reveal request counts).
    func nextRequestID() -> UInt64 {
        requestCounter &+= 1
        var z = requestCounter &+ requestIDSeed
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        return z ^ (z >> 31)
    }

    /// Graceful stop, step one: stop accepting, close idle connections, let the rest finish
    /// (each closes after its current response).
    func beginDrain() {
        guard !draining else { return }
        draining = true
        for l in listeners { l.listener.close() }
        listeners.removeAll()
        for p in pools { p.closeAllIdle() }
        for c in Array(clients.values) { c.drain() }
        if clients.isEmpty { finishDrain() }
    }

    private var drained = false
    private func finishDrain() {
        guard !drained else { return }
        drained = true
        for p in pools { p.closeAllIdle() }
        onDrained()
    }

    /// Graceful stop, step two (grace period over): close whatever is left.
    func closeAll() {
        shadows.closeAll()
        for c in Array(clients.values) { c.abort() }
        for p in pools { p.closeAllIdle() }
        redis?.close()
    }
}
