import SluiceIO
import SluiceHTTP

/// The OpenAI endpoints: request validation with vLLM's error texts, submission to the
/// engine, and responses in vLLM 0.32's exact key order (see ../shared/vllm-reference/).
extension SimServer {
    static let jsonHeaders = [("content-type", "application/json")]

    func sendError(_ resp: HTTPResponder, status: Int, message: String, type: String, param: String?) {
        let body = "{\"error\":{\"message\":\(JSONText.quote(message)),\"type\":\(JSONText.quote(type)),"
            + "\"param\":\(JSONText.quoteOrNull(param)),\"code\":\(status)}}"
        resp.respond(status: status, headers: Self.jsonHeaders, body: Array(body.utf8))
    }

    /// FastAPI/pydantic's wording for one validation error, as vLLM relays it.
    func sendValidationError(_ resp: HTTPResponder, kind: String, loc: String, msg: String, input: String, ctx: String? = nil) {
        var m = "1 validation error:\n  {'type': '\(kind)', 'loc': '\(loc)', 'msg': '\(msg)', 'input': \(input)"
        if let c = ctx { m += ", 'ctx': {'error': '\(c)'}" }
        m += "}"
        sendError(resp, status: 400, message: m, type: "Bad Request", param: loc)
    }

    /// Parses a JSON object body or answers the error vLLM gives; nil when answered.
    func parseBody(_ req: HTTPServerRequest, _ resp: HTTPResponder) -> JSONValue? {
        let body: JSONValue
        do {
            body = try JSONValue.parse(req.body)
        } catch {
            sendValidationError(resp, kind: "json_invalid", loc: "body.\(error.offset)", msg: "JSON decode error",
                                input: "'<dict of 0 items>'", ctx: error.message)
            return nil
        }
        guard case .object(let members) = body else {
            sendValidationError(resp, kind: "model_attributes_type", loc: "body",
                                msg: "Input should be a valid dictionary or object to extract fields from", input: "'...'")
            return nil
        }
        _ = members
        return body
    }

    func missing(_ resp: HTTPResponder, _ field: String, _ body: JSONValue) {
        var n = 0
        if case .object(let m) = body { n = m.count }
        sendValidationError(resp, kind: "missing", loc: "body.\(field)", msg: "Field required", input: "'<dict of \(n) items>'")
    }

    func invalid(_ resp: HTTPResponder, _ field: String, _ msg: String) {
        sendValidationError(resp, kind: "value_error", loc: "body.\(field)", msg: msg, input: "'...'")
    }

    /// The text a chat template would produce: role markers around each message, then the
    /// assistant's turn. Shared system prompts therefore give shared prefixes.
    static func chatPrompt(_ messages: [JSONValue]) -> [UInt8]? {
        var out: [UInt8] = []
        for m in messages {
            guard let role = m["role"]?.string else { return nil }
            out += Array("<|\(role)|>\n".utf8)
            switch m["content"] {
            case .string(let s)?: out += Array(s.utf8)
            case .array(let parts)?:
                for p in parts {
                    if let t = p["text"]?.string { out += Array(t.utf8) } else if !p.isObject { return nil }
                }
            case .null?, nil: break
            default: return nil
            }
            out += Array("</s>\n".utf8)
        }
        out += Array("<|assistant|>\n".utf8)
        return out
    }

    /// One prompt from a string or a token-id array (4 bytes per id, so tokens are exact).
    static func promptBytes(_ v: JSONValue) -> [UInt8]? {
        switch v {
        case .string(let s): return Array(s.utf8)
        case .array(let items) where items.allSatisfy({ $0.int != nil }):
            var out: [UInt8] = []
            for t in items {
                let x = UInt32(truncatingIfNeeded: t.int!)
                out += [UInt8(x & 0xFF), UInt8(x >> 8 & 0xFF), UInt8(x >> 16 & 0xFF), UInt8(x >> 24)]
            }
            return out
        default: return nil
        }
    }

    /// `prompt` / `input`: a string, a token array, or a list of either.
    static func promptList(_ v: JSONValue) -> [[UInt8]]? {
        if let one = promptBytes(v) { return [one] }
        guard case .array(let items) = v, !items.isEmpty else { return nil }
        var out: [[UInt8]] = []
        for i in items {
            guard let p = promptBytes(i) else { return nil }
            out.append(p)
        }
        return out
    }

