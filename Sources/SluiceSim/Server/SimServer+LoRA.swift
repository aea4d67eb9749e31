import SluiceHTTP

/// Runtime adapter loading, with vLLM's texts: success is a plain-text 200 with no
/// content-type; a duplicate is 400 `InvalidUserInput`; an unknown adapter is 404.
///
/// The simulator cannot look into adapter files; a `lora_path` that is empty or contains
/// "nonexistent" stands for a path with no adapter (vLLM's 404 "No adapter found").
extension SimServer {
    func loadAdapter(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        guard let name = body["lora_name"]?.string, !name.isEmpty else {
            sendValidationError(resp, kind: "missing", loc: "body.lora_name", msg: "Field required", input: "'...'")
            return
        }
        let path = body["lora_path"]?.string ?? ""
        let inPlace = body["load_inplace"]?.bool == true
        if let i = adapters.firstIndex(where: { $0.name == name }) {
            guard inPlace else {
                sendError(resp, status: 400, message: "The lora adapter '\(name)' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.",
                          type: "InvalidUserInput", param: nil)
                return
            }
            adapters[i].path = path
        } else {
            if path.isEmpty || path.contains("nonexistent") {
                sendError(resp, status: 404, message: "Loading lora \(name) failed: No adapter found for \(path)",
                          type: "NotFoundError", param: nil)
                return
            }
            adapters.append((name, path))
        }
        resp.respond(status: 200, headers: [], body: Array("Success: LoRA adapter '\(name)' added successfully.".utf8))
    }

    func unloadAdapter(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        guard let name = body["lora_name"]?.string, let i = adapters.firstIndex(where: { $0.name == name }) else {
            let name = body["lora_name"]?.string ?? ""
            sendError(resp, status: 404, message: "The lora adapter '\(name)' cannot be found.", type: "NotFoundError", param: nil)
            return
        }
        adapters.remove(at: i)
        engine.unloadAdapter(name)
        resp.respond(status: 200, headers: [], body: Array("Success: LoRA adapter '\(name)' removed successfully.".utf8))
    }

    /// Registered adapters (name, path), in load order.
    public var registeredAdapters: [(name: String, path: String)] { adapters }
}
