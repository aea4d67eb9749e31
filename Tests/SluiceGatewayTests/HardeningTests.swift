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
        // Not an inspected API call: the head and first event arrive, then the connection is
        // cut (a truncated chunked body is all HTTP/1.1 can say).
        while c.fill() {}
        let raw = String(decoding: c.buffered, as: UTF8.self)
        #expect(raw.hasPrefix("HTTP/1.1 200"))
        #expect(raw.contains("data: first"))
        #expect(!raw.hasSuffix("0\r\n\r\n"))
        #expect(Date().timeIntervalSince(start) < 3)
        #expect(eventually(1) { up.closedConnections == 1 })
    }

    /// An OpenAI stream cut off upstream (the server died, or went silent past upstream_idle)
    /// ends with an SSE error event and a proper end of the body, then the connection closes;
    /// over HTTP/2 the stream ends the same way and the connection carries on.
    @Test(arguments: ["dies", "stalls"])
    func cutStreamsEndWithAnErrorEvent(_ how: String) throws {
        let up = try TestUpstream { req, r in
            r.startStream(headers: [("Content-Type", "text/event-stream")])
            r.writeChunk(Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n".utf8))
            if how == "dies" { r.closeConnection(reset: false) }
        }
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.upstreamIdle = .milliseconds(300) }
        defer { gw.stop(grace: .seconds(1)) }
        let body = "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
        let c = try TestClient(port: port)
        let start = Date()
        c.send(request("POST", "/v1/chat/completions", body: body))
        let r = try #require(c.response())
        #expect(r.status == 200)
        let events = r.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.count == 2)
        #expect(events.first?.contains("Hel") == true)
        #expect(events.last?.hasPrefix("data: {\"error\":{") == true)
        #expect(events.last?.contains("\"type\":\"server_error\"") == true)
        #expect(c.readsEOF())
        #expect(Date().timeIntervalSince(start) < 1.5)

        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cut-\(getpid())-\(how)")
        try body.write(to: tmp, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (status, out) = try run("nghttp", ["-d", tmp.path, "http://127.0.0.1:\(port)/v1/chat/completions"])
        #expect(status == 0, "\(out)")
        #expect(out.contains("Hel") && out.contains("data: {\"error\":{"))
    }

    /// OpenAI's SDKs hang up as soon as they read `data: [DONE]`, sometimes before the end of
    /// the HTTP body: that request completed (2xx), it was not aborted.
    @Test func aClientLeavingAfterDoneCountsAsCompleted() throws {
        let up = try TestUpstream { _, r in
            r.startStream(headers: [("Content-Type", "text/event-stream")])
            r.writeChunk(Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".utf8))
            let t = Timer { if r.isOpen { r.endStream() } }
            r.loop.schedule(t, after: .milliseconds(500))  // the body's end comes late
        }
        defer { up.stop() }
        let admin = freePort()
        let (gw, port) = try startGateway([up.endpoint]) { $0.admin = SocketAddress("127.0.0.1:\(admin)")! }
        defer { gw.stop(grace: .seconds(1)) }
        for _ in 0..<2 {
            let c = try TestClient(port: port)
            c.send(request("POST", "/v1/chat/completions", body: "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"))
            #expect(eventually(2) { _ = c.fill(); return String(decoding: c.buffered, as: UTF8.self).contains("data: [DONE]") })
        }  // both clients close here, before the upstream ends the body
        usleep(200_000)
        let m = try TestClient(port: admin)
        m.send(request("GET", "/metrics"))
        let text = try #require(m.response()).text
        #expect(text.contains("sluice_requests_total{pool=\"default\",code_class=\"2xx\"} 2\n"))
        #expect(text.contains("sluice_requests_total{pool=\"default\",code_class=\"aborted\"} 0\n"))
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
