import SluiceSettings
import Glibc
import SluiceHTTP
import SluiceIO

/// A keep-alive HTTP/1.1 connection to one endpoint, owned by one worker.
///
/// ```
/// connecting ──connected──▶ active ──response complete──▶ idle ──checkout──▶ active
///      │                      │                              │
///      └──── error ───────────┴──────── close ◀──────────────┘ (peer closed / idle timeout)
/// ```
/// While active it belongs to one ``Exchange``: it writes the request the exchange queued
/// (head copied, body borrowed from the client's buffer) and reads the response, which it hands
/// to the exchange in place: read buffers move into the client's write queue, never copied.
final class UpstreamConnection: EventHandler, Upstream {
    enum State { case connecting, handshaking, active, idle, closed }

    let transport: Transport
    var fd: Int32 { transport.fd }
    let endpoint: UpstreamPool.Endpoint
    /// The worker (it outlives its connections). Not the pool: a reload replaces pools while
    /// their connections live on in the new ones.
    unowned(unsafe) let worker: Worker
    unowned(unsafe) let loop: EventLoop
    private var registration: Registration?
    private(set) var state: State
    /// Requests this connection has carried (a reused connection may have been closed by the
    /// server meanwhile, which makes a failure before any response byte safe to retry).
    private(set) var requestsServed = 0
    var exchange: Exchange?

    var out: OutputQueue
    var inbuf: ByteBuffer
    let head: HTTPHead
    var parser: HTTP1HeadParser
    var chunked = ChunkedDecoder()
    /// Response bytes received for the current exchange.
    private(set) var received = 0
    private var headDone = false
    /// Where the head of a chunked response starts in `inbuf`, while it waits for the body bytes
    /// that came with it to decode: a response whose first chunk is already invalid gets a 502
    /// instead of a head followed by a cut (-1: no head waiting).
    private var pendingHeadAt = -1
    private var remaining = 0
    private var canRead = false
    private var peerHungUp = false
    private var canWrite = false
    /// Backpressure from the client: don't read while its queue is full.
    private(set) var readPaused = false
    private var idleTimer: Timer?

    private init(fd: Int32, endpoint: UpstreamPool.Endpoint, worker: Worker, loop: EventLoop, settings: GatewaySettings) {
        if let tls = endpoint.config.tls {
            transport = Transport(tlsClient: fd, context: tls.context, serverName: tls.serverName)
        } else {
            transport = Transport(plain: fd)
        }
        self.endpoint = endpoint
        self.worker = worker
        self.loop = loop
        state = .connecting
        out = OutputQueue(pool: loop.bufferPool)
        inbuf = ByteBuffer(emptyIn: loop.bufferPool)
        head = HTTPHead(capacity: 256)
        // Upstream heads are trusted more than clients' but still bounded.
        parser = HTTP1HeadParser(kind: .response, limits: HTTP1Limits(maxHeadBytes: 64 << 10, maxHeaderCount: 256, maxRequestLine: 8 << 10))
    }

    static func connect(to endpoint: UpstreamPool.Endpoint, worker: Worker, settings: GatewaySettings) throws(SyscallError) -> UpstreamConnection {
        let loop = worker.loop
        let (fd, result) = try TCP.connect(endpoint.config.address)
        // A request usually goes out in one write, but a large one the socket takes in parts
        // must not have its short tail held back for an ACK (nginx sets tcp_nodelay on
        // upstream keep-alive connections too).
        TCP.setNoDelay(fd)
        let c = UpstreamConnection(fd: fd, endpoint: endpoint, worker: worker, loop: loop, settings: settings)
        do {
            c.registration = try loop.register(fd, handler: c)
        } catch {
            Sys.close(fd)
            throw error
        }
        if case .processed = result {
            c.canWrite = true
            c.connected()
        }
        return c
    }

    /// TCP is up: start TLS if the endpoint needs it, else the connection is ready.
    private func connected() {
        if transport.handshakeDone {
            state = .active
            exchange?.upstreamConnected()
        } else {
            state = .handshaking
            continueHandshake()
        }
    }

    private func continueHandshake() {
        switch transport.handshake() {
        case .wouldBlock: return
        case .failed: fail(connectError: true)
        case .done:
            state = .active
            exchange?.upstreamConnected()
            flush()
        }
    }

    // MARK: lifecycle

    /// Prepares an idle connection for a new exchange; false if it turned out to be dead.
    func takeFromIdle() -> Bool {
        guard state == .idle else { return false }
        idleIn = nil
        // Re-armed when the connection is idle again: no heap work per request.
        if let t = idleTimer { loop.deactivate(t) }
        state = .active
        return true
    }

