import Foundation
import Glibc
import SluiceIO
@testable import SluiceTracing
import Synchronization
import Testing

@Suite struct TraceContextTests {
    @Test(arguments: [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true, true),  // a later version's prefix
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false, false), // version 00 is exactly 55
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false),  // uppercase
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false, false),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false),
    ])
    func parsesTraceparent(value: String, valid: Bool, sampled: Bool) {
        let p = TraceContext.parse(traceparent: value)
        #expect((p != nil) == valid, "\(value)")
        if let p {
            #expect(p.trace.description == "4bf92f3577b34da6a3ce929d0e0e4736")
            #expect(p.parent == 0x00f0_67aa_0ba9_02b7)
            #expect(p.sampled == sampled)
        }
    }

    @Test func writesTraceparent() {
        let t = TraceContext(traceID: TraceID(hi: 0x4bf9_2f35_77b3_4da6, lo: 0xa3ce_929d_0e0e_4736), spanID: 0x1, sampled: true)
        #expect(t.traceparent() == "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01")
        #expect(t.traceparent(spanID: 0xabcdef) == "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000abcdef-01")
        var u = t
        u.sampled = false
        #expect(u.traceparent().hasSuffix("-00"))
        // What is written parses back to the same trace.
        #expect(TraceContext.parse(traceparent: t.traceparent())?.trace == t.traceID)
    }

    @Test func samplerFollowsTheRatio() {
        var rng = SystemRandomNumberGenerator()
        let ids = (0..<100_000).map { _ in TraceID(hi: rng.next(), lo: rng.next()) }
        #expect(ids.allSatisfy(TraceIDSampler(ratio: 1).sampled))
        #expect(!ids.contains(where: TraceIDSampler(ratio: 0).sampled))
        for ratio in [0.01, 0.25, 0.5] {
            let share = Double(ids.filter(TraceIDSampler(ratio: ratio).sampled).count) / Double(ids.count)
            #expect(abs(share - ratio) < 0.01, "ratio \(ratio): \(share)")
        }
        // Deterministic by trace id, so every service sampling by ratio keeps the same traces.
        let s = TraceIDSampler(ratio: 0.3)
        #expect(ids.prefix(1000).map(s.sampled) == ids.prefix(1000).map(s.sampled))
        #expect(TraceIDSampler(ratio: 0.5).sampled(TraceID(hi: 0, lo: 0x7FFF_FFFF_FFFF_FFFF)))   // 63-bit value 2^62 - 1 < 2^62
        #expect(!TraceIDSampler(ratio: 0.5).sampled(TraceID(hi: 0, lo: 0x8000_0000_0000_0000)))  // 2^62: not below
    }

    @Test func endpointURLs() {
        #expect(TracingConfiguration.splitEndpoint("http://collector:4318")! == ("collector", 4318, "collector:4318", ""))
        #expect(TracingConfiguration.splitEndpoint("http://10.0.0.1:9000/otlp")! == ("10.0.0.1", 9000, "10.0.0.1:9000", "/otlp"))
        #expect(TracingConfiguration.splitEndpoint("http://collector")! == ("collector", 4318, "collector:4318", ""))
        #expect(TracingConfiguration.splitEndpoint("https://collector:4318") == nil)
        #expect(TracingConfiguration.splitEndpoint("http://user:pw@collector:4318") == nil)
        var c = TracingConfiguration(address: SocketAddress("127.0.0.1:1")!, authority: "x", basePath: "/otlp/")
        #expect(c.tracesPath == "/otlp/v1/traces")
        c.basePath = ""
        #expect(c.tracesPath == "/v1/traces")
    }
}

