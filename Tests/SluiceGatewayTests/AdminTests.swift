import SluiceSettings
import Foundation
import Glibc
import SluiceGateway
import SluiceIO
import Testing

@Suite(.serialized) struct AdminTests {
    func get(_ port: UInt16, _ path: String) throws -> TestClient.Response {
        let c = try TestClient(port: port)
        c.send(request("GET", path))
        return try #require(c.response())
    }

    @Test func healthReadinessAndEndpointState() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let dead = deadEndpoint()
        let adminPort = freePort()
        let (gw, port) = try startGateway([dead, up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(adminPort)")!
            $0.health.interval = .zero  // passive health only in this test
            $0.upstream.retries = 1
        }
        defer { gw.stop(grace: .seconds(1)) }
        #expect(try get(adminPort, "/healthz").status == 200)
        #expect(try get(adminPort, "/readyz").status == 200)

        // Every request succeeds (retry), and the dead endpoint gets ejected after 3 failures.
        let c = try TestClient(port: port)
        for _ in 0..<10 {
            c.send(request("POST", "/echo", body: "x"))
            #expect(c.response()?.status == 200)
        }
        let r = try get(adminPort, "/admin/endpoints")
        #expect(r.status == 200)
        let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        let pools = try #require(json?["pools"] as? [[String: Any]])
        let eps = try #require(pools.first?["endpoints"] as? [[String: Any]])
        #expect(eps.count == 2)
        let deadState = try #require(eps.first { ($0["url"] as? String) == "http://\(dead.authority)" })
        let liveState = try #require(eps.first { ($0["url"] as? String) == "http://\(up.endpoint.authority)" })
        #expect(deadState["admitted"] as? Bool == false)
        #expect((deadState["ejections"] as? Int ?? 0) >= 1)
        #expect(liveState["admitted"] as? Bool == true)
        // The in-flight count drops when the upstream exchange completes, just after the client
        // got its last byte.
        #expect(eventually {
            let r = try? get(adminPort, "/admin/endpoints")
            return r.map { String(decoding: $0.body, as: UTF8.self).contains("\"inflight\":1") } == false
        })
        #expect(try get(adminPort, "/nope").status == 404)
    }

    @Test func activeChecksEjectAndReadmit() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let (gw, _) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(adminPort)")!
            $0.health.interval = .milliseconds(50)
            $0.health.path = "/echo"
        }
        defer { gw.stop(grace: .seconds(1)) }
        #expect(eventually { (try? get(adminPort, "/readyz").status) == 200 })
        // Point the check at a path that fails: 404 is < 500 so it still passes; "/close" resets.
        let gw2 = try startGateway([deadEndpoint()]) {
            $0.admin = SocketAddress("127.0.0.1:\(freePort())")!
            $0.health.interval = .milliseconds(50)
        }
        defer { gw2.0.stop(grace: .seconds(1)) }
        let admin2 = try #require(gw2.0.adminPort)
        #expect(eventually { (try? get(admin2, "/readyz").status) == 503 })
        #expect(try get(admin2, "/readyz").text.contains("no healthy endpoint"))
    }

    @Test func readinessTurnsFalseWhileDraining() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let (gw, port) = try startGateway([up.endpoint]) { $0.admin = SocketAddress("127.0.0.1:\(adminPort)")! }
        let c = try TestClient(port: port)
        c.send(request("GET", "/slow"))
        usleep(100_000)
        let t = Threads.spawn(name: "stopper") { gw.stop(grace: .seconds(5)) }
        #expect(eventually(2) { (try? get(adminPort, "/readyz").status) == 503 })
        #expect(c.response()?.status == 200)
        Threads.join(t)
    }
}

@Suite(.serialized) struct MetricsEndpointTests {
    /// `admin.metrics: false`: /metrics is gone and nothing is recorded; turning it back on by
    /// reload counts again.
    @Test func metricsCanBeTurnedOff() throws {
        let up = try TestUpstream(modelEchoHandler("a"))
        defer { up.stop() }
        let admin = freePort()
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
            $0.metrics = false
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for _ in 0..<3 {
            c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny")))
            #expect(c.response()?.status == 200)
        }
        func scrape() throws -> TestClient.Response {
            let m = try TestClient(port: admin)
            m.send(request("GET", "/metrics"))
            return try #require(m.response())
        }
        #expect(try scrape().status == 404)
        var s = gw.currentSettings
        s.metrics = true
        try gw.apply(s)
        c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny")))
        #expect(c.response()?.status == 200)
        let text = try scrape().text
        #expect(text.contains("sluice_requests_total{pool=\"default\",code_class=\"2xx\"} 1\n"))
    }

    /// N requests → N counted, by status class and model; histograms count every request; the
    /// workers' shards add up.
    @Test func countersMatchWhatWasSent() throws {
        let up = try TestUpstream(modelEchoHandler("a"))
        defer { up.stop() }
        let admin = freePort()
        let (gw, port) = try startGateway([up.endpoint], workers: 2) {
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
            $0.pools[0].name = "main"
            $0.models = [GatewaySettings.Model(name: "tiny", pool: "main")]
        }
        defer { gw.stop(grace: .seconds(1)) }
        for i in 0..<40 {
            let c = try TestClient(port: port)  // new connections spread over both workers
            c.send(request("POST", "/v1/chat/completions", body: chatBody(i % 4 == 0 ? "unknown" : "tiny")))
            #expect(c.response() != nil)
        }
        let c = try TestClient(port: admin)
        c.send(request("GET", "/metrics"))
        let text = try #require(c.response()).text
        func value(_ series: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect(value("sluice_requests_total{pool=\"main\",code_class=\"2xx\"}") == 30)
        #expect(value("sluice_requests_total{pool=\"\",code_class=\"4xx\"}") == 10)
        #expect(value("sluice_model_requests_total{model=\"tiny\",arm=\"\"}") == 30)
        #expect(value("sluice_request_duration_seconds_count{pool=\"main\"}") == 30)
        #expect(value("sluice_upstream_duration_seconds_count{pool=\"main\"}") == 30)
        // Each worker's loop answered the scrape's task; an idle loop does so within milliseconds.
        for w in 0..<2 { #expect((value("sluice_event_loop_lag_seconds{worker=\"\(w)\"}") ?? 1) < 0.5) }
        #expect(value("sluice_tokens_total{pool=\"main\",type=\"input\"}") == 30)
        #expect(value("sluice_upstream_requests_total{pool=\"main\",endpoint=\"\(up.endpoint.authority)\"}") == 30)
        #expect(value("sluice_workers") == 2)
        #expect(text.contains("# TYPE sluice_requests_total counter"))
        #expect(!text.contains("Bearer") && !text.contains("authorization"))
    }
}
