public import SluiceIO
import Glibc

/// A request as a simple server sees it: copied out of the connection's buffer. This server is
/// for Sluice's own endpoints (admin, the simulated model server, test upstreams), not the
/// proxy's hot path, so it trades a few copies for a small, easy API.
public struct HTTPServerRequest: Sendable {
    public var method: String
    public var path: String
    public var query: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }
}

/// Bounds and deadlines of an ``HTTPServer`` connection: the same kinds the proxy's listeners
/// enforce (the admin listener passes the gateway's own).
public struct HTTPServerLimits: Sendable {
    public var head: HTTP1Limits
    /// Larger request bodies get 413 and the connection closes.
    public var maxBodyBytes: Int
    /// From a request's first byte to the end of its head; then 408.
    public var headerTimeout: Duration
    /// From the end of the head to the end of the body; then 408.
    public var bodyTimeout: Duration
    /// A keep-alive connection with no request closes after this.
    public var idleTimeout: Duration
    /// Responses queued for a client that does not read: past this, no further pipelined
    /// request is processed until they drain.
    public var maxPendingOutput: Int

    public init(head: HTTP1Limits = HTTP1Limits(), maxBodyBytes: Int = 32 << 20, headerTimeout: Duration = .seconds(10),
                bodyTimeout: Duration = .seconds(60), idleTimeout: Duration = .seconds(75), maxPendingOutput: Int = 1 << 20) {
        self.head = head
        self.maxBodyBytes = maxBodyBytes
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxPendingOutput = maxPendingOutput
    }
}

/// Answers one request, once: either a whole response, or a stream of chunks.
public final class HTTPResponder {
    /// Weak: a streaming handler may keep its responder (in a timer) after the client left.
    private weak var weakConnection: HTTPServerConnection?
    public let loop: EventLoop
    let generation: Int
    public private(set) var finished = false
    private var streaming = false

    init(connection: HTTPServerConnection, generation: Int) {
        self.weakConnection = connection
        self.loop = connection.loop
        self.generation = generation
    }

    /// The connection while it is open and still on this request; a strong reference, so a write
    /// that fails and closes the connection cannot free it under the caller (it did: the
    /// simulator crashed when a client left right as a stream ended).
    private var openConnection: HTTPServerConnection? {
        guard let c = weakConnection, c.isOpen, c.generation == generation else { return nil }
        return c
    }

    /// False once the client went away; streaming handlers should stop.
    public var isOpen: Bool { openConnection != nil }

    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8]) {
        guard !finished, let c = openConnection else { return }
        finished = true
        var h: [UInt8] = []
        h.reserveCapacity(128 + body.count)
        HTTP1ResponseHead.write(status, fields: headers, framing: .length(body.count), close: false, into: &h)
        c.write(h + body)
        if c.isOpen { c.responseDone() }
    }

    public func respond(status: Int, contentType: String = "application/json", _ body: String) {
        respond(status: status, headers: [("Content-Type", contentType)], body: Array(body.utf8))
    }

    /// Starts a chunked response.
    public func startStream(status: Int = 200, headers: [(String, String)]) {
        guard !finished, !streaming, let c = openConnection else { return }
        streaming = true
        var h: [UInt8] = []
        HTTP1ResponseHead.write(status, fields: headers, framing: .chunked, close: false, into: &h)
        c.write(h)
    }

    public func writeChunk(_ bytes: [UInt8]) {
        guard streaming, !finished, !bytes.isEmpty, let c = openConnection else { return }
        c.write(Array(String(bytes.count, radix: 16).utf8) + [13, 10] + bytes + [13, 10])
    }

    public func endStream() {
        guard streaming, !finished, let c = openConnection else { return }
        finished = true
        c.write(Array("0\r\n\r\n".utf8))
        if c.isOpen { c.responseDone() }
    }

    /// Answers with `head` (a complete `101 Switching Protocols` head) and hands the connection
    /// to `handler`: from now on the server neither parses nor times it; every byte read (those
    /// already read past this request first) goes to the handler, which writes through the
    /// ``UpgradedConnection`` it is given. For protocol upgrades (the simulator's WebSocket).
    public func upgrade(head: [UInt8], to handler: any UpgradedConnectionHandler) {
        guard !finished, !streaming, let c = openConnection else { return }
        finished = true
        c.write(head)
        if c.isOpen { c.becomeUpgraded(handler) }
    }

    /// Closes the connection without (finishing) a response.
    public func closeConnection(reset: Bool = false) {
        finished = true
        weakConnection?.close(reset: reset)
    }
}

