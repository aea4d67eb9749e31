import Glibc
import SluiceGateway
import SluiceSettings
import SluiceHTTP
import SluiceIO
import Synchronization

/// One gateway per fuzzing process, in this process: a worker on 127.0.0.1 (an ephemeral port)
/// with small limits, in front of a small upstream on its own loop thread. Both start on the
/// first input (about 20 ms) and live until the process exits.
final class Harness: @unchecked Sendable {
    static let shared = Harness()

    let gateway: Gateway
    let port: UInt16
    let adminPort: UInt16
    private let upstreamLoop: EventLoop
    private var upstream: HTTPServer?

    static let maxBodyBytes = 1024
    /// client_header, client_body and idle.
    static let shortTimeoutMs = 40

    private init() {
        // The upstream: a small JSON answer, a chunked SSE stream ("stream": true; about
        // 20 KB, more than a small window lets through), 404 elsewhere.
        upstreamLoop = try! EventLoop()
        let loop = upstreamLoop
        startThread { loop.run() }
        let bound = Atomic<Int>(-1)
        nonisolated(unsafe) var server: HTTPServer?
        loop.execute {
            let s = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop, handler: Harness.answer)
            server = s
            bound.store(Int(s.listener.address.port), ordering: .releasing)
        }
        while bound.load(ordering: .acquiring) < 0 { usleep(200) }
        upstream = server
        let upstreamPort = UInt16(bound.load(ordering: .acquiring))

