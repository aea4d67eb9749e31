import Glibc
import SluiceHTTP
@_spi(Testing) import SluiceIO
import SluiceLLM
import SluiceRouting
import SluiceSettings
import Testing
@testable import SluiceGateway

extension FakeUpstream {
    /// Plays a streamed response's head (no token yet: vLLM sends it before the prefill ends).
    func streamHead() {
        let text = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        let head = HTTPHead(capacity: 16)
        var p = HTTP1HeadParser(kind: .response)
        _ = text.withUnsafeBytes { p.parse($0, into: head) }
        let x = exchange!
        text.withUnsafeBytes { x.upstreamResponseHead(head, $0) }
    }

    /// Plays one SSE event (`data: …`, its payload as given).
    func event(_ payload: String) {
        let x = exchange!
        let bytes = Array("data: \(payload)\n\n".utf8)
        var b = x.loop.bufferPool.take(minimumCapacity: bytes.count)
        bytes.withUnsafeBytes { b.append($0) }
        x.relay(b, ranges: nil)
    }

    /// An event with the assistant's role and no content (not a token), as vLLM's first.
    func roleEvent() {
        event(#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)
    }

    func tokenEvent(_ t: String) {
        event(#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\#(t)"},"finish_reason":null}]}"#)
    }

    /// The last token, usage, `[DONE]`, and the end of the response.
    func endStream() {
        event(#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}]}"#)
        event(#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":200,"completion_tokens":4,"total_tokens":204}}"#)
        event("[DONE]")
        exchange!.upstreamComplete()
    }
}

/// The cost model's per-endpoint counters as the request path moves them through the attempt's
/// lease: prefill pending from the send, decoding from the first token, nothing after the end
/// whatever the ending; and the learner fed from what was observed.
@Suite struct LeaseCounterTests {
    /// A streamed chat request whose prompt is ~200 tokens (800 bytes).
    static let streamBody = #"{"model":"m","stream":true,"messages":[{"role":"user","content":""#
        + String(repeating: "abcdefgh", count: 100) + #""}],"max_tokens":4}"#

    struct Counters: Equatable {
        var pending: Int, tokens: Int, decoding: Int, inflight: Int
    }

    func counters(_ h: PipelineHarness, _ i: Int) -> Counters {
        let rt = h.worker.pools[0].endpoints[i].runtime
        return Counters(pending: rt.pendingRequests.load(ordering: .relaxed), tokens: rt.pendingTokens.load(ordering: .relaxed),
                        decoding: rt.decodingNow.load(ordering: .relaxed), inflight: rt.inflight.load(ordering: .relaxed))
    }

    func learner(_ h: PipelineHarness, _ i: Int) -> LatencyLearner {
        h.worker.pools[0].endpoints[i].runtime.learner.withLock { $0 }
    }

    /// A harness whose pool routes by the cost model (the default profile).
    func costModel(endpoints: Int = 2, accessLog: AccessLog? = nil,
                   _ configure: @escaping (inout GatewaySettings) -> Void = { _ in }) throws -> PipelineHarness {
        try PipelineHarness(endpoints: endpoints, accessLog: accessLog) { s in
            s.pools[0].routing = .default
            s.pools[0].profile = .costModel()
            configure(&s)
        }
    }

    @Test func countersRiseAtSendMoveAtTheFirstTokenAndReturnToZero() throws {
        let h = try costModel()
        let (x, d) = h.start(post("/v1/chat/completions", Self.streamBody))
        let ep = h.upstreams[0].endpoint
        let other = 1 - ep
        let uncached = x.ctx.attempt.lease?.prediction?.uncachedTokens ?? -1
        #expect(uncached >= 200)  // nothing cached anywhere: the whole prompt
        let predicted = x.ctx.attempt.predictedTTFT ?? 0
        #expect(predicted > 0)
        #expect(counters(h, ep) == Counters(pending: 1, tokens: uncached, decoding: 0, inflight: 1))
        #expect(counters(h, other) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
        let reported = h.worker.pools[0].endpoints[ep].runtime.leaseReported.load(ordering: .relaxed)
        #expect(reported)
        let before = learner(h, ep)

        // The head and an event without content are not a first token: still prefilling.
        h.advance(.milliseconds(30))
        h.upstreams[0].streamHead()
        h.upstreams[0].roleEvent()
        #expect(counters(h, ep) == Counters(pending: 1, tokens: uncached, decoding: 0, inflight: 1))
        #expect(learner(h, ep) == before)

        // The first token: decoding, and the learner's prefill fit saw a TTFT (not its step fit).
        h.advance(.milliseconds(10))
        h.upstreams[0].tokenEvent("yo")
        #expect(counters(h, ep) == Counters(pending: 0, tokens: 0, decoding: 1, inflight: 1))
        let afterFirst = learner(h, ep)
        #expect(afterFirst.prefill != before.prefill)
        #expect(afterFirst.step == before.step)

        // Tokens, the end: nothing left, and the decode gaps went to the step fit.
        for _ in 0..<3 {
            h.advance(.milliseconds(5))
            h.upstreams[0].tokenEvent("a")
        }
        h.upstreams[0].endStream()
        #expect(d.completed == 1 && x.stage == .done)
        #expect(counters(h, ep) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
        #expect(learner(h, ep).step != afterFirst.step)
    }

    @Test func aWholeJSONAnswerMovesTheCountersButTeachesNoTTFT() throws {
        let h = try costModel()
        let (_, d) = h.start(post("/v1/chat/completions", chatBody))
        let ep = h.upstreams[0].endpoint
        #expect(counters(h, ep).pending == 1)
        let before = learner(h, ep)
        h.advance(.milliseconds(200))
        h.upstreams[0].respond(200, body: okJSON)
        #expect(d.completed == 1)
        #expect(counters(h, ep) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
        // Its first token came with its last: prefill time unknown.
        #expect(learner(h, ep) == before)
    }

    @Test func anAbortReturnsTheCountersBeforeAndAfterTheFirstToken() throws {
        let h = try costModel()
        // Before the first token: the pending prefill goes.
        let (a, _) = h.start(post("/v1/chat/completions", Self.streamBody))
        let ea = h.upstreams[0].endpoint
        #expect(counters(h, ea).pending == 1)
        h.upstreams[0].streamHead()
        a.clientAborted()
        #expect(counters(h, ea) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))

        // After it: the decoding count goes.
        let (b, _) = h.start(post("/v1/chat/completions", Self.streamBody))
        let eb = h.upstreams[1].endpoint
        h.upstreams[1].streamHead()
        h.upstreams[1].tokenEvent("yo")
        #expect(counters(h, eb).decoding == 1 && counters(h, eb).pending == 0)
        b.clientAborted()
        #expect(counters(h, eb) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
    }

    @Test func aTimeoutAndAnUpstreamCutReturnTheCounters() throws {
        let h = try costModel { s in
            s.timeouts.upstreamFirstByte = .seconds(5)
            s.timeouts.upstreamIdle = .seconds(5)
            s.upstream.retries = 0
        }
        let (a, ad) = h.start(post("/v1/chat/completions", Self.streamBody))
        let ea = h.upstreams[0].endpoint
        #expect(counters(h, ea).pending == 1)
        h.advance(.seconds(6))
        #expect(ad.locals.first?.status == 504 && a.stage == .done)
        #expect(counters(h, ea) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))

        let (_, _) = h.start(post("/v1/chat/completions", Self.streamBody))
        let eb = h.upstreams[1].endpoint
        h.upstreams[1].streamHead()
        h.upstreams[1].tokenEvent("yo")
        #expect(counters(h, eb).decoding == 1)
        h.upstreams[1].exchange!.upstreamFailed(beforeResponse: false, connectError: false)
        #expect(counters(h, eb) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
    }

    @Test func aRetryFinishesTheFirstAttemptAndCountsTheSecondWhereItWent() throws {
        let h = try costModel()
        let (x, d) = h.start(post("/v1/chat/completions", Self.streamBody))
        let first = h.upstreams[0].endpoint
        #expect(counters(h, first).pending == 1)
        // The keep-alive race: the server closed a reused connection before reading it.
        h.upstreams[0].reused = true
        x.upstreamFailed(beforeResponse: true, connectError: false)
        #expect(x.ctx.attempt.number == 2 && h.upstreams.count == 2)
        let second = h.upstreams[1].endpoint
        #expect(second != first)
        #expect(counters(h, first) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
        let uncached = x.ctx.attempt.lease?.prediction?.uncachedTokens ?? -1
        #expect(uncached >= 200)
        #expect(counters(h, second) == Counters(pending: 1, tokens: uncached, decoding: 0, inflight: 1))
        h.upstreams[1].streamHead()
        h.upstreams[1].tokenEvent("yo")
        h.upstreams[1].endStream()
        #expect(d.completed == 1)
        #expect((0..<2).allSatisfy { counters(h, $0) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0) })
    }

    @Test func aConnectThatFailsAtOnceReportsNothing() throws {
        let h = try costModel(endpoints: 1) { s in s.upstream.retries = 0 }
        h.refuse = [0]
        let (_, d) = h.start(post("/v1/chat/completions", Self.streamBody))
        #expect(d.locals.first?.status == 502)
        #expect(counters(h, 0) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 0))
        // Never sent: the router still estimates this endpoint from its in-flight count.
        let reported = h.worker.pools[0].endpoints[0].runtime.leaseReported.load(ordering: .relaxed)
        #expect(!reported)
    }

    @Test func requestsWithoutAPromptAreNotReported() throws {
        let h = try costModel()
        let (_, _) = h.start("GET /v1/models HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(h.upstreams.count == 1)
        let ep = h.upstreams[0].endpoint
        #expect(counters(h, ep) == Counters(pending: 0, tokens: 0, decoding: 0, inflight: 1))
    }

    /// The access log's line carries the prediction beside the observed TTFT, both from the
    /// request's arrival; null where the pool does not predict (round robin).
    @Test func theAccessLogHasThePredictedTTFTBesideTheObserved() throws {
        let path = "/tmp/sluice-lease-test-\(getpid())-\(UInt64.random(in: 0..<UInt64.max)).log"
        defer { unlink(path) }
        let log = try #require(AccessLog(.file(path)))
        let h = try costModel(accessLog: log)
        let (x, _) = h.start(post("/v1/chat/completions", Self.streamBody))
        let predictedTTFT = x.ctx.attempt.predictedTTFT
        let predicted = try #require(predictedTTFT)
        h.upstreams[0].streamHead()
        h.advance(.milliseconds(40))
        h.upstreams[0].tokenEvent("yo")
        h.upstreams[0].endStream()
        h.loop.runPending()

        let rr = try PipelineHarness(endpoints: 1, accessLog: log)  // round robin
        let (_, _) = rr.start(post("/v1/chat/completions", Self.streamBody))
        rr.upstreams[0].streamHead()
        rr.upstreams[0].tokenEvent("yo")
        rr.upstreams[0].endStream()
        rr.loop.runPending()
        log.close()

        let lines = String(decoding: readAll(path), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        guard lines.count == 2 else { return }
        // Sent as it arrived (the harness's clock did not move before the send).
        #expect(number(lines[0], "ttft_ms") == 40)
        let logged = try #require(number(lines[0], "ttft_predicted_ms"))
        #expect(abs(logged - predicted * 1000) < 0.002)
        #expect(lines[1].contains(#""ttft_predicted_ms":null"#))
        #expect(lines[1].contains(#""ttft_ms":0"#))
    }

    func readAll(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// A number field of a JSON line (`"key":value`), nil if absent or null.
    func number(_ line: String, _ key: String) -> Double? {
        guard let r = line.range(of: "\"\(key)\":") else { return nil }
        let rest = line[r.upperBound...]
        return Double(rest.prefix { $0 != "," && $0 != "}" })
    }
}
