import SluiceSettings
import Foundation
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO
import Testing

/// A self-signed certificate for 127.0.0.1 made with the openssl tool.
func makeCertificate(_ dir: URL, name: String = "server") throws -> (cert: String, key: String) {
    let cert = dir.appendingPathComponent("\(name).crt").path
    let key = dir.appendingPathComponent("\(name).key").path
    let (status, out) = try run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                            "-nodes", "-days", "2", "-subj", "/CN=\(name)", "-addext", "subjectAltName=IP:127.0.0.1",
                                            "-keyout", key, "-out", cert])
    #expect(status == 0, "\(out)")
    return (cert, key)
}

@Suite(.serialized) struct TLSTests {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tls-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @Test func tlsWithALPNServesHTTP1AndHTTP2() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cert, key) = try makeCertificate(dir)
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let tls = try ListenerTLS(certificateChain: cert, privateKey: key)
        let port = freePort()
        var s = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!, tls: tls)], workers: 1,
                                pools: [.init(name: "default", endpoints: [up.endpoint])])
        s.health.interval = .zero
        let gw = try Gateway(settings: s)
        try gw.start()
        defer { gw.stop(grace: .seconds(1)) }

        let (s1, h1) = try run("curl", ["-sS", "--cacert", cert, "--http1.1", "-w", "\\n%{http_version}", "-d", "hello",
                                        "https://127.0.0.1:\(port)/echo"])
        #expect(s1 == 0, "\(h1)")
        #expect(h1.contains("x-forwarded-proto: https"))
        #expect(h1.hasSuffix("hello\n1.1"))
        let (s2, h2) = try run("curl", ["-sS", "--cacert", cert, "--http2", "-w", "\\n%{http_version}", "-d", "hello",
                                        "https://127.0.0.1:\(port)/echo"])
        #expect(s2 == 0, "\(h2)")
        #expect(h2.hasSuffix("hello\n2"))
        let (s3, load) = try run("h2load", ["-n", "2000", "-c", "4", "-m", "8", "https://127.0.0.1:\(port)/echo"])
        #expect(s3 == 0)
        #expect(load.contains("2000 succeeded, 0 failed"), "\(load)")
        #expect(load.contains("Application protocol: h2"), "\(load)")
        let (s4, sse) = try run("curl", ["-sS", "--cacert", cert, "https://127.0.0.1:\(port)/sse"])
        #expect(s4 == 0)
        #expect(sse.hasSuffix("data: [DONE]\n\n"))
    }

    @Test func certificateReloadServesTheNewCertificate() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cert, key) = try makeCertificate(dir, name: "first")
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let port = freePort()
        func settings() throws -> GatewaySettings {
            GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!, tls: try ListenerTLS(certificateChain: cert, privateKey: key))],
                            workers: 1, pools: [.init(name: "default", endpoints: [up.endpoint])])
        }
        let gw = try Gateway(settings: try settings())
        try gw.start()
        defer { gw.stop(grace: .seconds(1)) }
        // Rotate the files in place, then reload: the listener stays bound, and its next
        // handshake takes the context of the settings now in force (issue 22: it kept the
        // context captured when it was bound).
        let second = try makeCertificate(dir, name: "second")
        try FileManager.default.removeItem(atPath: cert)
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: second.cert, toPath: cert)
        try FileManager.default.copyItem(atPath: second.key, toPath: key)
        try gw.apply(try settings())
        let (status, out) = try run("curl", ["-sS", "-v", "--cacert", second.cert, "https://127.0.0.1:\(port)/echo"])
        #expect(status == 0, "\(out)")
        #expect(out.contains("CN=second"))
    }

    @Test func badKeyFilesAreReportedClearly() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try makeCertificate(dir, name: "a")
        let b = try makeCertificate(dir, name: "b")
        #expect(throws: (any Error).self) { _ = try ListenerTLS(certificateChain: a.cert, privateKey: b.key) }
        #expect(throws: (any Error).self) { _ = try ListenerTLS(certificateChain: "/nonexistent.crt", privateKey: a.key) }
    }
}

@Suite(.serialized) struct UpstreamTLSTests {
    /// Sluice B → (TLS) → Sluice A → upstream: B verifies A's certificate against the CA file and
    /// the name; a wrong CA fails the handshake and gives a 502.
    @Test func poolsBehindTLSAreVerified() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-utls-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cert, key) = try makeCertificate(dir)
        let other = try makeCertificate(dir, name: "other")
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let aPort = freePort()
        let a = try Gateway(settings: {
            var s = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(aPort)")!,
                                                   tls: try ListenerTLS(certificateChain: cert, privateKey: key))],
                                    workers: 1, pools: [.init(name: "default", endpoints: [up.endpoint])])
            s.timeouts.drainDelay = .zero
            s.telemetry.interval = .zero
            s.health.interval = .zero
            return s
        }())
        try a.start()
        defer { a.stop(grace: .seconds(1)) }
        func endpoint(ca: String) throws -> GatewaySettings.Endpoint {
            GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(aPort)")!, authority: "127.0.0.1:\(aPort)",
                                     tls: UpstreamTLS(context: try TLSClientContext(caFile: ca), serverName: "127.0.0.1"))
        }
        let (b, bPort) = try startGateway([try endpoint(ca: cert)]) { $0.upstream.retries = 0 }
        defer { b.stop(grace: .seconds(1)) }
        let c = try TestClient(port: bPort)
        for _ in 0..<3 {
            c.send(request("POST", "/echo", body: "over tls"))
            let r = try #require(c.response())
            #expect(r.status == 200)
            #expect(r.text.contains("x-forwarded-proto: https"))
            #expect(r.text.hasSuffix("over tls"))
        }
        let (bad, badPort) = try startGateway([try endpoint(ca: other.cert)]) { $0.upstream.retries = 0 }
        defer { bad.stop(grace: .seconds(1)) }
        let c2 = try TestClient(port: badPort)
        c2.send(request("GET", "/echo"))
        #expect(c2.response()?.status == 502)
    }
}
