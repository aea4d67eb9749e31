import SluiceIO
import SluiceHTTP

/// One response of the Responses API, kept in the memory of the server that made it (vLLM
/// started with `VLLM_ENABLE_RESPONSES_API_STORE=1`), which is why follow-ups must come back here.
final class StoredResponse {
    let id: String
    let created: Int
    let model: String
    let instructions: String?
    let previousResponseID: String?
    let temperature: Double
    let maxOutputTokens: Int
    let background: Bool
    let user: String?
    /// `queued`, `in_progress`, `completed`, `incomplete`, `cancelled`, `failed`.
    var status: String
    let messageID: String
    var text = ""
    var inputTokens: Int
    var outputTokens = 0
    /// The conversation up to and including this turn's input (a follow-up continues it).
    var prompt: [UInt8]
    var engineID: UInt64?

    init(id: String, created: Int, model: String, instructions: String?, previousResponseID: String?, temperature: Double,
         maxOutputTokens: Int, background: Bool, user: String?, status: String, messageID: String, inputTokens: Int, prompt: [UInt8]) {
        self.id = id
        self.created = created
        self.model = model
        self.instructions = instructions
        self.previousResponseID = previousResponseID
        self.temperature = temperature
        self.maxOutputTokens = maxOutputTokens
        self.background = background
        self.user = user
        self.status = status
        self.messageID = messageID
        self.inputTokens = inputTokens
        self.prompt = prompt
    }

    /// The conversation a follow-up continues: this turn's prompt and answer.
    var conversation: [UInt8] { prompt + Array(text.utf8) + Array("</s>\n".utf8) }

    var isDone: Bool { status != "queued" && status != "in_progress" }

    func itemJSON(done: Bool) -> String {
        let content = done ? "[{\"annotations\":[],\"text\":\(JSONText.quote(text)),\"type\":\"output_text\",\"logprobs\":null}]" : "[]"
        return "{\"id\":\"\(messageID)\",\"content\":\(content),\"role\":\"assistant\",\"status\":\"\(done ? "completed" : "in_progress")\","
            + "\"type\":\"message\",\"phase\":null}"
    }

    /// The response object in vLLM 0.32's key order (generate-responses.txt).
    func json(final: Bool) -> String {
        let incomplete = final && status == "incomplete" ? "{\"reason\":\"max_output_tokens\"}" : "null"
        let output = final && outputTokens > 0 && status != "cancelled" ? "[" + itemJSON(done: true) + "]" : "[]"
        let usage = final && (status == "completed" || status == "incomplete")
            ? "{\"input_tokens\":\(inputTokens),\"input_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":0,\"input_tokens_per_turn\":[],"
                + "\"cached_tokens_per_turn\":[]},\"output_tokens\":\(outputTokens),\"output_tokens_details\":{\"reasoning_tokens\":0,"
                + "\"tool_output_tokens\":0,\"output_tokens_per_turn\":[],\"tool_output_tokens_per_turn\":[]},\"total_tokens\":\(inputTokens + outputTokens)}"
            : "null"
        return "{\"id\":\"\(id)\",\"created_at\":\(created),\"incomplete_details\":\(incomplete),\"instructions\":\(JSONText.quoteOrNull(instructions)),"
            + "\"metadata\":null,\"model\":\(JSONText.quote(model)),\"object\":\"response\",\"output\":\(output),\"parallel_tool_calls\":true,"
            + "\"temperature\":\(temperature),\"tool_choice\":\"none\",\"tools\":[],\"top_p\":1.0,\"background\":\(background),"
            + "\"max_output_tokens\":\(maxOutputTokens),\"max_tool_calls\":null,\"previous_response_id\":\(JSONText.quoteOrNull(previousResponseID)),"
            + "\"prompt\":null,\"reasoning\":null,\"service_tier\":\"auto\",\"status\":\"\(final ? status : "in_progress")\",\"text\":null,"
            + "\"top_logprobs\":null,\"truncation\":\"disabled\",\"usage\":\(usage),\"user\":\(JSONText.quoteOrNull(user)),"
            + "\"presence_penalty\":0.0,\"frequency_penalty\":0.0,\"kv_transfer_params\":null,\"ec_transfer_params\":null,"
            + "\"input_messages\":null,\"output_messages\":null}"
    }
}

