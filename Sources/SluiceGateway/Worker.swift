import Glibc
import SluiceIO

/// One worker thread's share of the gateway: its event loop, its listeners (SO_REUSEPORT: the
/// kernel spreads connections across workers), its client connections and its upstream pools.
/// Everything here is confined to the loop's thread.
final class Worker: @unchecked Sendable {
    let loop: EventLoop
    let settings: GatewaySettings
    private(set) var listeners: [Listener] = []
    private(set) var pools: [UpstreamPool] = []
    private var clients: [ObjectIdentifier: ClientConnection] = [:]
    var activeExchanges = 0
    private(set) var draining = false
    private var requestCounter: UInt64 = 0
    private let requestIDSeed: UInt64
    /// Connections accepted so far (tests check that every worker gets a share).
    private(set) var accepted = 0
    private let onDrained: @Sendable () -> Void

    init(loop: EventLoop, settings: GatewaySettings, shared: [SharedCounter], registry: EndpointRegistry, onDrained: @escaping @Sendable () -> Void) {
        self.loop = loop
        self.settings = settings
        self.onDrained = onDrained
        let seed = UInt64.random(in: .min ... .max)
        requestIDSeed = seed ^ UInt64(loop.index) << 56
        pools = settings.pools.enumerated().map { UpstreamPool(config: $0.element, roundRobin: shared[$0.offset], registry: registry, worker: self) }
    }

    var defaultPool: UpstreamPool? { pools.first }

    func start() throws(SyscallError) {
        for l in settings.listen {
            let listener = try Listener(address: l.address, loop: loop) { [unowned self] fd in self.accept(fd) }
            listeners.append(listener)
        }
    }

    private func accept(_ fd: Int32) {
        if draining || clients.count >= settings.limits.maxConnectionsPerWorker {
            // Over the limit: answer 503 (best effort, the socket buffer is empty) and close.
            let msg: StaticString = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 104\r\nConnection: close\r\n\r\n{\"error\":{\"message\":\"Too many connections.\",\"type\":\"server_error\",\"param\":null,\"code\":\"overloaded\"}}"
            _ = try? Sys.send(fd, msg.utf8Start, msg.utf8CodeUnitCount)
            Sys.close(fd)
            return
        }
        accepted += 1
        let c = ClientConnection(fd: fd, worker: self)
        do {
            try c.start()
        } catch {
            Sys.close(fd)
            return
        }
        clients[ObjectIdentifier(c)] = c
    }

    func clientClosed(_ c: ClientConnection) {
        clients.removeValue(forKey: ObjectIdentifier(c))
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
        for l in listeners { l.close() }
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
        for c in Array(clients.values) { c.abort() }
        for p in pools { p.closeAllIdle() }
    }
}