@Suite struct ProtoWriterTests {
    @Test func varintsAndFixedFields() {
        var w = ProtoWriter()
        w.varint(1); w.varint(300); w.varint(UInt64.max)
        #expect(w.bytes == [0x01, 0xAC, 0x02] + Array(repeating: 0xFF, count: 9) + [0x01])
        w = ProtoWriter()
        w.int64(3, -1)  // int64: ten bytes, two's complement
        #expect(w.bytes == [0x18] + Array(repeating: 0xFF, count: 9) + [0x01])
        w = ProtoWriter()
        w.fixed64(7, 0x0102_0304_0506_0708)
        #expect(w.bytes == [0x39, 8, 7, 6, 5, 4, 3, 2, 1])
        w = ProtoWriter()
        w.fixed32(16, 0x301)
        #expect(w.bytes == [0x85, 0x01, 0x01, 0x03, 0, 0])
    }

    /// A string from a request is cut to the limit, never inside a character; shorter ones and
    /// whole spans' names and attributes as `OTLPEncoder` writes them stay as they are.
    @Test func longStringsAreCutAtACharacterBoundary() {
        var w = ProtoWriter()
        w.string(1, "abc", limit: 8)
        #expect(w.bytes == [0x0A, 3] + Array("abc".utf8))
        w = ProtoWriter()
        w.string(1, String(repeating: "é", count: 10), limit: 5)  // 2 bytes each: 4 fit, not 5
        #expect(w.bytes == [0x0A, 4] + Array(String(repeating: "é", count: 2).utf8))
        w = ProtoWriter()
        let span = FinishedSpan(traceID: TraceID(hi: 1, lo: 2), spanID: 3, name: String(repeating: "n", count: 5000),
                                startUnixNanos: 1, endUnixNanos: 2,
                                attributes: [SpanAttribute(SpanKey.requestModel, String(repeating: "m", count: 1 << 20))])
        OTLPEncoder.appendSpan(span, to: &w)
        #expect(w.count < 3 * OTLPEncoder.maxStringBytes)  // not a megabyte
        #expect(w.bytes.count > 2 * OTLPEncoder.maxStringBytes)
    }

    /// A nested message's length is patched in after its body, with a longer prefix when the
    /// body reaches 128 bytes (and 16 KiB), moving the body along.
    @Test(arguments: [0, 1, 127, 128, 300, 16_383, 16_384, 70_000])
    func nestedLengths(n: Int) {
        var w = ProtoWriter()
        w.message(2) { $0.append(contentsOf: Array(repeating: 0x61, count: n)) }
        var expected = ProtoWriter()
        expected.tag(2, .length)
        expected.varint(UInt64(n))
        #expect(w.bytes == expected.bytes + Array(repeating: 0x61, count: n))
    }
}

