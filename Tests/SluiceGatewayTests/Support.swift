import SluiceSettings
import Foundation
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO
import Synchronization

/// An upstream HTTP server on its own loop thread, for tests.
final class TestUpstream: @unchecked Sendable {
    let loop: EventLoop
    private let thread: pthread_t
    private(set) var server: HTTPServer!
    let port: UInt16

    init(_ handler: @escaping HTTPHandler) throws {
        let loop = try EventLoop()
        self.loop = loop
        let box = Mutex<(HTTPServer?, UInt16)>((nil, 0))
        let ready = Atomic<Bool>(false)
        nonisolated(unsafe) let h = handler
        thread = Threads.spawn(name: "upstream") { loop.run() }
        nonisolated(unsafe) var made: HTTPServer?
        loop.execute {
            let s = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop, handler: h)
            made = s
            box.withLock { $0 = (nil, s.listener.address.port) }
            ready.store(true, ordering: .releasing)
        }
        while !ready.load(ordering: .acquiring) { usleep(500) }
        port = box.withLock { $0.1 }
        server = made
    }

    /// Runs `body` on the server's loop and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (HTTPServer) -> T) -> T {
        let result = Mutex<T?>(nil)
        nonisolated(unsafe) let s = server!
        loop.execute { let v = body(s); result.withLock { $0 = v } }
        while true {
            if let v = result.withLock({ $0 }) { return v }
            usleep(200)
        }
    }

    var closedConnections: Int { onLoop { $0.closedConnections } }
    var acceptedConnections: Int { onLoop { $0.acceptedConnections } }

    func stop() {
        nonisolated(unsafe) let s = server!
        loop.execute { s.close() }
        loop.stop()
        Threads.join(thread)
    }

    var endpoint: GatewaySettings.Endpoint {
        GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(port)")!, authority: "127.0.0.1:\(port)")
    }
}

/// A port nothing listens on.
func deadEndpoint() -> GatewaySettings.Endpoint {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    let port = UInt16(bigEndian: addr.sin_port)
    close(fd)
    return GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(port)")!, authority: "127.0.0.1:\(port)")
}

/// Starts a gateway on an ephemeral port in front of `endpoints`.
func startGateway(_ endpoints: [GatewaySettings.Endpoint], workers: Int = 1,
                  configure: (inout GatewaySettings) -> Void = { _ in }) throws -> (Gateway, UInt16) {
    // Reserve a port: bind port 0 once, then let the gateway's SO_REUSEPORT listeners take it.
    let port = freePort()
    var s = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!)], workers: workers,
                            pools: [.init(name: "default", endpoints: endpoints)])
    s.timeouts.drainDelay = .zero
    // Tests count upstream connections; telemetry scrapes and health checks would add theirs.
    s.telemetry.interval = .zero
    s.health.interval = .zero
    configure(&s)
    let g = try Gateway(settings: s)
    try g.start()
    return (g, port)
}

func freePort() -> UInt16 {
    let e = deadEndpoint()
    return e.address.port
}

/// A blocking test client on one connection.
final class TestClient {
    let fd: Int32
    var buffered: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { throw POSIXError(.ECONNREFUSED) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ s: String) { send(Array(s.utf8)) }
    func send(_ b: [UInt8]) {
        var off = 0
        while off < b.count {
            let n = b[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads more bytes; false on EOF/timeout.
    func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { return false }
        buffered += chunk[0..<n]
        return true
    }

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ n: String) -> String? { headers.first { $0.0.lowercased() == n.lowercased() }?.1 }
    }

