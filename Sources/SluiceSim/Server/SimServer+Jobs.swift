import SluiceIO
import SluiceHTTP

/// Shared plumbing of the APIs beyond OpenAI's three: model resolution and generation through
/// the engine with per-token and finish callbacks (``SimServer/Pending/Kind/custom``).
extension SimServer {
    /// The served model or a registered adapter: (model name, adapter); nil for an unknown name.
    func resolve(_ name: String?) -> (model: String, adapter: String?)? {
        let model = name ?? options.model
        if model == options.model { return (model, nil) }
        if adapters.contains(where: { $0.name == model }) { return (model, model) }
        return nil
    }

    /// The 404 vLLM's OpenAI-shaped handlers give for an unknown model.
    func unknownModel(_ resp: HTTPResponder, _ model: String) {
        sendError(resp, status: 404, message: "The model `\(model)` does not exist. Valid aliases: \(options.model).",
                  type: "NotFoundError", param: "model")
    }

    /// The context-length check vLLM makes before generating; true when answered.
    func rejectLength(_ resp: HTTPResponder, promptTokens: Int, maxTokens: Int?, name: String) -> Bool {
        let maxLen = options.maxModelLen
        if promptTokens >= maxLen {
            sendError(resp, status: 400, message: "This model's maximum context length is \(maxLen) tokens. However, your request has "
                      + "\(promptTokens) input tokens. Please reduce the length of the input messages. (parameter=input_tokens, value=\(promptTokens))",
                      type: "BadRequestError", param: "input_tokens")
            return true
        }
        if let n = maxTokens, n > maxLen - promptTokens {
            sendError(resp, status: 400, message: "'max_tokens' or 'max_completion_tokens' is too large: \(n). This model's maximum context length is "
                      + "\(maxLen) tokens and your request has \(promptTokens) input tokens (\(n) > \(maxLen) - \(promptTokens)). (parameter=\(name), value=\(n))",
                      type: "BadRequestError", param: name)
            return true
        }
        return false
    }

    /// Completion length without an explicit limit.
    func defaultMaxTokens(promptTokens: Int) -> Int {
        max(1, min(options.defaultMaxTokens, options.maxModelLen - promptTokens))
    }

    /// Submits a generation to the engine; `onToken`/`onFinish` render the answer.
    @discardableResult
    func submitCustom(_ resp: HTTPResponder, model: String, adapter: String?, prompt: [UInt8], maxTokens: Int, id: String,
                      seed: Int? = nil, stream: Bool = false,
                      onToken: ((Pending, String, Int) -> Void)? = nil,
                      onFinish: @escaping (Pending, SimFinishReason) -> Void) -> (engineID: UInt64, pending: Pending) {
        var key = SimRandom.hash(prompt, seed: SimRandom.hash(adapter ?? ""))
        if let s = seed { key ^= SimRandom.mix(UInt64(bitPattern: Int64(s))) }
        let promptTokens = SimRequest.tokens(forBytes: prompt.count)
        let engineID = engine.submit(SimRequest(adapter: adapter, prompt: prompt, maxTokens: maxTokens), now: loop.now)
        let p = Pending(responder: resp, kind: .custom, stream: stream, includeUsage: false, model: model, id: id,
                        created: Int(Self.wallSeconds()), promptTokens: promptTokens, maxTokens: maxTokens, textKey: key)
        p.onToken = onToken
        p.onFinish = onFinish
        pending[engineID] = p
        armStepTimer()
        return (engineID, p)
    }

    /// Stops a generation (a cancelled background response).
    func abortCustom(_ engineID: UInt64) {
        engine.abort(engineID, now: loop.now)
        pending.removeValue(forKey: engineID)
        armStepTimer()
    }

    /// One SSE event with an `event:` line (Anthropic and the Responses API send them).
    static func namedEvent(_ name: String, _ json: String) -> [UInt8] {
        Array("event: \(name)\ndata: \(json)\n\n".utf8)
    }

    static let sseHeaders = [("content-type", "text/event-stream; charset=utf-8")]

    /// A chat-template rendering of a system text and messages whose content is a string or
    /// content blocks with `text` (Anthropic, the Responses API); nil for a malformed list.
    static func templated(system: String?, messages: [JSONValue], contentKey: String = "content") -> [UInt8]? {
        var turns: [JSONValue] = []
        if let s = system { turns.append(.object([("role", .string("system")), ("content", .string(s))])) }
        for m in messages {
            guard let role = m["role"]?.string else { return nil }
            var text = ""
            switch m[contentKey] {
            case .string(let s)?: text = s
            case .array(let blocks)?:
                for b in blocks {
                    if let t = b["text"]?.string { text += t }
                    if case .string(let s)? = b["content"] { text += s }
                    if case .array(let inner)? = b["content"] { for i in inner { if let t = i["text"]?.string { text += t } } }
                }
            default: break
            }
            turns.append(.object([("role", .string(role)), ("content", .string(text))]))
        }
        return chatPrompt(turns)
    }
}
