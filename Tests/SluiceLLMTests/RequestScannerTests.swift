import Foundation
import Testing

import SluiceLLM

@Suite struct RequestScannerTests {
    static let chat = """
        {"model":"tiny-llama","messages":[{"role":"system","content":"Be brief."},{"content":"Hi \\"there\\"","role":"user"},\
        {"role":"assistant","content":null,"tool_calls":[{"id":"x","function":{"name":"f","arguments":"{}"}}]},\
        {"role":"user","content":[{"type":"text","text":"part one"},{"type":"image_url","image_url":{"url":"data:x"}},{"type":"text","text":"part two"}]}],\
        "stream":true,"stream_options":{"include_usage":false,"other":[1]},"temperature":0.7,"seed":-42,"n":2,"max_tokens":100,\
        "user":"u-1","unknown":{"deep":[{"x":null}]}}
        """

    @Test func chatFields() throws {
        let s = try scan(Self.chat)
        let r = s.result
        #expect(s.model == "tiny-llama")
        #expect(!r.modelEscaped)
        #expect(r.stream == true)
        #expect(r.includeUsage == false)
        #expect(r.temperature == 0.7)
        #expect(r.seed == -42)
        #expect(r.n == 2)
        #expect(r.maxTokens == 100)
        #expect(s.string(r.user) == "u-1")
        #expect(r.messageCount == 4)
        #expect(s.texts == ["<system>", "Be brief.", "<user>", "Hi \"there\"", "<assistant>", "<user>", "part one", "part two"])
        #expect(r.promptBytes == s.segments.reduce(0) { $0 + $1.range.count })
        #expect(s.segments[3].escaped && !s.segments[2].escaped)
        #expect(r.closingBrace == s.body.count - 1)
        #expect(r.memberCount == 10)
        let so = try #require(r.streamOptionsValue)
        #expect(String(decoding: s.body[so.start..<so.end], as: UTF8.self) == "{\"include_usage\":false,\"other\":[1]}")
        let member = try #require(r.streamOptionsMember)
        #expect(String(decoding: s.body[member.start..<member.end], as: UTF8.self).hasPrefix("\"stream_options\":{"))
        #expect(member.end == so.end)
    }

