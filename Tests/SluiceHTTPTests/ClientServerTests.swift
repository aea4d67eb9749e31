import Glibc
import SluiceIO
import Synchronization
import Testing
@testable import SluiceHTTP

/// Runs `body` on a fresh loop thread and waits for `done` to be called (or a timeout).
func onLoop(timeout: Double = 5, _ body: @escaping @Sendable (EventLoop, @escaping @Sendable () -> Void) -> Void) throws -> Bool {
    let loop = try EventLoop()
    let finished = Atomic<Bool>(false)
    let t = Threads.spawn(name: "http-test") { loop.run() }
    loop.execute { body(loop) { finished.store(true, ordering: .releasing) } }
    var waited = 0.0
    while !finished.load(ordering: .acquiring) && waited < timeout { usleep(2000); waited += 0.002 }
    loop.stop()
    Threads.join(t)
    return finished.load(ordering: .acquiring)
}

@Suite(.serialized) struct ClientServerTests {
    @Test func keepAliveRequestsShareOneConnection() throws {
        let results = Mutex<[String]>([])
        let accepted = Atomic<Int>(0)
        let ok = try onLoop { loop, done in
            nonisolated(unsafe) var server: HTTPServer!
            server = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop) { req, r in
                if req.path == "/stream" {
                    r.startStream(headers: [("Content-Type", "text/plain")])
                    r.writeChunk(Array("a".utf8))
                    r.writeChunk(Array("b".utf8))
                    r.endStream()
                } else {
                    r.respond(status: 200, contentType: "text/plain", "\(req.method) \(req.path) \(req.body.count)")
                }
            }
            let client = HTTPClient(address: server.listener.address, loop: loop)
            nonisolated(unsafe) let c = client
            c.get("/a") { r in
                results.withLock { $0.append(String(decoding: (try? r.get().body) ?? [], as: UTF8.self)) }
                c.send(method: "POST", path: "/b", body: Array("xyz".utf8)) { r in
                    results.withLock { $0.append(String(decoding: (try? r.get().body) ?? [], as: UTF8.self)) }
                    c.get("/stream") { r in
                        results.withLock { $0.append(String(decoding: (try? r.get().body) ?? [], as: UTF8.self)) }
                        accepted.store(server.acceptedConnections, ordering: .relaxed)
                        done()
                    }
                }
            }
        }
        #expect(ok)
        #expect(results.withLock { $0 } == ["GET /a 0", "POST /b 3", "ab"])
        #expect(accepted.load(ordering: .relaxed) == 1)
    }

    /// Accepted connections have Nagle off: a streamed response is a head and then one small
    /// write per event, and with Nagle the first event would wait for the client's delayed ACK.
    @Test func acceptedConnectionsHaveNagleOff() throws {
        let nodelay = Atomic<Int32>(-1)
        let ok = try onLoop { loop, done in
            nonisolated(unsafe) var server: HTTPServer!
            server = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop) { req, r in
                r.respond(status: 200, contentType: "text/plain", "ok")
            }
            nonisolated(unsafe) let c = HTTPClient(address: server.listener.address, loop: loop)
            c.get("/") { _ in
                for conn in server.connections.values {
                    var v: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    if getsockopt(conn.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &v, &len) == 0 { nodelay.store(v, ordering: .relaxed) }
                }
                done()
            }
        }
        #expect(ok)
        #expect(nodelay.load(ordering: .relaxed) == 1)
    }

    /// A peer that answers with more than maxResponseBytes (a broken or hostile /metrics) gets
    /// the request failed and the connection closed, instead of the whole body buffered.
    @Test func oversizedResponsesFail() throws {
        let results = Mutex<[Result<Int, HTTPClientError>]>([])
        let ok = try onLoop { loop, done in
            nonisolated(unsafe) let server = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop) { req, r in
                let n = req.path == "/big" ? 3 << 20 : 1000
                r.respond(status: 200, headers: [("Content-Type", "application/octet-stream")], body: [UInt8](repeating: 120, count: n))
            }
            let client = HTTPClient(address: server.listener.address, loop: loop)
            client.maxResponseBytes = 1 << 20
            nonisolated(unsafe) let c = client
            c.get("/big") { r in
                results.withLock { $0.append(r.map(\.body.count)) }
                c.get("/small") { r in
                    results.withLock { $0.append(r.map(\.body.count)) }
                    _ = server  // kept alive until the last response
                    done()
                }
            }
        }
        #expect(ok)
        let r = results.withLock { $0 }
        #expect(r.count == 2)
        if case .failure(.tooLarge)? = r.first {} else { Issue.record("expected tooLarge, got \(r)") }
        if case .success(1000)? = r.last {} else { Issue.record("the next request should work, got \(r)") }
    }

    @Test func refusedAndTimedOutRequestsFail() throws {
        let errors = Mutex<[HTTPClientError]>([])
        let ok = try onLoop { loop, done in
            // A listener that never answers, and a port that refuses.
            nonisolated(unsafe) let silent = try! HTTPServer(address: SocketAddress("127.0.0.1:0")!, loop: loop) { _, _ in }
            let slow = HTTPClient(address: silent.listener.address, loop: loop)
            nonisolated(unsafe) let s = slow
            s.get("/", timeout: .milliseconds(100)) { r in
                if case .failure(let e) = r { errors.withLock { $0.append(e) } }
                let port = silent.listener.address.port
                silent.close()
                let refused = HTTPClient(address: SocketAddress("127.0.0.1:\(port)")!, loop: loop)
                nonisolated(unsafe) let rf = refused
                rf.get("/") { r in
                    if case .failure(let e) = r { errors.withLock { $0.append(e) } }
                    _ = rf
                    done()
                }
            }
        }
        #expect(ok)
        let e = errors.withLock { $0 }
        #expect(e.count == 2)
        #expect(e.first == .timeout)
        if case .connect = e.last {} else { Issue.record("expected a connect error, got \(e)") }
    }
}
