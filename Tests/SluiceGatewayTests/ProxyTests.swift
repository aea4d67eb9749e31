import Foundation
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO
import Synchronization
import Testing

@Suite(.serialized) struct ProxyTests {
    @Test func forwardsRequestAndRewritesHopByHopHeaders() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/echo", body: "{\"model\":\"m\"}",
                       headers: ["Connection: keep-alive, X-Secret", "X-Secret: s", "Keep-Alive: 5", "X-Keep: k",
                                 "X-Forwarded-For: 10.0.0.1", "Proxy-Authorization: p"]))
        let r = try #require(c.response())
        #expect(r.status == 200)
        let seen = r.text
        #expect(seen.hasPrefix("POST /echo\n"))
        #expect(seen.contains("x-keep: k"))
        #expect(!seen.contains("x-secret"))
        #expect(!seen.contains("keep-alive: 5"))
        #expect(!seen.contains("proxy-authorization"))
        // A client's forwarding fields are not believed by default: Sluice states the peer.
        #expect(seen.contains("x-forwarded-for: 127.0.0.1\n"))
        #expect(!seen.contains("10.0.0.1"))
        #expect(seen.contains("x-forwarded-proto: http"))
        #expect(seen.contains("content-length: 13"))
        #expect(seen.hasSuffix("\n\n{\"model\":\"m\"}"))
        // The id Sluice generated went upstream and came back to the client.
        let id = try #require(r.header("x-request-id"))
        #expect(id.count == 16)
        #expect(seen.contains("x-request-id: \(id)"))
        // A trace was started for the upstream.
        #expect(seen.range(of: "traceparent: 00-[0-9a-f]{32}-\(id)-00", options: .regularExpression) != nil)

        // A client's own request id and trace context pass through unchanged.
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        c.send(request("GET", "/echo", headers: ["X-Request-Id: client-id-1", "traceparent: \(tp)"]))
        let r2 = try #require(c.response())
        #expect(r2.header("x-request-id") == "client-id-1")
        #expect(r2.text.contains("x-request-id: client-id-1"))
        #expect(r2.text.contains("traceparent: \(tp)"))
        #expect(r2.text.components(separatedBy: "traceparent").count == 2)
    }

    @Test func reusesUpstreamConnectionsAcrossRequestsAndClients() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        for _ in 0..<3 {
            let c = try TestClient(port: port)
            for i in 0..<10 {
                c.send(request("POST", "/echo", body: "{\"i\":\(i)}"))
                let r = try #require(c.response())
                #expect(r.status == 200)
                #expect(r.text.hasSuffix("{\"i\":\(i)}"))
            }
        }
        #expect(up.acceptedConnections == 1)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/echo", body: "first") + request("GET", "/slow") + request("POST", "/echo", body: "third"))
        #expect(c.response()?.text.hasSuffix("first") == true)
        #expect(c.response()?.text == "slow")
        #expect(c.response()?.text.hasSuffix("third") == true)
    }

    @Test func chunkedRequestBodyIsForwardedWithContentLength() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        let r = try #require(c.response())
        #expect(r.text.contains("content-length: 11"))
        #expect(!r.text.contains("transfer-encoding"))
        #expect(r.text.hasSuffix("hello world"))
    }

    @Test(arguments: [100, 70_000, 1_000_000])
    func largeResponsesRelayIntact(_ n: Int) throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for path in ["/big?n=\(n)", "/bigchunked?n=\(n)"] {
            c.send(request("GET", path))
            let r = try #require(c.response())
            #expect(r.body.count == n)
            #expect(r.body == (0..<n).map { UInt8($0 % 251) })
        }
    }

    @Test func largeRequestBodiesAreForwardedIntact() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        let body = String(repeating: "abcdefghij", count: 22_000)  // 220 KB prompt
        c.send(request("POST", "/echo", body: body))
        let r = try #require(c.response())
        #expect(r.text.hasSuffix(body))
    }

    @Test func streamingResponsesArriveEventByEvent() throws {
        let streamed = Counter()
        let up = try TestUpstream(standardHandler(streamed: streamed))
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("GET", "/sse"))
        // The head and first event must arrive while the upstream is still producing.
        while !String(decoding: c.buffered, as: UTF8.self).contains("data: {\"n\":0}") {
            #expect(c.fill())
        }
        #expect(streamed.load(ordering: .relaxed) < 5)
        let r = try #require(c.response())
        #expect(r.status == 200)
        #expect(r.header("transfer-encoding") == "chunked")
        #expect(r.text.hasSuffix("data: [DONE]\n\n"))
        #expect(r.text.contains("data: {\"n\":4}"))
    }

    @Test func clientAbortClosesTheUpstreamConnectionWithinOneSecond() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        do {
            let c = try TestClient(port: port)
            c.send(request("GET", "/forever"))
            #expect(c.fill())
        }  // closed here
        let start = Date()
        #expect(eventually(1) { up.closedConnections == 1 })
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test func unreachableUpstreamGives502InOpenAIShape() throws {
        let (gw, port) = try startGateway([deadEndpoint()])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: "{\"model\":\"m\",\"messages\":[]}"))
        let r = try #require(c.response())
        #expect(r.status == 502)
        #expect(r.header("content-type") == "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        let err = try #require(json?["error"] as? [String: Any])
        #expect(err["type"] as? String == "server_error")
        #expect(err["message"] is String)
        #expect(err.keys.contains("param") && err.keys.contains("code"))
        // The connection stays usable.
        c.send(request("GET", "/x"))
        #expect(c.response()?.status == 502)
    }

    @Test func failedConnectIsRetriedOnTheNextEndpoint() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([deadEndpoint(), up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for _ in 0..<6 {
            c.send(request("POST", "/echo", body: "x"))
            #expect(c.response()?.status == 200)
        }
    }

    @Test func resetBeforeResponseGives502() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.upstream.retries = 0 }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/close", body: "x"))
        #expect(c.response()?.status == 502)
    }

    @Test func silentUpstreamGives504() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.upstreamFirstByte = .milliseconds(300) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/hang", body: "x"))
        let r = try #require(c.response())
        #expect(r.status == 504)
        #expect(r.text.contains("\"code\":\"upstream_timeout\""))
        #expect(eventually(1) { up.closedConnections == 1 })
    }

    @Test func badRequestsAreRejectedAndNeverReachTheUpstream() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        for bad in [
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
            "GET /echo HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n",
        ] {
            let c = try TestClient(port: port)
            c.send(bad + request("GET", "/echo"))
            let r = try #require(c.response())
            #expect(r.status == 400)
            #expect(r.header("connection") == "close")
            #expect(r.text.contains("invalid_request_error"))
            #expect(c.readsEOF())
        }
        #expect(up.acceptedConnections == 0)
    }

    @Test func oversizeBodyGets413() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.limits.maxBodyBytes = 1000 }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        #expect(c.response()?.status == 413)
    }

    @Test func slowClientHeaderGets408() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.timeouts.clientHeader = .milliseconds(200) }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send("GET /echo HTTP/1.1\r\nHost: t\r\n")
        #expect(c.response()?.status == 408)
    }

    @Test func gracefulStopFinishesInFlightRequests() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        let c = try TestClient(port: port)
        c.send(request("GET", "/slow"))
        usleep(100_000)
        let stopped = Atomic<Bool>(false)
        let t = Threads.spawn(name: "stopper") {
            gw.stop(grace: .seconds(5))
            stopped.store(true, ordering: .releasing)
        }
        let r = try #require(c.response())
        #expect(r.status == 200)
        #expect(r.text == "slow")
        #expect(r.header("connection") == "close")
        Threads.join(t)
        let didStop = stopped.load(ordering: .acquiring)
        #expect(didStop)
        #expect(throws: (any Error).self) { _ = try TestClient(port: port) }
    }

    @Test func everyWorkerAcceptsConnections() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint], workers: 2)
        defer { gw.stop(grace: .seconds(1)) }
        for _ in 0..<64 {
            let c = try TestClient(port: port)
            c.send(request("POST", "/echo", body: "x"))
            #expect(c.response()?.status == 200)
        }
        let shares = gw.acceptedPerWorker()
        #expect(shares.count == 2)
        #expect(shares.reduce(0, +) == 64)
        #expect(shares.allSatisfy { $0 > 0 }, "\(shares)")
    }
}
