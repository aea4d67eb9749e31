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
        var h = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (k, v) in headers { h += "\(k): \(v)\r\n" }
        h += "Content-Length: \(body.count)\r\n\r\n"
        c.write(Array(h.utf8) + body)
        if c.isOpen { c.responseDone() }
    }

    public func respond(status: Int, contentType: String = "application/json", _ body: String) {
        respond(status: status, headers: [("Content-Type", contentType)], body: Array(body.utf8))
    }

    /// Starts a chunked response.
    public func startStream(status: Int = 200, headers: [(String, String)]) {
        guard !finished, !streaming, let c = openConnection else { return }
        streaming = true
        var h = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for (k, v) in headers { h += "\(k): \(v)\r\n" }
        h += "Transfer-Encoding: chunked\r\n\r\n"
        c.write(Array(h.utf8))
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

    /// Closes the connection without (finishing) a response.
    public func closeConnection(reset: Bool = false) {
        finished = true
        weakConnection?.close(reset: reset)
    }

    static func reason(_ s: Int) -> String {
        switch s {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

public typealias HTTPHandler = (HTTPServerRequest, HTTPResponder) -> Void

/// A small HTTP/1.1 server on one event loop: keep-alive, Content-Length and chunked request
/// bodies, one request at a time per connection.
public final class HTTPServer {
    public let loop: EventLoop
    public let listener: Listener
    let handler: HTTPHandler
    var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    /// Connections closed so far (tests watch for a proxy closing its upstream connection).
    public private(set) var closedConnections = 0
    public private(set) var acceptedConnections = 0

    public init(address: SocketAddress, loop: EventLoop, reusePort: Bool = false, handler: @escaping HTTPHandler) throws(SyscallError) {
        self.loop = loop
        self.handler = handler
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

final class HTTPServerConnection: EventHandler {
    let fd: Int32
    unowned let server: HTTPServer
    var loop: EventLoop { server.loop }
    private var registration: Registration?
    private var inbuf: [UInt8] = []
    private var outbuf: [UInt8] = []
    private var parser = HTTP1HeadParser(kind: .request, limits: HTTP1Limits(maxHeadBytes: 64 << 10, maxHeaderCount: 200, maxRequestLine: 16 << 10))
    private let head = HTTPHead(capacity: 200)
    private var busy = false
    private var keepAlive = true
    private(set) var isOpen = true
    private(set) var generation = 0

    init(fd: Int32, server: HTTPServer) {
        self.fd = fd
        self.server = server
    }

    func start() throws(SyscallError) {
        registration = try loop.register(fd, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        if events & EventLoop.Events.writable != 0 { flush() }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup | EventLoop.Events.error) != 0 {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while isOpen {
                let r = chunk.withUnsafeMutableBytes { try? Sys.read(fd, $0.baseAddress!, $0.count) }
                switch r {
                case .processed(let n)? where n > 0:
                    inbuf += chunk[0..<n]
                case .wouldBlock?:
                    process()
                    return
                default:
                    close(reset: false)
                    return
                }
            }
        }
    }

    private func process() {
        while !busy && isOpen && !inbuf.isEmpty {
            let result = inbuf.withUnsafeBytes { parser.parse($0, into: head) }
            switch result {
            case .incomplete:
                return
            case .error(let e):
                let body = "{\"error\":{\"message\":\"\(e.message)\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}"
                write(Array("HTTP/1.1 \(e.status) Bad Request\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8))
                keepAlive = false
                busy = true
                return
            case .complete:
                var body: [UInt8] = []
                var consumed = head.length
                switch head.framing {
                case .length(let n):
                    if inbuf.count < head.length + n { return }
                    body = Array(inbuf[head.length..<(head.length + n)])
                    consumed += n
                case .chunked:
                    switch inbuf.withUnsafeBytes({ ChunkedDecoder.decodeWhole($0, from: head.length) }) {
                    case .complete(let payload, let end):
                        body = payload
                        consumed = end
                    case .incomplete: return
                    case .invalid:
                        close(reset: false)
                        return
                    }
                default:
                    break
                }
                let req = inbuf.withUnsafeBytes { b -> HTTPServerRequest in
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
                inbuf.removeFirst(consumed)
                parser.reset()
                busy = true
                generation += 1
                server.handler(req, HTTPResponder(connection: self, generation: generation))
            }
        }
    }

    func write(_ bytes: [UInt8]) {
        outbuf += bytes
        flush()
    }

    private func flush() {
        while isOpen && !outbuf.isEmpty {
            let r = outbuf.withUnsafeBytes { try? Sys.send(fd, $0.baseAddress!, $0.count) }
            switch r {
            case .processed(let n)?: outbuf.removeFirst(n)
            case .wouldBlock?: return
            case nil: close(reset: false); return
            }
        }
        if outbuf.isEmpty && !busy && !keepAlive { close(reset: false) }
    }

    func responseDone() {
        busy = false
        if !keepAlive {
            flush()
            return
        }
        process()
    }

    func close(reset: Bool) {
        guard isOpen else { return }
        isOpen = false
        if reset { TCP.setLingerZero(fd) }
        if let r = registration { loop.deregister(r) }
        registration = nil
        Sys.close(fd)
        server.closed(self)
    }
}
