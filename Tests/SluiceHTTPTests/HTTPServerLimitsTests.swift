import Glibc
import SluiceIO
import Synchronization
import Testing
@testable import SluiceHTTP

/// A small server on its own loop thread for blocking-socket tests.
final class ServerThread: @unchecked Sendable {
    let loop: EventLoop
    private let thread: pthread_t
    let port: UInt16
    nonisolated(unsafe) var server: HTTPServer!

    init(limits: HTTPServerLimits, handler: @escaping HTTPHandler) throws {
        loop = try EventLoop()
        let l = loop
        thread = Threads.spawn(name: "server-test") { l.run() }
        let ready = Atomic<Int>(0)
        nonisolated(unsafe) let h = handler
        nonisolated(unsafe) var made: HTTPServer?
        loop.execute {
            made = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: l, limits: limits, handler: h)
            ready.store(Int(made!.listener.address.port), ordering: .releasing)
        }
        while ready.load(ordering: .acquiring) == 0 { usleep(500) }
        port = UInt16(ready.load(ordering: .acquiring))
        server = made
    }

    func stop() {
        nonisolated(unsafe) let s = server!
        loop.execute { s.close() }
        loop.stop()
        Threads.join(thread)
    }
}

/// A blocking client socket with a receive timeout.
struct RawSocket {
    let fd: Int32

    init(port: UInt16, timeout: Int = 5) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends everything (false if the peer closed or reset).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    func send(_ s: String) { send(Array(s.utf8)) }

    /// Reads until EOF or the timeout; the bytes and whether EOF was seen.
    func readAll() -> ([UInt8], eof: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 { out += buf[0..<n]; continue }
            return (out, n == 0)
        }
    }

    func close() { Glibc.close(fd) }
}

/// HTTPServer (the admin listener, the simulator) holds the proxy's kinds of bounds.
@Suite(.serialized) struct HTTPServerLimitsTests {
    static func ok(_ req: HTTPServerRequest, _ r: HTTPResponder) { r.respond(status: 200, contentType: "text/plain", "ok") }

    /// Pipelined requests are served by a loop: 20,000 in one write neither overflow the stack
    /// (they did, by recursion) nor stall.
    @Test func pipelinedRequestsAreServedIteratively() throws {
        let s = try ServerThread(limits: HTTPServerLimits(), handler: Self.ok)
        defer { s.stop() }
        let c = RawSocket(port: s.port, timeout: 10)
        defer { c.close() }
        let one = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        let n = 20_000
        let writer = Threads.spawn(name: "writer") {
            c.send(String(repeating: one, count: n - 1) + "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        }
        let (bytes, eof) = c.readAll()
        Threads.join(writer)
        #expect(eof)
        // Count the status lines.
        let status = Array("HTTP/1.1 200 OK".utf8)
        var count = 0, i = 0
        while i + status.count <= bytes.count {
            if bytes[i] == status[0] && Array(bytes[i..<(i + status.count)]) == status { count += 1; i += status.count } else { i += 1 }
        }
        #expect(count == n)
    }

    @Test func bodiesOverTheLimitGet413AndTheConnectionCloses() throws {
        let seen = Atomic<Int>(0)
        let s = try ServerThread(limits: HTTPServerLimits(maxBodyBytes: 1024)) { req, r in
            seen.add(1, ordering: .relaxed)
            r.respond(status: 200, contentType: "text/plain", "ok")
        }
        defer { s.stop() }
        for head in ["POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 157286400\r\n\r\n",
                     "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + String(repeating: "z", count: 2048) + "\r\n"] {
            let c = RawSocket(port: s.port)
            c.send(head)
            c.send([UInt8](repeating: 0x7a, count: 4096))
            let (bytes, eof) = c.readAll()
            c.close()
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 413 Content Too Large\r\n"), "\(text)")
            #expect(text.contains("\"type\":\"invalid_request_error\""))
            #expect(eof)
        }
        #expect(seen.load(ordering: .relaxed) == 0)
    }

    @Test func slowHeadsGet408AndIdleConnectionsClose() throws {
        let s = try ServerThread(limits: HTTPServerLimits(headerTimeout: .milliseconds(300), idleTimeout: .milliseconds(600)), handler: Self.ok)
        defer { s.stop() }
        let start = Instant.now()
        let slow = RawSocket(port: s.port)
        slow.send("GET /healthz HTTP/1.1\r\nHost:")
        let (bytes, eof) = slow.readAll()
        slow.close()
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(eof)
        let idle = RawSocket(port: s.port)
        idle.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        let (b2, eof2) = idle.readAll()
        idle.close()
        #expect(String(decoding: b2, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(eof2)  // closed by the idle timeout, well before the 5 s receive timeout
        #expect(Instant.now().since(start) < .seconds(4))
    }

    @Test func malformedRequestsGet400WithTheirReason() throws {
        let s = try ServerThread(limits: HTTPServerLimits(), handler: Self.ok)
        defer { s.stop() }
        let c = RawSocket(port: s.port)
        c.send("GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        let (bytes, eof) = c.readAll()
        c.close()
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(eof)
    }

    @Test func reasonPhrasesCoverWhatIsSent() {
        #expect(HTTPStatus.reason(401).description == "Unauthorized")
        #expect(HTTPStatus.reason(413).description == "Content Too Large")
        #expect(HTTPStatus.reason(418).description == "Client Error")
        #expect(HTTPStatus.reason(599).description == "Server Error")
    }
}
