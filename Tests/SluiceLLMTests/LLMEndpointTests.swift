import Testing

import SluiceLLM

@Suite struct LLMEndpointTests {
    static func match(_ s: String) -> LLMEndpoint.Match? {
        Array(s.utf8).withUnsafeBytes { LLMEndpoint.match(path: $0) }
    }

    static func text(_ s: String, _ r: ByteRange?) -> String? {
        guard let r else { return nil }
        let b = Array(s.utf8)
        return String(decoding: b[r.start..<r.end], as: UTF8.self)
    }

    /// Every path of the list, with the parameter it names.
    @Test(arguments: [
        ("/v1/chat/completions", LLMEndpoint.chatCompletions, nil as String?),
        ("/v1/completions", .completions, nil),
        ("/v1/embeddings", .embeddings, nil),
        ("/v1/responses", .responses, nil),
        ("/v1/responses/resp_abc123", .responseRetrieve, "resp_abc123"),
        ("/v1/responses/resp_abc123/cancel", .responseCancel, "resp_abc123"),
        ("/v1/responses/resp_abc123?stream=false", .responseRetrieve, "resp_abc123"),
        ("/v1/messages", .messages, nil),
        ("/v1/messages?beta=true", .messages, nil),
        ("/v1/messages/count_tokens", .messagesCountTokens, nil),
        ("/v1/rerank", .rerank, nil),
        ("/rerank", .rerank, nil),
        ("/v2/rerank", .rerank, nil),
        ("/v1/score", .score, nil),
        ("/score", .score, nil),
        ("/pooling", .pooling, nil),
        ("/classify", .classify, nil),
        ("/tokenize", .tokenize, nil),
        ("/detokenize", .detokenize, nil),
        ("/v1/audio/transcriptions", .audioTranscriptions, nil),
        ("/v1/audio/translations", .audioTranslations, nil),
        ("/v1/realtime?model=tiny-llama", .realtime, nil),
        ("/v1/realtime", .realtime, nil),
        ("/v2/models/tiny-llama/infer", .v2Infer, "tiny-llama"),
        ("/v2/models/tiny-llama", .v2ModelMetadata, "tiny-llama"),
        ("/v2/models/tiny-llama/ready", .v2ModelReady, "tiny-llama"),
        ("/v2/models/m/versions/3/infer", .v2Infer, "m"),
        ("/v2/models/m/versions/3", .v2ModelMetadata, "m"),
        ("/v2/health/live", .v2HealthLive, nil),
        ("/v2/health/ready", .v2HealthReady, nil),
    ])
    func knownPaths(_ path: String, _ endpoint: LLMEndpoint, _ parameter: String?) throws {
        let m = try #require(Self.match(path), "\(path)")
        #expect(m.endpoint == endpoint)
        #expect(Self.text(path, m.parameter) == parameter)
        #expect(!m.parameterEncoded)
    }

    @Test(arguments: [
        "/", "/v1", "/v1/models", "/health", "/metrics", "/v1/chat/completions/", "/v1/chat/completion", "/V1/messages",
        "/v1/responses/", "/v1/responses//cancel", "/v1/responses/a/b", "/v1/responses/a/cancel/x", "/v1/responses/../x",
        "/v1/responses/./cancel", "/v2/models/", "/v2/models//infer", "/v2/models/m/predict", "/v2/models/m/versions//infer",
        "/v2/models/m/versions/", "/v2/health", "/v2/health/lively", "/v1/messages/count_tokens/x", "v1/messages", "",
        "/v1/chat/completions/render", "/v2/embed",
    ])
    func unknownPaths(_ path: String) {
        #expect(Self.match(path) == nil, "\(path)")
    }

    @Test func versionAndEncodedName() throws {
        let p = "/v2/models/org%2Fmodel/versions/7/ready"
        let m = try #require(Self.match(p))
        #expect(m.endpoint == .v2ModelReady)
        #expect(m.parameterEncoded)
        #expect(Self.text(p, m.parameter) == "org%2Fmodel")
        #expect(Self.text(p, m.version) == "7")
        var out = [UInt8](repeating: 0, count: 32)
        let n = Array(p.utf8).withUnsafeBytes { b in out.withUnsafeMutableBytes { QueryString.percentDecode(b, m.parameter!, plusIsSpace: false, into: $0) } }
        #expect(n.map { String(decoding: out[0..<$0], as: UTF8.self) } == "org/model")
    }

