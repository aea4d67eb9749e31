import SluiceIO
import SluiceHTTP

/// KServe's Open Inference Protocol v2 over HTTP/REST, which vLLM 0.32 does not serve (it
/// answers 404 there, generate-unsupported.txt) but pools of v2 servers do: health, model
/// metadata and readiness, and `infer` with one BYTES input (`text_input`, or the first input)
/// generated through the engine into a BYTES output `text_output` (the convention of LLM
/// runtimes on v2). Shapes from the OIP v2 specification; errors are `{"error": "message"}`.
extension SimServer {
    private func v2Error(_ resp: HTTPResponder, _ status: Int, _ message: String) {
        resp.respond(status: status, headers: Self.jsonHeaders, body: Array("{\"error\":\(JSONText.quote(message))}".utf8))
    }

    func v2Health(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        let live = req.path.hasSuffix("/live")
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array((live ? "{\"live\":true}" : "{\"ready\":true}").utf8))
    }

    /// `/v2/models/{name}[/versions/{v}][/ready|/infer]`.
    func v2Model(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        var segments = req.path.dropFirst("/v2/models/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let first = segments.first, !first.isEmpty else { return v2Error(resp, 404, "Not Found") }
        let name = Self.percentDecoded(first)
        segments.removeFirst()
        var version = "1"
        if segments.count >= 2 && segments[0] == "versions" {
            version = segments[1]
            segments.removeFirst(2)
        }
        let action = segments.first ?? ""
        guard segments.count <= 1, ["", "ready", "infer"].contains(action) else { return v2Error(resp, 404, "Not Found") }
        guard req.method == (action == "infer" ? "POST" : "GET") else { return v2Error(resp, 405, "Method Not Allowed") }
        guard let (model, adapter) = resolve(name) else { return v2Error(resp, 404, "Model \(name) not found") }
        switch action {
        case "":
            let io = { (n: String) in "[{\"name\":\"\(n)\",\"datatype\":\"BYTES\",\"shape\":[-1]}]" }
            resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"name\":\(JSONText.quote(model)),\"versions\":[\"1\"],"
                + "\"platform\":\"sluice-sim\",\"inputs\":\(io("text_input")),\"outputs\":\(io("text_output"))}").utf8))
        case "ready":
            resp.respond(status: 200, headers: Self.jsonHeaders, body: Array("{\"name\":\(JSONText.quote(model)),\"ready\":true}".utf8))
        default:
            v2Infer(req, resp, model: model, adapter: adapter, version: version)
        }
    }

    private func v2Infer(_ req: HTTPServerRequest, _ resp: HTTPResponder, model: String, adapter: String?, version: String) {
        guard let body = try? JSONValue.parse(req.body), body.isObject else { return v2Error(resp, 400, "Invalid JSON in the request body") }
        guard let inputs = body["inputs"]?.array, !inputs.isEmpty else { return v2Error(resp, 400, "The request has no inputs") }
        let input = inputs.first { $0["name"]?.string == "text_input" } ?? inputs[0]
        guard input["datatype"]?.string == "BYTES", let text = input["data"]?.array?.first?.string else {
            return v2Error(resp, 400, "Input \(input["name"]?.string ?? "") must be BYTES data holding the prompt")
        }
        let prompt = Array(text.utf8)
        let promptTokens = SimRequest.tokens(forBytes: prompt.count)
        let maxTokens = body["parameters"]?["max_tokens"]?.int ?? defaultMaxTokens(promptTokens: promptTokens)
        guard maxTokens >= 1, promptTokens < options.maxModelLen, maxTokens <= options.maxModelLen - promptTokens else {
            return v2Error(resp, 400, "max_tokens must be from 1 to \(max(1, options.maxModelLen - promptTokens))")
        }
        let requestID = body["id"]?.string
        submitCustom(resp, model: model, adapter: adapter, prompt: prompt, maxTokens: maxTokens, id: requestID ?? "",
                     onFinish: { [unowned self] p, reason in
                         guard p.responder.isOpen else { return }
                         if reason == .abort || reason == .error { return self.v2Error(p.responder, 500, "The request failed.") }
                         let id = requestID.map { ",\"id\":\(JSONText.quote($0))" } ?? ""
                         p.responder.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"model_name\":\(JSONText.quote(model)),"
                             + "\"model_version\":\(JSONText.quote(version))\(id),\"outputs\":[{\"name\":\"text_output\",\"datatype\":\"BYTES\","
                             + "\"shape\":[1],\"data\":[\(JSONText.quote(p.text))]}]}").utf8))
                     })
    }
}
