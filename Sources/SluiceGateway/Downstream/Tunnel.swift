import Glibc
import SluiceHTTP
import SluiceIO

/// A WebSocket session after its HTTP/1.1 upgrade (`/v1/realtime`): the client's connection
/// and the model server's, joined byte for byte. The gateway read the request (model, auth,
/// limits, route) and the server's `101 Switching Protocols`; what follows is the server's
/// protocol, relayed without being read.
///
/// ```
/// open ──EOF from one side──▶ half-closed (that side's bytes flushed, then its peer's write
///   │                          side shut) ──EOF from the other──▶ closed
///   └── error / idle for realtime.idle_timeout / gateway abort ────────────────▶ closed
/// ```
/// Bounded: at most `realtime.buffer_bytes` queued towards either side; past it the other side
/// is not read until the queue drains to half (a slow client slows the server's socket, not
/// Sluice's memory). Reads go into pool blocks handed to the other side's queue as they are
/// (no copy). The session holds the endpoint's lease (its in-flight load) and one of the
/// replica's `realtime.max_connections` slots until it closes. Thread-confined to the worker.
final class Tunnel: DownstreamConnection, TunnelSideOwner {
    /// One connection of a tunnel; its events go to the tunnel (a ``Tunnel`` or, for the model
    /// server's side of a WebSocket over HTTP/2, a ``StreamTunnel``).
    final class Side: EventHandler {
        unowned(unsafe) var tunnel: (any TunnelSideOwner)!
        let transport: Transport
        var registration: Registration?
        /// Bytes waiting to be written to this side.
        var out: OutputQueue
        var canRead = false
        /// This side sent EOF (its bytes all went to the other side once `out` of the peer drains).
        var readClosed = false
        /// The peer's EOF was passed on: this side's write half is shut.
        var writeShut = false
        /// Reading paused while the other side's queue is over the bound.
        var paused = false
        let name: StaticString

        init(_ transport: Transport, pool: BufferPool, name: StaticString) {
            self.transport = transport
            out = OutputQueue(pool: pool)
            self.name = name
        }

        func handleEvent(_ events: UInt32) { tunnel.sideEvent(self, events) }
    }

    unowned(unsafe) let worker: Worker
    unowned(unsafe) let loop: EventLoop
    let client: Side
    let server: Side
    private var lease: EndpointLease?
    private let slots: SharedCounter
    private let bufferBytes: Int
    private let idleTimeout: Duration
    private var lastActivity: Instant
    private var timer: Timer!
    private(set) var closed = false
    /// Reads queued towards one side at most (with `bufferBytes`).
    static let maxQueuedReads = 64

    /// `toClient` (the 101 head and whatever the server sent after it) and `toServer` (what
    /// the client sent after its request) are queued first.
    init(worker: Worker, client: Transport, server: Transport, toClient: consuming ByteBuffer, toServer: consuming ByteBuffer,
         lease: consuming EndpointLease?, slots: SharedCounter) {
        self.worker = worker
        loop = worker.loop
        let pool = loop.bufferPool
        self.client = Side(client, pool: pool, name: "client")
        self.server = Side(server, pool: pool, name: "server")
        self.lease = lease
        self.slots = slots
        let s = worker.settings.realtime
        bufferBytes = s.bufferBytes
        idleTimeout = s.idleTimeout
        lastActivity = loop.now
        if toClient.readableBytes > 0 { self.client.out.append(toClient) }
        if toServer.readableBytes > 0 { self.server.out.append(toServer) }
        self.client.tunnel = self
        self.server.tunnel = self
        timer = Timer { [unowned self] in self.timerFired() }
    }

    func start() throws(SyscallError) {
        client.registration = try loop.register(client.transport.fd, handler: client)
        server.registration = try loop.register(server.transport.fd, handler: server)
        loop.schedule(timer, at: loop.now + idleTimeout)
        worker.metrics.add(worker.tunnelSlots["opened"]!)
        // Registration reports what is already readable; flush what is queued now.
        flush(client)
        flush(server)
        client.canRead = true
        server.canRead = true
        pump(from: client, to: server)
        pump(from: server, to: client)
    }

    private func peer(of s: Side) -> Side { s === client ? server : client }

