import Foundation
import Glibc
import SluiceIO
@testable import SluiceSim
import Testing

/// The HTTP front end against a started SimServer on loopback, compared with the verbatim
/// vLLM 0.32 captures in ../shared/vllm-reference/.
@Suite struct ServerTests {
    static let hello = #"{"model":"tiny-llama","messages":[{"role":"user","content":"Hello there, how are you today?"}]"#

    func json(_ s: String) -> [String: Any] {
        try! JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any]
    }

    @Test func healthIsEmpty200() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("GET", "/health")
        #expect(r.status == 200)
        #expect(r.body.isEmpty)
        #expect(r.headers["content-type"] == nil)
        let c = try RawClient(port: sim.port)
        #expect(c.request("GET", "/nope").status == 404)
        #expect(c.request("GET", "/v1/chat/completions").status == 405)
    }

    @Test func chatCompletionMatchesReferenceShape() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let r = c.request("POST", "/v1/chat/completions", body: Self.hello + #","max_tokens":16}"#)
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "application/json")
        let reference = Reference.body("chat-nonstream.txt")
        #expect(Shape(json: r.text) == Shape(json: reference))
        #expect(topLevelKeyOrder(r.text) == topLevelKeyOrder(reference))
        let o = json(r.text)
        #expect((o["id"] as! String).hasPrefix("chatcmpl-"))
        #expect((o["id"] as! String).count == 9 + 16)
        #expect(o["model"] as? String == "tiny-llama")
        let usage = o["usage"] as! [String: Any]
        #expect(usage["completion_tokens"] as? Int == 16)
        #expect(usage["total_tokens"] as? Int == 16 + (usage["prompt_tokens"] as! Int))
        let choice = (o["choices"] as! [[String: Any]])[0]
        #expect(choice["finish_reason"] as? String == "length")
        let content = (choice["message"] as! [String: Any])["content"] as! String
        #expect(!content.isEmpty)
        // Same prompt, same answer (temperature-0 behaviour); another prompt, another one.
        let again = json(c.request("POST", "/v1/chat/completions", body: Self.hello + #","max_tokens":16}"#).text)
        #expect(((again["choices"] as! [[String: Any]])[0]["message"] as! [String: Any])["content"] as? String == content)
        let other = json(c.request("POST", "/v1/chat/completions",
                                   body: #"{"messages":[{"role":"user","content":"Something else"}],"max_tokens":16}"#).text)
        #expect(((other["choices"] as! [[String: Any]])[0]["message"] as! [String: Any])["content"] as? String != content)
        #expect(other["model"] as? String == "tiny-llama")  // model is optional, as in vLLM
    }

    /// Compares our SSE events one by one with a reference capture: shapes and key order.
    func compareStream(_ ours: RawClient.Response, _ referenceFile: String) {
        #expect(ours.status == 200)
        #expect(ours.headers["content-type"] == "text/event-stream; charset=utf-8")
        #expect(ours.text.hasSuffix("data: [DONE]\n\n"))
        let mine = sseEvents(ours.text)
        let theirs = sseEvents(Reference.body(referenceFile).trimmingCharacters(in: .newlines) + "\n\n")
        #expect(mine.count == theirs.count)
        #expect(mine.last == "[DONE]")
        for (a, b) in zip(mine, theirs) where b != "[DONE]" {
            #expect(Shape(json: a) == Shape(json: b), "\(a)\nvs reference\n\(b)")
            #expect(topLevelKeyOrder(a) == topLevelKeyOrder(b))
        }
        let ids = Set(mine.dropLast().map { json($0)["id"] as! String })
        #expect(ids.count == 1)
    }

    @Test func chatStreamWithUsageMatchesReference() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/chat/completions",
            body: Self.hello + #","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#)
        compareStream(r, "chat-stream-usage.txt")
        let events = sseEvents(r.text)
        let usage = json(events[events.count - 2])["usage"] as! [String: Any]
        #expect(usage["completion_tokens"] as? Int == 5)
        // Tokens streamed equal the non-streamed completion of the same request.
        let text = events.dropFirst().prefix(5).map { e -> String in
            let delta = (json(e)["choices"] as! [[String: Any]])[0]["delta"] as! [String: Any]
            return delta["content"] as! String
        }.joined()
        let whole = json(try RawClient(port: sim.port).request("POST", "/v1/chat/completions", body: Self.hello + #","max_tokens":5}"#).text)
        #expect(((whole["choices"] as! [[String: Any]])[0]["message"] as! [String: Any])["content"] as? String == text)
    }

    @Test func chatStreamWithoutUsageMatchesReference() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/chat/completions", body: Self.hello + #","max_tokens":3,"stream":true}"#)
        compareStream(r, "chat-stream-nousage.txt")
    }

    @Test func completionsStreamMatchesReference() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/completions",
            body: #"{"model":"tiny-llama","prompt":"The gateway","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}"#)
        compareStream(r, "completions-stream.txt")
    }

    @Test func completionsNonStreaming() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/completions", body: #"{"prompt":"0123456789abcdef","max_tokens":7}"#)
        #expect(r.status == 200)
        let o = json(r.text)
        #expect(o["object"] as? String == "text_completion")
        let usage = o["usage"] as! [String: Any]
        #expect(usage["prompt_tokens"] as? Int == 4)
        #expect(usage["completion_tokens"] as? Int == 7)
        #expect(((o["choices"] as! [[String: Any]])[0]["text"] as? String)?.isEmpty == false)
    }

    @Test func embeddings() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let r = c.request("POST", "/v1/embeddings", body: #"{"model":"tiny-llama","input":["first text","second"]}"#)
        #expect(r.status == 200)
        let o = json(r.text)
        #expect(o["object"] as? String == "list")
        let data = o["data"] as! [[String: Any]]
        #expect(data.count == 2)
        let v = data[0]["embedding"] as! [Double]
        #expect(v.count == 64)
        #expect(abs(v.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4)
        #expect((o["usage"] as! [String: Any])["prompt_tokens"] as? Int == 3 + 2)
        let b = json(c.request("POST", "/v1/embeddings", body: #"{"input":"first text","encoding_format":"base64"}"#).text)
        let bytes = Data(base64Encoded: (b["data"] as! [[String: Any]])[0]["embedding"] as! String)!
        let floats = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(floats.map(Double.init) == v.map { Double(Float($0)) })
    }

    @Test func modelsMatchReference() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("GET", "/v1/models")
        #expect(r.status == 200)
        let reference = try JSONSerialization.jsonObject(with: Data(Reference.text("models.json").utf8)) as! [String: Any]
        let ours = json(r.text)
        #expect(Shape(ours) == Shape(reference))
        let (d1, d2) = (ours["data"] as! [[String: Any]], reference["data"] as! [[String: Any]])
        #expect(d1.count == d2.count)
        for (a, b) in zip(d1, d2) {
            #expect(Shape(a) == Shape(b))
            #expect(a["id"] as? String == b["id"] as? String)
            #expect(a["parent"] as? String == b["parent"] as? String)
            #expect(a["max_model_len"] as? Int == b["max_model_len"] as? Int)
        }
        #expect(d1[1]["root"] as? String == "/opt/vllm-cpu/models/lora-a1")
    }

    @Test func loraLifecycleAndErrorsMatchReference() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        func check(_ r: RawClient.Response, _ section: String, replacing: (String, String)? = nil) {
            let ref = Reference.section(section)
            #expect(r.status == ref.status, "\(section)")
            var expected = ref.body
            if let (a, b) = replacing { expected = expected.replacingOccurrences(of: a, with: b) }
            #expect(r.text == expected, "\(section)")
        }
        let load = c.request("POST", "/v1/load_lora_adapter", body: #"{"lora_name":"a3","lora_path":"/opt/vllm-cpu/models/lora-a3"}"#)
        check(load, "POST /v1/load_lora_adapter")
        #expect(load.headers["content-type"] == nil)
        check(c.request("POST", "/v1/load_lora_adapter", body: #"{"lora_name":"a3","lora_path":"/opt/vllm-cpu/models/lora-a3"}"#), "same again")
        check(c.request("POST", "/v1/load_lora_adapter", body: #"{"lora_name":"bad","lora_path":"/nonexistent/bad"}"#), "bad path",
              replacing: ("<path>", "/nonexistent/bad"))

        let models = c.request("GET", "/v1/models").text
        let refModels = Reference.section("GET /v1/models after load").body
        #expect(Shape(json: models) == Shape(json: refModels))
        let ids = (json(models)["data"] as! [[String: Any]]).map { "\($0["id"]!)/\($0["parent"]!)" }
        let refIDs = (json(refModels)["data"] as! [[String: Any]]).map { "\($0["id"]!)/\($0["parent"]!)" }
        #expect(ids == refIDs)

        let chat = c.request("POST", "/v1/chat/completions",
                             body: #"{"model":"a3","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#)
        #expect(chat.status == 200)
        #expect(Shape(json: chat.text) == Shape(json: Reference.section("chat with a3").body))
        #expect(json(chat.text)["model"] as? String == "a3")

        check(c.request("POST", "/v1/unload_lora_adapter", body: #"{"lora_name":"a3"}"#), "POST /v1/unload_lora_adapter")
        check(c.request("POST", "/v1/unload_lora_adapter", body: #"{"lora_name":"a3"}"#), "unload again")
        check(c.request("POST", "/v1/chat/completions", body: #"{"model":"a3","messages":[{"role":"user","content":"hi"}]}"#),
              "chat with unloaded a3")
        check(c.request("POST", "/v1/chat/completions", body: #"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#),
              "chat with unknown model")
        check(c.request("POST", "/v1/chat/completions",
                        body: #"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}"#),
              "max_tokens > max_model_len")
        check(c.request("POST", "/v1/chat/completions", body: #"{"model":"#), "malformed JSON")

        let after = c.request("GET", "/v1/models").text
        let refAfter = Reference.section("GET /v1/models after unload").body
        #expect(Shape(json: after) == Shape(json: refAfter))
        #expect((json(after)["data"] as! [[String: Any]]).map { $0["id"] as! String } == ["tiny-llama", "a1"])
    }

    @Test func metricsMatchReferenceNamesAndLabels() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        for model in ["tiny-llama", "a1", "tiny-llama"] {
            #expect(c.request("POST", "/v1/chat/completions",
                              body: #"{"model":"\#(model)","messages":[{"role":"system","content":"\#(String(repeating: "You are helpful. ", count: 20))"},{"role":"user","content":"hi"}],"max_tokens":4}"#).status == 200)
        }
        let r = c.request("GET", "/metrics")
        #expect(r.status == 200)
        #expect(r.headers["content-type"]?.hasPrefix("text/plain") == true)
        let ours = metricFamilies(r.text).filter { $0.key.hasPrefix("vllm:") }
        let theirs = metricFamilies(Reference.text("metrics-after-load.txt")).filter { $0.key.hasPrefix("vllm:") }
        #expect(Set(ours.keys) == Set(theirs.keys), "missing: \(Set(theirs.keys).subtracting(ours.keys)) extra: \(Set(ours.keys).subtracting(theirs.keys))")
        for (name, t) in theirs {
            guard let o = ours[name] else { continue }
            #expect(o.type == t.type, "\(name)")
            #expect(o.labels == t.labels, "\(name)")
        }
        // Every family named in metric-names.txt is there.
        for line in Reference.text("metric-names.txt").split(separator: "\n") where line.hasPrefix("vllm:") {
            let name = String(line.split(separator: " ")[0])
            #expect(ours[name] ?? ours[name.replacingOccurrences(of: "_total", with: "") + "_total"] != nil, "\(name)")
        }

        let base = #"engine="0",model_name="tiny-llama""#
        #expect(metricValue(r.text, "vllm:num_requests_running", base) == 0)
        #expect(metricValue(r.text, "vllm:kv_cache_usage_perc", base) == 0)
        #expect(metricValue(r.text, "vllm:generation_tokens_total", base) == 12)
        #expect(metricValue(r.text, "vllm:request_success_total", #"engine="0",finished_reason="length",model_name="tiny-llama""#) == 3)
        #expect(metricValue(r.text, "vllm:time_to_first_token_seconds_count", base) == 3)
        let queries = metricValue(r.text, "vllm:prefix_cache_queries_total", base)!
        let hits = metricValue(r.text, "vllm:prefix_cache_hits_total", base)!
        #expect(queries == metricValue(r.text, "vllm:prompt_tokens_total", base))
        // The third request repeats the first's prompt on the base model (the a1 request in
        // between has its own namespace): every whole block but the last token's hits.
        let promptTokens = queries / 3
        #expect(hits == Double((Int(promptTokens) - 1) / 16 * 16))
        #expect(metricValue(r.text, "vllm:cache_config_info", "") == nil)
        #expect(r.text.contains(#"block_size="16""#))
        #expect(r.text.contains(#"num_gpu_blocks="1024""#))
        // lora_requests_info: one series per state; the newest is the idle state.
        let lora = r.text.split(separator: "\n").filter { $0.hasPrefix("vllm:lora_requests_info{") }
        #expect(lora.count == 2)
        #expect(lora.contains { $0.contains(#"{max_lora="2",running_lora_adapters="a1",waiting_lora_adapters="a1"}"#) })
        let newest = lora.max { Double($0.split(separator: " ").last!)! < Double($1.split(separator: " ").last!)! }!
        #expect(newest.contains(#"running_lora_adapters="""#))
        let now = Date().timeIntervalSince1970
        #expect(abs(Double(newest.split(separator: " ").last!)! - now) < 60)
    }

    @Test func clientDisconnectAbortsTheSequence() throws {
        let sim = try RunningSim { $0.timeScale = 1 }
        defer { sim.stop() }
        do {
            let c = try RawClient(port: sim.port)
            c.send("POST", "/v1/chat/completions", body: Self.hello + #","max_tokens":1500,"stream":true}"#)
            let head = c.readHead()
            #expect(head?.0 == 200)
            #expect(c.readChunk() != nil)
            #expect(sim.onLoop { $0.engine.runningCount } == 1)
        }  // closes the socket
        var running = 1
        for _ in 0..<500 where running != 0 {
            usleep(2000)
            running = sim.onLoop { $0.engine.runningCount }
        }
        #expect(running == 0)
        let m = try RawClient(port: sim.port).request("GET", "/metrics").text
        #expect(metricValue(m, "vllm:request_success_total", #"engine="0",finished_reason="abort",model_name="tiny-llama""#) == 1)
        #expect(sim.onLoop { $0.loop.armedTimers } == 0)
    }

    @Test func concurrentStreamsBatchAndIdleLeavesNoTimer() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let clients = try (0..<8).map { _ in try RawClient(port: sim.port) }
        for (i, c) in clients.enumerated() {
            c.send("POST", "/v1/completions", body: #"{"prompt":"request \#(i)","max_tokens":10,"stream":true}"#)
        }
        for c in clients {
            let r = c.readResponse()!
            #expect(sseEvents(r.text).count == 11)
        }
        let steps = sim.onLoop { $0.engine.stats.steps }
        // Batched: far fewer steps than 8 × 10 tokens.
        #expect(steps < 40)
        #expect(sim.onLoop { $0.loop.armedTimers } == 0)
        #expect(sim.onLoop { $0.engine.hasWork } == false)
    }

    @Test func overloadGets503() throws {
        let sim = try RunningSim { $0.maxNumSeqs = 1; $0.maxQueuedRequests = 1; $0.timeScale = 1 }
        defer { sim.stop() }
        let a = try RawClient(port: sim.port), b = try RawClient(port: sim.port), c = try RawClient(port: sim.port)
        a.send("POST", "/v1/completions", body: #"{"prompt":"x","max_tokens":200}"#)
        usleep(20_000)
        b.send("POST", "/v1/completions", body: #"{"prompt":"y","max_tokens":5}"#)
        usleep(20_000)
        let r = c.request("POST", "/v1/completions", body: #"{"prompt":"z","max_tokens":5}"#)
        #expect(r.status == 503)
        #expect(json(r.text)["error"] != nil)
        #expect(a.readResponse()?.status == 200)
        #expect(b.readResponse()?.status == 200)
    }
}
