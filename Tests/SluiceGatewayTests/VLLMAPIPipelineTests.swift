import Foundation
import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRouting
import SluiceSettings
import Testing
@testable import SluiceGateway

/// Issue 27: every vLLM endpoint through the same pipeline — read by model wherever it is,
/// errors in the path's shape, pass-through of unknown paths, stored responses pinned to the
/// endpoint that made them, usage in every dialect. No sockets: ``PipelineHarness``.
@Suite struct VLLMAPIPipelineTests {
    static func twoPools(_ s: inout GatewaySettings) {
        let a = GatewaySettings.Endpoint(address: SocketAddress("10.0.1.1:8000")!, authority: "10.0.1.1:8000")
        var v2 = GatewaySettings.Pool(name: "triton", endpoints: [GatewaySettings.Endpoint(address: SocketAddress("10.0.2.1:8000")!, authority: "10.0.2.1:8000")])
        v2.serverProtocol = .kserveV2
        s.pools.append(GatewaySettings.Pool(name: "audio", endpoints: [a]))
        s.pools.append(v2)
        s.models = [GatewaySettings.Model(name: "m", pool: "p"), GatewaySettings.Model(name: "whisper", pool: "audio"),
                    GatewaySettings.Model(name: "resnet", pool: "triton")]
    }

    static func json(_ bytes: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }

    func sentLine(_ u: FakeUpstream) -> String {
        String(decoding: u.request, as: UTF8.self).components(separatedBy: "\r\n")[0]
    }

