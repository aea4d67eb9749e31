import SluiceSettings
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceHTTP
import SluiceIO
import SluiceTracing
import Synchronization
import Testing

/// The gateway owns the trace exporter and one span recorder per worker: the exporter follows
/// the `tracing` section through start, reloads and stop, and its counters reach `/metrics`;
/// the request path records each request's spans and sends the attempt's span upstream.
@Suite(.serialized) struct TracingWiringTests {
    /// A stand-in collector: counts POSTs to /v1/traces and their content type.
    final class Counts: Sendable {
        let posts = Atomic<Int>(0)
        let protobuf = Atomic<Int>(0)
    }

    final class Collector: @unchecked Sendable {
        let counts = Counts()
        var posts: Int { counts.posts.load(ordering: .relaxed) }
        var protobuf: Int { counts.protobuf.load(ordering: .relaxed) }
        var upstream: TestUpstream!
        init() throws {
            let counts = self.counts
            upstream = try TestUpstream { req, r in
                if req.method == "POST" && req.path == "/v1/traces" {
                    counts.posts.add(1, ordering: .relaxed)
                    if req.header("content-type") == "application/x-protobuf" && !req.body.isEmpty { counts.protobuf.add(1, ordering: .relaxed) }
                }
                r.respond(status: 200, headers: [("Content-Type", "application/x-protobuf")], body: [])
            }
        }
        var port: UInt16 { upstream.port }
    }

    func tracing(_ port: UInt16) -> TracingConfiguration {
        var t = TracingConfiguration(address: SocketAddress("127.0.0.1:\(port)")!, authority: "127.0.0.1:\(port)")
        t.sampleRatio = 1
        t.exportInterval = .milliseconds(50)
        t.exportTimeout = .milliseconds(300)
        return t
    }

    /// Records `n` request spans on worker `i`'s own loop, as the record phase will.
    func record(_ gw: Gateway, worker i: Int, _ n: Int) {
        let done = Atomic<Bool>(false)
        nonisolated(unsafe) let recorder = gw.spanRecorders[i]
        gw.group.loops[i].execute {
            for _ in 0..<n {
                let ctx = recorder.begin(traceparent: nil as String?)
                if recorder.shouldRecord(ctx, error: false) {
                    recorder.record(.server(ctx, name: "chat m", start: 1, end: 2, attributes: [SpanAttribute(SpanKey.requestModel, "m")]))
                }
            }
            done.store(true, ordering: .releasing)
        }
        while !done.load(ordering: .acquiring) { usleep(500) }
    }