    func sideEvent(_ s: Side, _ events: UInt32) {
        guard !closed else { return }
        if events & EventLoop.Events.error != 0 { return close(outcome: "closed") }
        if events & EventLoop.Events.writable != 0 {
            flush(s)
            if closed { return }
        }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 {
            s.canRead = true
            pump(from: s, to: peer(of: s))
        }
    }

    /// Reads `a` into `b`'s queue until `a` has nothing more, `b`'s queue is full, or EOF.
    private func pump(from a: Side, to b: Side) {
        while !closed && a.canRead && !a.readClosed {
            // Bytes, and blocks: each read is a pool block, so a peer trickling bytes to a side
            // that does not read would otherwise pin a block per read.
            if b.out.pendingBytes >= bufferBytes || b.out.chunkCount >= Self.maxQueuedReads {
                a.paused = true
                return
            }
            var buf = loop.bufferPool.take(minimumCapacity: 16 << 10)
            let r: IOResult<Int>
            do {
                r = try a.transport.read(buf.writable)
            } catch {
                return close(outcome: "closed")
            }
            switch r {
            case .wouldBlock:
                a.canRead = false
                return
            case .processed(0):
                a.canRead = false
                a.readClosed = true
                passEOF(to: b)
                return
            case .processed(let n):
                buf.writerIndex += n
                lastActivity = loop.now
                worker.metrics.add(worker.tunnelByteSlots[a === client ? 0 : 1], Double(n))
                b.out.append(buf)
                flush(b)
            }
        }
    }

    /// Writes `s`'s queue; when it drains below half, its peer is read again.
    private func flush(_ s: Side) {
        guard !closed else { return }
        if !s.out.isEmpty {
            do {
                _ = try s.transport.flush(&s.out)
            } catch {
                return close(outcome: "closed")
            }
        }
        let p = peer(of: s)
        if p.paused && s.out.pendingBytes < bufferBytes / 2 && s.out.chunkCount < Self.maxQueuedReads / 2 {
            p.paused = false
            pump(from: p, to: s)
        }
        if s.out.isEmpty && p.readClosed && !s.writeShut { passEOF(to: s) }
    }

    /// The other side of `s` ended: once `s` has everything, shut its write side; when both
    /// directions have ended, close.
    private func passEOF(to s: Side) {
        guard s.out.isEmpty else { return }  // flush() comes back here when it drains
        if !s.writeShut {
            s.writeShut = true
            s.transport.shutdownWrite()
        }
        if client.readClosed && server.readClosed && client.out.isEmpty && server.out.isEmpty { close(outcome: "closed") }
    }

    private func timerFired() {
        guard !closed else { return }
        let due = lastActivity + idleTimeout
        if loop.now < due {
            loop.schedule(timer, at: due)
            return
        }
        close(outcome: "idle_closed")
    }

    /// Ends the session (both connections, the slot, the lease) once.
    func close(outcome: String) {
        guard !closed else { return }
        closed = true
        if timer.isArmed { loop.cancel(timer) }
        for s in [client, server] {
            if let r = s.registration {
                loop.deregister(r)
                s.registration = nil
            }
            s.out.removeAll()
            s.transport.close()
        }
        lease = nil
        Self.recordClose(worker, slots: slots, outcome: outcome)
        worker.clientClosed(self)
    }

    /// A tunnel of either kind ended: its `realtime.max_connections` slot goes back, and the
    /// metrics count it (`closed`, and `idle_closed` for `realtime.idle_timeout`).
    static func recordClose(_ worker: Worker, slots: SharedCounter, outcome: String) {
        slots.value.add(-1, ordering: .relaxed)
        worker.metrics.add(worker.tunnelSlots["closed"]!)
        if outcome == "idle_closed" { worker.metrics.add(worker.tunnelSlots["idle_closed"]!) }
    }

    // MARK: DownstreamConnection

    /// A graceful stop leaves sessions running until the grace period ends (then ``abort()``):
    /// the gateway cannot speak the tunnelled protocol to end them politely.
    func drain() {}

    func abort() {
        TCP.setLingerZero(client.transport.fd)
        TCP.setLingerZero(server.transport.fd)
        close(outcome: "closed")
    }
}

/// Hears the socket events of a ``Tunnel/Side``.
protocol TunnelSideOwner: AnyObject {
    func sideEvent(_ s: Tunnel.Side, _ events: UInt32)
}