/// Who owns a connection after ``HTTPResponder/upgrade(head:to:)``; called on the loop's thread.
public protocol UpgradedConnectionHandler: AnyObject {
    /// The connection is the handler's (the upgrade head is queued); it may write at once.
    func started(_ connection: UpgradedConnection)
    /// Bytes arrived (valid during the call only).
    func received(_ bytes: UnsafeRawBufferPointer, on connection: UpgradedConnection)
    /// The connection closed (by the peer, an error, or ``UpgradedConnection/close()``).
    func closed(_ connection: UpgradedConnection)
}

/// An upgraded connection as its handler sees it: write bytes, close.
public final class UpgradedConnection {
    weak var connection: HTTPServerConnection?

    init(_ c: HTTPServerConnection) { connection = c }

    public var isOpen: Bool { connection?.isOpen == true }

    /// Queues `bytes` (flushed as the socket allows; bounded by the caller).
    public func write(_ bytes: [UInt8]) {
        guard let c = connection, c.isOpen else { return }
        c.write(bytes)
    }

    /// Bytes written but not yet sent.
    public var pendingOutput: Int { connection?.queuedOutput ?? 0 }

    /// Closes once what was written is sent (`reset`: at once, with RST).
    public func close(reset: Bool = false) {
        guard let c = connection, c.isOpen else { return }
        if reset { c.close(reset: true) } else { c.finishUpgraded() }
    }
}

public typealias HTTPHandler = (HTTPServerRequest, HTTPResponder) -> Void

/// A small HTTP/1.1 server on one event loop: keep-alive, pipelining, Content-Length and chunked
/// request bodies, one request at a time per connection, with the proxy's kinds of bounds
/// (head and body sizes, header/body/idle deadlines, queued output; ``HTTPServerLimits``).
public final class HTTPServer {
    public let loop: EventLoop
    public let listener: Listener
    let handler: HTTPHandler
    /// Applies to requests that start after it is set (on the loop's thread).
    public var limits: HTTPServerLimits
    var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    /// Connections closed so far (tests watch for a proxy closing its upstream connection).
    public private(set) var closedConnections = 0
    public private(set) var acceptedConnections = 0

    public init(address: SocketAddress, loop: EventLoop, reusePort: Bool = false, limits: HTTPServerLimits = HTTPServerLimits(),
                handler: @escaping HTTPHandler) throws(SyscallError) {
        self.loop = loop
        self.handler = handler
        self.limits = limits
        var accept: ((Int32) -> Void)? = nil
        listener = try Listener(address: address, loop: loop, reusePort: reusePort) { fd in accept?(fd) }
        accept = { [unowned self] fd in self.accept(fd) }
    }

    public var openConnections: Int { connections.count }

    private func accept(_ fd: Int32) {
        acceptedConnections += 1
        // A streamed response is a head and then one small write per event: with Nagle on,
        // the first event waits for the client's delayed ACK (40 ms on Linux) whenever the
        // head is still unacknowledged, which made every simulated TTFT ~43 ms.
        TCP.setNoDelay(fd)
        let c = HTTPServerConnection(fd: fd, server: self)
        guard (try? c.start()) != nil else { Sys.close(fd); return }
        connections[ObjectIdentifier(c)] = c
    }

    func closed(_ c: HTTPServerConnection) {
        connections.removeValue(forKey: ObjectIdentifier(c))
        closedConnections += 1
    }

    public func close() {
        listener.close()
        for c in Array(connections.values) { c.close(reset: false) }
    }
}

