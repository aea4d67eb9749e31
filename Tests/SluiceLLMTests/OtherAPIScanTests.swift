import Foundation
import Testing

import SluiceLLM

/// The request scans of ``RequestScanner/scan(_:for:segments:)`` beyond OpenAI's three bodies.
/// Bodies marked "captured" are the ones sent to a real vLLM 0.32 in Tests/vllm-captures/.
@Suite struct AnthropicScanTests {
    // captured: generate-messages.txt, "system as blocks, metadata"
    static let captured = #"{"model": "tiny-llama", "max_tokens": 4, "temperature": 0, "system": [{"type": "text", "text": "Be brief."}], "metadata": {"user_id": "u-1"}, "messages": [{"role": "user", "content": "Hello there, how are you today?"}]}"#

    @Test func capturedBody() throws {
        let s = try scanFor(Self.captured, .messages)
        #expect(s.model == "tiny-llama" && s.result.hasModel)
        #expect(s.result.maxTokens == 4)
        #expect(s.result.temperature == 0)
        #expect(s.string(s.result.user) == "u-1")
        #expect(s.texts == ["<system>", "Be brief.", "<user>", "Hello there, how are you today?"])
        #expect(s.result.messageCount == 1)
        #expect(s.result.stream == nil)
    }

    @Test func contentBlocksToolResultsAndOrder() throws {
        let body = #"""
            {"messages":[{"content":[{"type":"text","text":"look"},{"type":"image","source":{"type":"base64","data":"xx"}}],"role":"user"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"a":[1,{"text":"not prompt"}]}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"result one"}]},
            {"type":"tool_result","tool_use_id":"t2","content":"result two"}]}],
            "system":"Sys \"quoted\"","model":"m","max_tokens":2147483647,"stream":true}
            """#
        let s = try scanFor(body, .messages)
        // `system` came last in the JSON and still leads the prompt.
        #expect(s.texts == ["<system>", "Sys \"quoted\"", "<user>", "look", "<assistant>", "<user>", "result one", "result two"])
        #expect(s.result.maxTokens == Int(Int32.max))
        #expect(s.result.stream == true)
        #expect(s.result.messageCount == 3)
    }

    /// Key order does not change the prefix hashes (system before or after messages).
    @Test func keyOrderKeepsHashes() throws {
        let text = String(repeating: "shared system prompt ", count: 20)
        let a = try scanFor(#"{"model":"m","max_tokens":5,"system":"\#(text)","messages":[{"role":"user","content":"\#(text)"}]}"#, .messages)
        let b = try scanFor(#"{"messages":[{"content":"\#(text)","role":"user"}],"max_tokens":5,"system":"\#(text)","model":"m"}"#, .messages)
        #expect(a.texts == b.texts)
        #expect(!hashes(a).isEmpty && hashes(a) == hashes(b))
        // A chat request with the same text in the same roles hashes alike except for the
        // system role's framing bytes, which come from the key "system".
        let chat = try scan(#"{"model":"m","messages":[{"role":"system","content":"\#(text)"},{"role":"user","content":"\#(text)"}]}"#)
        #expect(hashes(chat) == hashes(a))
    }

    @Test func requiredAndRangeChecked() {
        #expect(scanForError(#"{"messages":[],"max_tokens":1}"#, .messages)?.kind == .missingModel)
        #expect(scanForError(#"{"model":"m","messages":[]}"#, .messages)?.kind == .missingField(.maxTokens))
        #expect(scanForError(#"{"model":"m","messages":[]}"#, .messages)?.param == "max_tokens")
        #expect(scanForError(#"{"model":"m","messages":[],"max_tokens":null}"#, .messages)?.kind == .wrongType(.maxTokens, expected: .integer))
        #expect(scanForError(#"{"model":"m","messages":[],"max_tokens":0}"#, .messages)?.kind == .notInRange(.maxTokens, min: 1, max: Int64(Int32.max)))
        #expect(scanForError(#"{"model":"m","messages":[],"max_tokens":2147483648}"#, .messages)?.kind == .notInRange(.maxTokens, min: 1, max: Int64(Int32.max)))
        #expect(scanForError(#"{"model":"m","messages":[],"max_tokens":1.5}"#, .messages)?.kind == .wrongType(.maxTokens, expected: .integer))
        #expect(scanForError(#"{"model":null,"messages":[],"max_tokens":1}"#, .messages)?.kind == .wrongType(.model, expected: .string))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"system":5}"#, .messages)?.kind == .wrongType(.system, expected: .contentLike))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"metadata":[]}"#, .messages)?.kind == .wrongType(.metadata, expected: .object))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"metadata":{"user_id":3}}"#, .messages)?.kind == .wrongType(.userID, expected: .string))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[1]}]}"#, .messages)?.kind == .wrongType(.block, expected: .object))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":7}]}"#, .messages)?.kind == .wrongType(.content, expected: .contentLike))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"messages":{}}"#, .messages)?.kind == .wrongType(.messages, expected: .array))
        #expect(scanForError(#"{"model":"m","max_tokens":1,"messages":[],}"#, .messages)?.isSyntaxError == true)
    }

    @Test func countTokensNeedsNoMaxTokens() throws {
        // captured: generate-messages-count-tokens.txt
        let s = try scanFor(#"{"model": "tiny-llama", "system": "Be brief.", "messages": [{"role": "user", "content": "Hello there, how are you today?"}], "max_tokens": 0, "stream": true}"#, .messagesCountTokens)
        #expect(s.result.maxTokens == nil && s.result.stream == nil)
        #expect(s.texts == ["<system>", "Be brief.", "<user>", "Hello there, how are you today?"])
        #expect(scanForError(#"{"messages":[]}"#, .messagesCountTokens)?.kind == .missingModel)
    }

    /// Differential: the prompt text agrees with what JSONSerialization decodes.
    @Test func agreesWithFoundation() throws {
        let body = #"{"model":"m","max_tokens":3,"system":[{"type":"text","text":"a\u00e9"},{"type":"text","text":"b"}],"messages":[{"role":"user","content":"x\ny"},{"role":"assistant","content":[{"type":"text","text":"z"}]}]}"#
        let s = try scanFor(body, .messages)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        var expected = ["<system>"] + (o["system"] as! [[String: Any]]).map { $0["text"] as! String }
        for m in o["messages"] as! [[String: Any]] {
            expected.append("<\(m["role"] as! String)>")
            if let c = m["content"] as? String { expected.append(c) }
            if let parts = m["content"] as? [[String: Any]] { expected += parts.compactMap { $0["text"] as? String } }
        }
        #expect(s.texts == expected)
    }
}

@Suite struct ResponsesScanTests {
    // captured: generate-responses.txt, "input items, instructions, previous_response_id"
    static let captured = #"{"model": "tiny-llama", "instructions": "Be brief.", "previous_response_id": "resp_8830393ff09ccf88", "max_output_tokens": 4, "temperature": 0, "input": [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}]}"#

    @Test func capturedBody() throws {
        let s = try scanFor(Self.captured, .responses)
        #expect(s.model == "tiny-llama")
        #expect(s.string(s.result.previousResponseID) == "resp_8830393ff09ccf88")
        #expect(s.result.maxTokens == 4)
        #expect(s.texts == ["<instructions>", "Be brief.", "<user>", "And then?"])
        #expect(s.result.messageCount == 1)
    }

    @Test func inputShapesAndFlags() throws {
        let a = try scanFor(#"{"input":"Hello there","stream":true,"store":false,"background":true,"user":"u9","instructions":null,"previous_response_id":null}"#, .responses)
        #expect(!a.result.hasModel && a.result.model.isEmpty)
        #expect(a.texts == ["Hello there"])
        #expect(a.result.stream == true && a.result.store == false && a.result.background == true)
        #expect(a.string(a.result.user) == "u9")
        #expect(a.result.previousResponseID == nil)
        let b = try scanFor(#"{"input":[{"type":"message","content":"hi","role":"developer"},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"42"}],"instructions":"Lead","model":null}"#, .responses)
        #expect(b.texts == ["<instructions>", "Lead", "<developer>", "hi", "42"])
        #expect(!b.result.hasModel)
    }

    @Test func typeAndRangeErrors() {
        #expect(scanForError(#"{"input":5}"#, .responses)?.kind == .wrongType(.input, expected: .contentLike))
        #expect(scanForError(#"{"input":[5]}"#, .responses)?.kind == .wrongType(.item, expected: .object))
        #expect(scanForError(#"{"instructions":[]}"#, .responses)?.kind == .wrongType(.instructions, expected: .string))
        #expect(scanForError(#"{"previous_response_id":1}"#, .responses)?.kind == .wrongType(.previousResponseID, expected: .string))
        #expect(scanForError(#"{"max_output_tokens":0}"#, .responses)?.kind == .notInRange(.maxOutputTokens, min: 1, max: Int64(Int32.max)))
        #expect(scanForError(#"{"store":"yes"}"#, .responses)?.kind == .wrongType(.store, expected: .boolean))
        #expect(scanForError(#"{"model":7}"#, .responses)?.kind == .wrongType(.model, expected: .string))
        #expect(scanForError(#"{"max_output_tokens":0}"#, .responses)?.param == "max_output_tokens")
    }
}

@Suite struct PoolingScanTests {
    @Test func rerank() throws {
        // captured: pooling-rerank.txt, "/v1/rerank" (documents after the query)
        let s = try scanFor(#"{"model": "tiny-llama", "query": "What is a gateway?", "documents": ["A gateway routes requests.", "Bananas are yellow.", "Cats sleep."], "top_n": 2}"#, .rerank)
        #expect(s.texts == ["What is a gateway?", "A gateway routes requests.", "Bananas are yellow.", "Cats sleep."])
        // The query leads whatever the key order; multimodal objects are skipped.
        let t = try scanFor(#"{"documents":["d1",{"content":[{"type":"image_url"}]},"d2"],"query":"q"}"#, .rerank)
        #expect(t.texts == ["q", "d1", "d2"])
        #expect(!t.result.hasModel)
        #expect(scanForError(#"{"query":["q"]}"#, .rerank)?.kind == .wrongType(.query, expected: .string))
        #expect(scanForError(#"{"documents":[1]}"#, .rerank)?.kind == .wrongType(.documents, expected: .promptLike))
    }

    @Test(arguments: [
        (#"{"model": "tiny-llama", "text_1": "What is a gateway?", "text_2": ["A gateway routes.", "Bananas."]}"#, ["What is a gateway?", "A gateway routes.", "Bananas."]),
        (#"{"text_2": ["b", "c"], "text_1": "a"}"#, ["a", "b", "c"]),
        (#"{"model": "tiny-llama", "queries": "q", "documents": ["a", "b"]}"#, ["q", "a", "b"]),
        (#"{"documents": "a", "queries": ["q1", "q2"]}"#, ["q1", "q2", "a"]),
        (#"{"items": ["i"], "queries": "q"}"#, ["q", "i"]),
        (#"{"data_2": "y", "data_1": "x"}"#, ["x", "y"]),
    ])
    func score(_ body: String, _ texts: [String]) throws {
        #expect(try scanFor(body, .score).texts == texts)
    }

    @Test func poolingClassifyTokenize() throws {
        #expect(try scanFor(#"{"model":"tiny-llama","input":["Loved it","Hated it"]}"#, .classify).texts == ["Loved it", "Hated it"])
        #expect(try scanFor(#"{"model":"tiny-llama","input":"Hello world"}"#, .pooling).texts == ["Hello world"])
        let ids = try scanFor(#"{"input":[[1,2,3],[4]]}"#, .pooling)
        #expect(ids.result.promptTokenIDs == 4 && ids.texts.isEmpty)
        #expect(try scanFor(#"{"messages":[{"role":"user","content":"x"}]}"#, .classify).texts == ["<user>", "x"])
        #expect(try scanFor(#"{"model":"tiny-llama","prompt":"Hello world"}"#, .tokenize).texts == ["Hello world"])
        #expect(try scanFor(#"{"prompt":"Hello"}"#, .tokenize).result.hasModel == false)
        #expect(try scanFor(#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#, .tokenize).texts == ["<user>", "Hi"])
        // `input` is not a tokenize field, `prompt` not a pooling one.
        #expect(try scanFor(#"{"input":"x"}"#, .tokenize).texts.isEmpty)
        #expect(try scanFor(#"{"prompt":"x"}"#, .pooling).texts.isEmpty)
    }

    @Test func detokenize() throws {
        let s = try scanFor(#"{"model": "tiny-llama", "tokens": [45, 378, 183, 1080, 1223]}"#, .detokenize)
        #expect(s.result.promptTokenIDs == 5 && s.texts.isEmpty && s.model == "tiny-llama")
        #expect(scanForError(#"{"tokens":[-1]}"#, .detokenize)?.kind == .wrongType(.tokens, expected: .tokenIDs))
        #expect(scanForError(#"{"tokens":[1.5]}"#, .detokenize)?.kind == .wrongType(.tokens, expected: .tokenIDs))
        #expect(scanForError(#"{"tokens":"1"}"#, .detokenize)?.kind == .wrongType(.tokens, expected: .tokenIDs))
    }

    @Test func v2InferIsValidatedOnly() throws {
        let s = try scanFor(#"{"id":"1","inputs":[{"name":"text_input","shape":[1],"datatype":"BYTES","data":["Hi"]}],"model":"ignored?"}"#, .v2Infer)
        #expect(s.texts.isEmpty)
        #expect(scanForError(#"{"inputs":[}"#, .v2Infer)?.isSyntaxError == true)
        #expect(try scanFor("{}", .v2Infer).result.hasModel == false)
    }

    @Test func chatWithoutModelWhereVLLMAllowsIt() throws {
        // captured: generate-chat-without-model.txt (vLLM answers 200 with its served model)
        let s = try scanFor(#"{"messages": [{"role": "user", "content": "Hello there, how are you today?"}], "max_tokens": 2}"#, .chatCompletions)
        #expect(!s.result.hasModel && s.result.maxTokens == 2)
        #expect(try scanFor(#"{"model":null,"prompt":"x"}"#, .completions).result.hasModel == false)
        // The legacy entry point keeps requiring it.
        #expect(scanError(Array(#"{"messages":[]}"#.utf8))?.kind == .missingModel)
        #expect(try scan(#"{"model":"m","messages":[]}"#).result.hasModel)
    }

    /// Every endpoint's scan on random JSON-ish bytes: never traps; accepts only valid JSON;
    /// ranges stay inside the body; counts in range.
    @Test func randomBodiesNeverTrap() {
        var rng = TestRNG(seed: 2727)
        let pieces = [#"{"#, #"}"#, #"["#, #"]"#, ",", ":", #""model""#, #""system""#, #""messages""#, #""input""#, #""role""#,
                      #""content""#, #""text""#, #""query""#, #""documents""#, #""text_1""#, #""tokens""#, #""max_tokens""#,
                      #""metadata""#, #""user_id""#, #""instructions""#, #""previous_response_id""#, #""max_output_tokens""#,
                      #""x""#, "1", "0", "-3", "2147483648", "null", "true", "1.5", #""\u00e9""#, " "]
        var segs = [PromptSegment](repeating: PromptSegment(range: .empty, kind: .text), count: 8)
        for _ in 0..<6000 {
            var s = ""
            for _ in 0..<Int(rng.next() % 24) { s += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let b = Array(s.utf8)
            let valid = validate(b) == nil
            for e in LLMEndpoint.allCases where e.traits.body == .json {
                let r = b.withUnsafeBytes { bb in segs.withUnsafeMutableBufferPointer { sp in try? RequestScanner().scan(bb, for: e, segments: sp) } }
                guard let r else { continue }
                #expect(valid, "\(e) accepted \(s)")
                #expect(r.model.end <= b.count)
                for i in 0..<min(r.segmentCount, segs.count) { #expect(segs[i].range.end <= b.count && segs[i].range.start >= 0) }
                if let m = r.maxTokens { #expect(m >= 1 && m <= ScannedRequest.maxCount) }
                if let p = r.previousResponseID { #expect(p.end <= b.count) }
            }
        }
    }
}
