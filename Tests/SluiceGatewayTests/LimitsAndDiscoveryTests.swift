import SluiceSettings
import Foundation
import Glibc
import SluiceGateway
import SluiceIO
import Synchronization
import Testing

@Suite(.serialized) struct LimitsAndDiscoveryTests {
    @Test func connectionsOverTheGlobalLimitGet503() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint], workers: 2) { $0.limits.maxConnections = 2 }
        defer { gw.stop(grace: .seconds(1)) }
        let a = try TestClient(port: port), b = try TestClient(port: port)
        for c in [a, b] {
            c.send(request("GET", "/echo"))
            #expect(c.response()?.status == 200)
        }
        let c = try TestClient(port: port)
        let r = try #require(c.response())
        #expect(r.status == 503)
        #expect(r.text.contains("\"code\":\"overloaded\""))
        // Closing one frees a slot.
        _ = consume a
        #expect(eventually {
            guard let d = try? TestClient(port: port) else { return false }
            d.send(request("GET", "/echo"))
            return d.response()?.status == 200
        })
    }

    @Test func dnsPoolsDiscoverTheirEndpoints() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([]) {
            $0.pools[0].dns = ("localhost", up.port)
            $0.pools[0].dnsInterval = .milliseconds(100)
        }
        defer { gw.stop(grace: .seconds(1)) }
        #expect(eventually { !gw.currentSettings.pools[0].endpoints.isEmpty })
        #expect(gw.currentSettings.pools[0].endpoints.contains { $0.authority == "127.0.0.1:\(up.port)" })
        let c = try TestClient(port: port)
        c.send(request("GET", "/echo"))
        // localhost may also resolve to ::1, where nothing listens: the retry covers it.
        #expect(c.response()?.status == 200)
        // A reload keeps the discovered endpoints.
        try gw.apply(gw.desiredSettings)
        #expect(!gw.currentSettings.pools[0].endpoints.isEmpty)
    }

    /// DNS discovery with the answers under the test's control: endpoints appear and disappear
    /// as the answers change; a failed or empty answer keeps what the pool had; endpoints that
    /// stay keep their state (the same runtime object).
    @Test func dnsDiscoveryFollowsTheAnswers() throws {
        let a = try TestUpstream(standardHandler()), b = try TestUpstream(standardHandler()), c = try TestUpstream(standardHandler())
        defer { a.stop(); b.stop(); c.stop() }
        enum Answer: Sendable { case addresses([UInt16]), failure }
        let answer = Mutex<Answer>(.addresses([a.port, b.port]))
        let port = freePort()
        var s = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!)], workers: 1,
                                pools: [.init(name: "vllm", endpoints: [], dns: ("vllm-headless.llm.svc.cluster.local", 8000))])
        s.pools[0].dnsInterval = .milliseconds(50)
        s.timeouts.drainDelay = .zero
        s.telemetry.interval = .zero
        s.health.interval = .zero
        let gw = try Gateway(settings: s)
        gw.dnsResolver = { host, p in
            #expect(host == "vllm-headless.llm.svc.cluster.local" && p == 8000)
            switch answer.withLock({ $0 }) {
            case .failure: throw SyscallError("getaddrinfo", errno: EAI_AGAIN)
            case .addresses(let ports): return ports.map { SocketAddress("127.0.0.1:\($0)")! }
            }
        }
        try gw.start()
        defer { gw.stop(grace: .seconds(1)) }
        func authorities() -> Set<String> { Set(gw.currentSettings.pools[0].endpoints.map(\.authority)) }
        #expect(eventually { authorities() == [a.endpoint.authority, b.endpoint.authority] })
        let bState = gw.registry.runtime(for: b.endpoint)
        answer.withLock { $0 = .addresses([b.port, c.port]) }  // a went away, c appeared
        #expect(eventually { authorities() == [b.endpoint.authority, c.endpoint.authority] })
        #expect(gw.registry.runtime(for: b.endpoint) === bState)
        answer.withLock { $0 = .failure }  // a resolver hiccup keeps the pool as it was
        usleep(200_000)
        #expect(authorities() == [b.endpoint.authority, c.endpoint.authority])
        answer.withLock { $0 = .addresses([]) }
        usleep(200_000)
        #expect(authorities() == [b.endpoint.authority, c.endpoint.authority])
        // Traffic goes only where the answers say.
        let client = try TestClient(port: port)
        for _ in 0..<6 {
            client.send(request("GET", "/echo"))
            #expect(client.response()?.status == 200)
        }
        #expect(a.acceptedConnections == 0)
        #expect(b.acceptedConnections + c.acceptedConnections >= 1)
    }

    @Test func drainDelayKeepsAcceptingWhileReadinessIsFalse() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let admin = freePort()
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
        }
        var s = gw.currentSettings
        s.timeouts.drainDelay = .milliseconds(600)
        try gw.apply(s)
        let t = Threads.spawn(name: "stopper") { gw.stop(grace: .seconds(2)) }
        usleep(150_000)
        let ready = try TestClient(port: admin)
        ready.send(request("GET", "/readyz"))
        #expect(ready.response()?.status == 503)
        let c = try TestClient(port: port)
        c.send(request("GET", "/echo"))
        #expect(c.response()?.status == 200)
        Threads.join(t)
    }
}