func sampleSpans() -> (TraceContext, [FinishedSpan]) {
    let ctx = TraceContext(traceID: TraceID(hi: 0x4bf9_2f35_77b3_4da6, lo: 0xa3ce_929d_0e0e_4736), spanID: 0x1111_2222_3333_4444,
                           parentSpanID: 0x00f0_67aa_0ba9_02b7, sampled: true, parentSampled: true)
    let t0: UInt64 = 1_796_000_000_000_000_000
    let server = FinishedSpan.server(ctx, name: "chat tiny-llama", start: t0, end: t0 + 250_000_000, status: .unset, attributes: [
        SpanAttribute(SpanKey.operationName, "chat"),
        SpanAttribute(SpanKey.requestModel, "tiny-llama"),
        SpanAttribute(SpanKey.responseModel, "tiny-llama-1.1b"),
        SpanAttribute(SpanKey.inputTokens, 12),
        SpanAttribute(SpanKey.outputTokens, 34),
        SpanAttribute(SpanKey.timeToFirstToken, 0.0425),
        SpanAttribute(SpanKey.requestStream, true),
        SpanAttribute(SpanKey.finishReasons, ["stop"]),
        SpanAttribute(SpanKey.pool, "gpu-a"),
        SpanAttribute(SpanKey.tenant, "team-ä"),  // UTF-8 survives
        SpanAttribute(SpanKey.httpStatus, 200),
        SpanAttribute(SpanKey.attempts, 2),
        SpanAttribute("sluice.test.negative", -5),
        SpanAttribute("sluice.test.long", String(repeating: "x", count: 300)),  // multi-byte lengths
    ], events: [SpanEvent("gen_ai.first_token", at: t0 + 42_500_000, attributes: [SpanAttribute(SpanKey.endpoint, "10.0.0.7:8000")])])
    let admit = FinishedSpan.child(of: ctx, spanID: 0xA1, name: "sluice.admit", start: t0 + 1000, end: t0 + 2_000_000,
                                   attributes: [SpanAttribute(SpanKey.rateLimitResult, "allowed"), SpanAttribute(SpanKey.cacheResult, "miss")])
    let route = FinishedSpan.child(of: ctx, spanID: 0xA2, name: "sluice.route", start: t0 + 2_000_000, end: t0 + 2_100_000,
                                   attributes: [SpanAttribute(SpanKey.routeReason, "prefix_hit"), SpanAttribute(SpanKey.routeCandidates, 3),
                                                SpanAttribute(SpanKey.endpoint, "10.0.0.7:8000")])
    let failed = FinishedSpan.child(of: ctx, spanID: 0xA3, name: "POST", kind: .client, start: t0 + 2_200_000, end: t0 + 3_000_000,
                                    status: .error("connection refused"),
                                    attributes: [SpanAttribute(SpanKey.attempt, 1), SpanAttribute(SpanKey.endpoint, "10.0.0.8:8000")])
    let attempt = FinishedSpan.child(of: ctx, spanID: 0xA4, name: "POST", kind: .client, start: t0 + 3_000_000, end: t0 + 249_000_000,
                                     status: .ok, attributes: [SpanAttribute(SpanKey.attempt, 2), SpanAttribute(SpanKey.httpStatus, 200)])
    return (ctx, [server, admit, route, failed, attempt])
}

/// Sluice's encoder against the official schema: `opentelemetry-proto` (Python) decodes what it
/// produces, field by field.
@Suite(.enabled(if: Python.available, "needs .venv/bin/python with opentelemetry-proto (bash .ci/setup)"))
struct OTLPDecodeTests {
    @Test func officialDecoderReadsEverything() throws {
        let (ctx, spans) = sampleSpans()
        var encoded: [UInt8] = []
        for s in spans { OTLPEncoder.appendSpan(s, to: &encoded) }
        let body = OTLPEncoder.request(resource: OTLPEncoder.resource([("service.name", "sluice-test"), ("host.name", "h")]),
                                       scopeVersion: "9.9.9", spans: [encoded])
        let decoded = try Python.decode(body)
        #expect(decoded.count == 5)
        let byID = Dictionary(uniqueKeysWithValues: decoded.map { ($0["span_id"] as! String, $0) })
        let server = try #require(byID["1111222233334444"])
        #expect(server["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(server["parent_span_id"] as? String == "00f067aa0ba902b7")
        #expect(server["name"] as? String == "chat tiny-llama")
        #expect(server["kind"] as? Int == 2)
        #expect(server["start"] as? Int == 1_796_000_000_000_000_000)
        #expect(server["end"] as? Int == 1_796_000_000_250_000_000)
        #expect(server["flags"] as? Int == 0x301)  // sampled, parent known to be remote
        let a = try #require(server["attributes"] as? [String: Any])
        #expect(a["gen_ai.operation.name"] as? String == "chat")
        #expect(a["gen_ai.request.model"] as? String == "tiny-llama")
        #expect(a["gen_ai.response.model"] as? String == "tiny-llama-1.1b")
        #expect(a["gen_ai.usage.input_tokens"] as? Int == 12)
        #expect(a["gen_ai.usage.output_tokens"] as? Int == 34)
        #expect(a["gen_ai.server.time_to_first_token"] as? Double == 0.0425)
        #expect(a["gen_ai.request.stream"] as? Bool == true)
        #expect(a["gen_ai.response.finish_reasons"] as? [String] == ["stop"])
        #expect(a["sluice.tenant"] as? String == "team-ä")
        #expect(a["sluice.test.negative"] as? Int == -5)
        #expect((a["sluice.test.long"] as? String)?.count == 300)
        #expect(a.count == 14)
        let events = try #require(server["events"] as? [[String: Any]])
        #expect(events.count == 1)
        #expect(events[0]["name"] as? String == "gen_ai.first_token")
        #expect(events[0]["time"] as? Int == 1_796_000_000_042_500_000)
        #expect((events[0]["attributes"] as? [String: Any])?["sluice.endpoint"] as? String == "10.0.0.7:8000")
        #expect((server["status"] as? [String: Any])?["code"] as? Int == 0)
        #expect((server["resource"] as? [String: Any])?["service.name"] as? String == "sluice-test")
        #expect((server["scope"] as? [String: Any])?["name"] as? String == "sluice")
        #expect((server["scope"] as? [String: Any])?["version"] as? String == "9.9.9")

        // Children: the server span is their parent, same trace, local parent.
        for id in ["00000000000000a1", "00000000000000a2", "00000000000000a3", "00000000000000a4"] {
            let c = try #require(byID[id], "span \(id)")
            #expect(c["trace_id"] as? String == ctx.traceID.description)
            #expect(c["parent_span_id"] as? String == "1111222233334444")
            #expect(c["flags"] as? Int == 0x101)
        }
        #expect(byID["00000000000000a3"]?["kind"] as? Int == 3)
        #expect((byID["00000000000000a3"]?["status"] as? [String: Any])?["code"] as? Int == 2)
        #expect((byID["00000000000000a3"]?["status"] as? [String: Any])?["message"] as? String == "connection refused")
        #expect((byID["00000000000000a4"]?["status"] as? [String: Any])?["code"] as? Int == 1)
        #expect((byID["00000000000000a2"]?["attributes"] as? [String: Any])?["sluice.route.candidates"] as? Int == 3)
    }