    /// Reads one complete response (nil on EOF before it completed).
    func response(method: HTTPMethod = .get) -> Response? {
        var p = HTTP1HeadParser(kind: .response)
        p.requestMethod = method
        let head = HTTPHead(capacity: 100)
        while true {
            let r = buffered.withUnsafeBytes { p.parse($0, into: head) }
            if r == .complete { break }
            if case .error = r { return nil }
            if !fill() { return nil }
        }
        let headers: [(String, String)] = buffered.withUnsafeBytes { b in
            (0..<head.count).map { i in
                (String(decoding: b[Int(head[i].name.start)..<Int(head[i].name.end)], as: UTF8.self),
                 String(decoding: b[Int(head[i].value.start)..<Int(head[i].value.end)], as: UTF8.self))
            }
        }
        buffered.removeFirst(head.length)
        var body: [UInt8] = []
        switch head.framing {
        case .none: break
        case .length(let n):
            while buffered.count < n { if !fill() { return nil } }
            body = Array(buffered[0..<n]); buffered.removeFirst(n)
        case .chunked:
            var d = ChunkedDecoder()
            var pos = 0
            outer: while true {
                let ev = buffered.withUnsafeBytes { d.next($0, from: pos) }
                switch ev {
                case .data(let s, let e): body += buffered[s..<e]; pos = e
                case .needMore:
                    // The decoder consumed everything it was given.
                    buffered.removeAll(); pos = 0
                    if !fill() { return nil }
                case .done(let end): buffered.removeFirst(end); break outer
                case .error: return nil
                }
            }
        case .untilClose:
            while fill() {}
            body = buffered; buffered = []
        }
        return Response(status: head.status, headers: headers, body: body)
    }

    /// True when the server closed the connection (EOF) within the receive timeout.
    func readsEOF() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

func request(_ method: String = "GET", _ path: String = "/", body: String? = nil, headers: [String] = []) -> String {
    var s = "\(method) \(path) HTTP/1.1\r\nHost: test\r\n"
    for h in headers { s += h + "\r\n" }
    if let body { s += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { s += "\r\n" }
    return s
}

/// Waits until `cond` holds or `seconds` pass.
func eventually(_ seconds: Double = 5, _ cond: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if cond() { return true }
        usleep(5000)
    }
    return cond()
}

/// An upstream handler: `/echo` returns what it received as JSON-ish text, `/sse` streams
/// events, `/slow` answers after a delay, `/hang` never answers, `/close` drops the connection.
/// A counter shared between a test and an upstream handler.
final class Counter: Sendable {
    private let v = Atomic<Int>(0)
    func store(_ n: Int, ordering: AtomicStoreOrdering) { v.store(n, ordering: .sequentiallyConsistent) }
    func load(ordering: AtomicLoadOrdering) -> Int { v.load(ordering: .sequentiallyConsistent) }
}

func standardHandler(streamed: Counter? = nil) -> HTTPHandler {
    return { req, r in
        switch req.path {
        case "/echo", "/v1/chat/completions":
            var text = "\(req.method) \(req.path)\n"
            for (k, v) in req.headers { text += "\(k.lowercased()): \(v)\n" }
            text += "\n" + String(decoding: req.body, as: UTF8.self)
            r.respond(status: 200, contentType: "text/plain", text)
        case "/sse", "/forever":
            r.startStream(headers: [("Content-Type", "text/event-stream")])
            let total = req.path == "/sse" ? 5 : Int.max
            var sent = 0
            func tick() {
                guard r.isOpen else { return }
                if sent == total {
                    r.writeChunk(Array("data: [DONE]\n\n".utf8))
                    r.endStream()
                    return
                }
                r.writeChunk(Array("data: {\"n\":\(sent)}\n\n".utf8))
                sent += 1
                streamed?.store(sent, ordering: .relaxed)
                let t = Timer { tick() }
                r.loop.schedule(t, after: .milliseconds(100))
            }
            tick()
        case "/slow":
            let t = Timer { r.respond(status: 200, contentType: "text/plain", "slow") }
            r.loop.schedule(t, after: .milliseconds(500))
        case "/hang":
            break
        case "/close":
            r.closeConnection(reset: true)
        case "/big":
            let n = Int(req.query.split(separator: "=").last ?? "0") ?? 0
            r.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: (0..<n).map { UInt8($0 % 251) })
        case "/bigchunked":
            let n = Int(req.query.split(separator: "=").last ?? "0") ?? 0
            r.startStream(headers: [("Content-Type", "application/octet-stream")])
            var i = 0
            while i < n {
                let m = min(10_000, n - i)
                r.writeChunk((i..<(i + m)).map { UInt8($0 % 251) })
                i += m
            }
            r.endStream()
        default:
            r.respond(status: 404, "{\"error\":\"not found\"}")
        }
    }
}
