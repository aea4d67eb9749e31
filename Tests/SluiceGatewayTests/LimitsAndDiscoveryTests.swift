import Foundation
import Glibc
import SluiceGateway
import SluiceIO
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