/// One client connection of an ``HTTPServer``.
///
/// ```
/// idle ──byte──▶ head ──head──▶ body ──body──▶ busy (handler) ──response──▶ idle (or next pipelined)
///   └─ idle timeout: close      └ 408          └ 408 / 413        any error: answer, linger, close
/// ```
/// Pipelined requests are taken one after another by a loop, never by recursion (a handler
/// that answers at once re-enters `responseDone`, which only marks the connection free). The
/// input kept is bounded by the head and body limits; while a response is pending the socket
/// is not read past that, and while queued output is over its bound no new request starts.
final class HTTPServerConnection: EventHandler {
    let fd: Int32
    unowned let server: HTTPServer
    var loop: EventLoop { server.loop }
    private var registration: Registration?
    /// Received bytes; the current request starts at `requestStart`.
    private var inbuf: [UInt8] = []
    private var requestStart = 0
    private var outbuf: [UInt8] = []
    private var outStart = 0
    private var parser: HTTP1HeadParser
    private let head: HTTPHead
    private var limits: HTTPServerLimits
    /// A chunked body being decoded: the decoder, how far it has read (from `start`), the payload.
    private var chunked = ChunkedDecoder()
    private var chunkScan = 0
    private var chunkPayload: [UInt8] = []
    private var headParsed = false
    private var busy = false
    private var processing = false
    private var keepAlive = true
    /// More input is waiting in the kernel that was not read (the buffer was at its bound).
    private var readPaused = false
    private var lingering = false
    /// Set by an upgrade: bytes go to the handler, nothing is parsed.
    private var upgraded: (handler: any UpgradedConnectionHandler, connection: UpgradedConnection)?
    private(set) var isOpen = true
    private(set) var generation = 0
    private var timer: Timer!
    private var deadline = Instant(nanoseconds: .max)
    private enum Waiting { case idle, head, body, none }

    init(fd: Int32, server: HTTPServer) {
        self.fd = fd
        self.server = server
        limits = server.limits
        parser = HTTP1HeadParser(kind: .request, limits: limits.head)
        head = HTTPHead(capacity: limits.head.maxHeaderCount)
    }

    func start() throws(SyscallError) {
        registration = try loop.register(fd, handler: self)
        timer = Timer { [unowned self] in self.timerFired() }
        arm(.idle)
    }

    private var pendingInput: Int { inbuf.count - requestStart }
    private var pendingOutput: Int { outbuf.count - outStart }
    /// Input held at most: one request's head and body, plus a read's worth.
    private var inputBound: Int { limits.head.maxHeadBytes + limits.maxBodyBytes + 65536 }