    @Test func chatWithoutModelPassesThroughWithoutModelsButNeedsOneWithThem() throws {
        let h = try PipelineHarness()
        let (_, d) = h.start(post("/v1/chat/completions", #"{"messages":[{"role":"user","content":"hi"}]}"#))
        #expect(d.locals.isEmpty)
        #expect(h.upstreams.count == 1)

        let m = try PipelineHarness { Self.twoPools(&$0) }
        let (_, refused) = m.start(post("/v1/chat/completions", #"{"messages":[{"role":"user","content":"hi"}]}"#))
        #expect(refused.locals.first?.status == 400)
        let err = Self.json(refused.locals.first?.body ?? [])?["error"] as? [String: Any]
        #expect(err?["code"] as? String == "model_required")
        let message: String = (err?["message"] as? String) ?? ""
        #expect(message.contains("whisper"))
        #expect(m.upstreams.isEmpty)
    }

    @Test func anthropicErrorsAndAPIKeys() throws {
        let h = try PipelineHarness { s in
            var auth = GatewaySettings.Auth()
            auth.keys[SHA256.hash(Array("k1".utf8))] = "team-a"
            s.auth = auth
        }
        let body = #"{"model":"m","max_tokens":8,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#
        // No key: 401 in Anthropic's shape on /v1/messages, OpenAI's elsewhere.
        let (_, none) = h.start(post("/v1/messages", body))
        #expect(none.locals.first?.status == 401)
        let a = Self.json(none.locals.first?.body ?? [])
        #expect(a?["type"] as? String == "error")
        #expect((a?["error"] as? [String: Any])?["type"] as? String == "authentication_error")
        let (_, openai) = h.start(post("/v1/chat/completions", chatBody))
        #expect((Self.json(openai.locals.first?.body ?? [])?["error"] as? [String: Any])?["type"] as? String == "invalid_request_error")
        // x-api-key as well as Bearer.
        let (x, ok) = h.start(post("/v1/messages", body, headers: ["x-api-key: k1", "anthropic-version: 2023-06-01"]))
        #expect(ok.locals.isEmpty && x.ctx.tenant == "team-a")
        #expect(x.ctx.features?.endpoint == .messages)
        #expect(x.ctx.features!.prefixBlocks >= 0)
        let (_, wrong) = h.start(post("/v1/messages", body, headers: ["x-api-key: nope"]))
        #expect(wrong.locals.first?.status == 401)
        // A malformed body: 400 invalid_request_error in Anthropic's shape, nothing forwarded.
        let (_, bad) = h.start(post("/v1/messages", #"{"model":"m","messages":[]"#, headers: ["x-api-key: k1"]))
        #expect(bad.locals.first?.status == 400)
        let b = Self.json(bad.locals.first?.body ?? [])
        #expect(b?["type"] as? String == "error")
        #expect((b?["error"] as? [String: Any])?["type"] as? String == "invalid_request_error")
        #expect(h.upstreams.count == 1)
    }

    @Test func messagesUsageFromJSONAndFromStreamEvents() throws {
        let h = try PipelineHarness()
        let body = #"{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#
        let (x, _) = h.start(post("/v1/messages", body))
        h.upstreams[0].respond(200, body: #"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"yo"}],"stop_reason":"end_turn","usage":{"input_tokens":11,"output_tokens":3}}"#)
        #expect(x.ctx.response.observer?.usage == Usage(promptTokens: 11, completionTokens: 3))

        let stream = [
            #"{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","content":[],"usage":{"input_tokens":12,"output_tokens":0}}}"#,
            #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"yo"}}"#,
            #"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#,
            #"{"type":"message_stop"}"#,
        ].map { "event: x\ndata: \($0)\n\n" }.joined()
        let (y, d) = h.start(post("/v1/messages", body.replacingOccurrences(of: "}]}", with: "}],\"stream\":true}")))
        h.upstreams[1].respond(200, contentType: "text/event-stream", body: stream)
        #expect(y.ctx.response.observer?.usage == Usage(promptTokens: 12, completionTokens: 5))
        #expect(y.ctx.response.observer?.firstTokenAt != nil)
        // Nothing injected into an Anthropic body (its streams always carry usage).
        #expect(d.upstreamBody == nil)
    }

    @Test func unknownPathsFollowPassthrough() throws {
        // Without models: a transparent proxy (default_pool).
        let h = try PipelineHarness()
        let (_, d) = h.start(post("/reset_prefix_cache", "{}"))
        #expect(d.locals.isEmpty && h.upstreams.count == 1)
        // With models: deny by default.
        let m = try PipelineHarness { Self.twoPools(&$0) }
        let (_, denied) = m.start(post("/reset_prefix_cache", "{}"))
        #expect(denied.locals.first?.status == 404)
        #expect(m.upstreams.isEmpty)
        // Explicit deny without models.
        let hd = try PipelineHarness { $0.passthrough = .deny }
        let (_, d2) = hd.start(post("/v1/unknown", "{}"))
        #expect(d2.locals.first?.status == 404)
        let (_, models) = hd.start("GET /v1/models HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(models.locals.isEmpty && hd.upstreams.count == 1)  // still served (by the pool)
        // default_pool with models: the model's pool when the body names one, else the first.
        let mp = try PipelineHarness { Self.twoPools(&$0); $0.passthrough = .defaultPool }
        let (x1, _) = mp.start(post("/v1/some_new_api", #"{"model":"whisper","x":1}"#))
        #expect(x1.pool?.name == "audio")
        let (x2, _) = mp.start(post("/v1/some_new_api", #"{"x":1}"#))
        #expect(x2.pool?.name == "p")
        #expect(mp.upstreams.count == 2)
    }

    @Test func audioIsRoutedByItsModelFormField() throws {
        let h = try PipelineHarness { Self.twoPools(&$0) }
        let body = "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFxxxx\r\n"
            + "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--B--\r\n"
        let req = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let (x, d) = h.start(req)
        #expect(d.locals.isEmpty)
        #expect(x.pool?.name == "audio")
        #expect(h.upstreams.count == 1 && h.upstreams[0].endpoint == 0)
        #expect(String(decoding: h.upstreams[0].request, as: UTF8.self).hasSuffix(body))  // unchanged
        // Not multipart: a clear 400.
        let (_, bad) = h.start(post("/v1/audio/transcriptions", #"{"model":"whisper"}"#))
        #expect(bad.locals.first?.status == 400)
        let (_, unknown) = h.start(req.replacingOccurrences(of: "whisper", with: "nope"))
        #expect(unknown.locals.first?.status == 404)
    }

    @Test func realtimeAndKServeAreRoutedByQueryAndPath() throws {
        let h = try PipelineHarness { Self.twoPools(&$0) }
        let (x, d) = h.start("GET /v1/realtime?model=whisper HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(d.locals.isEmpty && x.pool?.name == "audio")
        let (y, _) = h.start("GET /v1/realtime?model=wh%69sper HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(y.pool?.name == "audio")
        let (z, _) = h.start(post("/v2/models/resnet/infer", #"{"inputs":[]}"#))
        #expect(z.pool?.name == "triton")
        #expect(sentLine(h.upstreams.last!) == "POST /v2/models/resnet/infer HTTP/1.1")
        // A v2 path for a model of an OpenAI pool, and the other way round: not found, each in
        // its own shape.
        let (_, v2) = h.start("GET /v2/models/m/ready HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(v2.locals.first?.status == 404)
        let v2Message: String = (Self.json(v2.locals.first?.body ?? [])?["error"] as? String) ?? ""
        #expect(v2Message.contains("Open Inference Protocol"))
        let (_, openai) = h.start(post("/v1/chat/completions", #"{"model":"resnet","messages":[]}"#))
        #expect(openai.locals.first?.status == 404)
        // v2 health goes to the first v2 pool.
        let (hx, _) = h.start("GET /v2/health/ready HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(hx.pool?.name == "triton")
    }

    @Test func storedResponsesAreRoutedToTheEndpointThatMadeThem() throws {
        let h = try PipelineHarness(endpoints: 3)
        let create = #"{"model":"m","input":"hi"}"#
        let made = #"{"id":"resp_0123456789abcdef","object":"response","status":"completed","output":[],"usage":{"input_tokens":4,"output_tokens":2,"total_tokens":6}}"#
        let (x, _) = h.start(post("/v1/responses", create))
        let first = h.upstreams[0].endpoint
        h.upstreams[0].respond(200, body: made)
        #expect(x.ctx.response.observer?.usage == Usage(promptTokens: 4, completionTokens: 2))
        #expect(h.worker.responseAffinity.count == 1)
        // Round robin would move on; follow-ups, retrieves and cancels go back.
        for req in [post("/v1/responses", #"{"model":"m","input":"more","previous_response_id":"resp_0123456789abcdef"}"#),
                    "GET /v1/responses/resp_0123456789abcdef HTTP/1.1\r\nHost: h\r\n\r\n",
                    post("/v1/responses/resp_0123456789abcdef/cancel", "")] {
            let (f, d) = h.start(req)
            #expect(d.locals.isEmpty)
            #expect(h.upstreams.last!.endpoint == first, "\(req)")
            #expect(f.ctx.attempt.routeReason == .storedResponse)
            h.upstreams.last!.respond(200, body: made)
        }
        // A stream's id is remembered from response.created.
        let events = [
            #"{"type":"response.created","response":{"id":"resp_stream000000001","status":"in_progress"}}"#,
            #"{"type":"response.output_text.delta","delta":"yo"}"#,
            #"{"type":"response.completed","response":{"id":"resp_stream000000001","status":"completed","usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6}}}"#,
        ].map { "event: x\ndata: \($0)\n\n" }.joined()
        let (s, _) = h.start(post("/v1/responses", #"{"model":"m","input":"hi","stream":true}"#))
        let streamedOn = h.upstreams.last!.endpoint
        h.upstreams.last!.respond(200, contentType: "text/event-stream", body: events)
        #expect(s.ctx.response.observer?.usage == Usage(promptTokens: 5, completionTokens: 1))
        let (_, _) = h.start("GET /v1/responses/resp_stream000000001 HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(h.upstreams.last!.endpoint == streamedOn)
        // store: false makes nothing to remember.
        let before = h.worker.responseAffinity.count
        let (_, _) = h.start(post("/v1/responses", #"{"model":"m","input":"hi","store":false}"#))
        h.upstreams.last!.respond(200, body: made.replacingOccurrences(of: "0123456789abcdef", with: "nostore000000000"))
        #expect(h.worker.responseAffinity.count == before)
    }

    @Test func aGoneEndpointIsAClearError() throws {
        let h = try PipelineHarness()
        h.worker.responseAffinity.learn(ResponseID(Array("resp_gone".utf8).withUnsafeBytes { UnsafeRawBufferPointer($0) })!,
                                        endpoint: "10.9.9.9:8000", now: h.loop.now)
        let (_, d) = h.start("GET /v1/responses/resp_gone HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(d.locals.first?.status == 404)
        let e = Self.json(d.locals.first?.body ?? [])?["error"] as? [String: Any]
        #expect(e?["code"] as? String == "response_endpoint_gone")
        let message: String = (e?["message"] as? String) ?? ""
        #expect(message.contains("10.9.9.9:8000"))
        #expect(h.upstreams.isEmpty)
        // The endpoint failing is not retried elsewhere (no other server has the response).
        h.worker.responseAffinity.learn(ResponseID(Array("resp_here".utf8).withUnsafeBytes { UnsafeRawBufferPointer($0) })!,
                                        endpoint: "10.0.0.2:8000", now: h.loop.now)
        h.refuse = [1]
        let (_, r) = h.start("GET /v1/responses/resp_here HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(r.locals.first?.status == 502)
        #expect(h.upstreams.isEmpty)
        // An id nobody knows goes to the default pool (its server answers vLLM's 404).
        h.refuse = []
        let (_, u) = h.start("GET /v1/responses/resp_unknown HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(u.locals.isEmpty && h.upstreams.count == 1)
        // An id too long for any server: 400.
        let (_, long) = h.start("GET /v1/responses/" + String(repeating: "a", count: 65) + " HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(long.locals.first?.status == 400)
    }

    @Test func tokenLimitsReserveForMessagesAndResponses() throws {
        let scratch = InspectScratch()
        for (path, body, completion) in [("/v1/messages", #"{"model":"m","max_tokens":40,"messages":[{"role":"user","content":"abcdefgh"}]}"#, 40),
                                         ("/v1/responses", #"{"model":"m","input":"abcdefgh","max_output_tokens":30}"#, 30),
                                         ("/v1/responses", #"{"model":"m","input":"abcdefgh"}"#, 100),
                                         ("/v1/messages/count_tokens", #"{"model":"m","messages":[{"role":"user","content":"abcdefgh"}]}"#, 0)] {
            let f = try #require(try Array(body.utf8).withUnsafeBytes { b in
                try Array(path.utf8).withUnsafeBytes { p in try InspectPhase.inspect(method: .post, path: p, body: b, scratch: scratch) }
            })
            let est = TokenReservation.estimate(f.scanned, for: f.endpoint, defaultMaxTokens: 100)
            #expect(est >= completion + 2 && est <= completion + 10, "\(path) \(body) -> \(est)")
        }
    }

    @Test func requestsAreCountedByEndpointKind() throws {
        let h = try PipelineHarness()
        let (_, _) = h.start(post("/v1/messages", #"{"model":"m","max_tokens":8,"messages":[]"#))
        let (_, _) = h.start(post("/tokenize", #"{"model":"m","prompt":"hi"}"#))
        h.upstreams.last!.respond(200, body: #"{"tokens":[1],"count":1,"max_model_len":8}"#)
        let (_, _) = h.start(post("/elsewhere", "{}"))
        h.upstreams.last!.respond(200, body: "{}")
        let values = h.worker.metrics.values
        func v(_ i: Int) -> Double { i < values.count ? values[i] : 0 }
        #expect(v(h.worker.endpointSlot(.messages, status: 400)) == 1)
        #expect(v(h.worker.endpointSlot(.tokenize, status: 200)) == 1)
        #expect(v(h.worker.endpointSlot(nil, status: 200)) == 1)
        #expect(v(h.worker.endpointSlot(.chatCompletions, status: 200)) == 0)
    }

    @Test func realtimeUpgradesAreForwardedWithinTheConnectionLimit() throws {
        let h = try PipelineHarness { $0.realtime.maxConnections = 1 }
        let upgrade = "GET /v1/realtime?model=m HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        // A downstream that cannot upgrade (HTTP/2) forwards a plain GET.
        let (plain, _) = h.start(upgrade)
        let plainUpgrade = plain.ctx.upgrade
        #expect(!plainUpgrade)
        let plainHead = String(decoding: h.upstreams[0].request, as: UTF8.self)
        #expect(!plainHead.contains("Upgrade: websocket") && plainHead.contains("Sec-WebSocket-Key"))
        h.upstreams[0].respond(404, body: "{}")
        // HTTP/1.1: forwarded with the upgrade pair, holding the one slot.
        let d = RecordingDownstream(upgrade)
        d.upgradable = true
        h.downstreams.append(d)
        let x = Exchange(client: d, worker: h.worker, method: .get, requestID: 7)
        x.start()
        let (up, slot) = (x.ctx.upgrade, x.ctx.tunnelSlot)
        #expect(up && slot)
        let sent = String(decoding: h.upstreams[1].request, as: UTF8.self)
        #expect(sent.hasPrefix("GET /v1/realtime?model=m HTTP/1.1\r\n"))
        #expect(sent.contains("Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        #expect(sent.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))
        #expect(h.worker.tunnels.value.load(ordering: .relaxed) == 1)
        // A second is refused while the first holds the slot.
        let d2 = RecordingDownstream(upgrade)
        d2.upgradable = true
        h.downstreams.append(d2)
        let x2 = Exchange(client: d2, worker: h.worker, method: .get, requestID: 8)
        x2.start()
        #expect(d2.locals.first?.status == 503)
        #expect(h.upstreams.count == 2)
        // The server refuses the upgrade: the slot is given back.
        h.upstreams[1].respond(426, body: "{}")
        #expect(h.worker.tunnels.value.load(ordering: .relaxed) == 0)
    }

    @Test(arguments: [("/v1/messages", #"{"model":"m","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""),
                      ("/v1/responses", #"{"model":"m","input":"hi","stream":true}"#, "event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_error\""),
                      ("/v1/chat/completions", #"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#, "data: {\"error\":{")])
    func aCutStreamEndsWithTheDialectsErrorEvent(_ path: String, _ body: String, _ prefix: String) throws {
        let h = try PipelineHarness()
        let (x, d) = h.start(post(path, body))
        let text = Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        let head = HTTPHead(capacity: 16)
        var p = HTTP1HeadParser(kind: .response)
        _ = text.withUnsafeBytes { p.parse($0, into: head) }
        text.withUnsafeBytes { x.upstreamResponseHead(head, $0) }
        var b = x.loop.bufferPool.take(minimumCapacity: 64)
        Array("data: {}\n\n".utf8).withUnsafeBytes { b.append($0) }
        x.relay(b, ranges: nil)
        x.upstreamFailed(beforeResponse: false, connectError: false)
        let event = String(decoding: try #require(d.endedWithError), as: UTF8.self)
        #expect(event.hasPrefix(prefix), "\(event)")
        #expect(event.hasSuffix("\n\n"))
    }
}