    /// The request path writes spans straight from its state (``SpanRecorder``'s direct
    /// recording); the bytes are those of the same span as a ``FinishedSpan``, and the official
    /// decoder reads every kind of value, names cut at a character boundary, request bytes that
    /// are not UTF-8 repaired, and span lengths of one, two and three bytes.
    @Test func directRecordingWritesWhatFinishedSpansDo() throws {
        let exporter = TraceExporter()
        var c = TracingConfiguration(address: SocketAddress("127.0.0.1:9")!, authority: "127.0.0.1:9")
        c.exportInterval = .seconds(3600)
        exporter.configure(c)
        defer { exporter.configure(nil) }
        let worker = try TestLoop()
        defer { worker.stop() }
        let ctx = TraceContext(traceID: TraceID(hi: 0x4bf9_2f35_77b3_4da6, lo: 0xa3ce_929d_0e0e_4736), spanID: 0x1111_2222_3333_4444,
                               parentSpanID: 0x00f0_67aa_0ba9_02b7, sampled: true, parentSampled: true)
        let t0: UInt64 = 1_796_000_000_000_000_000
        let longModel = String(repeating: "é", count: 700)  // 1,400 bytes: the name is cut
        let (direct, finished) = worker.sync { () -> ([UInt8], [UInt8]) in
            let r = SpanRecorder(exporter: exporter, loop: worker.loop)
            r.beginServerSpan(ctx, start: t0, end: t0 + 5, name: "chat", suffix: "tiny-llama")
            r.attribute(SpanKey.requestModel, "tiny-llama")
            r.attribute(SpanKey.inputTokens, 12)
            r.attribute("sluice.test.negative", -5)
            r.attribute(SpanKey.timeToFirstToken, 0.0425)
            r.attribute(SpanKey.requestStream, true)
            r.attribute(SpanKey.requestID, hex: 0x00f0_67aa_0ba9_02b7)
            r.attribute(SpanKey.serverAddress, "10.0.0.7:8000".prefix(8))
            r.attribute(SpanKey.operationName, "chat" as StaticString)
            r.attribute(SpanKey.urlPath, utf8: Array("/v1/chat".utf8))
            r.attribute(SpanKey.responseModel, utf8: [0x6D, 0xFF, 0x6E])  // not UTF-8
            r.endSpan()
            r.beginChildSpan(of: ctx, spanID: 0xA1, name: "sluice.route", start: t0, end: t0 + 1)
            r.endSpan(.ok)
            r.beginChildSpan(of: ctx, spanID: 0xA2, name: "POST", kind: .client, start: t0, end: t0 + 2)
            r.attribute(SpanKey.httpStatus, 503)
            r.endSpan(.error("connection refused"))
            r.beginServerSpan(ctx, start: t0, end: t0, name: "chat", suffix: longModel)
            // A span over 16 KiB: 17 attributes of 1 KiB each.
            for key in [SpanKey.requestModel, SpanKey.responseModel, SpanKey.operationName, SpanKey.pool, SpanKey.endpoint,
                        SpanKey.tenant, SpanKey.splitArm, SpanKey.adapter, SpanKey.routeReason, SpanKey.cacheResult,
                        SpanKey.rateLimitResult, SpanKey.urlPath, SpanKey.httpMethod, SpanKey.serverAddress, SpanKey.errorType,
                        SpanKey.retryReason, SpanKey.requestID] {
                r.attribute(key, longModel)
            }
            r.endSpan()
            let direct = r.pendingBytes
            var finished: [UInt8] = []
            let a = [SpanAttribute(SpanKey.requestModel, "tiny-llama"), SpanAttribute(SpanKey.inputTokens, 12),
                     SpanAttribute("sluice.test.negative", -5), SpanAttribute(SpanKey.timeToFirstToken, 0.0425),
                     SpanAttribute(SpanKey.requestStream, true), SpanAttribute(SpanKey.requestID, "00f067aa0ba902b7"),
                     SpanAttribute(SpanKey.serverAddress, "10.0.0.7")]
            OTLPEncoder.appendSpan(.server(ctx, name: "chat tiny-llama", start: t0, end: t0 + 5, attributes: a), to: &finished)
            return (direct, finished)
        }
        // The first span, up to the attributes FinishedSpan cannot express the same way.
        #expect(direct.count > finished.count)
        #expect(Array(direct[3..<finished.count]) == Array(finished[3..<finished.count]))

        let decoded = try Python.decode(OTLPEncoder.request(resource: [], scopeVersion: "1", spans: [direct]))
        #expect(decoded.count == 4)
        let server = try #require(decoded.first)
        #expect(server["name"] as? String == "chat tiny-llama")
        #expect(server["flags"] as? Int == 0x301)
        let a = try #require(server["attributes"] as? [String: Any])
        #expect(a["gen_ai.usage.input_tokens"] as? Int == 12)
        #expect(a["sluice.test.negative"] as? Int == -5)
        #expect(a["gen_ai.server.time_to_first_token"] as? Double == 0.0425)
        #expect(a["gen_ai.request.stream"] as? Bool == true)
        #expect(a["sluice.request_id"] as? String == "00f067aa0ba902b7")
        #expect(a["server.address"] as? String == "10.0.0.7")
        #expect(a["gen_ai.operation.name"] as? String == "chat")
        #expect(a["url.path"] as? String == "/v1/chat")
        #expect(a["gen_ai.response.model"] as? String == "m\u{FFFD}n")
        #expect((decoded[1]["status"] as? [String: Any])?["code"] as? Int == 1)
        #expect(decoded[1]["end"] as? Int == Int(t0) + 1)
        #expect(decoded[2]["kind"] as? Int == 3)
        #expect((decoded[2]["status"] as? [String: Any])?["message"] as? String == "connection refused")
        #expect((decoded[2]["attributes"] as? [String: Any])?["http.response.status_code"] as? Int == 503)
        let big = decoded[3]
        let name = try #require(big["name"] as? String)
        #expect(name.utf8.count <= OTLPEncoder.maxStringBytes && name.utf8.count >= OTLPEncoder.maxStringBytes - 1)
        #expect(name.hasPrefix("chat éé"))
        #expect(((big["attributes"] as? [String: Any])?["gen_ai.request.model"] as? String)?.utf8.count == 1024)
        #expect((big["attributes"] as? [String: Any])?.count == 17)
    }

