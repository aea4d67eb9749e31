import SluiceSettings
package import SluiceIO
import SluiceRouting
import Synchronization

/// A counter shared by all workers (round-robin position of a pool).
package final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
    package init() {}
}

/// One worker's view of a configured pool: its endpoints and, per endpoint, the idle
/// keep-alive connections of this worker. Thread-confined to the worker's loop.
package final class UpstreamPool {
    package final class Endpoint {
        package let index: Int
        let config: GatewaySettings.Endpoint
        /// State shared with other workers and the control loop.
        package let runtime: EndpointRuntime
        var idle: [UpstreamConnection] = []
        /// False once a reload replaced this object (the endpoint may live on in a new one).
        var isCurrent = true
        /// Metric slots of this endpoint (requests sent, errors).
        var requestsSlot = -1
        var errorsSlot = -1
        /// The pool this object belongs to (a reload makes new ones; an exchange keeps its
        /// pool, and so this, alive while it holds a lease).
        unowned(unsafe) var pool: UpstreamPool!
        init(index: Int, config: GatewaySettings.Endpoint, runtime: EndpointRuntime, idle: [UpstreamConnection] = []) {
            self.index = index
            self.config = config
            self.runtime = runtime
            self.idle = idle
            for c in idle { c.idleIn = self }
        }
    }

    let name: String
    package let endpoints: [Endpoint]
    /// The endpoints' runtimes, unretained (`endpoints` keeps them alive), for the router's
    /// per-endpoint loop: reading them costs no reference counting, which was three quarters
    /// of a decision at 256 endpoints.
    let runtimes: [Unmanaged<EndpointRuntime>]
    let policy: RoutingPolicy
    /// What its servers speak (`pools[].protocol`).
    let serverProtocol: PoolProtocol
    /// What decides for `default` and `least_loaded` pools.
    let profile: RoutingProfile
    /// Metric slots of this pool (resolved once).
    let slots: GatewayMetrics.PoolSlots
    /// What the workers share about this pool (round robin, flow control).
    let shared: SharedPool
    var roundRobin: SharedCounter { shared.roundRobin }
    unowned(unsafe) let worker: Worker

    /// `previous` are this worker's endpoint objects before a reload: those that remain (same
    /// authority and address) are kept with their idle connections.
    init(config: GatewaySettings.Pool, shared: SharedPool, registry: EndpointRegistry, worker: Worker,
         previous: [String: Endpoint] = [:]) {
        name = config.name
        policy = config.routing
        serverProtocol = config.serverProtocol
        profile = config.routing == .leastLoaded ? .leastLoaded : config.profile
        endpoints = config.endpoints.enumerated().map { i, e in
            if let old = previous[e.authority], old.config.address == e.address {
                return Endpoint(index: i, config: e, runtime: old.runtime, idle: old.idle)
            }
            return Endpoint(index: i, config: e, runtime: registry.runtime(for: e))
        }
        runtimes = endpoints.map { Unmanaged.passUnretained($0.runtime) }
        self.shared = shared
        self.worker = worker
        slots = worker.catalog.slots(pool: config.name)
        for e in endpoints {
            e.pool = self
            e.requestsSlot = worker.catalog.schema.series(worker.catalog.upstreamRequests, [config.name, e.config.authority])
            e.errorsSlot = worker.catalog.schema.series(worker.catalog.connectErrors, [config.name, e.config.authority])
        }
    }

    /// The next admitted endpoint in round-robin order, skipping `excluded` (the one that just
    /// failed). When every endpoint is ejected, ejection is ignored (Envoy's "panic" mode):
    /// trying a probably-bad endpoint beats refusing every request.
    package func pick(excluding excluded: Int?, now: Instant) -> Endpoint? {
        let n = endpoints.count
        if n == 0 { return nil }
        let start = roundRobin.next()
        for panic in [false, true] {
            for k in 0..<n {
                let i = (start + k) % n
                if i == excluded && n > 1 { continue }
                if panic || endpoints[i].runtime.isAdmitted(at: now) { return endpoints[i] }
            }
        }
        return endpoints[start % n]
    }

    /// An idle connection to `endpoint`, or a new one being connected (by the worker's
    /// connector when one is set: tests play the upstream without a socket).
    func checkout(_ endpoint: Endpoint) throws -> any Upstream {
        while let c = endpoint.idle.popLast() {
            if c.takeFromIdle() { return c }
        }
        if let connect = worker.connectUpstream { return try connect(endpoint) }
        return try UpstreamConnection.connect(to: endpoint, worker: worker, settings: worker.settings)
    }

    func closeAllIdle() {
        for ep in endpoints {
            let idle = ep.idle
            ep.idle.removeAll()
            for c in idle { c.close() }
        }
    }
}
