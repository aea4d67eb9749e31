import SluiceSettings
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceIO
import Testing
import Synchronization
import SluiceHTTP

@Suite(.serialized) struct DashboardStatsTests {
    /// Prometheus's histogram_quantile: linear within the bucket the rank falls in.
    @Test(arguments: [
        // (counts per bucket [≤0.1, ≤0.2, ≤0.4, +Inf], quantile, expected)
        ([10.0, 0, 0, 0], 0.5, 0.05),
        ([0.0, 10, 0, 0], 0.5, 0.15),
        ([5.0, 5, 0, 0], 0.9, 0.18),
        ([0.0, 0, 4, 0], 0.25, 0.25),
        ([0.0, 0, 0, 3], 0.5, 0.4),   // past the last bound: the last bound
    ])
    func quantileInterpolates(counts: [Double], q: Double, expected: Double) {
        let got = DashboardStats.quantile(q, counts: counts, bounds: [0.1, 0.2, 0.4])
        #expect(abs((got ?? -1) - expected) < 1e-9, "\(counts) q=\(q): \(String(describing: got))")
    }

    @Test func quantileOfNothingIsNil() {
        #expect(DashboardStats.quantile(0.5, counts: [0, 0, 0], bounds: [0.1, 0.2]) == nil)
    }

    func stats(_ gw: Gateway) -> DashboardStats { gw.control.stats! }

    func onControl<T: Sendable>(_ gw: Gateway, _ body: @escaping @Sendable (DashboardStats) -> T) -> T {
        let box = Mutex<T?>(nil)
        let stats = UncheckedBox(stats(gw))
        gw.controlLoop.execute { box.withLock { $0 = body(stats.value) } }
        while true {
            if let v = box.withLock({ $0 }) { return v }
            usleep(1000)
        }
    }

    /// Sampling runs only while someone polls: nothing before the first poll, one snapshot a
    /// second while polled, nothing again once polls stop.
    @Test func samplesOnlyWhilePolled() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let (gw, port) = try startGateway([up.endpoint]) { $0.admin = SocketAddress("127.0.0.1:\(adminPort)")! }
        defer { gw.stop(grace: .seconds(1)) }
        onControl(gw) { $0.idleAfter = .milliseconds(1500) }
        usleep(1_500_000)
        #expect(onControl(gw) { $0.snapshots } == 0, "no snapshot before anyone polls")

        let c = try TestClient(port: port)
        let admin = try TestClient(port: adminPort)
        admin.send(request("GET", "/admin/stats"))
        #expect(admin.response()?.status == 200)
        #expect(onControl(gw) { $0.isSampling })
        for _ in 0..<20 {
            c.send(request("POST", "/echo", body: "x"))
            #expect(c.response()?.status == 200)
        }
        usleep(1_200_000)
        admin.send(request("GET", "/admin/stats"))
        let r = try #require(admin.response())
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        let totals = try #require(json["totals"] as? [String: Any])
        let rps = try #require(totals["requests_per_second"] as? [Any])
        let total = rps.compactMap { $0 as? Double }.reduce(0, +)
        // 20 requests over the sampled second(s): the rates add up to 20 per interval.
        #expect(total > 5 && total <= 25, "\(rps)")
        #expect(onControl(gw) { $0.snapshots } >= 2)

        // Polls stop: sampling stops and the history is dropped.
        #expect(eventually(6) { !onControl(gw) { $0.isSampling } })
        let n = onControl(gw) { $0.snapshots }
        usleep(1_500_000)
        #expect(onControl(gw) { $0.snapshots } == n)
        #expect(onControl(gw) { $0.samples.isEmpty })
    }

    @Test func statsNeedTheTokenThePageDoesNot() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let (gw, _) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(adminPort)")!
            $0.adminTokenSHA256 = SHA256.hash(Array("s3cret".utf8))
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: adminPort)
        c.send(request("GET", "/admin/stats"))
        #expect(c.response()?.status == 401)
        c.send(request("GET", "/admin/stats", headers: ["Authorization: Bearer s3cret"]))
        #expect(c.response()?.status == 200)
        for path in ["/", "/admin/ui"] {
            c.send(request("GET", path))
            let r = try #require(c.response())
            #expect(r.status == 200)
            #expect(r.header("content-type")?.hasPrefix("text/html") == true)
            #expect(r.header("content-security-policy")?.contains("connect-src 'self'") == true)
            let page = String(decoding: r.body, as: UTF8.self)
            #expect(page.contains("/admin/stats"))
            // Self-contained: nothing is loaded from elsewhere.
            for outside in ["src=\"http", "href=\"http", "<script src", "<link", "@import", "url(http"] {
                #expect(!page.contains(outside), "the page loads \(outside)")
            }
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable { let value: T; init(_ v: T) { value = v } }
