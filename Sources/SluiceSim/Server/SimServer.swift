public import SluiceIO
import SluiceHTTP
import Glibc

/// A simulated vLLM 0.32 OpenAI-compatible server on one event loop: the HTTP front end of a
/// ``SimEngine``. Endpoints, JSON shapes, SSE framing, error bodies and `/metrics` names follow
/// the verbatim samples in ../shared/vllm-reference/.
///
/// Thread confinement: create it on (or before running) `loop`, and call everything on that
/// loop's thread. Keep the returned object alive until ``close()``: the listener calls into it.
///
/// Cost when idle is zero: the only timer is the engine's step timer, armed while the engine
/// has work.
public final class SimServer {
    public let options: SimOptions
    public let loop: EventLoop
    /// The engine; read it on the loop's thread (tests inspect its state).
    public let engine: SimEngine
    private var http: HTTPServer!
    private var stepTimer: Timer!
    var pending: [UInt64: Pending] = [:]
    var adapters: [(name: String, path: String)] = []
    var ids: SimRandom
    /// Wall-clock seconds at start (the `_created` series).
    let startedWall: Double
    let fingerprint: String
    var admissionRejections: UInt64 = 0
    private var events: [SimEvent] = []
    /// Responses API state, as vLLM keeps it (in this server's memory only): id → response,
    /// oldest first out beyond ``SimOptions/maxStoredResponses``.
    var storedResponses: [String: StoredResponse] = [:]
    var storedOrder: [String] = []
    /// Open WebSocket connections (`/v1/realtime`).
    var webSockets: [ObjectIdentifier: SimWebSocket] = [:]
    /// Generation requests seen by the fault injector (SimServer+Faults.swift).
    var faults: UInt64 = 0

    /// The address actually bound (the real port when `options.port` was 0).
    public var address: SocketAddress { http.listener.address }
    public var port: UInt16 { address.port }

    /// What the server remembers about a request in the engine.
    final class Pending {
        enum Kind { case chat, completion, embedding, custom }
        let responder: HTTPResponder
        let kind: Kind
        let stream: Bool
        let includeUsage: Bool
        let model: String
        let id: String
        let created: Int
        let promptTokens: Int
        let maxTokens: Int
        let textKey: UInt64
        var inputs: [String] = []
        var embeddingFormatBase64 = false
        var text = ""
        var generated = 0
        /// For `.custom` requests (the APIs beyond OpenAI's three): called per sampled token
        /// (its text and index) and once at the end.
        var onToken: ((Pending, String, Int) -> Void)?
        var onFinish: ((Pending, SimFinishReason) -> Void)?
        /// Runs on without its client (a background response).
        var detached = false

        init(responder: HTTPResponder, kind: Kind, stream: Bool, includeUsage: Bool, model: String, id: String,
             created: Int, promptTokens: Int, maxTokens: Int, textKey: UInt64) {
            self.responder = responder
            self.kind = kind
            self.stream = stream
            self.includeUsage = includeUsage
            self.model = model
            self.id = id
            self.created = created
            self.promptTokens = promptTokens
            self.maxTokens = maxTokens
            self.textKey = textKey
        }
    }

    private init(options: SimOptions, loop: EventLoop) {
        self.options = options
        self.loop = loop
        engine = SimEngine(config: options.engineConfig, now: loop.now)
        ids = SimRandom(seed: options.seed ^ 0x1D5_1D5)
        startedWall = Self.wallSeconds()
        let h = SimRandom.hash(options.model, seed: options.seed)
        fingerprint = "vllm-0.32.0-" + Self.hex(h, digits: 8)
        for spec in options.loras {
            let (name, path) = SimOptions.parseLoRA(spec)
            if !adapters.contains(where: { $0.name == name }) { adapters.append((name, path)) }
        }
    }