    /// The endpoint object whose idle list holds this connection. Not `weak`: a weak reference
    /// gives the endpoint a side table and makes every retain of it slow (measured: ~4 % of a
    /// request). Safe because the endpoint keeps its idle connections alive, a reload moves them
    /// to the new endpoint object (updating this), and removed endpoints close theirs first.
    unowned(unsafe) var idleIn: UpstreamPool.Endpoint?

    func becomeIdle(maxIdle: Duration, in ep: UpstreamPool.Endpoint) {
        idleIn = ep
        state = .idle
        exchange = nil
        inbuf.release()
        if idleTimer == nil { idleTimer = Timer { [unowned self] in self.idleExpired() } }
        loop.schedule(idleTimer!, after: maxIdle)
    }

    private func idleExpired() {
        guard state == .idle else { return }
        worker.removeIdle(self)
        close()
    }

    /// Starts an exchange on this connection: the request is already in `out`.
    func begin(_ x: Exchange, requestMethod: HTTPMethod) {
        exchange = x
        received = 0
        headDone = false
        pendingHeadAt = -1
        readPaused = false
        parser.reset()
        parser.requestMethod = requestMethod
        chunked.reset()
        requestsServed += 1
        if state == .active && canWrite { flush() }
    }

    var isReused: Bool { requestsServed > 1 }
    var isConnecting: Bool { state == .connecting || state == .handshaking }
    var requestSent: Bool { out.isEmpty }

    func send(_ x: Exchange, method: HTTPMethod, _ write: (inout OutputQueue) -> Void) {
        write(&out)
        begin(x, requestMethod: method)
    }

    func close(reset: Bool) {
        if reset { abort() } else { close() }
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        if let t = idleTimer { loop.cancel(t) }
        if let r = registration {
            loop.deregister(r)
            registration = nil
        }
        out.removeAll()
        inbuf.release()
        transport.close()
        exchange = nil
    }

    /// Leaves HTTP after a 101: unregistered, not closed; the transport and the bytes read
    /// (from the 101 head on) are the caller's.
    private func detach() -> TunnelEnd {
        state = .closed
        if let t = idleTimer { loop.cancel(t) }
        if let r = registration {
            loop.deregister(r)
            registration = nil
        }
        out.removeAll()
        exchange = nil
        return TunnelEnd(transport: transport, pending: inbuf.take())
    }

