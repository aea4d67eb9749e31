import SluiceSettings
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceIO
import SluiceSim
import Synchronization
import SluiceRouting
import Testing

/// Simulated vLLM servers on one loop thread, for routing tests.
final class SimFleet: @unchecked Sendable {
    let loop: EventLoop
    let thread: pthread_t
    var ports: [UInt16] = []

    init(_ options: [SimOptions]) throws {
        loop = try EventLoop()
        let l = loop
        thread = Threads.spawn(name: "sims") { l.run() }
        for var o in options {
            o.port = freePort()
            let opts = o
            let done = Atomic<Int>(0)
            loop.execute {
                let s = try! SimServer.start(options: opts, loop: l)
                _ = Unmanaged.passRetained(s)
                done.store(1, ordering: .releasing)
            }
            while done.load(ordering: .acquiring) == 0 { usleep(200) }
            ports.append(o.port)
        }
    }

    func stop() {
        loop.stop()
        Threads.join(thread)
    }

    var endpoints: [GatewaySettings.Endpoint] {
        ports.map { GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\($0)")!, authority: "127.0.0.1:\($0)") }
    }

    /// A counter from server `i`'s /metrics.
    func metric(_ i: Int, _ name: String) -> Double {
        let c = try! TestClient(port: ports[i])
        c.send(request("GET", "/metrics"))
        let text = c.response()!.text
        return text.split(separator: "\n").filter { $0.hasPrefix(name + "{") }.compactMap { Double($0.split(separator: " ").last!) }.reduce(0, +)
    }
}

@Suite(.serialized) struct RoutingTests {
    @Test func adapterRequestsOnlyReachEndpointsThatServeTheAdapter() throws {
        var base = SimOptions(); base.timeScale = 0.2
        var withAdapter = base; withAdapter.loras = ["sql-lora"]
        let full = base
        let fleet = try SimFleet([full, withAdapter, full])
        defer { fleet.stop() }
        let (gw, port) = try startGateway(fleet.endpoints) {
            $0.telemetry.interval = .milliseconds(20)
            $0.models = [GatewaySettings.Model(name: "tiny-llama", pool: "default"),
                         GatewaySettings.Model(name: "sql", pool: "default", adapter: "sql-lora")]
        }
        defer { gw.stop(grace: .seconds(1)) }
        // Wait for telemetry to know the adapters.
        #expect(eventually { gw.registry.runtime(for: fleet.endpoints[1]).telemetry.withLock { $0.adaptersLoaded.contains("sql-lora") } })
        // ... and to have scraped the others (an endpoint not scraped yet may serve any adapter:
        // AdapterFilter lets it through).
        #expect(eventually { [0, 2].allSatisfy { i in gw.registry.runtime(for: fleet.endpoints[i]).telemetry.withLock { $0.scrapedAt.nanoseconds != 0 } } })
        let c = try TestClient(port: port)
        for _ in 0..<30 {
            c.send(request("POST", "/v1/chat/completions", body: "{\"model\":\"sql\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}"))
            #expect(c.response()?.status == 200)
        }
        #expect(fleet.metric(1, "vllm:request_success_total") == 30)
        #expect(fleet.metric(0, "vllm:request_success_total") == 0)
        #expect(fleet.metric(2, "vllm:request_success_total") == 0)
    }

