import Foundation
import Testing

import SluiceLLM

/// Response-side readers for Anthropic and the Responses API, against the captures of a real
/// vLLM 0.32 in Tests/vllm-captures/ (generate-*.txt).
@Suite struct ResponseDialectTests {
    static func events(_ stream: [UInt8], dialect: ResponseDialect, cuts: [Int] = []) -> [SSEEvent] {
        eventsAndIDs(stream, dialect: dialect, cuts: cuts).0
    }

    /// The events and the scanner's ``SSEScanner/responseID`` after each.
    static func eventsAndIDs(_ stream: [UInt8], dialect: ResponseDialect, cuts: [Int] = []) -> ([SSEEvent], [String?]) {
        var scanner = SSEScanner(dialect: dialect)
        var ids: [String?] = []
        var out: [SSEEvent] = []
        let bounds = [0] + cuts.filter { $0 > 0 && $0 < stream.count }.sorted() + [stream.count]
        for k in 0..<bounds.count - 1 {
            let chunk = Array(stream[bounds[k]..<bounds[k + 1]])
            chunk.withUnsafeBytes { c in
                var i = 0
                while case .event(let e, let next) = scanner.next(c, from: i) {
                    out.append(e)
                    ids.append(scanner.responseID?.description)
                    i = next
                }
            }
        }
        return (out, ids)
    }

    static func id(_ s: String, _ r: ScannedResponse?) -> String? {
        guard let range = r?.responseID else { return nil }
        let b = Array(s.utf8)
        return String(decoding: b[range.start..<range.end], as: UTF8.self)
    }

    static func json(_ s: String, _ dialect: ResponseDialect) -> ScannedResponse? {
        Array(s.utf8).withUnsafeBytes { ResponseScanner.scan($0, dialect: dialect) }
    }

    @Test func anthropicStream() throws {
        let body = try #require(capture("generate-messages-stream.txt", "streaming"))
        let all = Self.events(body, dialect: .anthropic)
        #expect(all.count == 10)
        #expect(all.allSatisfy { $0.inspected && !$0.isMalformed && !$0.hasError })
        #expect(all.filter(\.hasToken).count == 5)
        var tally = UsageTally()
        for e in all { tally.add(e.payload) }
        #expect(tally.usage == Usage(promptTokens: 37, completionTokens: 5))
        #expect(all.compactMap(\.finishReason) == [.length])
        // message_start alone: the input, no output yet.
        #expect(all[0].usage == Usage(promptTokens: 37, completionTokens: 0))
        // Split at every offset: the same facts.
        for cut in stride(from: 1, to: body.count, by: 1) {
            let e = Self.events(body, dialect: .anthropic, cuts: [cut])
            #expect(e.map(\.payload) == all.map(\.payload), "cut \(cut)")
        }
    }

