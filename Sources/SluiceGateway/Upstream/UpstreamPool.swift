import SluiceIO
import Synchronization

/// A counter shared by all workers (round-robin position of a pool).
final class SharedCounter: Sendable {
    let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
}

/// One worker's view of a configured pool: its endpoints and, per endpoint, the idle
/// keep-alive connections of this worker. Thread-confined to the worker's loop.
final class UpstreamPool {
    final class Endpoint {
        let index: Int
        let config: GatewaySettings.Endpoint
        var idle: [UpstreamConnection] = []
        /// Requests this worker has in flight to the endpoint (routing's local load signal).
        var inflight = 0
        init(index: Int, config: GatewaySettings.Endpoint) {
            self.index = index
            self.config = config
        }
    }

    let name: String
    let endpoints: [Endpoint]
    let roundRobin: SharedCounter
    unowned let worker: Worker

    init(config: GatewaySettings.Pool, roundRobin: SharedCounter, worker: Worker) {
        name = config.name
        endpoints = config.endpoints.enumerated().map { Endpoint(index: $0.offset, config: $0.element) }
        self.roundRobin = roundRobin
        self.worker = worker
    }

    /// The next endpoint in round-robin order, skipping `excluded` (the one that just failed).
    func pick(excluding excluded: Int?) -> Endpoint? {
        if endpoints.isEmpty { return nil }
        var i = roundRobin.next() % endpoints.count
        if let x = excluded, endpoints.count > 1, i == x { i = (i + 1) % endpoints.count }
        return endpoints[i]
    }

    /// An idle connection to `endpoint`, or a new one being connected.
    func checkout(_ endpoint: Endpoint) throws(SyscallError) -> UpstreamConnection {
        while let c = endpoint.idle.popLast() {
            if c.takeFromIdle() { return c }
        }
        return try UpstreamConnection.connect(to: endpoint, pool: self, loop: worker.loop, settings: worker.settings)
    }

    /// Returns a connection after a complete exchange; it is kept if the pool has room.
    func checkin(_ c: UpstreamConnection) {
        let ep = c.endpoint
        if worker.draining || ep.idle.count >= worker.settings.upstream.keepalivePerEndpoint {
            c.close()
            return
        }
        c.becomeIdle(maxIdle: worker.settings.upstream.maxIdleTime)
        ep.idle.append(c)
    }

    /// Forgets an idle connection that closed.
    func removeIdle(_ c: UpstreamConnection) {
        if let i = c.endpoint.idle.firstIndex(where: { $0 === c }) { c.endpoint.idle.remove(at: i) }
    }

    func closeAllIdle() {
        for ep in endpoints {
            let idle = ep.idle
            ep.idle.removeAll()
            for c in idle { c.close() }
        }
    }
}