    /// Differential: the fields agree with what JSONSerialization decodes from the same body.
    @Test func agreesWithFoundation() throws {
        let s = try scan(Self.chat)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(Self.chat.utf8)) as? [String: Any])
        #expect(s.model == obj["model"] as? String)
        #expect(s.result.temperature == (obj["temperature"] as? NSNumber)?.doubleValue)
        let messages = try #require(obj["messages"] as? [[String: Any]])
        #expect(s.result.messageCount == messages.count)
        var expected: [String] = []
        for m in messages {
            expected.append("<\(m["role"] as! String)>")
            if let c = m["content"] as? String { expected.append(c) }
            if let parts = m["content"] as? [[String: Any]] { expected += parts.compactMap { $0["text"] as? String } }
        }
        #expect(s.texts == expected)
    }

    /// Rewriting: insert `stream_options` when absent, replace it when present; the result scans
    /// with include_usage true.
    @Test(arguments: [
        "{\"model\":\"m\",\"stream\":true}",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
        "{\"stream_options\":null,\"model\":\"m\",\"stream\":true}",
        "{\"model\":\"m\",\"stream_options\":{},\"stream\":true}",
    ])
    func rewriteIncludeUsage(_ body: String) throws {
        let s = try scan(body)
        var b = s.body
        let member = Array("\"stream_options\":{\"include_usage\":true}".utf8)
        if let m = s.result.streamOptionsMember {
            b.replaceSubrange(m.start..<m.end, with: member)
        } else {
            let at = s.result.closingBrace
            b.replaceSubrange(at..<at, with: (s.result.memberCount > 0 ? [UInt8(ascii: ",")] : []) + member)
        }
        let again = try scan(b)
        #expect(again.result.includeUsage == true)
        #expect(again.result.stream == true)
        #expect(again.model == "m")
    }

    @Test func escapedModelAndKeys() throws {
        let s = try scan("{\"m\\u006fdel\":\"t\\u0069ny\\/x\",\"messages\":[]}")
        #expect(s.result.modelEscaped)
        #expect(s.model == "tiny/x")
    }

    @Test func duplicateKeysLastWins() throws {
        let s = try scan("{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}],\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"two\"}],\"stream\":true,\"stream\":null}")
        #expect(s.model == "b")
        #expect(s.texts == ["<user>", "two"])
        #expect(s.result.messageCount == 1)
        #expect(s.result.stream == nil)
    }

    @Test func maxCompletionTokensWins() throws {
        #expect(try scan("{\"model\":\"m\",\"max_completion_tokens\":5,\"max_tokens\":9}").result.maxTokens == 5)
        #expect(try scan("{\"model\":\"m\",\"max_tokens\":9}").result.maxTokens == 9)
        #expect(try scan("{\"model\":\"m\",\"max_tokens\":null}").result.maxTokens == nil)
    }

    @Test(arguments: [
        ("{\"model\":\"m\",\"prompt\":\"hello\"}", ["hello"], 0),
        ("{\"model\":\"m\",\"prompt\":[\"a\",\"b\\n\"]}", ["a", "b\n"], 0),
        ("{\"model\":\"m\",\"prompt\":[1,2,3]}", [], 3),
        ("{\"model\":\"m\",\"prompt\":[[1,2],[3]]}", [], 3),
        ("{\"model\":\"m\",\"prompt\":[]}", [], 0),
        ("{\"model\":\"m\",\"messages\":\"ignored for completions\",\"prompt\":\"p\"}", ["p"], 0),
    ] as [(String, [String], Int)])
    func completionsPrompt(_ body: String, _ texts: [String], _ tokens: Int) throws {
        let s = try scan(body, .completions)
        #expect(s.texts == texts)
        #expect(s.result.promptTokenIDs == tokens)
    }

    @Test(arguments: [
        ("{\"model\":\"e\",\"input\":\"embed me\"}", ["embed me"], 0),
        ("{\"model\":\"e\",\"input\":[\"x\",\"y\"],\"encoding_format\":\"float\"}", ["x", "y"], 0),
        ("{\"model\":\"e\",\"input\":[[5,6,7]]}", [], 3),
    ] as [(String, [String], Int)])
    func embeddingsInput(_ body: String, _ texts: [String], _ tokens: Int) throws {
        let s = try scan(body, .embeddings)
        #expect(s.texts == texts)
        #expect(s.result.promptTokenIDs == tokens)
    }

    static let typeErrors: [(String, OpenAIEndpoint, RequestScanError.Kind, String, String?)] = [
        ("{\"model\":1}", .chatCompletions, .wrongType(.model, expected: .string), "\"model\" must be a string", "model"),
        ("{\"model\":null}", .chatCompletions, .wrongType(.model, expected: .string), "\"model\" must be a string", "model"),
        ("{\"messages\":[]}", .chatCompletions, .missingModel, "You must provide a model parameter.", "model"),
        ("{}", .chatCompletions, .missingModel, "You must provide a model parameter.", "model"),
        ("{\"model\":\"m\",\"messages\":{}}", .chatCompletions, .wrongType(.messages, expected: .array), "\"messages\" must be an array", "messages"),
        ("{\"model\":\"m\",\"messages\":[1]}", .chatCompletions, .wrongType(.message, expected: .object), "\"messages[]\" must be an object", "messages"),
        ("{\"model\":\"m\",\"messages\":[{\"role\":7}]}", .chatCompletions, .wrongType(.role, expected: .string), "\"role\" must be a string", "messages.role"),
        ("{\"model\":\"m\",\"messages\":[{\"content\":7}]}", .chatCompletions, .wrongType(.content, expected: .contentLike), "\"content\" must be a string, an array of content parts, or null", "messages.content"),
        ("{\"model\":\"m\",\"messages\":[{\"content\":[\"x\"]}]}", .chatCompletions, .wrongType(.contentPart, expected: .object), "\"content[]\" must be an object", "messages.content"),
        ("{\"model\":\"m\",\"messages\":[{\"content\":[{\"text\":1}]}]}", .chatCompletions, .wrongType(.text, expected: .string), "\"text\" must be a string", "messages.content"),
        ("{\"model\":\"m\",\"stream\":\"yes\"}", .chatCompletions, .wrongType(.stream, expected: .boolean), "\"stream\" must be a boolean", "stream"),
        ("{\"model\":\"m\",\"stream_options\":[]}", .chatCompletions, .wrongType(.streamOptions, expected: .object), "\"stream_options\" must be an object", "stream_options"),
        ("{\"model\":\"m\",\"stream_options\":{\"include_usage\":1}}", .chatCompletions, .wrongType(.includeUsage, expected: .boolean), "\"stream_options.include_usage\" must be a boolean", "stream_options.include_usage"),
        ("{\"model\":\"m\",\"temperature\":\"hot\"}", .chatCompletions, .wrongType(.temperature, expected: .number), "\"temperature\" must be a number", "temperature"),
        ("{\"model\":\"m\",\"n\":1.5}", .chatCompletions, .wrongType(.n, expected: .integer), "\"n\" must be an integer", "n"),
        ("{\"model\":\"m\",\"seed\":99999999999999999999}", .chatCompletions, .outOfRange(.seed), "\"seed\" is out of range", "seed"),
        ("{\"model\":\"m\",\"max_tokens\":true}", .chatCompletions, .wrongType(.maxTokens, expected: .integer), "\"max_tokens\" must be an integer", "max_tokens"),
        ("{\"model\":\"m\",\"user\":5}", .chatCompletions, .wrongType(.user, expected: .string), "\"user\" must be a string", "user"),
        ("{\"model\":\"m\",\"prompt\":5}", .completions, .wrongType(.prompt, expected: .promptLike), "\"prompt\" must be a string, an array of strings, or an array of token IDs", "prompt"),
        ("{\"model\":\"m\",\"prompt\":[1.5]}", .completions, .wrongType(.prompt, expected: .promptLike), "\"prompt\" must be a string, an array of strings, or an array of token IDs", "prompt"),
        ("{\"model\":\"m\",\"input\":{}}", .embeddings, .wrongType(.input, expected: .promptLike), "\"input\" must be a string, an array of strings, or an array of token IDs", "input"),
        ("[1]", .chatCompletions, .notAnObject, "Invalid request at byte 0: the body must be a JSON object", nil),
        // Counts a client sets are range-checked where they enter (vLLM and OpenAI reject
        // non-positive ones; the cap keeps reservations far from overflow).
        ("{\"model\":\"m\",\"max_tokens\":0}", .chatCompletions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
        ("{\"model\":\"m\",\"max_tokens\":-1}", .chatCompletions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
        ("{\"model\":\"m\",\"max_tokens\":-1000000000000000}", .completions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
        ("{\"model\":\"m\",\"max_tokens\":2147483648}", .chatCompletions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
        ("{\"model\":\"m\",\"max_tokens\":9223372036854775807}", .chatCompletions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
        ("{\"model\":\"m\",\"max_tokens\":9223372036854775808}", .chatCompletions, .outOfRange(.maxTokens), "\"max_tokens\" is out of range", "max_tokens"),
        ("{\"model\":\"m\",\"max_completion_tokens\":-1}", .chatCompletions, .notInRange(.maxCompletionTokens, min: 1, max: 2147483647), "\"max_completion_tokens\" must be an integer from 1 to 2147483647", "max_completion_tokens"),
        ("{\"model\":\"m\",\"n\":0}", .chatCompletions, .notInRange(.n, min: 1, max: 2147483647), "\"n\" must be an integer from 1 to 2147483647", "n"),
        ("{\"model\":\"m\",\"n\":-5}", .completions, .notInRange(.n, min: 1, max: 2147483647), "\"n\" must be an integer from 1 to 2147483647", "n"),
        ("{\"model\":\"m\",\"max_tokens\":4611686018427387904,\"n\":2}", .chatCompletions, .notInRange(.maxTokens, min: 1, max: 2147483647), "\"max_tokens\" must be an integer from 1 to 2147483647", "max_tokens"),
    ]

    /// The largest accepted counts are accepted, and their product cannot overflow an Int.
    @Test func boundaryCountsAreAccepted() throws {
        let r = try scan("{\"model\":\"m\",\"max_tokens\":2147483647,\"n\":2147483647}").result
        #expect(r.maxTokens == ScannedRequest.maxCount && r.n == ScannedRequest.maxCount)
        #expect(try scan("{\"model\":\"m\",\"max_tokens\":1,\"n\":1}").result.maxTokens == 1)
        #expect(try scan("{\"model\":\"m\",\"n\":null}").result.n == nil)
    }

    /// `include_usage`'s literal is located (so the gateway can turn a client's false to true).
    @Test func includeUsageLiteralIsLocated() throws {
        for literal in ["false", "true", "null"] {
            let body = "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\": \(literal)}}"
            let r = try scan(body).result
            let range = try #require(r.includeUsageValue)
            #expect(String(decoding: Array(body.utf8)[range.start..<range.end], as: UTF8.self) == literal)
        }
        #expect(try scan("{\"model\":\"m\",\"stream_options\":{}}").result.includeUsageValue == nil)
    }

    @Test(arguments: typeErrors)
    func rejectsWrongTypes(_ body: String, _ endpoint: OpenAIEndpoint, _ kind: RequestScanError.Kind, _ message: String, _ param: String?) {
        let e = scanError(Array(body.utf8), endpoint)
        #expect(e?.kind == kind)
        #expect(e?.message == message)
        #expect(e?.param == param)
        #expect(e?.isSyntaxError == false)
        #expect(e?.openAIError.status == 400)
    }

    @Test(arguments: [
        ("{\"model\":\"m\" \"x\":1}", "Invalid JSON at byte 13: expected ',' or '}'"),
        ("{\"model\":\"m\",}", "Invalid JSON at byte 13: expected a string key"),
        ("{\"model\":\"m\",\"n\":01}", "Invalid JSON at byte 17: leading zeros are not allowed"),
        ("{\"model\":\"m\"", "Invalid JSON at byte 12: unexpected end of input"),
        ("{\"model\":\"m\"} x", "Invalid JSON at byte 14: unexpected data after the JSON value"),
        ("{\"model\":\"a\tb\"}", "Invalid JSON at byte 11: unescaped control character in string"),
        // A syntax error inside a value of the wrong type is reported as the syntax error.
        ("{\"model\":[1,]}", "Invalid JSON at byte 12: expected a value"),
    ])
    func syntaxMessages(_ body: String, _ message: String) {
        let e = scanError(Array(body.utf8))
        #expect(e?.message == message)
        #expect(e?.isSyntaxError == true)
        #expect(e?.param == nil)
    }

    /// Every proper prefix of a valid body is rejected (never crashes, never accepted).
    @Test func truncatedAtEveryOffset() {
        let body = Array(Self.chat.utf8) + Array("".utf8)
        for n in 0..<body.count {
            let e = scanError(Array(body[0..<n]))
            #expect(e != nil, "prefix of \(n) bytes accepted")
            if let e { #expect(e.offset <= n) }
        }
        #expect(scanError(body) == nil)
    }

    /// Single-byte corruption at every offset: never crashes; whatever is accepted is valid JSON.
    @Test func corruptedAtEveryOffset() {
        let body = Array(Self.chat.utf8)
        for i in 0..<body.count {
            for replacement: UInt8 in [0x00, UInt8(ascii: "\""), UInt8(ascii: "}"), 0xFF] {
                var b = body
                b[i] = replacement
                if scanError(b) == nil { #expect(validate(b) == nil) }
            }
        }
    }

    @Test func unicodeInPrompt() throws {
        let s = try scan("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"é😀\\ud83d\\ude00\\u00e9\"}]}")
        #expect(s.texts == ["<user>", "é😀😀é"])
        #expect(scanError(Array("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud83d\"}]}".utf8))?.kind == .syntax(.invalidUnicodeEscape))
        var bad = Array("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"xx\"}]}".utf8)
        bad[bad.count - 5] = 0xC0
        #expect(scanError(bad)?.kind == .syntax(.invalidUTF8))
    }

    @Test func largePrompt() throws {
        let unit = "The quick brown fox — jumps over the lazy dog. \\\"quoted\\\" \\n "
        let text = String(repeating: unit, count: 200_000 / unit.utf8.count + 1)
        let body = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":\"\(text)\"}]}"
        #expect(body.utf8.count > 200_000)
        let s = try scan(body)
        #expect(s.result.promptBytes == 6 + 3 + 4 + text.utf8.count)
        #expect(s.segments.count == 4)
        #expect(s.segments[3].range.count == text.utf8.count)
        #expect(s.segments[3].escaped)
    }

    @Test func segmentOverflow() throws {
        let msgs = (0..<10).map { "{\"role\":\"user\",\"content\":\"m\($0)\"}" }.joined(separator: ",")
        let body = "{\"model\":\"m\",\"messages\":[\(msgs)]}"
        let s = try scan(body, capacity: 5)
        #expect(s.result.segmentsOverflowed)
        #expect(s.result.segmentCount == 5)
        #expect(s.texts == ["<user>", "m0", "<user>", "m1", "<user>"])
        #expect(s.result.promptBytes == 10 * 4 + 10 * 2)
        #expect(s.result.messageCount == 10)
        let full = try scan(body, capacity: 20)
        #expect(!full.result.segmentsOverflowed)
        #expect(full.segments.count == 20)
    }

    @Test func depthLimitInsideRequest() {
        let deep = "{\"model\":\"m\",\"x\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        #expect(scanError(Array(deep.utf8)) == nil)
        let tooDeep = "{\"model\":\"m\",\"x\":" + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "}"
        #expect(scanError(Array(tooDeep.utf8))?.kind == .syntax(.tooDeep))
    }

    @Test(arguments: [("0.7", 0.7), ("1", 1.0), ("-0", -0.0), ("1e-3", 0.001), ("2.5E2", 250.0), ("0.1234567890123456789", 0.1234567890123456789),
                      ("123456789012345678901234", 123456789012345678901234.0), ("1e-30", 1e-30), ("7e22", 7e22)])
    func temperatureValues(_ text: String, _ value: Double) throws {
        let s = try scan("{\"model\":\"m\",\"temperature\":\(text)}")
        #expect(s.result.temperature == value)
        #expect(s.result.temperature == Double(text))
    }

    @Test(arguments: ["9223372036854775807", "-9223372036854775808", "0", "-1"])
    func seedBounds(_ text: String) throws {
        #expect(try scan("{\"model\":\"m\",\"seed\":\(text)}").result.seed == Int64(text))
    }

    @Test func endpointFromPath() {
        func ep(_ s: String) -> OpenAIEndpoint? { Array(s.utf8).withUnsafeBytes { OpenAIEndpoint(path: $0) } }
        #expect(ep("/v1/chat/completions") == .chatCompletions)
        #expect(ep("/v1/completions?x=1") == .completions)
        #expect(ep("/v1/embeddings") == .embeddings)
        #expect(ep("/v1/models") == nil)
        #expect(ep("/v1/chat/completions/") == nil)
        #expect(ep("/v1/chat/completionz") == nil)
        #expect(ep("/V1/chat/completions") == nil)
        #expect(ep("?/v1/embeddings") == nil)
        #expect(ep("") == nil)
        #expect(ep("/v1/embeddings?") == .embeddings)
    }

    @Test func finishReasonsByName() {
        func reason(_ s: String) -> FinishReason { Array(s.utf8).withUnsafeBytes { FinishReason($0) } }
        let known: [(String, FinishReason)] = [("stop", .stop), ("abort", .abort), ("length", .length), ("tool_calls", .toolCalls),
                                               ("function_call", .functionCall), ("content_filter", .contentFilter)]
        for (name, r) in known {
            #expect(reason(name) == r)
            // Any one byte changed, or one missing or added, is another reason.
            for k in 0..<name.utf8.count {
                var b = Array(name.utf8)
                b[k] ^= 0x20
                #expect(b.withUnsafeBytes { FinishReason($0) } == .other, "\(name) changed at \(k)")
            }
            #expect(reason(String(name.dropLast())) == .other)
            #expect(reason(name + "s") == .other)
        }
        #expect(reason("") == .other)
    }

    /// Property: random valid chat bodies (random whitespace, escapes, key order, extra fields)
    /// give the same model, messages and values as JSONSerialization.
    @Test func randomBodiesAgreeWithFoundation() throws {
        var rng = TestRNG(seed: 7)
        let pieces = ["a", "é", "😀", "\\n", "\\\"", "\\u00e9", "\\ud83d\\ude00", " ", "\\\\", "x y z", "\\/"]
        func text() -> String { (0..<Int.random(in: 0...6, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined() }
        func ws() -> String { ["", " ", "\n", "\t", "\r\n  "].randomElement(using: &rng)! }
        for _ in 0..<300 {
            var members: [String] = ["\"model\":\(ws())\"\(text())m\""]
            var msgs: [String] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                var fields = ["\"role\":\"\(["user", "system", "assistant"].randomElement(using: &rng)!)\""]
                if Bool.random(using: &rng) {
                    fields.append("\"content\":\(ws())\"\(text())\"")
                } else {
                    let parts = (0..<Int.random(in: 0...3, using: &rng)).map { _ in "{\"type\":\"text\",\(ws())\"text\":\"\(text())\"}" }
                    fields.append("\"content\":[\(parts.joined(separator: ",\(ws())"))]")
                }
                if Bool.random(using: &rng) { fields.append("\"name\":\"\(text())\"") }
                fields.shuffle(using: &rng)
                msgs.append("{\(fields.joined(separator: ",\(ws())"))}")
            }
            members.append("\"messages\":[\(msgs.joined(separator: ","))]")
            if Bool.random(using: &rng) { members.append("\"temperature\":\(Double(Int.random(in: 0...200, using: &rng)) / 100)") }
            if Bool.random(using: &rng) { members.append("\"extra\":{\"k\":[\"\(text())\",1.5e3,null,true]}") }
            members.shuffle(using: &rng)
            let body = "\(ws()){\(ws())\(members.joined(separator: "\(ws()),\(ws())"))\(ws())}\(ws())"

            let s = try scan(body)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            #expect(s.model == obj["model"] as? String)
            #expect(s.result.temperature == (obj["temperature"] as? NSNumber)?.doubleValue)
            var expected: [String] = []
            for m in obj["messages"] as! [[String: Any]] {
                expected.append("<\(m["role"] as! String)>")
                if let c = m["content"] as? String { expected.append(c) }
                if let parts = m["content"] as? [[String: Any]] { expected += parts.compactMap { $0["text"] as? String } }
            }
            #expect(s.texts == expected, "\(body)")
        }
    }
}