    /// Closes at once with a reset, so the server sees the client is gone and stops generating.
    func abort() {
        TCP.setLingerZero(fd)
        close()
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if events & (EventLoop.Events.error | EventLoop.Events.hangup) != 0 && state == .connecting {
            fail(connectError: true)
            return
        }
        if events & EventLoop.Events.writable != 0 {
            canWrite = true
            if state == .connecting {
                do {
                    try TCP.finishConnect(fd)
                } catch {
                    fail(connectError: true)
                    return
                }
                connected()
            }
            if state == .active { flush() }
        }
        if state == .handshaking {
            continueHandshake()
            return
        }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup | EventLoop.Events.error) != 0 {
            canRead = true
            if events & (EventLoop.Events.readHangup | EventLoop.Events.hangup | EventLoop.Events.error) != 0 { peerHungUp = true }
            switch state {
            case .idle:
                // An idle connection has nothing to say: it is the server closing it.
                worker.removeIdle(self)
                close()
            case .active:
                readResponse()
            case .connecting, .handshaking, .closed:
                break
            }
        }
    }

    private func flush() {
        guard !out.isEmpty else { return }
        do {
            _ = try transport.flush(&out)
        } catch {
            fail(connectError: false)
        }
    }

    func pauseReading() { readPaused = true }

    func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        if canRead && state == .active { readResponse() }
    }

    private func fail(connectError: Bool) {
        let x = exchange
        let beforeResponse = received == 0
        close()
        x?.upstreamFailed(beforeResponse: beforeResponse, connectError: connectError)
    }

    // MARK: reading the response

    private func readResponse() {
        while state == .active && !readPaused {
            guard let x = exchange else { return }
            if inbuf.writableBytes < 2048 { inbuf.reserve(writable: headDone ? 16 << 10 : 4096) }
            let result: IOResult<Int>
            do {
                let w = inbuf.writable
                result = try transport.read(w)
            } catch {
                fail(connectError: false)
                return
            }
            switch result {
            case .wouldBlock:
                canRead = false
                return
            case .processed(0):
                canRead = false
                if headDone, case .untilClose = head.framing {
                    finish(reusable: false)
                } else {
                    fail(connectError: false)
                }
                return
            case .processed(let n):
                // A short read drained the socket (see ClientConnection.readLoop).
                let drained = n < inbuf.writableBytes && !peerHungUp && transport.shortReadDrains
                inbuf.writerIndex += n
                received += n
                x.upstreamActivity()
                if !processInput(x) { return }
                x.client.flushResponse()
                if drained {
                    canRead = false
                    return
                }
            }
        }
    }

    /// Parses what was read; false when the exchange ended or failed.
    private func processInput(_ x: Exchange) -> Bool {
        if !headDone {
            while true {
                switch parser.parse(inbuf.readable, into: head) {
                case .incomplete:
                    return true
                case .error:
                    let responseStarted = x.responseStarted
                    close()
                    x.upstreamProtocolError(responseStarted: responseStarted)
                    return false
                case .complete:
                    if head.status >= 100 && head.status < 200 {
                        // 100 Continue and other interim responses are consumed here: the
                        // client's Expect was answered by Sluice already.
                        if head.status == 101 {
                            guard x.ctx.upgrade else {
                                close()
                                x.upstreamProtocolError(responseStarted: false)
                                return false
                            }
                            // Switching protocols: the head goes to the client as it came,
                            // with whatever followed it, and the socket to a tunnel.
                            x.upstreamUpgraded(detach())
                            return false
                        }
                        inbuf.readerIndex += head.length
                        parser.reset()
                        continue
                    }
                    headDone = true
                    if case .chunked = head.framing {
                        pendingHeadAt = inbuf.readerIndex
                    } else {
                        x.upstreamResponseHead(head, inbuf.readable)
                    }
                    inbuf.readerIndex += head.length
                    if case .length(let n) = head.framing { remaining = n }
                }
                break
            }
            if head.framing == .none {
                finish(reusable: head.keepAlive && inbuf.readableBytes == 0)
                return false
            }
        }
        if inbuf.readableBytes == 0 {
            deliverPendingHead(x)
            return true
        }
        switch head.framing {
        case .length:
            let n = inbuf.readableBytes
            if n > remaining {
                // More than announced: relay what was announced and never reuse the connection.
                inbuf.writerIndex -= n - remaining
                remaining = 0
                x.relay(inbuf.take(), ranges: nil)
                finish(reusable: false)
                return false
            }
            remaining -= n
            x.relay(inbuf.take(), ranges: nil)
            if remaining == 0 {
                finish(reusable: head.keepAlive)
                return false
            }
        case .untilClose:
            x.relay(inbuf.take(), ranges: nil)
        case .chunked:
            return decodeChunks(x)
        case .none:
            break
        }
        return true
    }

    /// Payload ranges of one read, relative to the block; grows to the most chunks one read
    /// has brought and keeps that capacity.
    private var ranges: [(Int, Int)] = { var a = [(Int, Int)](); a.reserveCapacity(8); return a }()

    private func decodeChunks(_ x: Exchange) -> Bool {
        let base = inbuf.readerIndex
        let bytes = inbuf.readable
        var pos = 0
        var done = false
        ranges.removeAll(keepingCapacity: true)
        decode: while true {
            switch chunked.next(bytes, from: pos) {
            case .data(let s, let e):
                ranges.append((base + s, base + e))
                pos = e
            case .needMore:
                break decode
            case .done(let end):
                pos = end
                done = true
                break decode
            case .error:
                // Nothing reached the client yet if the head is still waiting here: a clean 502.
                let started = x.responseStarted && pendingHeadAt < 0
                pendingHeadAt = -1
                close()
                x.upstreamProtocolError(responseStarted: started)
                return false
            }
        }
        deliverPendingHead(x)
        let trailing = bytes.count - pos
        if ranges.isEmpty {
            inbuf.clear()
        } else {
            x.relay(inbuf.take(), ranges: ranges)
        }
        if done {
            finish(reusable: head.keepAlive && trailing == 0)
            return false
        }
        return true
    }

    /// Hands a waiting response head to the exchange (its bytes are still in `inbuf`).
    private func deliverPendingHead(_ x: Exchange) {
        guard pendingHeadAt >= 0 else { return }
        let bytes = UnsafeRawBufferPointer(start: inbuf.base + pendingHeadAt, count: head.length)
        pendingHeadAt = -1
        x.upstreamResponseHead(head, bytes)
    }

    private func finish(reusable: Bool) {
        guard let x = exchange else { return }
        // A request still partly unsent (the server answered early) leaves the connection in
        // an unknown state; so does anything unread.
        let keep = reusable && out.isEmpty && state == .active
        exchange = nil
        if keep {
            worker.checkin(self)
        } else {
            close()
        }
        x.upstreamComplete()
    }
}