    func handleEvent(_ events: UInt32) {
        if events & EventLoop.Events.writable != 0 { flush() }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup | EventLoop.Events.error) != 0 {
            readAvailable()
        }
    }

    private func readAvailable() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while isOpen {
            if lingering {
                // Draining what the client still sends after our last answer (see `finish`).
                let r = chunk.withUnsafeMutableBytes { try? Sys.read(fd, $0.baseAddress!, $0.count) }
                switch r {
                case .processed(let n)? where n > 0: continue
                case .wouldBlock?: return
                default: close(reset: false); return
                }
            }
            if let u = upgraded {
                let r = chunk.withUnsafeMutableBytes { try? Sys.read(fd, $0.baseAddress!, $0.count) }
                switch r {
                case .processed(let n)? where n > 0:
                    chunk.withUnsafeBytes { u.handler.received(UnsafeRawBufferPointer(rebasing: $0[0..<n]), on: u.connection) }
                    continue
                case .wouldBlock?: return
                default: close(reset: false); return
                }
            }
            if pendingInput >= inputBound {
                readPaused = true
                return
            }
            let r = chunk.withUnsafeMutableBytes { try? Sys.read(fd, $0.baseAddress!, $0.count) }
            switch r {
            case .processed(let n)? where n > 0:
                if pendingInput == 0 && !busy { arm(.head) }
                inbuf += chunk[0..<n]
                process()
            case .wouldBlock?:
                readPaused = false
                return
            default:
                close(reset: false)
                return
            }
        }
    }

    /// Takes complete requests off the input, one at a time, iteratively.
    private func process() {
        guard !processing else { return }  // re-entered from a handler that answered at once
        processing = true
        defer { processing = false }
        while isOpen && !busy && !lingering && pendingInput > 0 && pendingOutput < limits.maxPendingOutput {
            guard let (body, consumed) = nextRequest() else { break }
            let req = inbuf.withUnsafeBytes { all -> HTTPServerRequest in
                let b = UnsafeRawBufferPointer(rebasing: all[requestStart...])
                func s(_ r: ByteRange) -> String { String(decoding: b[Int(r.start)..<Int(r.end)], as: UTF8.self) }
                let target = s(head.target)
                let q = target.firstIndex(of: "?")
                var headers: [(String, String)] = []
                for i in 0..<head.count { headers.append((s(head[i].name), s(head[i].value))) }
                return HTTPServerRequest(method: s(head.methodRange), path: q.map { String(target[..<$0]) } ?? target,
                                         query: q.map { String(target[target.index(after: $0)...]) } ?? "",
                                         headers: headers, body: body)
            }
            keepAlive = head.keepAlive
            requestStart += consumed
            headParsed = false
            parser.reset()
            busy = true
            generation += 1
            arm(.none)
            server.handler(req, HTTPResponder(connection: self, generation: generation))
        }
        compact()
        if isOpen && !busy && !lingering { arm(pendingInput > 0 ? (headParsed ? .body : .head) : .idle) }
    }

    /// The next complete request's body and its length on the wire, or nil (more input is
    /// needed, or the request was refused and the connection is closing).
    private func nextRequest() -> ([UInt8], Int)? {
        inbuf.withUnsafeBytes { all -> ([UInt8], Int)? in
            let b = UnsafeRawBufferPointer(rebasing: all[requestStart...])
            if !headParsed {
                switch parser.parse(b, into: head) {
                case .incomplete:
                    return nil
                case .error(let e):
                    refuse(e.status, e.message)
                    return nil
                case .complete:
                    headParsed = true
                    chunked.reset()
                    chunkScan = head.length
                    chunkPayload = []
                    if case .length(let n) = head.framing, n > limits.maxBodyBytes {
                        refuse(413, "Request body too large; the limit is \(limits.maxBodyBytes) bytes.")
                        return nil
                    }
                    arm(.body)
                }
            }
            switch head.framing {
            case .length(let n):
                guard b.count >= head.length + n else { return nil }
                return (Array(b[head.length..<(head.length + n)]), head.length + n)
            case .chunked:
                while true {
                    switch chunked.next(b, from: chunkScan) {
                    case .data(let s, let e):
                        chunkPayload += b[s..<e]
                        chunkScan = e
                        if chunkPayload.count > limits.maxBodyBytes {
                            refuse(413, "Request body too large; the limit is \(limits.maxBodyBytes) bytes.")
                            return nil
                        }
                    case .needMore:
                        chunkScan = b.count
                        if chunkScan - head.length > limits.maxBodyBytes {
                            refuse(413, "Request body too large; the limit is \(limits.maxBodyBytes) bytes (chunk framing included).")
                        }
                        return nil
                    case .done(let end):
                        let body = chunkPayload
                        chunkPayload = []
                        return (body, end)
                    case .error(let e):
                        refuse(e.status, e.message)
                        return nil
                    }
                }
            default:
                return ([], head.length)
            }
        }
    }

    /// Answers a request that cannot be served with an OpenAI-shaped error and closes.
    private func refuse(_ status: Int, _ message: String) {
        var escaped = ""
        for ch in message.unicodeScalars {
            switch ch {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            default: escaped.unicodeScalars.append(ch.value < 0x20 ? " " : ch)
            }
        }
        let body = Array("{\"error\":{\"message\":\"\(escaped)\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}".utf8)
        var h: [UInt8] = []
        HTTP1ResponseHead.write(status, fields: [("Content-Type", "application/json")], framing: .length(body.count), close: true, into: &h)
        write(h + body)
        keepAlive = false
        busy = true
        finish()
    }

    private func compact() {
        if requestStart == inbuf.count {
            inbuf.removeAll(keepingCapacity: inbuf.capacity <= 65536)
            requestStart = 0
        } else if requestStart > 65536 {
            inbuf.removeFirst(requestStart)
            requestStart = 0
        }
    }

    func write(_ bytes: [UInt8]) {
        outbuf += bytes
        flush()
    }

    private func flush() {
        while isOpen && pendingOutput > 0 {
            let r = outbuf.withUnsafeBytes { b in try? Sys.send(fd, b.baseAddress! + outStart, b.count - outStart) }
            switch r {
            case .processed(let n)?: outStart += n
            case .wouldBlock?: return
            case nil: close(reset: false); return
            }
        }
        guard isOpen else { return }
        outbuf.removeAll(keepingCapacity: outbuf.capacity <= 65536)
        outStart = 0
        if !keepAlive && !busy {
            finish()
        } else if !busy && !processing && pendingInput > 0 {
            // Output drained: pipelined requests held back by it go on.
            process()
        }
    }

    var queuedOutput: Int { pendingOutput }

    /// Switches to the upgraded mode (see ``HTTPResponder/upgrade(head:to:)``).
    func becomeUpgraded(_ handler: any UpgradedConnectionHandler) {
        let u = UpgradedConnection(self)
        upgraded = (handler, u)
        arm(.none)
        let rest = Array(inbuf[requestStart...])
        inbuf = []
        requestStart = 0
        handler.started(u)
        if isOpen && !rest.isEmpty { rest.withUnsafeBytes { handler.received($0, on: u) } }
        if isOpen && readPaused { readAvailable() }
    }

    /// An upgraded connection is done: send what is queued, then close.
    func finishUpgraded() {
        keepAlive = false
        busy = false
        if pendingOutput == 0 { finish() }
    }

    func responseDone() {
        busy = false
        if !keepAlive {
            finish()
            return
        }
        if processing { return }  // the loop in process() takes the next request
        process()
        if readPaused { readAvailable() }
    }

    /// No more responses on this connection: once the queued output is sent, stop writing and
    /// drain what the client still sends for a moment, then close — closing with unread input
    /// would reset the connection and could destroy the answer before the client reads it.
    private func finish() {
        guard isOpen, !lingering else { return }
        if pendingOutput > 0 { return }  // flush() calls back once it is out
        lingering = true
        Sys.shutdown(fd, Int32(SHUT_WR))
        setDeadline(loop.now + .seconds(2))
        readAvailable()
    }

    // MARK: deadlines

    private func arm(_ w: Waiting) {
        let d: Duration
        switch w {
        case .idle: d = limits.idleTimeout
        case .head: d = limits.headerTimeout
        case .body: d = limits.bodyTimeout
        case .none:
            deadline = Instant(nanoseconds: .max)
            return
        }
        if d.isPositive { setDeadline(loop.now + d) } else { deadline = Instant(nanoseconds: .max) }
    }

    private func setDeadline(_ d: Instant) {
        deadline = d
        if !timer.isArmed || timer.deadline > d { loop.schedule(timer, at: d) }
    }

    private func timerFired() {
        guard isOpen else { return }
        if loop.now < deadline {
            if deadline.nanoseconds != .max { loop.schedule(timer, at: deadline) }
            return
        }
        if lingering || busy || pendingInput == 0 {
            close(reset: false)
        } else {
            refuse(408, "Timed out reading the request.")
        }
    }

    func close(reset: Bool) {
        guard isOpen else { return }
        isOpen = false
        if reset { TCP.setLingerZero(fd) }
        if let t = timer, t.isArmed { loop.cancel(t) }
        if let r = registration { loop.deregister(r) }
        registration = nil
        Sys.close(fd)
        server.closed(self)
        if let u = upgraded {
            upgraded = nil
            u.handler.closed(u.connection)
        }
    }
}