    func generate(_ req: HTTPServerRequest, _ resp: HTTPResponder, kind: Pending.Kind) {
        guard let body = parseBody(req, resp) else { return }
        let model = body["model"]?.string ?? options.model
        let adapter: String?
        if model == options.model {
            adapter = nil
        } else if adapters.contains(where: { $0.name == model }) {
            adapter = model
        } else {
            sendError(resp, status: 404, message: "The model `\(model)` does not exist. Valid aliases: \(options.model).",
                      type: "NotFoundError", param: "model")
            return
        }

        var prompts: [[UInt8]]
        switch kind {
        case .chat:
            guard let field = body["messages"] else { return missing(resp, "messages", body) }
            guard let messages = field.array, let p = Self.chatPrompt(messages) else {
                return invalid(resp, "messages", "Input should be a valid list of messages")
            }
            prompts = [p]
        case .completion:
            guard let field = body["prompt"] else { return missing(resp, "prompt", body) }
            guard let p = Self.promptList(field) else { return invalid(resp, "prompt", "Input should be a valid string or list") }
            prompts = p
        case .embedding:
            guard let field = body["input"] else { return missing(resp, "input", body) }
            guard let p = Self.promptList(field) else { return invalid(resp, "input", "Input should be a valid string or list") }
            prompts = p
        case .custom:
            return
        }
        // Batched completion prompts are simulated as one (their concatenation); embeddings
        // of several inputs are one engine request too, with one vector per input.
        let prompt = prompts.count == 1 ? prompts[0] : Array(prompts.joined(separator: [0x0A]))
        let promptTokens = kind == .embedding
            ? prompts.reduce(0) { $0 + SimRequest.tokens(forBytes: $1.count) } : SimRequest.tokens(forBytes: prompt.count)
        let maxLen = options.maxModelLen
        if promptTokens >= maxLen && kind != .embedding || promptTokens > maxLen {
            sendError(resp, status: 400, message: "This model's maximum context length is \(maxLen) tokens. However, your request has "
                      + "\(promptTokens) input tokens. Please reduce the length of the input messages. (parameter=input_tokens, value=\(promptTokens))",
                      type: "BadRequestError", param: "input_tokens")
            return
        }

        var maxTokens = 0
        if kind != .embedding {
            let field = kind == .chat ? (body["max_completion_tokens"].flatMap { $0.isNull ? nil : $0 } ?? body["max_tokens"]) : body["max_tokens"]
            if let v = field, !v.isNull {
                let name = kind == .chat && body["max_completion_tokens"].map({ !$0.isNull }) == true ? "max_completion_tokens" : "max_tokens"
                guard let n = v.int else { return invalid(resp, name, "Input should be a valid integer") }
                guard n >= 1 else {
                    sendError(resp, status: 400, message: "\(name) must be at least 1, got \(n). (parameter=\(name), value=\(n))",
                              type: "BadRequestError", param: name)
                    return
                }
                if n > maxLen {
                    sendError(resp, status: 400, message: "\(name)=\(n) cannot be greater than max_model_len=\(maxLen). Please request fewer output tokens. (parameter=\(name), value=\(n))",
                              type: "BadRequestError", param: name)
                    return
                }
                if n > maxLen - promptTokens {
                    sendError(resp, status: 400, message: "'max_tokens' or 'max_completion_tokens' is too large: \(n). This model's maximum context length is "
                              + "\(maxLen) tokens and your request has \(promptTokens) input tokens (\(n) > \(maxLen) - \(promptTokens)). (parameter=\(name), value=\(n))",
                              type: "BadRequestError", param: name)
                    return
                }
                maxTokens = n
            } else {
                maxTokens = max(1, min(options.defaultMaxTokens, maxLen - promptTokens))
            }
        }

        let stream = kind != .embedding && body["stream"]?.bool == true
        let streamOptions = body["stream_options"].flatMap { $0.isNull ? nil : $0 }
        if streamOptions != nil && !stream && kind != .embedding {
            sendError(resp, status: 400, message: "Stream options can only be defined when `stream=True`.",
                      type: "BadRequestError", param: nil)
            return
        }
        let includeUsage = streamOptions?["include_usage"]?.bool == true
        if let limit = options.maxQueuedRequests, engine.waitingCount >= limit {
            admissionRejections += 1
            sendError(resp, status: 503, message: "The server is at capacity (max_num_queued_reqs=\(limit)); retry later.",
                      type: "ServiceUnavailableError", param: nil)
            return
        }

        // Same prompt, adapter and seed parameter → same text (temperature-0 behaviour).
        var key = SimRandom.hash(prompt, seed: SimRandom.hash(adapter ?? ""))
        if let s = body["seed"]?.int { key ^= SimRandom.mix(UInt64(bitPattern: Int64(s))) }
        let n = body["n"]?.int ?? 1
        let now = loop.now
        let id = engine.submit(SimRequest(adapter: adapter, prompt: prompt, maxTokens: maxTokens, n: n), now: now)
        let prefix = kind == .chat ? "chatcmpl-" : kind == .completion ? "cmpl-" : "embd-"
        let p = Pending(responder: resp, kind: kind, stream: stream, includeUsage: includeUsage, model: model,
                        id: newID(prefix), created: Int(Self.wallSeconds()), promptTokens: promptTokens,
                        maxTokens: maxTokens, textKey: key)
        if kind == .embedding {
            p.inputs = prompts.map { String(decoding: $0, as: UTF8.self) }
            p.embeddingFormatBase64 = body["encoding_format"]?.string == "base64"
        }
        pending[id] = p
        if stream { resp.startStream(status: 200, headers: [("content-type", "text/event-stream; charset=utf-8")]) }
        armStepTimer()
    }

