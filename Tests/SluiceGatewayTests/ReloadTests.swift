import Foundation
import Glibc
import SluiceGateway
import SluiceIO
import Testing

@Suite(.serialized) struct ReloadTests {
    /// Each upstream answers with its own name so the test sees where requests went.
    func named(_ name: String) throws -> TestUpstream {
        try TestUpstream { req, r in
            if req.path == "/slow" {
                let t = Timer { r.respond(status: 200, contentType: "text/plain", name) }
                r.loop.schedule(t, after: .milliseconds(400))
            } else {
                r.respond(status: 200, contentType: "text/plain", name)
            }
        }
    }

    @Test func applyingNewSettingsSwitchesEndpointsWithoutDroppingRequests() throws {
        let a = try named("a"), b = try named("b")
        defer { a.stop(); b.stop() }
        let (gw, port) = try startGateway([a.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("GET", "/"))
        #expect(c.response()?.text == "a")
        #expect(gw.generation == 1)

        // A slow request in flight on a keeps going across the reload.
        let slow = try TestClient(port: port)
        slow.send(request("GET", "/slow"))
        usleep(50_000)
        var s = gw.currentSettings
        s.pools[0].endpoints = [b.endpoint]
        try gw.apply(s)
        #expect(gw.generation == 2)
        #expect(slow.response()?.text == "a")
        for _ in 0..<5 {
            c.send(request("GET", "/"))
            #expect(c.response()?.text == "b")
        }
    }

    /// An idle upstream connection outlives the pool that opened it: after a reload it serves
    /// the new pool, and returning it to the idle list must not touch the freed old pool (this
    /// crashed once, found by the 100-rewrite reload test).
    @Test func idleUpstreamConnectionsSurviveManyReloads() throws {
        let a = try named("a"), b = try named("b")
        defer { a.stop(); b.stop() }
        let (gw, port) = try startGateway([a.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for k in 0..<20 {
            var s = gw.currentSettings
            s.pools[0].endpoints = k % 2 == 0 ? [a.endpoint, b.endpoint] : [a.endpoint]
            try gw.apply(s)
            for _ in 0..<4 {
                c.send(request("GET", "/"))
                let r = c.response()
                #expect(r?.status == 200)
                if k % 2 == 1 { #expect(r?.text == "a") }
            }
        }
        // Connections to a were reused across the reloads, not reopened per request.
        #expect(a.acceptedConnections < 20)
    }

    @Test func reloadBindsNewListenersAndClosesRemovedOnes() throws {
        let a = try named("a")
        defer { a.stop() }
        let (gw, port) = try startGateway([a.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let second = freePort()
        var s = gw.currentSettings
        s.listen = [.init(address: SocketAddress("127.0.0.1:\(second)")!)]
        try gw.apply(s)
        let c = try TestClient(port: second)
        c.send(request("GET", "/"))
        #expect(c.response()?.text == "a")
        #expect(throws: (any Error).self) { _ = try TestClient(port: port) }
    }

    @Test func aFailedBindLeavesTheOldSettingsInForce() throws {
        let a = try named("a")
        defer { a.stop() }
        let (gw, port) = try startGateway([a.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        // Occupy a port without SO_REUSEPORT so the gateway cannot bind it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listen(fd, 1)
        let taken = UInt16(bigEndian: addr.sin_port)
        var s = gw.currentSettings
        s.listen.append(.init(address: SocketAddress("127.0.0.1:\(taken)")!))
        #expect(throws: SyscallError.self) { try gw.apply(s) }
        #expect(gw.generation == 1)
        let c = try TestClient(port: port)
        c.send(request("GET", "/"))
        #expect(c.response()?.text == "a")
    }
}
