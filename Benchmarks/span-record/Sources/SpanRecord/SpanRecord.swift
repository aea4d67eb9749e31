import Glibc
import SluiceIO
import SluiceTracing
import Synchronization

/// One request's spans as the record phase makes them (a server span with the GenAI and
/// sluice attributes, admission, routing and one upstream attempt: 4 spans, 26 attributes,
/// written with the recorder's direct recording as `TraceSpans.record` does), on a worker loop:
/// trace context, sampling decision, span values, encoding, and the hand-offs to the exporter
/// (per 32 KiB of spans, here every ~35 requests). Prints
/// nanoseconds per request, sampled (all four spans recorded) and not sampled (what a request
/// at ratio 0.01 pays: `begin` and `shouldRecord`).
@main
enum SpanRecord {
    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    static func main() throws {
        let requests = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 200_000 : 200_000
        let exporter = TraceExporter(version: "bench")
        // A collector on a port nothing listens on: exports fail fast and are counted; the
        // queue is large enough that no span is dropped before its batch is taken.
        var c = TracingConfiguration(address: SocketAddress("127.0.0.1:9")!, authority: "127.0.0.1:9")
        c.maxQueueSize = 1 << 20
        c.maxBatchSize = 4096
        c.exportInterval = .milliseconds(10)
        for (label, ratio) in [("sampled (ratio 1)", 1.0), ("not sampled (ratio 0)", 0.0)] {
            c.sampleRatio = ratio
            c.alwaysSampleErrors = false
            exporter.configure(c)
            let result = Atomic<UInt64>(0)
            // The main thread runs the worker's loop until the last batch stops it.
            let loop = try EventLoop(index: 0)
            loop.execute {
                let recorder = SpanRecorder(exporter: exporter, loop: loop, seed: 7)
                let parent = Array("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".utf8)
                var total: UInt64 = 0
                var done = 0
                // Batches of 64 requests per task, so the hand-off happens as on a busy worker.
                func batch() {
                    let t0 = now()
                    for _ in 0..<64 { parent.withUnsafeBytes { one(recorder, $0) } }
                    total += now() - t0
                    done += 64
                    if done < requests { loop.execute { batch() } } else {
                        result.store(total / UInt64(done), ordering: .releasing)
                        loop.stop()
                    }
                }
                batch()
            }
            loop.run()
            print("\(label): \(result.load(ordering: .acquiring)) ns per request")
        }
        exporter.configure(nil)
    }

    @inline(never)
    static func one(_ r: SpanRecorder, _ traceparent: UnsafeRawBufferPointer) {
        let start = Instant.now()
        let trace = r.begin(traceparent: traceparent)
        guard r.shouldRecord(trace, error: false) else { return }
        // As TraceSpans.record writes them: straight into the worker's batch.
        let t0 = r.unixNanos(start), t1 = t0 + 2_000_000, t3 = t0 + 250_000_000
        r.beginServerSpan(trace, start: t0, end: t3, name: "chat", suffix: "tiny-llama")
        r.attribute(SpanKey.operationName, "chat")
        r.attribute(SpanKey.requestModel, "tiny-llama")
        r.attribute(SpanKey.requestStream, false)
        r.attribute(SpanKey.requestMaxTokens, 8)
        r.attribute(SpanKey.responseModel, "tiny-llama")
        r.attribute(SpanKey.inputTokens, 9)
        r.attribute(SpanKey.outputTokens, 2)
        r.attribute(SpanKey.timeToFirstToken, 0.04)
        r.attribute(SpanKey.httpMethod, "POST")
        r.attribute(SpanKey.httpStatus, 200)
        r.attribute(SpanKey.urlPath, "/v1/chat/completions")
        r.attribute(SpanKey.requestID, hex: 0x4bf9_2f35_77b3_4da6)
        r.attribute(SpanKey.pool, "default")
        r.attribute(SpanKey.endpoint, "10.0.0.7:8000")
        r.endSpan()
        r.beginChildSpan(of: trace, spanID: r.newSpanID(), name: "sluice.admit", start: t0, end: t0 + 100_000)
        r.attribute(SpanKey.tenant, "team-a")
        r.attribute(SpanKey.rateLimitResult, "allowed")
        r.attribute(SpanKey.cacheResult, "miss")
        r.endSpan()
        r.beginChildSpan(of: trace, spanID: r.newSpanID(), name: "sluice.route", start: t0 + 100_000, end: t0 + 105_000)
        r.attribute(SpanKey.routeReason, "prefix_hit")
        r.attribute(SpanKey.endpoint, "10.0.0.7:8000")
        r.attribute(SpanKey.routeCandidates, 3)
        r.attribute(SpanKey.predictedTTFT, 0.012)
        r.endSpan()
        r.beginChildSpan(of: trace, spanID: r.newSpanID(), name: "POST", kind: .client, start: t1, end: t3)
        r.attribute(SpanKey.attempt, 1)
        r.attribute(SpanKey.serverAddress, "10.0.0.7")
        r.attribute(SpanKey.serverPort, 8000)
        r.attribute(SpanKey.httpStatus, 200)
        r.attribute(SpanKey.httpMethod, "POST")
        r.endSpan()
    }
}