    // MARK: responses

    private func head(_ p: Pending, object: String) -> String {
        "{\"id\":\"\(p.id)\",\"object\":\"\(object)\",\"created\":\(p.created),\"model\":\(JSONText.quote(p.model)),"
    }

    private func usageShort(_ p: Pending) -> String {
        "{\"prompt_tokens\":\(p.promptTokens),\"total_tokens\":\(p.promptTokens + p.generated),\"completion_tokens\":\(p.generated)}"
    }

    private func usageLong(_ p: Pending) -> String {
        "{\"prompt_tokens\":\(p.promptTokens),\"total_tokens\":\(p.promptTokens + p.generated),\"completion_tokens\":\(p.generated),"
            + "\"prompt_tokens_details\":null,\"completion_tokens_details\":null}"
    }

    func writeTokenChunk(_ p: Pending, piece: String, index: Int, last: Bool) {
        var out = ""
        let finish = last ? "\"length\"" : "null"
        switch p.kind {
        case .chat:
            if index == 0 {
                out += "data: " + head(p, object: "chat.completion.chunk")
                    + "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],"
                    + "\"prompt_token_ids\":null,\"prompt_text\":null}\n\n"
            }
            out += "data: " + head(p, object: "chat.completion.chunk")
                + "\"choices\":[{\"index\":0,\"delta\":{\"content\":\(JSONText.quote(piece))},\"logprobs\":null,\"finish_reason\":\(finish),"
                + (last ? "\"stop_reason\":null," : "") + "\"token_ids\":null}]"
            // vLLM puts the fingerprint on the last content chunk only when no usage chunk follows.
            out += last && !p.includeUsage ? ",\"system_fingerprint\":\"\(fingerprint)\"}\n\n" : "}\n\n"
        case .completion:
            out += "data: " + head(p, object: "text_completion")
                + "\"choices\":[{\"index\":0,\"text\":\(JSONText.quote(piece)),\"logprobs\":null,\"finish_reason\":\(finish),"
                + "\"stop_reason\":null,\"prompt_token_ids\":null,\"token_ids\":null}]}\n\n"
        case .embedding, .custom:
            return
        }
        p.responder.writeChunk(Array(out.utf8))
    }