    /// Binds and starts serving on `loop`. Call on the loop's thread, or before it runs.
    public static func start(options: SimOptions, loop: EventLoop) throws -> SimServer {
        guard let address = SocketAddress(numericHost: options.host, port: options.port) else {
            throw SimServerError("sim: host must be a numeric address, got \(options.host)")
        }
        let s = SimServer(options: options, loop: loop)
        s.stepTimer = Timer { [unowned s] in s.onStep() }
        // No connection deadlines: a simulated model server keeps its clients' (the gateway's)
        // keep-alive connections as long as they like, and an idle one arms no timer, so many
        // simulators share two cores. Bodies up to 64 MiB (long prompts).
        let limits = HTTPServerLimits(maxBodyBytes: 64 << 20, headerTimeout: .zero, bodyTimeout: .zero, idleTimeout: .zero)
        s.http = try HTTPServer(address: address, loop: loop, reusePort: options.reusePort, limits: limits) { [unowned s] req, resp in
            s.handle(req, resp)
        }
        return s
    }

    /// Stops listening, closes connections and forgets in-flight requests.
    public func close() {
        loop.cancel(stepTimer)
        http.close()
        for id in pending.keys { engine.abort(id, now: loop.now) }
        pending.removeAll()
        webSockets.removeAll()
    }

    /// Runs a server on the calling thread's own event loop until SIGINT or SIGTERM (what
    /// `sluice sim` does). Prints the listening address on standard output.
    public static func run(options: SimOptions) throws {
        let signals = [Signals.interrupt, Signals.terminate]
        Signals.block(signals)
        let loop = try EventLoop()
        let server = try SimServer.start(options: options, loop: loop)
        print("sluice sim: serving \(options.model) (adapters: \(server.adapters.map(\.name).joined(separator: ",")))"
              + " on http://\(server.address)", terminator: "\n")
        let t = Threads.spawn(name: "sluice-sim") { loop.run() }
        _ = Signals.wait(signals)
        nonisolated(unsafe) let s = server
        loop.execute { s.close() }
        loop.stop()
        Threads.join(t)
    }

    // MARK: routing