    func metric(_ port: UInt16, _ line: String) throws -> Double? {
        let c = try TestClient(port: port)
        c.send(request("GET", "/metrics"))
        let text = String(decoding: try #require(c.response()).body, as: UTF8.self)
        return text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test func exporterFollowsTheConfigAndCountsReachMetrics() throws {
        let collector = try Collector()
        defer { collector.upstream.stop() }
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let (gw, _) = try startGateway([up.endpoint], workers: 2) {
            $0.admin = SocketAddress("127.0.0.1:\(adminPort)")!
            $0.tracing = tracing(collector.port)
        }
        defer { gw.stop(grace: .seconds(1)) }
        #expect(gw.spanRecorders.count == 2)
        #expect(gw.tracer.isOn)
        record(gw, worker: 0, 3)
        record(gw, worker: 1, 2)
        #expect(eventually { gw.tracer.exportedSpans.load(ordering: .relaxed) == 5 })
        #expect(collector.protobuf >= 1)
        #expect(try metric(adminPort, "sluice_trace_spans_exported_total") == 5)
        #expect(try metric(adminPort, "sluice_trace_spans_dropped_total{reason=\"queue_full\"}") == 0)

        // A reload without the section turns it off: nothing recorded, no export.
        var s = gw.desiredSettings
        s.tracing = nil
        try gw.apply(s)
        #expect(!gw.tracer.isOn)
        let posts = collector.posts
        record(gw, worker: 0, 3)
        usleep(300_000)
        #expect(collector.posts == posts)
        #expect(gw.tracer.exportedSpans.load(ordering: .relaxed) == 5)

        // ... and one with it turns it back on.
        s.tracing = tracing(collector.port)
        try gw.apply(s)
        record(gw, worker: 1, 1)
        #expect(eventually { gw.tracer.exportedSpans.load(ordering: .relaxed) == 6 })
    }

    /// The collector is down: the gateway keeps serving, exports fail and the dropped spans
    /// are counted on /metrics.
    @Test func collectorDownKeepsServingAndCountsDrops() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let adminPort = freePort()
        let dead = deadEndpoint()
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(adminPort)")!
            $0.tracing = tracing(dead.address.port)
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for _ in 0..<20 {
            record(gw, worker: 0, 10)
            c.send(request("POST", "/echo", body: "x"))
            #expect(c.response()?.status == 200)
        }
        #expect(eventually { (try? metric(adminPort, "sluice_trace_spans_dropped_total{reason=\"export_failed\"}")).flatMap { $0 } ?? 0 > 0 })
        #expect(try metric(adminPort, "sluice_trace_export_failures_total") ?? 0 > 0)
        #expect(try metric(adminPort, "sluice_trace_spans_exported_total") == 0)
    }

    /// Over HTTP/1.1 and HTTP/2 alike: the upstream gets the client's trace with the gateway's
    /// attempt span as parent (not the client's span) and the sampling decision, the client's
    /// `tracestate` kept; each request's spans (server, admit, route, attempt) are exported.
    @Test func theUpstreamTraceparentIsTheAttemptsSpanAndSpansAreExported() throws {
        let collector = try Collector()
        defer { collector.upstream.stop() }
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint], workers: 1) { $0.tracing = tracing(collector.port) }
        defer { gw.stop(grace: .seconds(1)) }
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736", clientSpan = "00f067aa0ba902b7"
        let headers = ["traceparent: 00-\(trace)-\(clientSpan)-00", "tracestate: vendor=1"]
        var sentSpans: Set<String> = []
        for http2 in [false, true] {
            let before = gw.tracer.exportedSpans.load(ordering: .relaxed)
            let text: String
            if http2 {
                var args: [String] = []
                for h in headers { args += ["-H", h] }
                let (status, out) = try run("nghttp", args + ["http://127.0.0.1:\(port)/echo"])
                #expect(status == 0, "\(out)")
                text = out
            } else {
                let c = try TestClient(port: port)
                c.send(request("GET", "/echo", headers: headers))
                text = try #require(c.response()).text
            }
            let proto = http2 ? "HTTP/2" : "HTTP/1.1"
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("traceparent: ") }, "\(proto): \(text)")
            let parts = line.dropFirst("traceparent: ".count).split(separator: "-").map(String.init)
            #expect(parts.count == 4 && parts[0] == "00" && parts[1] == trace, "\(proto): \(line)")
            #expect(parts[2] != clientSpan && parts[2] != String(repeating: "0", count: 16), "\(proto): \(line)")
            #expect(parts[3] == "01", "\(proto): sample_ratio 1 samples it: \(line)")
            #expect(text.contains("tracestate: vendor=1\n"), "\(proto): \(text)")
            sentSpans.insert(parts[2])
            // Server, route and the one attempt (no admission span: no limits, cache or queue).
            #expect(eventually { gw.tracer.exportedSpans.load(ordering: .relaxed) >= before + 3 }, "\(proto)")
        }
        #expect(sentSpans.count == 2)  // each attempt its own span
    }
}

/// An attempt span's `server.address` and `server.port` come from the endpoint's authority.
@Suite struct TraceHostPortTests {
    @Test(arguments: [
        ("10.0.0.7:8000", "10.0.0.7", 8000 as Int?),
        ("[::1]:8000", "[::1]", 8000),
        ("[::1]", "[::1]", nil),
        ("vllm-0.pool.svc", "vllm-0.pool.svc", nil),
        ("host:", "host", nil),
        ("host:65535", "host", 65535),
        ("host:65536", "host", nil),
        ("host:99999999999999999999", "host", nil),
        ("host:8a", "host", nil),
    ])
    func splitsTheAuthority(authority: String, host: String, port: Int?) {
        var a = authority
        a.withUTF8 { u in
            let (h, p) = TraceSpans.hostPort(UnsafeRawBufferPointer(u))
            #expect(String(decoding: h, as: UTF8.self) == host, "\(authority)")
            #expect(p == port, "\(authority)")
        }
    }
}
