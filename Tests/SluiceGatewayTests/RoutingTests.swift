import Foundation
import Glibc
@testable import SluiceGateway
import SluiceIO
import SluiceSim
import Synchronization
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
        #expect(eventually { gw.registry.runtime(for: fleet.endpoints[0]).telemetry.withLock { $0.scrapedAt.nanoseconds != 0 } })
        let c = try TestClient(port: port)
        for _ in 0..<30 {
            c.send(request("POST", "/v1/chat/completions", body: "{\"model\":\"sql\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}"))
            #expect(c.response()?.status == 200)
        }
        #expect(fleet.metric(1, "vllm:request_success_total") == 30)
        #expect(fleet.metric(0, "vllm:request_success_total") == 0)
        #expect(fleet.metric(2, "vllm:request_success_total") == 0)
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

    @Test func prefixIndexMatchesContiguousPrefixes() {
        let index = PrefixIndex(capacityBlocks: 1024)
        let a: [UInt64] = [1, 2, 3, 4], b: [UInt64] = [1, 2, 9]
        a.withUnsafeBufferPointer { index.record($0, endpoint: 7) }
        b.withUnsafeBufferPointer { #expect(index.match($0, endpointIDs: [7, 8]) == [7: 2]) }
        a.withUnsafeBufferPointer { #expect(index.match($0, endpointIDs: [8]) == [:]) }
        index.remove(endpoint: 7)
        a.withUnsafeBufferPointer { #expect(index.match($0, endpointIDs: [7]) == [:]) }
    }
}
