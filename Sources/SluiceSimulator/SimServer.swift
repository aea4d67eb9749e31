public import SluiceIO
import Glibc
import SluiceHTTP
import SluiceLLM

/// Options of one simulated vLLM server (`sluice sim`).
public struct SimOptions: Sendable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 8000
    public var model = "tiny-llama"
    /// LoRA adapters registered at start.
    public var loras: [String] = []
    /// Adapters that can run at once (`--max-loras`); others wait (vLLM's `deferred`).
    public var maxLoras = 2
    /// KV-cache capacity in tokens and the block size of the prefix cache.
    public var kvTokens = 65_536
    public var blockTokens = 16
    /// Sequences decoded together (vLLM's max_num_seqs).
    public var maxRunning = 16
    /// One engine step; each running sequence gets one token per step.
    public var stepMillis = 10.0
    /// Prefill cost per uncached prompt token.
    public var prefillMicrosPerToken = 40.0
    public var seed: UInt64 = 1
    public init() {}
}

/// A simulated vLLM OpenAI server, light enough to run 16+ on two cores: the same endpoints
/// and JSON/SSE shapes, `/metrics` with vLLM's names, continuous batching in fixed steps (a
/// step's length grows with the prefill it contains), a prefix cache of token blocks with LRU
/// eviction (4 bytes ≈ 1 token), LoRA slots with waiting, and load/unload of adapters.
/// Deterministic for a seed. Idle servers schedule nothing.
public final class SimServer {
    public let options: SimOptions
    let server: HTTPServer
    let loop: EventLoop
    let engine: SimEngine

    public init(options: SimOptions, loop: EventLoop) throws(SyscallError) {
        self.options = options
        self.loop = loop
        engine = SimEngine(options: options)
        guard let address = SocketAddress(numericHost: options.host, port: options.port) else {
            throw SyscallError("getaddrinfo", errno: EINVAL)
        }
        var handler: HTTPHandler? = nil
        server = try HTTPServer(address: address, loop: loop) { req, r in handler?(req, r) }
        engine.loop = loop
        handler = { [unowned self] req, r in self.handle(req, r) }
    }

    public var port: UInt16 { server.listener.address.port }

    public func close() { server.close() }

    /// Runs one simulated server on the calling thread until the process ends.
    public static func run(options: SimOptions) throws -> Never {
        let loop = try EventLoop()
        let sim = try SimServer(options: options, loop: loop)
        _ = sim
        loop.run()
        exit(0)
    }

    func handle(_ req: HTTPServerRequest, _ r: HTTPResponder) {
        switch (req.method, req.path) {
        case ("GET", "/health"):
            r.respond(status: 200, headers: [], body: [])
        case ("GET", "/v1/models"):
            r.respond(status: 200, engine.modelsJSON())
        case ("GET", "/metrics"):
            r.respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", engine.metricsText(now: WallClock.now()))
        case ("POST", "/v1/load_lora_adapter"), ("POST", "/v1/unload_lora_adapter"):
            let load = req.path.hasSuffix("/load_lora_adapter")
            let name = jsonString(req.body, key: "lora_name") ?? ""
            let (status, body) = load ? engine.load(name) : engine.unload(name)
            r.respond(status: status, contentType: status == 200 ? "text/plain" : "application/json", body)
        case ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"):
            completion(req, r)
        default:
            r.respond(status: 404, #"{"detail":"Not Found"}"#)
        }
    }

    private func completion(_ req: HTTPServerRequest, _ r: HTTPResponder) {
        let endpoint: OpenAIEndpoint = req.path.hasSuffix("chat/completions") ? .chatCompletions
            : req.path.hasSuffix("embeddings") ? .embeddings : .completions
        let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 1024)
        let hashes = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 4096)
        defer { segments.deallocate(); hashes.deallocate() }
        let parsed: (ScannedRequest, String, Int)? = req.body.withUnsafeBytes { body in
            guard let s = try? RequestScanner().scan(body, endpoint: endpoint, segments: segments) else { return nil }
            let model = JSONString.decode(body, s.model)
            // Blocks of `blockTokens` tokens ≈ 4 bytes each; the model (adapter) namespaces the cache.
            let seed = Array(model.utf8).withUnsafeBytes { PrefixHasher.mixSeed(options.seed, $0) }
            let n = PrefixHasher.hashPrompt(body: body, segments: UnsafeBufferPointer(rebasing: segments[0..<min(s.segmentCount, 1024)]),
                                            seed: seed, blockSize: max(16, options.blockTokens * 4 / 16 * 16), into: hashes)
            return (s, model, n)
        }
        guard let (scan, model, blocks) = parsed else {
            r.respond(status: 400, #"{"error":{"message":"1 validation error: invalid JSON body","type":"BadRequestError","param":null,"code":400}}"#)
            return
        }
        guard model == options.model || engine.adapters.contains(model) else {
            let msg = "The model `\(model)` does not exist. Valid aliases: \(([options.model] + engine.adapters).joined(separator: ", "))."
            r.respond(status: 404, #"{"error":{"message":"\#(msg)","type":"NotFoundError","param":"model","code":404}}"#)
            return
        }
        let promptTokens = max(1, scan.promptBytes / 4 + scan.promptTokenIDs)
        if endpoint == .embeddings {
            let vec = (0..<8).map { _ in String(Double(engine.random() % 2000) / 1000 - 1) }.joined(separator: ",")
            r.respond(status: 200, #"{"id":"embd-\#(engine.nextID())","object":"list","created":\#(WallClock.now().seconds),"model":"\#(model)","data":[{"index":0,"object":"embedding","embedding":[\#(vec)]}],"usage":{"prompt_tokens":\#(promptTokens),"total_tokens":\#(promptTokens),"completion_tokens":0,"prompt_tokens_details":null}}"#)
            return
        }
        let seq = SimSequence(id: engine.nextID(), chat: endpoint == .chatCompletions, model: model,
                              adapter: model == options.model ? nil : model,
                              promptTokens: promptTokens, maxTokens: scan.maxTokens ?? 16, stream: scan.stream == true,
                              includeUsage: scan.includeUsage == true, blocks: Array(hashes[0..<blocks]), responder: r)
        engine.submit(seq)
    }
}

/// A tiny JSON string lookup for the control endpoints (`{"lora_name": "x"}`).
func jsonString(_ body: [UInt8], key: String) -> String? {
    let needle = Array("\"\(key)\"".utf8)
    guard needle.count <= body.count else { return nil }
    for i in 0...(body.count - needle.count) where Array(body[i..<(i + needle.count)]) == needle {
        var j = i + needle.count
        while j < body.count && (body[j] == 32 || body[j] == 58) { j += 1 }
        guard j < body.count && body[j] == 34 else { return nil }
        let start = j + 1
        var end = start
        while end < body.count && body[end] != 34 { end += 1 }
        return String(decoding: body[start..<end], as: UTF8.self)
    }
    return nil
}
