import Foundation
import Glibc
import SluiceIO
@testable import SluiceSim
import Testing

/// The APIs beyond chat/completions/embeddings against a started SimServer, compared with what a
/// real vLLM 0.32 CPU server answered (Tests/vllm-captures/, recorded by its capture.py): shapes
/// and key order always, exact bytes where the answer has no generated or random part (errors).
/// Where no capture exists the source of the shape is named in the test.
@Suite(.serialized) struct APITests {
    static let hello = #"[{"role": "user", "content": "Hello there, how are you today?"}]"#

    func json(_ s: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
    }

    func sameShape(_ ours: String, _ theirs: String, _ what: String) {
        #expect(Shape(json: ours) == Shape(json: theirs), "\(what):\n\(ours)\nvs vLLM\n\(theirs)")
        #expect(topLevelKeyOrder(ours) == topLevelKeyOrder(theirs), "\(what)")
    }

    // MARK: Anthropic Messages (generate-messages*.txt)

    @Test func messages() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let r = c.request("POST", "/v1/messages", body: #"{"model": "tiny-llama", "max_tokens": 8, "temperature": 0, "messages": \#(Self.hello)}"#)
        #expect(r.status == 200 && r.headers["content-type"] == "application/json")
        sameShape(r.text, Capture.body("generate-messages.txt", "non-streaming"), "messages")
        let o = json(r.text)
        #expect((o["id"] as? String)?.hasPrefix("chatcmpl-") == true)
        #expect(o["stop_reason"] as? String == "max_tokens")
        #expect((o["usage"] as? [String: Any])?["output_tokens"] as? Int == 8)
        // System blocks count as prompt: more input tokens.
        let s = json(c.request("POST", "/v1/messages", body: #"{"model": "tiny-llama", "max_tokens": 4, "system": [{"type": "text", "text": "Be brief."}], "metadata": {"user_id": "u-1"}, "messages": \#(Self.hello)}"#).text)
        #expect(((s["usage"] as? [String: Any])?["input_tokens"] as? Int ?? 0) > ((o["usage"] as? [String: Any])?["input_tokens"] as? Int ?? 0))
    }

    @Test func messagesStream() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/messages",
            body: #"{"model": "tiny-llama", "max_tokens": 5, "temperature": 0, "stream": true, "system": "Be brief.", "messages": \#(Self.hello)}"#)
        #expect(r.status == 200 && r.headers["content-type"] == "text/event-stream; charset=utf-8")
        let ours = namedEvents(r.text)
        let theirs = namedEvents(Capture.body("generate-messages-stream.txt", "streaming").trimmingCharacters(in: .newlines) + "\n\n")
        #expect(ours.map(\.name) == theirs.map(\.name))
        for (a, b) in zip(ours, theirs) {
            #expect(json(a.data)["type"] as? String == a.name)
            sameShape(a.data, b.data, a.name)
        }
        let delta = json(ours[ours.count - 2].data)
        #expect((delta["usage"] as? [String: Any])?["output_tokens"] as? Int == 5)
    }

    @Test func messagesErrorsAreVLLMs() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let cases: [(String, String, String)] = [
            ("/v1/messages", #"{"model": "nope", "max_tokens": 8, "messages": \#(Self.hello)}"#, "unknown model"),
            ("/v1/messages", #"{"model": "tiny-llama", "messages": \#(Self.hello)}"#, "missing max_tokens"),
            ("/v1/messages", #"{"model": "tiny-llama", "max_tokens": 0, "messages": \#(Self.hello)}"#, "max_tokens 0"),
            ("/v1/messages", #"{"max_tokens": 8, "messages": \#(Self.hello)}"#, "missing model"),
            ("/v1/messages", #"{"model": "tiny-llama","#, "invalid JSON"),
            ("/v1/messages/count_tokens", #"{"model": "nope", "messages": \#(Self.hello)}"#, "count_tokens unknown model"),
        ]
        for (path, body, title) in cases {
            let r = c.request("POST", path, body: body)
            let v = Capture.exchange("generate-messages-errors.txt", title)
            #expect(r.status == v.status, "\(title)")
            #expect(r.text == v.body, "\(title)")
        }
        let n = c.request("POST", "/v1/messages/count_tokens", body: #"{"model": "tiny-llama", "system": "Be brief.", "messages": \#(Self.hello)}"#)
        #expect(n.status == 200)
        sameShape(n.text, Capture.body("generate-messages-count-tokens.txt", "count_tokens"), "count_tokens")
    }

    // MARK: Responses API (generate-responses*.txt)

    @Test func responsesCreateFollowUpRetrieveCancel() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let r = c.request("POST", "/v1/responses", body: #"{"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 8, "temperature": 0}"#)
        #expect(r.status == 200)
        sameShape(r.text, Capture.body("generate-responses.txt", "non-streaming"), "response")
        let first = json(r.text)
        let id = try #require(first["id"] as? String)
        #expect(id.hasPrefix("resp_") && first["status"] as? String == "incomplete")
        // The follow-up continues the conversation: more input tokens than its own text.
        let f = c.request("POST", "/v1/responses", body: #"{"model": "tiny-llama", "instructions": "Be brief.", "previous_response_id": "\#(id)", "max_output_tokens": 4, "temperature": 0, "input": [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}]}"#)
        #expect(f.status == 200)
        sameShape(f.text, Capture.body("generate-responses.txt", "input items, instructions, previous_response_id"), "follow-up")
        let follow = json(f.text)
        #expect(follow["previous_response_id"] as? String == id)
        #expect(((follow["usage"] as? [String: Any])?["input_tokens"] as? Int ?? 0) > ((first["usage"] as? [String: Any])?["input_tokens"] as? Int ?? 0))
        // Retrieve gives the stored response; cancel of a finished one is vLLM's 400.
        let g = c.request("GET", "/v1/responses/\(id)")
        #expect(g.status == 200 && g.text == r.text)
        let x = c.request("POST", "/v1/responses/\(id)/cancel")
        let v = Capture.exchange("generate-responses.txt", "cancel a finished (synchronous) response")
        #expect(x.status == v.status && x.text == v.body)
        // Without a model: the served one.
        let w = json(c.request("POST", "/v1/responses", body: #"{"input": "Hi", "max_output_tokens": 2}"#).text)
        #expect(w["model"] as? String == "tiny-llama")
        #expect(c.request("DELETE", "/v1/responses/\(id)").status == 405)
    }

    /// Ids are instance-local: another server answers vLLM's 404 to all three follow-ups.
    @Test func responseIDsAreInstanceLocal() throws {
        let a = try RunningSim()
        defer { a.stop() }
        let b = try RunningSim()
        defer { b.stop() }
        let id = json(try RawClient(port: a.port).request("POST", "/v1/responses", body: #"{"input": "Hi", "max_output_tokens": 2}"#).text)["id"] as! String
        let c = try RawClient(port: b.port)
        let unknown = "resp_0123456789abcdef0123456789abcdef"
        for (method, path, body, title) in [("GET", "/v1/responses/\(unknown)", nil as String?, "retrieve unknown"),
                                            ("POST", "/v1/responses/\(unknown)/cancel", nil, "cancel unknown"),
                                            ("POST", "/v1/responses", #"{"model": "tiny-llama", "input": "x", "previous_response_id": "\#(unknown)"}"#, "previous_response_id unknown")] {
            let r = c.request(method, path, body: body)
            let v = Capture.exchange("generate-responses-errors.txt", title)
            #expect(r.status == v.status && r.text == v.body, "\(title)")
        }
        #expect(c.request("GET", "/v1/responses/\(id)").status == 404)
        #expect(c.request("POST", "/v1/responses", body: #"{"input": "x", "previous_response_id": "\#(id)"}"#).status == 404)
        #expect(try RawClient(port: a.port).request("GET", "/v1/responses/\(id)").status == 200)
        let m = c.request("POST", "/v1/responses", body: #"{"model": "nope", "input": "x"}"#)
        let v = Capture.exchange("generate-responses-errors.txt", "unknown model")
        #expect(m.status == v.status && m.text == v.body)
    }

    @Test func responsesStream() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let r = try RawClient(port: sim.port).request("POST", "/v1/responses",
            body: #"{"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 4, "temperature": 0, "stream": true}"#)
        #expect(r.status == 200 && r.headers["content-type"] == "text/event-stream; charset=utf-8")
        let ours = namedEvents(r.text)
        let theirs = namedEvents(Capture.body("generate-responses-stream.txt", "streaming").trimmingCharacters(in: .newlines) + "\n\n")
        #expect(ours.map(\.name) == theirs.map(\.name))
        for (i, (a, b)) in zip(ours, theirs).enumerated() {
            sameShape(a.data, b.data, a.name)
            #expect(json(a.data)["sequence_number"] as? Int == i)
        }
        let done = json(ours.last!.data)["response"] as? [String: Any]
        #expect((done?["usage"] as? [String: Any])?["output_tokens"] as? Int == 4)
    }

    @Test func backgroundResponseCancel() throws {
        let sim = try RunningSim { $0.timeScale = 5 }  // slow: the cancel lands while it runs
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let r = c.request("POST", "/v1/responses", body: #"{"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 64, "background": true}"#)
        sameShape(r.text, Capture.body("generate-responses-background.txt", "background"), "background")
        let id = json(r.text)["id"] as! String
        #expect(json(r.text)["status"] as? String == "queued")
        let x = c.request("POST", "/v1/responses/\(id)/cancel")
        #expect(x.status == 200)
        sameShape(x.text, Capture.body("generate-responses-background.txt", "cancel while running"), "cancelled")
        #expect(json(x.text)["status"] as? String == "cancelled")
        #expect(json(c.request("GET", "/v1/responses/\(id)").text)["status"] as? String == "cancelled")
        #expect(sim.onLoop { $0.pending.isEmpty })
        // One that is left alone finishes and is stored.
        let y = json(c.request("POST", "/v1/responses", body: #"{"input": "Hi", "max_output_tokens": 2, "background": true}"#).text)["id"] as! String
        var status = ""
        for _ in 0..<400 where status != "incomplete" {
            usleep(10_000)
            status = json(c.request("GET", "/v1/responses/\(y)").text)["status"] as? String ?? ""
        }
        #expect(status == "incomplete")
    }

    @Test func storeIsBounded() throws {
        let sim = try RunningSim { $0.maxStoredResponses = 3 }
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        var ids: [String] = []
        for _ in 0..<5 { ids.append(json(c.request("POST", "/v1/responses", body: #"{"input": "Hi", "max_output_tokens": 1}"#).text)["id"] as! String) }
        #expect(c.request("GET", "/v1/responses/\(ids[0])").status == 404)
        #expect(c.request("GET", "/v1/responses/\(ids[4])").status == 200)
        #expect(sim.onLoop { $0.storedResponses.count } == 3)
        let n = json(c.request("POST", "/v1/responses", body: #"{"input": "Hi", "max_output_tokens": 1, "store": false}"#).text)["id"] as! String
        #expect(c.request("GET", "/v1/responses/\(n)").status == 404)
    }

    // MARK: pooling, tokenize (pooling-*.txt, generate-tokenize.txt)

    @Test func poolingShapes() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let cases: [(String, String, String, String)] = [
            ("/v1/rerank", #"{"model": "tiny-llama", "query": "What is a gateway?", "documents": ["A gateway routes requests.", "Bananas are yellow.", "Cats sleep."], "top_n": 2}"#, "pooling-rerank.txt", "/v1/rerank"),
            ("/rerank", #"{"model": "tiny-llama", "query": "q", "documents": ["a", "b"]}"#, "pooling-rerank.txt", "/rerank"),
            ("/v2/rerank", #"{"model": "tiny-llama", "query": "q", "documents": ["a", "b"]}"#, "pooling-rerank.txt", "/v2/rerank"),
            ("/v1/rerank", #"{"query": "q", "documents": ["a"]}"#, "pooling-rerank.txt", "without model"),
            ("/score", #"{"model": "tiny-llama", "text_1": "What is a gateway?", "text_2": ["A gateway routes.", "Bananas."]}"#, "pooling-score.txt", "/score text_1/text_2"),
            ("/v1/score", #"{"model": "tiny-llama", "queries": "q", "documents": ["a", "b"]}"#, "pooling-score.txt", "/v1/score queries/documents"),
            ("/classify", #"{"model": "tiny-llama", "input": ["Loved it", "Hated it"]}"#, "pooling-classify.txt", "/classify"),
            ("/pooling", #"{"model": "tiny-llama", "input": "Hello world"}"#, "pooling-pooling.txt", "/pooling"),
            ("/tokenize", #"{"model": "tiny-llama", "prompt": "Hello world"}"#, "generate-tokenize.txt", "prompt"),
            ("/tokenize", #"{"model": "tiny-llama", "messages": \#(Self.hello)}"#, "generate-tokenize.txt", "messages"),
            ("/tokenize", #"{"prompt": "Hello"}"#, "generate-tokenize.txt", "without model"),
        ]
        for (path, body, file, title) in cases {
            let r = c.request("POST", path, body: body)
            #expect(r.status == 200, "\(path) \(r.text)")
            sameShape(r.text, Capture.body(file, title), title)
        }
        // Rerank: sorted by score, top_n honoured, deterministic.
        let body = #"{"query": "q", "documents": ["a", "b", "c", "d"], "top_n": 3}"#
        let a = json(c.request("POST", "/v1/rerank", body: body).text)["results"] as! [[String: Any]]
        let scores = a.map { $0["relevance_score"] as! Double }
        #expect(a.count == 3 && scores == scores.sorted(by: >))
        #expect((json(c.request("POST", "/rerank", body: body).text)["results"] as! [[String: Any]]).map { $0["index"] as! Int } == a.map { $0["index"] as! Int })
        // Errors.
        let e = c.request("POST", "/v1/rerank", body: #"{"model": "nope", "query": "q", "documents": ["a"]}"#)
        let v = Capture.exchange("pooling-errors.txt", "rerank unknown model")
        #expect(e.status == v.status && e.text == v.body)
        let t = c.request("POST", "/detokenize", body: #"{"model": "nope", "tokens": [45, 378, 183, 1080, 1223]}"#)
        let tv = Capture.exchange("generate-tokenize.txt", "detokenize unknown model")
        #expect(t.status == tv.status && t.text == tv.body)
    }

    @Test func tokenizeRoundTrip() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let t = json(c.request("POST", "/tokenize", body: #"{"prompt": "Hello world, é"}"#).text)
        let tokens = t["tokens"] as! [Int]
        #expect(t["count"] as? Int == tokens.count && tokens.count == 4 && t["max_model_len"] as? Int == 2048)
        let d = c.request("POST", "/detokenize", body: "{\"model\": \"tiny-llama\", \"tokens\": \(tokens)}")
        #expect(d.status == 200)
        sameShape(d.text, Capture.body("generate-tokenize.txt", "detokenize"), "detokenize")
        #expect(json(d.text)["prompt"] as? String == "Hello world, é")
        #expect(c.request("POST", "/detokenize", body: #"{"tokens": [-1]}"#).status == 400)
    }

    // MARK: audio (vLLM's protocol classes: no speech model to capture)

    static func multipart(_ fields: [(String, String)], file: [UInt8]?) -> ([UInt8], String) {
        let b = "sluiceTestBoundary42"
        var out: [UInt8] = []
        for (k, v) in fields { out += Array("--\(b)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8) }
        if let f = file { out += Array("--\(b)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8) + f + [13, 10] }
        out += Array("--\(b)--\r\n".utf8)
        return (out, "multipart/form-data; boundary=\(b)")
    }

    @Test func audioTranscription() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let (body, ct) = Self.multipart([("model", "tiny-llama"), ("language", "en")], file: [UInt8](repeating: 1, count: 64_000))
        c.send("POST", "/v1/audio/transcriptions", headers: [("Content-Type", ct)], body: body)
        let r = c.readResponse()!
        #expect(r.status == 200)
        let o = json(r.text)
        #expect(o["text"] as? String == "The quick brown fox jumps over the lazy dog.")
        #expect(o.count == 2 && (o["usage"] as? [String: Any])?["seconds"] as? Int == 2 && (o["usage"] as? [String: Any])?["type"] as? String == "duration")
        c.send("POST", "/v1/audio/translations", headers: [("Content-Type", ct)], body: body)
        #expect(json(c.readResponse()!.text).keys.sorted() == ["text"])
        let (unknown, ct2) = Self.multipart([("model", "nope")], file: [1])
        c.send("POST", "/v1/audio/transcriptions", headers: [("Content-Type", ct2)], body: unknown)
        #expect(c.readResponse()!.status == 404)
        let (noFile, ct3) = Self.multipart([("model", "tiny-llama")], file: nil)
        c.send("POST", "/v1/audio/transcriptions", headers: [("Content-Type", ct3)], body: noFile)
        #expect(c.readResponse()!.status == 400)
        let (stream, ct4) = Self.multipart([("stream", "true"), ("stream_include_usage", "true")], file: [1, 2])
        c.send("POST", "/v1/audio/transcriptions", headers: [("Content-Type", ct4)], body: stream)
        let s = c.readResponse()!
        let events = sseEvents(s.text)
        #expect(events.last == "[DONE]" && events.count == 9 + 2)
        #expect(json(events[0])["object"] as? String == "transcription.chunk")
        #expect(json(events[events.count - 2])["usage"] != nil)
    }

    // MARK: realtime WebSocket (RFC 6455)

    /// A masked client frame.
    static func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        let mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 { out.append(0x80 | UInt8(payload.count)) }
        else { out += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] }
        out += mask
        out += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        return out
    }

    /// Reads one server frame: (opcode, payload).
    static func readFrame(_ c: RawClient) -> (UInt8, [UInt8])? {
        guard let h = c.read(2) else { return nil }
        #expect(h[1] & 0x80 == 0, "server frames are not masked")
        var len = Int(h[1] & 0x7F)
        if len == 126 { let e = c.read(2)!; len = Int(e[0]) << 8 | Int(e[1]) }
        else if len == 127 { let e = c.read(8)!; len = e.reduce(0) { $0 << 8 | Int($1) } }
        return (h[0] & 0x0F, len == 0 ? [] : c.read(len)!)
    }

    static func upgrade(_ c: RawClient, _ target: String, version: String = "13") -> (Int, [String: String]) {
        c.send("GET", target, headers: [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
                                        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", version)])
        return c.readHead()!
    }

    @Test func realtimeEcho() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        let (status, headers) = Self.upgrade(c, "/v1/realtime?model=tiny-llama")
        #expect(status == 101)
        // RFC 6455 §1.3's example key and answer.
        #expect(headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(headers["upgrade"]?.lowercased() == "websocket")
        let (op, greeting) = try #require(Self.readFrame(c))
        let g = json(String(decoding: greeting, as: UTF8.self))
        #expect(op == 1 && g["type"] as? String == "session.created" && (g["id"] as? String)?.hasPrefix("sess-") == true && g["created"] is Int)
        // Text echo, a fragmented one, binary, a 300-byte one, ping.
        c.sendBytes(Self.frame(1, Array(#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#.utf8)))
        #expect(Self.readFrame(c)! == (1, Array(#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#.utf8)))
        c.sendBytes(Self.frame(1, Array("hel".utf8), fin: false) + Self.frame(9, [7]) + Self.frame(0, Array("lo".utf8)))
        #expect(Self.readFrame(c)! == (0xA, [7]))  // the pong comes between the fragments' echo
        #expect(Self.readFrame(c)! == (1, Array("hello".utf8)))
        c.sendBytes(Self.frame(2, [0, 255, 13, 10]))
        #expect(Self.readFrame(c)! == (2, [0, 255, 13, 10]))
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 300)
        c.sendBytes(Self.frame(1, big))
        #expect(Self.readFrame(c)! == (1, big))
        // Close: the status code comes back, then the connection ends.
        c.sendBytes(Self.frame(8, [0x03, 0xE8]))
        #expect(Self.readFrame(c)! == (8, [0x03, 0xE8]))
        #expect(c.read(1) == nil)
        // Once the client closes its side too, the server forgets the socket.
        shutdown(c.fd, Int32(SHUT_WR))
        var gone = false
        for _ in 0..<300 where !gone {
            usleep(10_000)
            gone = sim.onLoop { $0.webSockets.isEmpty }
        }
        #expect(gone)
    }

    @Test func realtimeRefusals() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        #expect(Self.upgrade(try RawClient(port: sim.port), "/v1/realtime?model=nope").0 == 404)
        #expect(Self.upgrade(try RawClient(port: sim.port), "/v1/realtime?model=a1").0 == 101)  // an adapter is a model too
        #expect(Self.upgrade(try RawClient(port: sim.port), "/v1/realtime").0 == 101)  // the served model
        #expect(Self.upgrade(try RawClient(port: sim.port), "/v1/realtime", version: "8").0 == 426)
        let plain = try RawClient(port: sim.port).request("GET", "/v1/realtime")
        let v = Capture.exchange("generate-unsupported.txt", "/v1/realtime")
        #expect(plain.status == v.status && plain.text == v.body)
        // Protocol errors close with 1002 (unmasked frame) and 1007 (bad UTF-8).
        let c = try RawClient(port: sim.port)
        #expect(Self.upgrade(c, "/v1/realtime").0 == 101)
        _ = Self.readFrame(c)
        c.sendBytes([0x81, 0x01, 0x41])
        #expect(Self.readFrame(c)! == (8, [0x03, 0xEA]))
        let d = try RawClient(port: sim.port)
        #expect(Self.upgrade(d, "/v1/realtime").0 == 101)
        _ = Self.readFrame(d)
        d.sendBytes(Self.frame(1, [0xFF]))
        #expect(Self.readFrame(d)! == (8, [0x03, 0xEF]))
    }

    // MARK: KServe v2 (the Open Inference Protocol specification; vLLM has no v2 front end)

    @Test func kserveV2() throws {
        let sim = try RunningSim()
        defer { sim.stop() }
        let c = try RawClient(port: sim.port)
        #expect(c.request("GET", "/v2/health/live").status == 200)
        #expect(json(c.request("GET", "/v2/health/ready").text)["ready"] as? Bool == true)
        let meta = json(c.request("GET", "/v2/models/tiny-llama").text)
        #expect(meta["name"] as? String == "tiny-llama" && (meta["inputs"] as? [[String: Any]])?.first?["datatype"] as? String == "BYTES")
        #expect(json(c.request("GET", "/v2/models/a1/ready").text)["ready"] as? Bool == true)
        let infer = #"{"id":"r1","inputs":[{"name":"text_input","shape":[1],"datatype":"BYTES","data":["Hello there"]}],"parameters":{"max_tokens":3}}"#
        let r = c.request("POST", "/v2/models/tiny-llama/versions/2/infer", body: infer)
        #expect(r.status == 200)
        let o = json(r.text)
        #expect(o["model_name"] as? String == "tiny-llama" && o["model_version"] as? String == "2" && o["id"] as? String == "r1")
        let out = (o["outputs"] as? [[String: Any]])?.first
        #expect(out?["name"] as? String == "text_output" && out?["datatype"] as? String == "BYTES")
        #expect(((out?["data"] as? [String])?.first ?? "").isEmpty == false)
        // Same prompt, same text.
        #expect(json(c.request("POST", "/v2/models/tiny-llama/infer", body: infer).text)["outputs"] as? NSArray == o["outputs"] as? NSArray)
        let nf = c.request("GET", "/v2/models/nope/ready")
        #expect(nf.status == 404 && json(nf.text)["error"] as? String == "Model nope not found")
        #expect(c.request("POST", "/v2/models/tiny-llama/infer", body: #"{"inputs":[]}"#).status == 400)
        #expect(c.request("POST", "/v2/models/tiny-llama/infer", body: "{").status == 400)
        #expect(c.request("GET", "/v2/models/tiny-llama/infer").status == 405)
        #expect(c.request("GET", "/v2/models/tiny-llama/explain").status == 404)
    }
}