    /// A root span (the gateway started the trace) has no parent and no remote flag.
    @Test func rootSpanHasNoParent() throws {
        let ctx = TraceContext(traceID: TraceID(hi: 1, lo: 2), spanID: 3, sampled: true)
        var encoded: [UInt8] = []
        OTLPEncoder.appendSpan(.server(ctx, name: "chat m", start: 10, end: 5), to: &encoded)
        let s = try #require(try Python.decode(OTLPEncoder.request(resource: [], scopeVersion: "1", spans: [encoded])).first)
        #expect(s["parent_span_id"] as? String == "")
        #expect(s["flags"] as? Int == 0x101)
        #expect(s["end"] as? Int == 10)  // an end before the start is clamped to it
    }
}

/// The exporter and a worker's recorder against a real OTLP/HTTP receiver (the Python one),
/// without a gateway: sampling, batching, hand-off, failures, reconfiguration.
@Suite(.serialized, .enabled(if: Python.available, "needs .venv/bin/python with opentelemetry-proto (bash .ci/setup)"))
struct ExporterTests {
    @Test func spansOfARequestArriveLinkedAndContinueTheClientsTrace() throws {
        let receiver = try ReceiverProcess()
        defer { receiver.stop() }
        let exporter = TraceExporter(version: "1.2.3")
        exporter.configure(collector(port: receiver.port))
        defer { exporter.stop() }
        let worker = try TestLoop()
        defer { worker.stop() }
        let recorder = worker.sync { SpanRecorder(exporter: exporter, loop: worker.loop) }

        let clientParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let ctx = worker.sync { () -> TraceContext in
            let ctx = recorder.begin(traceparent: clientParent)
            #expect(recorder.shouldRecord(ctx, error: false))
            let t0 = recorder.unixNanos(Instant.now())
            recorder.record(.server(ctx, name: "chat tiny", start: t0, end: t0 + 1_000_000,
                                    attributes: [SpanAttribute(SpanKey.requestModel, "tiny"), SpanAttribute(SpanKey.inputTokens, 7)]))
            for name in ["sluice.admit", "sluice.route"] {
                recorder.record(.child(of: ctx, spanID: recorder.newSpanID(), name: name, start: t0, end: t0 + 10))
            }
            recorder.record(.child(of: ctx, spanID: recorder.newSpanID(), name: "POST", kind: .client, start: t0 + 10, end: t0 + 900_000))
            return ctx
        }
        #expect(ctx.traceID.description == "0af7651916cd43dd8448eb211c80319c")
        #expect(ctx.parentSpanID == 0xb7ad_6b71_6920_3331)
        // The upstream traceparent continues the same trace under the gateway's span, sampled.
        #expect(ctx.traceparent() == "00-0af7651916cd43dd8448eb211c80319c-\(Hex.string(ctx.spanID))-01")

        let spans = receiver.waitSpans(4)
        #expect(spans.count == 4)
        let server = try #require(spans.first { $0["kind"] as? Int == 2 })
        #expect(server["trace_id"] as? String == "0af7651916cd43dd8448eb211c80319c")
        #expect(server["parent_span_id"] as? String == "b7ad6b7169203331")
        #expect(server["span_id"] as? String == Hex.string(ctx.spanID))
        for child in spans where child["kind"] as? Int != 2 {
            #expect(child["trace_id"] as? String == "0af7651916cd43dd8448eb211c80319c")
            #expect(child["parent_span_id"] as? String == Hex.string(ctx.spanID))
        }
        #expect(Set(spans.map { $0["span_id"] as! String }).count == 4)
        let resource = try #require(server["resource"] as? [String: Any])
        #expect(resource["service.name"] as? String == "sluice")
        #expect(resource["service.version"] as? String == "1.2.3")
        // Span times are wall-clock: within a minute of now.
        let now = Int(Date().timeIntervalSince1970 * 1e9)
        #expect(abs((server["start"] as? Int ?? 0) - now) < 60_000_000_000)
        #expect(exporter.exportedSpans.load(ordering: .relaxed) == 4)
        #expect(exporter.droppedExportFailed.load(ordering: .relaxed) == 0)
    }