    private func handle(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        switch (req.method, req.path) {
        case ("GET", "/health"):
            resp.respond(status: 200, headers: [], body: [])
        case ("GET", "/v1/models"):
            resp.respond(status: 200, modelsJSON())
        case ("GET", "/metrics"):
            resp.respond(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", metricsText())
        case ("GET", "/version"):
            resp.respond(status: 200, "{\"version\":\"0.32.0\"}")
        case ("POST", "/v1/chat/completions"):
            generateWithFaults(req, resp, kind: .chat)
        case ("POST", "/v1/completions"):
            generateWithFaults(req, resp, kind: .completion)
        case ("POST", "/v1/embeddings"):
            generateWithFaults(req, resp, kind: .embedding)
        case ("POST", "/v1/messages"):
            anthropicMessages(req, resp)
        case ("POST", "/v1/messages/count_tokens"):
            anthropicCountTokens(req, resp)
        case ("POST", "/v1/responses"):
            createResponse(req, resp)
        case ("POST", "/v1/rerank"), ("POST", "/rerank"), ("POST", "/v2/rerank"):
            rerank(req, resp)
        case ("POST", "/v1/score"), ("POST", "/score"):
            score(req, resp)
        case ("POST", "/classify"):
            classify(req, resp)
        case ("POST", "/pooling"):
            pooling(req, resp)
        case ("POST", "/tokenize"):
            tokenize(req, resp)
        case ("POST", "/detokenize"):
            detokenize(req, resp)
        case ("POST", "/v1/audio/transcriptions"):
            audio(req, resp, translation: false)
        case ("POST", "/v1/audio/translations"):
            audio(req, resp, translation: true)
        case ("GET", "/v1/realtime"):
            realtime(req, resp)
        case ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"):
            v2Health(req, resp)
        case (_, let p) where p.hasPrefix("/v1/responses/"):
            responseByID(req, resp)
        case (_, let p) where p.hasPrefix("/v2/models/"):
            v2Model(req, resp)
        case ("POST", "/v1/load_lora_adapter"):
            loadAdapter(req, resp)
        case ("POST", "/v1/unload_lora_adapter"):
            unloadAdapter(req, resp)
        case (_, "/health"), (_, "/v1/models"), (_, "/metrics"), (_, "/v1/chat/completions"), (_, "/v1/completions"),
             (_, "/v1/embeddings"), (_, "/v1/load_lora_adapter"), (_, "/v1/unload_lora_adapter"), (_, "/version"),
             (_, "/v1/messages"), (_, "/v1/messages/count_tokens"), (_, "/v1/responses"), (_, "/v1/rerank"), (_, "/rerank"),
             (_, "/v2/rerank"), (_, "/v1/score"), (_, "/score"), (_, "/classify"), (_, "/pooling"), (_, "/tokenize"),
             (_, "/detokenize"), (_, "/v1/audio/transcriptions"), (_, "/v1/audio/translations"):
            resp.respond(status: 405, "{\"detail\":\"Method Not Allowed\"}")
        default:
            resp.respond(status: 404, "{\"detail\":\"Not Found\"}")
        }
    }

    // MARK: driving the engine

    /// Arms the step timer for the engine's next deadline (none when idle).
    func armStepTimer() {
        guard let d = engine.nextDeadline else {
            loop.cancel(stepTimer)
            return
        }
        if !stepTimer.isArmed || stepTimer.deadline != d { loop.schedule(stepTimer, at: d) }
    }

    private func onStep() {
        let now = loop.now
        // Clients that went away abort their sequences (vLLM does so at once, too); background
        // responses run without one.
        for (id, p) in pending where !p.responder.isOpen && !p.detached {
            engine.abort(id, now: now)
            pending.removeValue(forKey: id)
            p.onFinish?(p, .abort)  // the APIs with state (a stored response) record it
        }
        events.removeAll(keepingCapacity: true)
        engine.advance(to: now, into: &events)
        for e in events { deliver(e) }
        armStepTimer()
    }

    private func deliver(_ e: SimEvent) {
        guard let p = pending[e.id] else { return }
        if p.kind == .custom {
            switch e.kind {
            case .token(let index):
                let piece = SimText.token(seed: options.seed, key: p.textKey, index: index)
                p.generated = index + 1
                p.text += piece
                p.onToken?(p, piece, index)
            case .finished(let reason):
                pending.removeValue(forKey: e.id)
                p.onFinish?(p, reason)
            }
            return
        }
        switch e.kind {
        case .token(let index):
            let piece = SimText.token(seed: options.seed, key: p.textKey, index: index)
            p.generated = index + 1
            if p.stream {
                writeTokenChunk(p, piece: piece, index: index, last: index + 1 == p.maxTokens)
            } else {
                p.text += piece
            }
        case .finished(let reason):
            pending.removeValue(forKey: e.id)
            finishResponse(p, reason: reason)
        }
    }

    // MARK: helpers

    static func wallSeconds() -> Double {
        let w = WallClock.now()
        return Double(w.seconds) + Double(w.nanoseconds) / 1e9
    }

    static func hex(_ v: UInt64, digits: Int) -> String {
        let s = String(v, radix: 16)
        let padded = String(repeating: "0", count: max(0, 16 - s.count)) + s
        return String(padded.suffix(digits))
    }

    func newID(_ prefix: String) -> String { prefix + Self.hex(ids.next(), digits: 16) }

    /// Wall-clock seconds of a loop instant.
    func wallSeconds(of t: Instant) -> Double {
        let now = Instant.now()
        let wall = Self.wallSeconds()
        if t >= now { return wall + Double(t.nanoseconds - now.nanoseconds) / 1e9 }
        return wall - Double(now.nanoseconds - t.nanoseconds) / 1e9
    }
}
