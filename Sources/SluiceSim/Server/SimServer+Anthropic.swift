import SluiceIO
import SluiceHTTP

/// Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) as vLLM 0.32 serves them
/// (Tests/vllm-captures/generate-messages*.txt): validation errors in vLLM's OpenAI shape (they
/// happen before the Anthropic handler), the handler's own errors in Anthropic's shape, ids
/// `chatcmpl-…` (vLLM converts to a chat completion), streams as `event:`/`data:` pairs.
extension SimServer {
    func sendAnthropicError(_ resp: HTTPResponder, status: Int, type: String, message: String) {
        let body = "{\"type\":\"error\",\"error\":{\"type\":\(JSONText.quote(type)),\"message\":\(JSONText.quote(message))}}"
        resp.respond(status: status, headers: Self.jsonHeaders, body: Array(body.utf8))
    }

    /// The prompt of a Messages or count_tokens body, or nil when answered with an error.
    private func anthropicPrompt(_ body: JSONValue, _ resp: HTTPResponder) -> [UInt8]? {
        guard let m = body["messages"] else { missing(resp, "messages", body); return nil }
        var system: String?
        switch body["system"] {
        case .string(let s)?: system = s
        case .array(let blocks)?: system = blocks.compactMap { $0["text"]?.string }.joined()
        case .null?, nil: break
        default: invalid(resp, "system", "Input should be a valid string"); return nil
        }
        guard let list = m.array, let p = Self.templated(system: system, messages: list) else {
            invalid(resp, "messages", "Input should be a valid list")
            return nil
        }
        return p
    }

    func anthropicMessages(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        guard let modelField = body["model"] else { return missing(resp, "model", body) }
        guard let name = modelField.string else { return invalid(resp, "model", "Input should be a valid string") }
        guard let field = body["max_tokens"] else { return missing(resp, "max_tokens", body) }
        guard let maxTokens = field.int else { return invalid(resp, "max_tokens", "Input should be a valid integer") }
        guard maxTokens > 0 else {
            let m = "1 validation error:\n  {'type': 'value_error', 'loc': 'body.max_tokens', 'msg': 'Value error, max_tokens must be positive', "
                + "'input': '\(maxTokens)', 'ctx': {'error': ValueError('max_tokens must be positive')}}"
            return sendError(resp, status: 400, message: m, type: "Bad Request", param: "body.max_tokens")
        }
        guard let prompt = anthropicPrompt(body, resp) else { return }
        guard let (model, adapter) = resolve(name) else {
            return sendAnthropicError(resp, status: 404, type: "NotFoundError",
                                      message: "The model `\(name)` does not exist. Valid aliases: \(options.model).")
        }
        let promptTokens = SimRequest.tokens(forBytes: prompt.count)
        if promptTokens >= options.maxModelLen || maxTokens > options.maxModelLen - promptTokens {
            return sendAnthropicError(resp, status: 400, type: "BadRequestError",
                                      message: "'max_tokens' is too large: \(maxTokens). This model's maximum context length is \(options.maxModelLen) tokens "
                                      + "and your request has \(promptTokens) input tokens.")
        }
        let stream = body["stream"]?.bool == true
        let id = newID("chatcmpl-")
        func stopReason(_ r: SimFinishReason) -> String { r == .length ? "max_tokens" : "end_turn" }
        if stream {
            resp.startStream(status: 200, headers: Self.sseHeaders)
            resp.writeChunk(Self.namedEvent("message_start",
                "{\"type\":\"message_start\",\"message\":{\"id\":\"\(id)\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
                + "\"model\":\(JSONText.quote(model)),\"stop_reason\":null,\"stop_sequence\":null,"
                + "\"usage\":{\"input_tokens\":\(promptTokens),\"output_tokens\":0}}}"))
        }
        submitCustom(resp, model: model, adapter: adapter, prompt: prompt, maxTokens: maxTokens, id: id, stream: stream,
                     onToken: stream ? { p, piece, index in
                         var out: [UInt8] = []
                         if index == 0 {
                             out += Self.namedEvent("content_block_start",
                                 "{\"type\":\"content_block_start\",\"content_block\":{\"type\":\"text\",\"text\":\"\"},\"index\":0}")
                         }
                         out += Self.namedEvent("content_block_delta",
                             "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\(JSONText.quote(piece))},\"index\":0}")
                         p.responder.writeChunk(out)
                     } : nil,
                     onFinish: { [unowned self] p, reason in
                         let r = p.responder
                         guard r.isOpen else { return }
                         if reason == .abort || reason == .error {
                             let message = reason == .error ? "The request needs more KV cache than the server has." : "The request was aborted."
                             if stream {
                                 r.writeChunk(Self.namedEvent("error", "{\"type\":\"error\",\"error\":{\"type\":\"internal_error\",\"message\":\(JSONText.quote(message))}}"))
                                 r.endStream()
                             } else {
                                 self.sendAnthropicError(r, status: 500, type: "InternalServerError", message: message)
                             }
                             return
                         }
                         if stream {
                             var out: [UInt8] = []
                             if p.generated > 0 { out += Self.namedEvent("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}") }
                             out += Self.namedEvent("message_delta",
                                 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"\(stopReason(reason))\",\"stop_sequence\":null},"
                                 + "\"usage\":{\"input_tokens\":\(p.promptTokens),\"output_tokens\":\(p.generated)}}")
                             out += Self.namedEvent("message_stop", "{\"type\":\"message_stop\"}")
                             r.writeChunk(out)
                             r.endStream()
                         } else {
                             let body = "{\"id\":\"\(p.id)\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\(JSONText.quote(p.text))}],"
                                 + "\"model\":\(JSONText.quote(p.model)),\"stop_reason\":\"\(stopReason(reason))\","
                                 + "\"usage\":{\"input_tokens\":\(p.promptTokens),\"output_tokens\":\(p.generated)}}"
                             r.respond(status: 200, headers: Self.jsonHeaders, body: Array(body.utf8))
                         }
                     })
    }

    func anthropicCountTokens(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        guard let modelField = body["model"] else { return missing(resp, "model", body) }
        guard let name = modelField.string else { return invalid(resp, "model", "Input should be a valid string") }
        guard let prompt = anthropicPrompt(body, resp) else { return }
        guard resolve(name) != nil else {
            return sendAnthropicError(resp, status: 404, type: "NotFoundError",
                                      message: "The model `\(name)` does not exist. Valid aliases: \(options.model).")
        }
        let n = SimRequest.tokens(forBytes: prompt.count)
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array("{\"input_tokens\":\(n),\"context_management\":{\"original_input_tokens\":\(n)}}".utf8))
    }
}