        // The gateway's listener takes a port found free a moment ago (it binds with
        // SO_REUSEPORT and does not report the port it got for port 0).
        port = Harness.freePort()
        let endpoint = GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(upstreamPort)")!, authority: "127.0.0.1:\(upstreamPort)")
        var s = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!)], workers: 1,
                                pools: [.init(name: "default", endpoints: [endpoint])])
        s.models = [.init(name: "m", pool: "default"), .init(name: "alias", pool: "default", upstreamModel: "m")]
        s.limits.maxBodyBytes = Harness.maxBodyBytes
        s.limits.maxConcurrentStreams = 16
        s.limits.head = HTTP1Limits(maxHeadBytes: 4096, maxHeaderCount: 32, maxRequestLine: 2048)
        // Short deadlines, so that what happens when they pass (and anything left armed on a
        // closed connection) happens within a few inputs of its cause. The upstream answers at
        // once; its deadlines only matter when the gateway loses track of a request.
        s.timeouts.clientHeader = .milliseconds(Harness.shortTimeoutMs)
        s.timeouts.clientBody = .milliseconds(Harness.shortTimeoutMs)
        s.timeouts.idle = .milliseconds(Harness.shortTimeoutMs)
        s.timeouts.upstreamConnect = .milliseconds(500)
        s.timeouts.upstreamFirstByte = .milliseconds(500)
        s.timeouts.upstreamIdle = .milliseconds(500)
        s.timeouts.request = .seconds(1)
        s.timeouts.grace = .zero
        s.timeouts.drainDelay = .zero
        // WebSockets over HTTP/2 (extended CONNECT to /v1/realtime): few slots and a short idle
        // timeout, so refusals and idle resets happen within an input.
        adminPort = Harness.freePort()
        s.admin = SocketAddress("127.0.0.1:\(adminPort)")!
        s.realtime.maxConnections = 4
        s.realtime.idleTimeout = .milliseconds(Harness.shortTimeoutMs)
        // No background traffic to the upstream: its coverage would be noise.
        s.telemetry.interval = .zero
        s.health.interval = .zero
        // Inputs reset the upstream on purpose ("user": "cut"): three in a row would eject the
        // one endpoint (passive health, 1 s doubling) and the liveness check would find the
        // pool empty — seen once tunnel inputs made such runs likelier. Ejection is not what
        // this target checks.
        s.health.unhealthyThreshold = .max
        gateway = try! Gateway(settings: s)
        try! gateway.start()
    }

    static func answer(_ req: HTTPServerRequest, _ r: HTTPResponder) {
        switch req.path {
        case "/v1/realtime":
            // The upgrade the gateway sends for an extended CONNECT stream: 101, then an echo
            // that closes when it reads "close" (the server's end of a tunnel).
            guard req.header("upgrade")?.lowercased() == "websocket", req.header("sec-websocket-key")?.utf8.count == 24 else {
                return r.respond(status: 400, "{\"error\":\"not an upgrade\"}")
            }
            let e = Echo()
            echoes[ObjectIdentifier(e)] = e
            r.upgrade(head: Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n".utf8), to: e)
        case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
            if req.body.count > maxBodyBytes + 256 {
                fatalError("FuzzHTTP2: the gateway forwarded a \(req.body.count)-byte body past max_body_bytes \(maxBodyBytes)")
            }
            let cut = req.body.firstRange(of: Array("\"user\":\"cut\"".utf8)) != nil
            if req.body.firstRange(of: Array("\"stream\":true".utf8)) != nil {
                r.startStream(headers: [("Content-Type", "text/event-stream")])
                let filler = String(repeating: "token ", count: 600)
                for i in 0..<5 {
                    r.writeChunk(Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(i) \(filler)\"}}]}\n\n".utf8))
                    if cut && i == 1 { r.closeConnection(reset: true); return }
                }
                r.writeChunk(Array("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8}}\n\ndata: [DONE]\n\n".utf8))
                r.endStream()
            } else if cut {
                r.closeConnection(reset: true)
            } else {
                r.respond(status: 200, "{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}")
            }
        default:
            r.respond(status: 404, "{\"error\":\"not found\"}")
        }
    }

    /// The upstream's open echoes (its loop thread only; `HTTPServer` does not keep them).
    nonisolated(unsafe) static var echoes: [ObjectIdentifier: Echo] = [:]

    final class Echo: UpgradedConnectionHandler {
        func started(_ connection: UpgradedConnection) { connection.write(Array("hello".utf8)) }
        func received(_ bytes: UnsafeRawBufferPointer, on connection: UpgradedConnection) {
            connection.write(Array(bytes))
            if Array(bytes).firstRange(of: Array("close".utf8)) != nil { connection.close() }
        }
        func closed(_ connection: UpgradedConnection) { Harness.echoes.removeValue(forKey: ObjectIdentifier(self)) }
    }

    /// A GET on the admin listener (diagnostics for a failed liveness check).
    static func httpGet(_ port: UInt16, _ path: String) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { return "(connect failed)" }
        let req = Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        Glibc.close(fd)
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Waits until the gateway has closed every client connection (the last input's, usually
    /// within a millisecond of our close), so that what closing a connection runs is
    /// attributed to the input that caused it. False after `limitMs`.
    func waitForConnectionsClosed(limitMs: Int) -> Bool {
        let end = monotonicMs() + limitMs
        while gateway.openConnections > 0 {
            if monotonicMs() >= end { return false }
            usleep(100)
        }
        return true
    }

    /// A whole request through the gateway to the upstream, over a fresh HTTP/2 connection:
    /// it must come back 200. A wedged worker, a leaked pool slot or a gateway that stopped
    /// accepting shows up here.
    func liveness() -> String? {
        guard let c = H2Client(port: port) else { return "connecting failed (errno \(errno))" }
        var w = HPACKWriter()
        w.indexed(3)  // :method POST
        w.indexed(6)  // :scheme http
        w.literal(staticName: 1, Array("gateway.test".utf8), mode: .withoutIndexing)
        w.literal(staticName: 4, Array("/v1/chat/completions".utf8), mode: .withoutIndexing)
        let body = Script.jsonBody(0)
        var bytes = Script.preface + [0, 0, 0, Script.SETTINGS, 0, 0, 0, 0, 0]
        bytes += [0, 0, UInt8(w.bytes.count), Script.HEADERS, Script.END_HEADERS, 0, 0, 0, 1] + w.bytes
        bytes += [0, UInt8(body.count >> 8), UInt8(body.count & 0xff), Script.DATA, Script.END_STREAM, 0, 0, 0, 1] + body
        c.write(bytes)
        c.read(until: { c.ended.contains(1) }, limitMs: 5000)
        defer { c.close(.close) }
        guard let status = c.responseHeads[1] else {
            return "no response in 5 s (\(c.bytesReceived) bytes came back, peer closed: \(c.peerClosed))"
        }
        if status != 0x88 {
            return "the response was not 200 (first field byte \(status)): \(String(decoding: c.firstData[1] ?? [], as: UTF8.self)) endpoints: \(Harness.httpGet(adminPort, "/admin/endpoints")) metrics: \(Harness.httpGet(adminPort, "/metrics").split(separator: "\n").filter { !$0.hasPrefix("#") && ($0.contains("realtime") || $0.contains("error") || $0.contains("eject") || $0.contains("5xx") || $0.contains("timeout") || $0.contains("retries")) && !$0.hasSuffix(" 0") }.joined(separator: "\n"))"
        }
        if !c.ended.contains(1) { return "the response did not end in 5 s" }
        return nil
    }
}

/// A detached thread running `body` (SluiceIO's `Threads.spawn` is package-internal).
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, Unmanaged.passRetained(Box(body)).toOpaque())
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_detach(tid)
}