/// The Responses API (`POST /v1/responses`, `GET /v1/responses/{id}`, `POST …/{id}/cancel`) as
/// vLLM 0.32 serves it (Tests/vllm-captures/generate-responses*.txt): ids `resp_…` known only to
/// this instance, 404 `Response with id '…' not found.` for others, background responses that a
/// cancel stops.
extension SimServer {
    func notFound(_ resp: HTTPResponder, responseID id: String) {
        sendError(resp, status: 404, message: "Response with id '\(id)' not found.", type: "invalid_request_error", param: "response_id")
    }

    func remember(_ r: StoredResponse) {
        if storedResponses[r.id] == nil { storedOrder.append(r.id) }
        storedResponses[r.id] = r
        while storedOrder.count > max(1, options.maxStoredResponses) {
            storedResponses.removeValue(forKey: storedOrder.removeFirst())
        }
    }

    /// This turn's input as chat turns: a string is one user message; items are messages (role,
    /// content) and tool outputs.
    private static func inputTurns(_ input: JSONValue) -> [JSONValue]? {
        switch input {
        case .string(let s):
            return [.object([("role", .string("user")), ("content", .string(s))])]
        case .array(let items):
            var out: [JSONValue] = []
            for i in items {
                if i["role"]?.string != nil { out.append(i) }
                else if let o = i["output"]?.string { out.append(.object([("role", .string("tool")), ("content", .string(o))])) }
                else if !i.isObject { return nil }
            }
            return out
        default:
            return nil
        }
    }

