import SluiceIO
import SluiceHTTP

/// `GET /v1/realtime?model=NAME` (WebSocket, RFC 6455): the handshake, then ``SimWebSocket``'s
/// echo. vLLM 0.32's realtime endpoint speaks the realtime transcription protocol and takes its
/// model from a `session.update` event; the simulator greets with vLLM's `session.created`
/// (`{"type","id","created"}`) and then echoes frames, so a tunnel can be tested end to end. Its
/// model comes from the query (OpenAI's Realtime API convention, which the gateway routes by):
/// an unknown one is refused with a 404 before the upgrade, so a test sees which server it reached.
/// A GET without the upgrade is vLLM's 404 (generate-unsupported.txt).
extension SimServer {
    func realtime(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        let upgrade = req.header("upgrade")?.lowercased() == "websocket"
        let connection = req.header("connection")?.lowercased().split(separator: ",").contains { $0.trimmingSpaces == "upgrade" } == true
        guard upgrade && connection else { return resp.respond(status: 404, "{\"detail\":\"Not Found\"}") }
        guard req.header("sec-websocket-version")?.trimmingSpaces == "13" else {
            return resp.respond(status: 426, headers: [("Sec-WebSocket-Version", "13"), ("content-type", "text/plain")], body: Array("Upgrade Required".utf8))
        }
        guard let key = req.header("sec-websocket-key")?.trimmingSpaces, key.utf8.count == 24 else {
            return resp.respond(status: 400, contentType: "text/plain", "Missing or invalid Sec-WebSocket-Key")
        }
        var name: String?
        for pair in req.query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first == "model" { name = kv.count == 2 ? Self.percentDecoded(String(kv[1])) : ""; break }
        }
        guard resolve(name) != nil else {
            return sendError(resp, status: 404, message: "The model `\(name ?? "")` does not exist.", type: "NotFoundError", param: "model")
        }
        let greeting = "{\"type\":\"session.created\",\"id\":\"\(newID("sess-"))\",\"created\":\(Int(Self.wallSeconds()))}"
        let ws = SimWebSocket(greeting: Array(greeting.utf8)) { [weak self] w in self?.webSockets.removeValue(forKey: ObjectIdentifier(w)) }
        webSockets[ObjectIdentifier(ws)] = ws
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: \(SimWebSocket.accept(key: key))\r\n\r\n"
        resp.upgrade(head: Array(head.utf8), to: ws)
    }

    /// `%XX` and `+` decoded (query values); invalid escapes are kept as they are.
    static func percentDecoded(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(b[i] == UInt8(ascii: "+") ? 0x20 : b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