    /// Anthropic's own servers report the input only in message_start and the output only in
    /// message_delta: the tally keeps both.
    @Test func anthropicSplitUsage() {
        var tally = UsageTally()
        tally.add(Self.json(#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#, .anthropic)!)
        #expect(tally.usage == Usage(promptTokens: 15, completionTokens: 1))
        tally.add(Self.json(#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#, .anthropic)!)
        #expect(tally.usage == Usage(promptTokens: 15, completionTokens: 7))
        let r = Self.json(#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#, .anthropic)!
        #expect(r.finishReason == .toolCalls && r.usageFields == [.completion])
    }

    @Test func anthropicBodiesAndErrors() throws {
        let body = try #require(capture("generate-messages.txt", "non-streaming"))
        let r = try #require(body.withUnsafeBytes { ResponseScanner.scan($0, dialect: .anthropic) })
        #expect(r.usage == Usage(promptTokens: 24, completionTokens: 8))
        #expect(r.finishReason == .length && !r.hasError)
        let err = try #require(capture("generate-messages-errors.txt", "unknown model"))
        #expect(err.withUnsafeBytes { ResponseScanner.scan($0, dialect: .anthropic) }?.hasError == true)
        #expect(Self.json(#"{"type":"error","error":{"type":"internal_error","message":"x"}}"#, .anthropic)?.hasError == true)
        #expect(Self.json(#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#, .anthropic)?.hasToken == true)
        #expect(Self.json(#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#, .anthropic)?.hasToken == false)
        #expect(Self.json(#"{"stop_reason":"end_turn"}"#, .anthropic)?.finishReason == .stop)
        #expect(Self.json(#"{"stop_reason":"pause_turn"}"#, .anthropic)?.finishReason == .other)
        #expect(Self.json("[1]", .anthropic) == nil)
        #expect(Self.json("{", .anthropic) == nil)
    }

    @Test func responsesStream() throws {
        let body = try #require(capture("generate-responses-stream.txt", "streaming"))
        let all = Self.events(body, dialect: .responses)
        #expect(all.count == 12)
        #expect(all.filter(\.hasToken).count == 4)
        let (_, ids) = Self.eventsAndIDs(body, dialect: .responses, cuts: [700])
        #expect(ids.allSatisfy { $0 == "resp_899c36ce342a110d" })
        #expect(all.allSatisfy { $0.payload.responseID == nil })
        #expect(all.last?.usage == Usage(promptTokens: 16, completionTokens: 4, totalTokens: 20))
        #expect(all.compactMap(\.finishReason) == [.length])
        #expect(all.allSatisfy { !$0.hasError && !$0.isMalformed })
        for cut in stride(from: 1, to: body.count, by: 3) {
            #expect(Self.events(body, dialect: .responses, cuts: [cut, cut + 700]).map(\.payload) == all.map(\.payload), "cut \(cut)")
        }
    }

    @Test func responsesBodies() throws {
        let body = try #require(capture("generate-responses.txt", "non-streaming"))
        let r = try #require(body.withUnsafeBytes { ResponseScanner.scan($0, dialect: .responses) })
        #expect(r.responseID.map { String(decoding: body[$0.start..<$0.end], as: UTF8.self) } == "resp_8830393ff09ccf88")
        #expect(r.usage == Usage(promptTokens: 16, completionTokens: 8, totalTokens: 24))
        #expect(r.finishReason == .length)
        let queued = try #require(capture("generate-responses-background.txt", "background"))
        let q = try #require(queued.withUnsafeBytes { ResponseScanner.scan($0, dialect: .responses) })
        #expect(q.finishReason == nil && q.usage == nil && q.responseID != nil)
        let cancelled = try #require(capture("generate-responses-background.txt", "cancel while running"))
        #expect(cancelled.withUnsafeBytes { ResponseScanner.scan($0, dialect: .responses) }?.finishReason == .abort)
        let notFound = try #require(capture("generate-responses-errors.txt", "retrieve unknown"))
        #expect(notFound.withUnsafeBytes { ResponseScanner.scan($0, dialect: .responses) }?.hasError == true)
        #expect(Self.json(#"{"type":"error","code":"x","message":"m","sequence_number":3}"#, .responses)?.hasError == true)
        #expect(Self.json(#"{"type":"response.failed","response":{"id":"r","status":"failed"}}"#, .responses)?.hasError == true)
        #expect(Self.json(#"{"id":"r","status":"completed"}"#, .responses)?.finishReason == .stop)
        #expect(Self.json(#"{"status":"incomplete","incomplete_details":{"reason":"content_filter"}}"#, .responses)?.finishReason == .contentFilter)
        // Ids beyond the inline capacity are not kept by a stream scanner (a JSON body's range is).
        let long = String(repeating: "x", count: ResponseID.capacity + 1)
        let stream = Array("data: {\"type\":\"response.created\",\"response\":{\"id\":\"\(long)\"}}\n\n".utf8)
        #expect(Self.eventsAndIDs(stream, dialect: .responses).1 == [nil])
        let fits = String(long.dropLast())
        #expect(Self.eventsAndIDs(Array("data: {\"response\":{\"id\":\"\(fits)\"}}\n\n".utf8), dialect: .responses).1 == [fits])
        #expect(Self.id(#"{"id":"\#(long)"}"#, Self.json(#"{"id":"\#(long)"}"#, .responses)) == long)
        // An item's id is not the response's.
        #expect(Self.json(#"{"type":"response.output_item.added","item":{"id":"msg_1","status":"in_progress"}}"#, .responses)?.responseID == nil)
    }

    /// The OpenAI dialect reads the other APIs' usage names too (the JSON tail reader included).
    @Test func usageNames() {
        #expect(Self.json(#"{"usage":{"prompt_tokens":57,"total_tokens":57}}"#, .openAI)?.usage == Usage(promptTokens: 57, completionTokens: 0, totalTokens: 57))
        let tail = Array(#"..."text":"x"}],"usage":{"input_tokens":3,"output_tokens":4}}"#.utf8)
        #expect(tail.withUnsafeBytes { ResponseScanner.scanTail($0) }.usage == Usage(promptTokens: 3, completionTokens: 4))
        #expect(Self.json(#"{"usage":null}"#, .openAI)?.usage == nil)
        #expect(Self.json(#"{"usage":{"input_tokens":-1,"output_tokens":2147483648}}"#, .responses)?.usage == Usage(promptTokens: 0, completionTokens: 0))
    }

    /// Random events in both dialects never trap.
    @Test func randomPayloadsNeverTrap() {
        var rng = TestRNG(seed: 5)
        let pieces = [#"{"#, #"}"#, #"["#, #"]"#, ",", ":", #""type""#, #""error""#, #""delta""#, #""usage""#, #""message""#, #""response""#,
                      #""id""#, #""status""#, #""completed""#, #""text""#, #""stop_reason""#, #""input_tokens""#, #""output_tokens""#,
                      #""incomplete_details""#, #""reason""#, "1", "null", #""x""#]
        for _ in 0..<5000 {
            var s = ""
            for _ in 0..<Int(rng.next() % 20) { s += pieces[Int(rng.next() % UInt64(pieces.count))] }
            for d in [ResponseDialect.anthropic, .responses] {
                if let r = Self.json(s, d), let u = r.usage {
                    #expect(u.promptTokens >= 0 && u.completionTokens >= 0)
                }
            }
        }
    }
}

@Suite struct AnthropicErrorTests {
    @Test(arguments: [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
                      (408, "invalid_request_error"), (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"),
                      (502, "api_error"), (503, "overloaded_error"), (504, "timeout_error")])
    func typeByStatus(_ status: Int, _ type: String) {
        #expect(AnthropicError.type(forStatus: status) == type)
    }

    @Test func rendersValidJSON() throws {
        var e = OpenAIError.rateLimited(.tokens, limit: 10, retryAfterSeconds: 2)
        e.headers = [OpenAIError.Header("retry-after", "2")]
        let a = AnthropicError(e)
        #expect(a.status == 429 && a.headers == e.headers)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(a.render())) as? [String: Any])
        #expect(o["type"] as? String == "error")
        let inner = try #require(o["error"] as? [String: Any])
        #expect(inner["type"] as? String == "rate_limit_error")
        #expect(inner["message"] as? String == e.message)
        // Quotes and control characters stay valid JSON; render(into:) agrees and refuses a short buffer.
        let odd = AnthropicError(status: 400, type: "invalid_request_error", message: "a \"b\" \\ \n\u{1}")
        let body = odd.render()
        #expect((try? JSONSerialization.jsonObject(with: Data(body))) != nil)
        var buf = [UInt8](repeating: 0, count: 256)
        #expect(buf.withUnsafeMutableBytes { odd.render(into: $0) }.map { Array(buf[0..<$0]) } == body)
        var small = [UInt8](repeating: 0, count: 10)
        #expect(small.withUnsafeMutableBytes { odd.render(into: $0) } == nil)
        // The same wording as vLLM's own Anthropic errors (generate-messages-errors.txt).
        let vllm = #"{"type":"error","error":{"type":"NotFoundError","message":"The model `nope` does not exist. Valid aliases: tiny-llama."}}"#
        #expect(String(decoding: AnthropicError(status: 404, type: "NotFoundError", message: "The model `nope` does not exist. Valid aliases: tiny-llama.").render(), as: UTF8.self) == vllm)
    }

    @Test func shapes() throws {
        let e = OpenAIError.modelNotFound("x\"y")
        #expect(ErrorShape.openAI.render(e) == e.render())
        #expect(ErrorShape.anthropic.render(e) == AnthropicError(e).render())
        let k = try #require(try JSONSerialization.jsonObject(with: Data(ErrorShape.kserve.render(e))) as? [String: Any])
        #expect(k["error"] as? String == e.message && k.count == 1)
    }
}