    @Test func headSamplingAndAlwaysSampleErrors() throws {
        let receiver = try ReceiverProcess()
        defer { receiver.stop() }
        let exporter = TraceExporter()
        exporter.configure(collector(port: receiver.port) { $0.sampleRatio = 0.1 })
        defer { exporter.stop() }
        let worker = try TestLoop()
        defer { worker.stop() }
        let recorder = worker.sync { SpanRecorder(exporter: exporter, loop: worker.loop, seed: 42) }
        let (sampled, errors) = worker.sync { () -> (Int, Int) in
            var sampled = 0, errors = 0
            for i in 0..<2000 {
                let ctx = recorder.begin(traceparent: nil as String?)
                if ctx.sampled { sampled += 1 }
                let failed = i % 100 == 0
                if recorder.shouldRecord(ctx, error: failed) {
                    if failed && !ctx.sampled { errors += 1 }
                    recorder.record(.server(ctx, name: "r", start: 1, end: 2, status: failed ? .error("upstream 503") : .unset))
                }
            }
            return (sampled, errors)
        }
        #expect(sampled > 140 && sampled < 260, "\(sampled) of 2000 at 0.1")
        #expect(errors > 10)  // failed requests the ratio did not pick are recorded anyway
        let spans = receiver.waitSpans(sampled + errors)
        #expect(spans.count == sampled + errors)
        #expect(spans.filter { ($0["status"] as? [String: Any])?["code"] as? Int == 2 }.count == 20)

        // always_sample_errors off: only the ratio decides. parent_based: the client's flag.
        exporter.configure(collector(port: receiver.port) { $0.sampleRatio = 0; $0.alwaysSampleErrors = false; $0.parentBased = true })
        worker.sync {
            let ctx = recorder.begin(traceparent: nil as String?)
            #expect(!recorder.shouldRecord(ctx, error: true))
            let yes = recorder.begin(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            let no = recorder.begin(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
            #expect(yes.sampled && !no.sampled)
        }
    }

    /// The collector is down: exports fail and their spans are counted as dropped; the queue is
    /// bounded and what does not fit is counted too; recording never waits on any of it.
    @Test func collectorDownDropsAndCountsWithoutBlocking() throws {
        // A port nothing listens on: bound and kept bound (not listening, so connects are
        // refused) for the whole test — closed at once, its number could go to another test's
        // listener running in parallel, and the "dead" collector would answer.
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var a = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        let deadPort = UInt16(bigEndian: a.sin_port)

        let exporter = TraceExporter()
        exporter.configure(collector(port: deadPort) { $0.maxQueueSize = 256; $0.maxBatchSize = 64; $0.exportTimeout = .milliseconds(200) })
        defer { exporter.stop() }
        let worker = try TestLoop()
        defer { worker.stop() }
        let recorder = worker.sync { SpanRecorder(exporter: exporter, loop: worker.loop) }
        var slowest = 0.0
        for _ in 0..<50 {
            let took = worker.sync { () -> Double in
                let start = Instant.now()
                for _ in 0..<100 {
                    let ctx = recorder.begin(traceparent: nil as String?)
                    recorder.record(.server(ctx, name: "chat m", start: 1, end: 2, attributes: [SpanAttribute(SpanKey.requestModel, "m")]))
                }
                return Instant.now().seconds(since: start)
            }
            slowest = max(slowest, took)
            usleep(2000)
        }
        // 100 spans recorded and encoded in well under the export timeout: nothing waited.
        #expect(slowest < 0.05, "recording 100 spans took \(slowest) s")
        #expect(eventually(5) { exporter.failedExports.load(ordering: .relaxed) > 0 && exporter.droppedExportFailed.load(ordering: .relaxed) > 0 },
                "exports \(exporter.exports.load(ordering: .relaxed)), failed \(exporter.failedExports.load(ordering: .relaxed)), queued \(exporter.queuedSpans), queue_full \(exporter.droppedQueueFull.load(ordering: .relaxed)), exported \(exporter.exportedSpans.load(ordering: .relaxed))")
        #expect(exporter.exportedSpans.load(ordering: .relaxed) == 0)

        // A collector that accepts and never answers: each export waits out its timeout while
        // the bounded queue fills; the rest is dropped as queue_full, and recording still
        // does not wait.
        let hung = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(hung) }
        a.sin_port = 0
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(hung, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        _ = listen(hung, 16)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(hung, $0, &len) } }
        exporter.configure(collector(port: UInt16(bigEndian: a.sin_port)) { $0.maxQueueSize = 256; $0.maxBatchSize = 64; $0.exportTimeout = .milliseconds(300) })
        slowest = 0
        for _ in 0..<20 {
            let took = worker.sync { () -> Double in
                let start = Instant.now()
                for _ in 0..<100 { recorder.record(.server(recorder.begin(traceparent: nil as String?), name: "chat m", start: 1, end: 2)) }
                return Instant.now().seconds(since: start)
            }
            slowest = max(slowest, took)
            usleep(2000)
        }
        #expect(slowest < 0.05, "recording 100 spans took \(slowest) s")
        #expect(eventually(5) { exporter.droppedQueueFull.load(ordering: .relaxed) > 0 })
        #expect(exporter.queuedSpans <= 256)
        #expect(exporter.exportedSpans.load(ordering: .relaxed) == 0)
    }

    @Test func collectorErrorsCountAsFailedExports() throws {
        let receiver = try ReceiverProcess(status: 500)
        defer { receiver.stop() }
        let exporter = TraceExporter()
        exporter.configure(collector(port: receiver.port))
        defer { exporter.stop() }
        let worker = try TestLoop()
        defer { worker.stop() }
        let recorder = worker.sync { SpanRecorder(exporter: exporter, loop: worker.loop) }
        worker.sync {
            for _ in 0..<10 { recorder.record(.server(recorder.begin(traceparent: nil as String?), name: "x", start: 1, end: 2)) }
        }
        #expect(eventually { exporter.droppedExportFailed.load(ordering: .relaxed) == 10 })
        #expect(exporter.failedExports.load(ordering: .relaxed) >= 1)
    }

    /// Off (no section) nothing is recorded and no thread runs; a reload switches it on and
    /// over to another collector.
    @Test func reconfigureSwitchesOnOffAndElsewhere() throws {
        let first = try ReceiverProcess()
        defer { first.stop() }
        let second = try ReceiverProcess()
        defer { second.stop() }
        let exporter = TraceExporter()
        defer { exporter.stop() }
        let worker = try TestLoop()
        defer { worker.stop() }
        let recorder = worker.sync { SpanRecorder(exporter: exporter, loop: worker.loop) }
        func one(_ name: String) -> Bool {
            worker.sync {
                let ctx = recorder.begin(traceparent: nil as String?)
                guard recorder.shouldRecord(ctx, error: true) else { return false }
                recorder.record(.server(ctx, name: name, start: 1, end: 2))
                return true
            }
        }
        #expect(!exporter.isOn)
        #expect(!one("off"))
        exporter.configure(collector(port: first.port))
        #expect(one("first"))
        #expect(first.waitSpans(1).map { $0["name"] as? String } == ["first"])
        exporter.configure(collector(port: second.port))
        #expect(one("second"))
        #expect(second.waitSpans(1).map { $0["name"] as? String } == ["second"])
        exporter.configure(nil)
        #expect(!one("off again"))
        usleep(200_000)
        #expect(first.spans.count == 1 && second.spans.count == 1)
    }
}