    func finishResponse(_ p: Pending, reason: SimFinishReason) {
        let r = p.responder
        guard r.isOpen else { return }
        if reason == .abort || reason == .error {
            let message = reason == .error ? "The request needs more KV cache than the server has." : "The request was aborted."
            if p.stream {
                let e = "{\"error\":{\"message\":\(JSONText.quote(message)),\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}"
                r.writeChunk(Array("data: \(e)\n\ndata: [DONE]\n\n".utf8))
                r.endStream()
            } else {
                sendError(r, status: 500, message: message, type: "InternalServerError", param: nil)
            }
            return
        }
        if p.stream {
            var out = ""
            if p.includeUsage {
                out += "data: " + head(p, object: p.kind == .chat ? "chat.completion.chunk" : "text_completion")
                    + "\"choices\":[],\"usage\":\(usageShort(p)),\"system_fingerprint\":\"\(fingerprint)\"}\n\n"
            }
            out += "data: [DONE]\n\n"
            r.writeChunk(Array(out.utf8))
            r.endStream()
            return
        }
        let finish = reason == .length ? "\"length\"" : "\"stop\""
        let body: String
        switch p.kind {
        case .chat:
            body = head(p, object: "chat.completion")
                + "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\(JSONText.quote(p.text)),\"refusal\":null,"
                + "\"annotations\":null,\"audio\":null,\"function_call\":null,\"reasoning\":null},\"logprobs\":null,\"finish_reason\":\(finish),"
                + "\"stop_reason\":null,\"token_ids\":null,\"routed_experts\":null}],\"service_tier\":null,"
                + "\"system_fingerprint\":\"\(fingerprint)\",\"usage\":\(usageLong(p)),\"prompt_logprobs\":null,\"prompt_token_ids\":null,"
                + "\"prompt_text\":null,\"kv_transfer_params\":null,\"ec_transfer_params\":null,\"metrics\":null}"
        case .completion:
            body = head(p, object: "text_completion")
                + "\"choices\":[{\"index\":0,\"text\":\(JSONText.quote(p.text)),\"logprobs\":null,\"finish_reason\":\(finish),"
                + "\"stop_reason\":null,\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"token_ids\":null}],\"service_tier\":null,"
                + "\"system_fingerprint\":\"\(fingerprint)\",\"usage\":\(usageLong(p)),\"kv_transfer_params\":null}"
        case .embedding, .custom:
            body = embeddingsJSON(p)
        }
        r.respond(status: 200, headers: Self.jsonHeaders, body: Array(body.utf8))
    }

    /// Deterministic unit vectors, one per input, from the input's bytes and the adapter.
    private func embeddingsJSON(_ p: Pending) -> String {
        var data: [String] = []
        for (i, input) in p.inputs.enumerated() {
            var rng = SimRandom(seed: SimRandom.hash(input, seed: SimRandom.hash(p.model)) ^ options.seed)
            var v = (0..<max(1, options.embeddingDimensions)).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let norm = v.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            if norm > 0 { v = v.map { $0 / norm } }
            let vector: String
            if p.embeddingFormatBase64 {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(v.count * 4)
                for f in v {
                    let b = f.bitPattern
                    bytes += [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]
                }
                vector = "\"" + Base64.encode(bytes) + "\""
            } else {
                vector = "[" + v.map { "\($0)" }.joined(separator: ",") + "]"
            }
            data.append("{\"index\":\(i),\"object\":\"embedding\",\"embedding\":\(vector)}")
        }
        return head(p, object: "list") + "\"data\":[" + data.joined(separator: ",") + "],"
            + "\"usage\":{\"prompt_tokens\":\(p.promptTokens),\"total_tokens\":\(p.promptTokens),\"completion_tokens\":0,"
            + "\"prompt_tokens_details\":null}}"
    }

    // MARK: models

    func modelsJSON() -> String {
        let created = Int(Self.wallSeconds())
        func entry(id: String, root: String, parent: String?, maxLen: Int?) -> String {
            "{\"id\":\(JSONText.quote(id)),\"object\":\"model\",\"created\":\(created),\"owned_by\":\"vllm\",\"root\":\(JSONText.quote(root)),"
                + "\"parent\":\(JSONText.quoteOrNull(parent)),\"max_model_len\":\(maxLen.map(String.init) ?? "null"),"
                + "\"permission\":[{\"id\":\"\(newID("modelperm-"))\",\"object\":\"model_permission\",\"created\":\(created),"
                + "\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,"
                + "\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}"
        }
        var data = [entry(id: options.model, root: options.modelRoot ?? "/models/\(options.model)", parent: nil, maxLen: options.maxModelLen)]
        for a in adapters { data.append(entry(id: a.name, root: a.path, parent: options.model, maxLen: nil)) }
        return "{\"object\":\"list\",\"data\":[" + data.joined(separator: ",") + "]}"
    }
}

/// RFC 4648 base64 (embeddings' `encoding_format: "base64"`, the OpenAI SDK's default).
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            var n = UInt32(bytes[i]) << 16
            if rest == 2 { n |= UInt32(bytes[i + 1]) << 8 }
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
            out += rest == 2 ? [alphabet[Int(n >> 6 & 63)], UInt8(ascii: "=")] : [UInt8(ascii: "="), UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }
}