    /// A retry after a failure keeps the adapter filter: it goes to another endpoint that serves
    /// the adapter, never to one that does not (where the request would fail as an unknown model).
    @Test func retriesOfAdapterRequestsStayOnEndpointsWithTheAdapter() throws {
        var base = SimOptions(); base.timeScale = 0.2
        var withAdapter = base; withAdapter.loras = ["sql-lora"]
        let fleet = try SimFleet([base, withAdapter])
        defer { fleet.stop() }
        // An endpoint that lists the adapter and resets every second chat request: the one that
        // arrives on a reused keep-alive connection, which the gateway retries.
        let posts = Mutex(0)
        let flaky = try TestUpstream { req, r in
            switch (req.method, req.path) {
            case ("GET", "/v1/models"):
                r.respond(status: 200, #"{"object":"list","data":[{"id":"tiny-llama","object":"model"},{"id":"sql-lora","object":"model","parent":"tiny-llama"}]}"#)
            case ("GET", "/metrics"):
                r.respond(status: 200, contentType: "text/plain", "vllm:num_requests_running{model_name=\"tiny-llama\"} 0\n")
            case ("POST", _):
                let n = posts.withLock { $0 += 1; return $0 }
                if n % 2 == 0 { r.closeConnection(reset: true); return }
                r.respond(status: 200, #"{"id":"x","object":"chat.completion","model":"sql","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#)
            default:
                r.respond(status: 404, "{}")
            }
        }
        defer { flaky.stop() }
        let (gw, port) = try startGateway([fleet.endpoints[0], flaky.endpoint, fleet.endpoints[1]]) {
            $0.telemetry.interval = .milliseconds(20)
            $0.health.unhealthyThreshold = 1000  // keep the flaky endpoint in rotation
            // The weighted profile spreads these prompts over both adapter endpoints by prefix;
            // the cost model would keep them where the adapter is seen running (the sim).
            $0.pools[0].routing = .weighted
            $0.pools[0].profile = .weighted()
            $0.models = [GatewaySettings.Model(name: "tiny-llama", pool: "default"),
                         GatewaySettings.Model(name: "sql", pool: "default", adapter: "sql-lora")]
        }
        defer { gw.stop(grace: .seconds(1)) }
        for e in [flaky.endpoint, fleet.endpoints[1]] {
            #expect(eventually { gw.registry.runtime(for: e).telemetry.withLock { $0.adaptersLoaded.contains("sql-lora") } })
        }
        #expect(eventually { gw.registry.runtime(for: fleet.endpoints[0]).telemetry.withLock { $0.scrapedAt.nanoseconds != 0 } })
        let c = try TestClient(port: port)
        for i in 0..<40 {
            // Different prompts, so that prefix affinity spreads them over both adapter endpoints.
            c.send(request("POST", "/v1/chat/completions", body: "{\"model\":\"sql\",\"messages\":[{\"role\":\"user\",\"content\":\"question \(i) \(String(repeating: "x", count: i * 7))\"}],\"max_tokens\":2}"))
            #expect(c.response()?.status == 200, "request \(i)")
        }
        let resets = posts.withLock { $0 } / 2
        #expect(resets >= 3, "the flaky endpoint must have caused retries (it got \(posts.withLock { $0 }) requests)")
        #expect(fleet.metric(0, "vllm:request_success_total") == 0)
    }

    /// The route reason: an opt-in response header, and always a metric.
    @Test func routeReasonsAreReportedWhenAskedAndCounted() throws {
        let a = try TestUpstream(modelEchoHandler("a")), b = try TestUpstream(modelEchoHandler("b"))
        defer { a.stop(); b.stop() }
        let admin = freePort()
        let (gw, port) = try startGateway([a.endpoint, b.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
            $0.models = [GatewaySettings.Model(name: "tiny", pool: "default")]
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny")))
        #expect(c.response()?.header("x-sluice-route") == nil)
        var s = gw.currentSettings
        s.proxy.routeHeader = true
        try gw.apply(s)
        for _ in 0..<3 {
            c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny")))
            let r = try #require(c.response())
            let route = try #require(r.header("x-sluice-route"))
            let server = r.header("x-server") == "a" ? a : b
            #expect(route.hasSuffix("; endpoint=\(server.endpoint.authority)"))
            #expect(RouteReason(rawValue: String(route.split(separator: ";")[0])) != nil)
        }
        let m = try TestClient(port: admin)
        m.send(request("GET", "/metrics"))
        let text = try #require(m.response()).text
        let counted = text.split(separator: "\n").filter { $0.hasPrefix("sluice_route_decisions_total{pool=\"default\"") }
            .compactMap { Double($0.split(separator: " ").last!) }.reduce(0, +)
        #expect(counted == 4)
    }

    /// No endpoint has the adapter: the first requests trigger one `load_lora_adapter` call on
    /// one endpoint (requests arriving meanwhile wait for that same load), then all go there.
    @Test func adaptersAreLoadedOnDemandOnceUnderConcurrency() throws {
        var base = SimOptions(); base.timeScale = 0.2
        let fleet = try SimFleet([base, base, base])
        defer { fleet.stop() }
        let (gw, port) = try startGateway(fleet.endpoints, workers: 2) {
            $0.telemetry.interval = .milliseconds(20)
            var sql = GatewaySettings.Model(name: "sql", pool: "default", adapter: "sql-lora")
            sql.adapterPath = "/adapters/sql-lora"
            $0.models = [GatewaySettings.Model(name: "tiny-llama", pool: "default"), sql]
        }
        defer { gw.stop(grace: .seconds(1)) }
        #expect(eventually { fleet.endpoints.allSatisfy { e in gw.registry.runtime(for: e).telemetry.withLock { $0.scrapedAt.nanoseconds != 0 } } })
        let body = "{\"model\":\"sql\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}"
        // Eight requests at once, on eight connections (spread over both workers).
        let clients = try (0..<8).map { _ in try TestClient(port: port) }
        for c in clients { c.send(request("POST", "/v1/chat/completions", body: body)) }
        for c in clients { #expect(c.response()?.status == 200) }
        #expect(gw.adapterLoader.started.load(ordering: .relaxed) == 1)
        #expect(gw.adapterLoader.failed.load(ordering: .relaxed) == 0)
        func listsAdapter(_ i: Int) -> Bool {
            let c = try! TestClient(port: fleet.ports[i])
            c.send(request("GET", "/v1/models"))
            return c.response()!.text.contains("\"id\":\"sql-lora\"")
        }
        let holders = (0..<3).filter(listsAdapter)
        #expect(holders.count == 1)
        let holder = try #require(holders.first)
        for _ in 0..<10 {
            clients[0].send(request("POST", "/v1/chat/completions", body: body))
            #expect(clients[0].response()?.status == 200)
        }
        #expect(fleet.metric(holder, "vllm:request_success_total") == 18)
        #expect(gw.adapterLoader.started.load(ordering: .relaxed) == 1)
        // Without an adapter_path there is nothing to load: 503, as before.
        var s = gw.currentSettings
        s.models[1].adapter = "other-lora"
        s.models[1].adapterPath = nil
        try gw.apply(s)
        clients[1].send(request("POST", "/v1/chat/completions", body: body))
        #expect(clients[1].response()?.status == 503)
    }

    /// Groups of requests sharing a long system prompt: with prefix affinity each group's prefix
    /// is prefilled on one server, so the servers' own prefix-cache hit rate is far above round
    /// robin's in the same run.
    @Test func sharedPrefixesLandTogether() throws {
        func hitRate(_ policy: RoutingPolicy) throws -> Double {
            // KV room for about four groups per server: round robin needs all eight everywhere and thrashes.
            var o = SimOptions(); o.timeScale = 0.2; o.kvTokens = 2400
            let fleet = try SimFleet(Array(repeating: o, count: 4))
            defer { fleet.stop() }
            let (gw, port) = try startGateway(fleet.endpoints) { $0.pools[0].routing = policy }
            defer { gw.stop(grace: .seconds(1)) }
            let c = try TestClient(port: port)
            for i in 0..<80 {
                let group = i % 7  // not a multiple of the server count, so round robin mixes groups
                let system = String(repeating: "You are assistant number \(group) and you follow the rules of group \(group). ", count: 30)
                let body = "{\"model\":\"tiny-llama\",\"messages\":[{\"role\":\"system\",\"content\":\"\(system)\"},{\"role\":\"user\",\"content\":\"question \(i)\"}],\"max_tokens\":1}"
                c.send(request("POST", "/v1/chat/completions", body: body))
                #expect(c.response()?.status == 200)
            }
            var hits = 0.0, queries = 0.0
            for i in 0..<4 {
                hits += fleet.metric(i, "vllm:prefix_cache_hits_total")
                queries += fleet.metric(i, "vllm:prefix_cache_queries_total")
            }
            return hits / queries
        }
        let affinity = try hitRate(.default)
        let roundRobin = try hitRate(.roundRobin)
        #expect(affinity > 0.8, "prefix affinity hit rate \(affinity)")
        #expect(affinity > roundRobin * 2, "affinity \(affinity) vs round robin \(roundRobin)")
    }
}