    func createResponse(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        let name = body["model"]?.string
        guard let (model, adapter) = resolve(name) else { return unknownModel(resp, name ?? "") }
        guard let input = body["input"] else { return missing(resp, "input", body) }
        guard let turns = Self.inputTurns(input) else { return invalid(resp, "input", "Input should be a valid string or list") }
        var previous: StoredResponse?
        if let pid = body["previous_response_id"]?.string {
            guard let p = storedResponses[pid] else { return notFound(resp, responseID: pid) }
            previous = p
        }
        let instructions = body["instructions"]?.string
        var prompt = previous?.conversation ?? []
        var turnList: [JSONValue] = []
        if let i = instructions { turnList.append(.object([("role", .string("system")), ("content", .string(i))])) }
        turnList += turns
        guard let rendered = Self.chatPrompt(turnList) else { return invalid(resp, "input", "Input should be a valid list") }
        prompt += rendered
        let promptTokens = SimRequest.tokens(forBytes: prompt.count)
        var maxTokens: Int?
        if let v = body["max_output_tokens"], !v.isNull {
            guard let n = v.int else { return invalid(resp, "max_output_tokens", "Input should be a valid integer") }
            guard n >= 1 else {
                return sendError(resp, status: 400, message: "max_output_tokens must be at least 1, got \(n). (parameter=max_output_tokens, value=\(n))",
                                 type: "BadRequestError", param: "max_output_tokens")
            }
            maxTokens = n
        }
        if rejectLength(resp, promptTokens: promptTokens, maxTokens: maxTokens, name: "max_output_tokens") { return }
        let limit = maxTokens ?? defaultMaxTokens(promptTokens: promptTokens)
        let stream = body["stream"]?.bool == true
        let background = body["background"]?.bool == true
        let store = body["store"]?.bool ?? true
        let r = StoredResponse(id: newID("resp_"), created: Int(Self.wallSeconds()), model: model, instructions: instructions,
                               previousResponseID: previous?.id, temperature: body["temperature"]?.number ?? 1.0, maxOutputTokens: limit,
                               background: background, user: body["user"]?.string, status: background ? "queued" : "in_progress",
                               messageID: newID("msg_"), inputTokens: promptTokens, prompt: prompt)
        if store || background { remember(r) }
        var sequence = 0
        // Event members are in alphabetical order (as vLLM serializes OpenAI's event types):
        // `fields` sort before `sequence_number`, `after` between it and `type`.
        func event(_ type: String, _ fields: String, after: String = "") -> [UInt8] {
            defer { sequence += 1 }
            return Self.namedEvent(type, "{\(fields)\"sequence_number\":\(sequence),\(after)\"type\":\"\(type)\"}")
        }
        let streaming = stream && !background
        if streaming {
            resp.startStream(status: 200, headers: Self.sseHeaders)
            resp.writeChunk(event("response.created", "\"response\":\(r.json(final: false)),")
                            + event("response.in_progress", "\"response\":\(r.json(final: false)),"))
        }
        let (engineID, p) = submitCustom(
            resp, model: model, adapter: adapter, prompt: prompt, maxTokens: limit, id: r.id, seed: body["seed"]?.int, stream: streaming,
            onToken: { p, piece, index in
                r.status = "in_progress"
                r.text = p.text
                r.outputTokens = p.generated
                guard streaming else { return }
                var out: [UInt8] = []
                if index == 0 {
                    out += event("response.output_item.added", "\"item\":\(r.itemJSON(done: false)),\"output_index\":0,")
                    out += event("response.content_part.added", "\"content_index\":0,\"item_id\":\"\(r.messageID)\",\"output_index\":0,"
                                 + "\"part\":{\"annotations\":[],\"text\":\"\",\"type\":\"output_text\",\"logprobs\":[]},")
                }
                out += event("response.output_text.delta", "\"content_index\":0,\"delta\":\(JSONText.quote(piece)),\"item_id\":\"\(r.messageID)\","
                             + "\"logprobs\":[],\"output_index\":0,")
                p.responder.writeChunk(out)
            },
            onFinish: { [unowned self] p, reason in
                r.engineID = nil
                r.text = p.text
                r.outputTokens = p.generated
                if r.status == "cancelled" { return }
                switch reason {
                case .length: r.status = "incomplete"
                case .abort, .error: r.status = "failed"
                default: r.status = "completed"
                }
                if background { return }
                let resp = p.responder
                guard resp.isOpen else { return }
                if r.status == "failed" {
                    let message = reason == .error ? "The request needs more KV cache than the server has." : "The request was aborted."
                    if streaming {
                        resp.writeChunk(event("error", "\"code\":\"server_error\",\"message\":\(JSONText.quote(message)),\"param\":null,"))
                        resp.endStream()
                    } else {
                        self.sendError(resp, status: 500, message: message, type: "InternalServerError", param: nil)
                    }
                    return
                }
                if streaming {
                    var out: [UInt8] = []
                    if p.generated > 0 {
                        out += event("response.output_text.done", "\"content_index\":0,\"item_id\":\"\(r.messageID)\",\"logprobs\":[],\"output_index\":0,",
                                     after: "\"text\":\(JSONText.quote(r.text)),")
                        out += event("response.content_part.done", "\"content_index\":0,\"item_id\":\"\(r.messageID)\",\"output_index\":0,"
                                     + "\"part\":{\"annotations\":[],\"text\":\(JSONText.quote(r.text)),\"type\":\"output_text\",\"logprobs\":null},")
                        out += event("response.output_item.done", "\"item\":\(r.itemJSON(done: true)),\"output_index\":0,")
                    }
                    out += event("response.completed", "\"response\":\(r.json(final: true)),")
                    resp.writeChunk(out)
                    resp.endStream()
                } else {
                    resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(r.json(final: true).utf8))
                }
            })
        r.engineID = engineID
        if background {
            p.detached = true
            resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(r.json(final: true).utf8))
        }
    }

    /// `GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel`.
    func responseByID(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        let rest = req.path.dropFirst("/v1/responses/".count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard let first = parts.first, !first.isEmpty, parts.count <= 2 else {
            return resp.respond(status: 404, "{\"detail\":\"Not Found\"}")
        }
        let id = String(first)
        if parts.count == 2 {
            guard parts[1] == "cancel" else { return resp.respond(status: 404, "{\"detail\":\"Not Found\"}") }
            guard req.method == "POST" else { return resp.respond(status: 405, "{\"detail\":\"Method Not Allowed\"}") }
            guard let r = storedResponses[id] else { return notFound(resp, responseID: id) }
            guard !r.isDone else {
                return sendError(resp, status: 400, message: "Cannot cancel a synchronous response.", type: "invalid_request_error", param: "response_id")
            }
            r.status = "cancelled"
            if let e = r.engineID { abortCustom(e); r.engineID = nil }
            return resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(r.json(final: true).utf8))
        }
        guard req.method == "GET" else { return resp.respond(status: 405, "{\"detail\":\"Method Not Allowed\"}") }
        guard let r = storedResponses[id] else { return notFound(resp, responseID: id) }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(r.json(final: true).utf8))
    }
}