    /// The table's facts hang together: every JSON endpoint is scannable, only GETs have no
    /// body, routing data is where the table says.
    @Test(arguments: LLMEndpoint.allCases)
    func traitsAreConsistent(_ e: LLMEndpoint) {
        let t = e.traits
        if t.method == .get { #expect(t.body == .none, "\(e)") }
        if t.model == .jsonField { #expect(t.body == .json) }
        if t.model == .formField { #expect(t.body == .multipart) }
        if t.prefixAffinity { #expect(t.body == .json) }
        if t.upgrade { #expect(t.method == .get && t.model == .queryParameter) }
        if t.cache != .never { #expect(t.method == .post) }
        if t.cache == .whenGreedy { #expect(t.producesTokens) }
        if t.createsStoredResponse { #expect(e == .responses && t.cache == .never) }
        #expect((t.server == .v2) == e.description.hasPrefix("v2_"))
        #expect((t.errors == .anthropic) == (e == .messages || e == .messagesCountTokens))
        #expect((t.stream == .none) == !(t.producesTokens && t.body != .none), "\(e)")
        // Scanning an empty object never traps; JSON endpoints answer with their own rules.
        let body = Array("{}".utf8)
        var segs = [PromptSegment](repeating: PromptSegment(range: .empty, kind: .text), count: 4)
        let r = body.withUnsafeBytes { b in segs.withUnsafeMutableBufferPointer { s in try? RequestScanner().scan(b, for: e, segments: s) } }
        if !(t.body == .json && t.modelRequired && t.model == .jsonField) {
            #expect(r != nil, "\(e)")
            #expect(r?.hasModel == false)
        } else {
            #expect(r == nil, "\(e)")
        }
    }

    @Test func openAIEndpointsMapOntoTheTable() {
        #expect(LLMEndpoint(OpenAIEndpoint.chatCompletions) == .chatCompletions)
        #expect(LLMEndpoint(OpenAIEndpoint.completions) == .completions)
        #expect(LLMEndpoint(OpenAIEndpoint.embeddings) == .embeddings)
        for s in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
            let legacy = Array(s.utf8).withUnsafeBytes { OpenAIEndpoint(path: $0) }
            #expect(Self.match(s)?.endpoint == legacy.map(LLMEndpoint.init))
        }
    }

    /// Arbitrary bytes never trap and a match's ranges lie inside the target.
    @Test func randomTargetsNeverTrap() {
        var rng = TestRNG(seed: 27)
        let alphabet = Array("/v12modelsresponsecanlity?%.&=_-abc".utf8)
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 40)
            var b = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            if rng.next() % 2 == 0 { b = Array("/v2/models/".utf8) + b } else if rng.next() % 2 == 0 { b = Array("/v1/responses/".utf8) + b }
            if let m = b.withUnsafeBytes({ LLMEndpoint.match(path: $0) }) {
                if let p = m.parameter { #expect(p.start >= 0 && p.end <= b.count && p.count > 0) }
                if let v = m.version { #expect(v.end <= b.count && v.count > 0) }
            }
        }
    }
}

@Suite struct QueryStringTests {
    static func value(_ name: StaticString, _ target: String) -> String? {
        let b = Array(target.utf8)
        guard let (r, enc) = b.withUnsafeBytes({ QueryString.value(named: name, in: $0) }) else { return nil }
        if !enc { return String(decoding: b[r.start..<r.end], as: UTF8.self) }
        var out = [UInt8](repeating: 0, count: r.count)
        guard let n = b.withUnsafeBytes({ bb in out.withUnsafeMutableBytes { QueryString.percentDecode(bb, r, into: $0) } }) else { return "<bad>" }
        return String(decoding: out[0..<n], as: UTF8.self)
    }

    @Test func values() {
        #expect(Self.value("model", "/v1/realtime?model=tiny-llama") == "tiny-llama")
        #expect(Self.value("model", "/v1/realtime?intent=x&model=a1&model=a2") == "a1")
        #expect(Self.value("model", "/v1/realtime?amodel=x&modelx=y") == nil)
        #expect(Self.value("model", "/v1/realtime?model") == "")
        #expect(Self.value("model", "/v1/realtime?model=") == "")
        #expect(Self.value("model", "/v1/realtime") == nil)
        #expect(Self.value("model", "/v1/realtime?x=1#model=a") == nil)
        #expect(Self.value("model", "/v1/realtime?model=org%2Fm+x#frag") == "org/m x")
        #expect(Self.value("model", "/v1/realtime?model=%zz") == "<bad>")
        #expect(Self.value("model", "/v1/realtime?model=%2") == "<bad>")
        #expect(Self.value("model", "?&&model=&") == "")
    }
}
