import SluiceIO
import SluiceHTTP

/// Audio (`/v1/audio/transcriptions`, `/v1/audio/translations`): `multipart/form-data` uploads.
/// The audio is not listened to: the answer is ``SimOptions/transcriptionText``, its usage the
/// duration of 16 kHz 16-bit mono PCM of the file's size. Shapes from vLLM 0.32's protocol
/// classes (`TranscriptionResponse`: `{"text","usage":{"type":"duration","seconds"}}`; streamed
/// `transcription.chunk` events); no Whisper-type model was at hand to capture them.
extension SimServer {
    /// A form field or file of a multipart body.
    struct FormPart {
        var name: String
        var filename: String?
        var value: [UInt8]
    }

    /// A plain multipart/form-data parser (not SluiceLLM's scanner: the simulator checks the
    /// gateway, it does not share its code). Nil when the body is not one.
    static func formParts(_ body: [UInt8], contentType: String) -> [FormPart]? {
        guard contentType.lowercased().hasPrefix("multipart/form-data"),
              let b = contentType.split(separator: ";").map({ $0.trimmingSpaces }).first(where: { $0.lowercased().hasPrefix("boundary=") })
        else { return nil }
        var boundary = String(b.dropFirst("boundary=".count))
        if boundary.hasPrefix("\"") && boundary.hasSuffix("\"") && boundary.count >= 2 { boundary = String(boundary.dropFirst().dropLast()) }
        let delimiter = Array("--\(boundary)".utf8)
        var parts: [FormPart] = []
        guard var at = body.firstRange(of: delimiter)?.upperBound else { return nil }
        while true {
            if body[at...].starts(with: Array("--".utf8)) { return parts }
            guard let headStart = body[at...].firstRange(of: [13, 10])?.upperBound,
                  let headEnd = body[headStart...].firstRange(of: [13, 10, 13, 10]) else { return nil }
            let head = String(decoding: body[headStart..<headEnd.lowerBound], as: UTF8.self)
            guard let next = body[headEnd.upperBound...].firstRange(of: [13, 10] + delimiter) else { return nil }
            var part = FormPart(name: "", value: Array(body[headEnd.upperBound..<next.lowerBound]))
            for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
                for param in line.split(separator: ";").dropFirst() {
                    let kv = param.trimmingSpaces.split(separator: "=", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { continue }
                    var v = kv[1]
                    if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = String(v.dropFirst().dropLast()) }
                    if kv[0].lowercased() == "name" { part.name = v } else if kv[0].lowercased() == "filename" { part.filename = v }
                }
            }
            parts.append(part)
            at = next.upperBound
        }
    }

    func audio(_ req: HTTPServerRequest, _ resp: HTTPResponder, translation: Bool) {
        guard let parts = Self.formParts(req.body, contentType: req.header("content-type") ?? "") else {
            return sendValidationError(resp, kind: "missing", loc: "body.file", msg: "Field required", input: "None")
        }
        func field(_ n: String) -> String? { parts.first { $0.name == n && $0.filename == nil }.map { String(decoding: $0.value, as: UTF8.self) } }
        guard let file = parts.first(where: { $0.name == "file" }) else {
            return sendValidationError(resp, kind: "missing", loc: "body.file", msg: "Field required", input: "None")
        }
        let name = field("model")
        guard let (model, _) = resolve(name) else { return unknownModel(resp, name ?? "") }
        let seconds = max(1, (file.value.count + 31_999) / 32_000)
        let text = options.transcriptionText
        let format = field("response_format") ?? "json"
        if field("stream") == "true" {
            let id = newID("trsc-")
            let created = Int(Self.wallSeconds())
            resp.startStream(status: 200, headers: Self.sseHeaders)
            let words = text.split(separator: " ", omittingEmptySubsequences: false)
            var out = ""
            for (i, w) in words.enumerated() {
                let piece = i == 0 ? String(w) : " " + w
                let finish = i == words.count - 1 ? "\"stop\"" : "null"
                out += "data: {\"id\":\"\(id)\",\"object\":\"transcription.chunk\",\"created\":\(created),\"model\":\(JSONText.quote(model)),"
                    + "\"choices\":[{\"delta\":{\"content\":\(JSONText.quote(piece))},\"finish_reason\":\(finish),\"stop_reason\":null}]}\n\n"
            }
            if field("stream_include_usage") == "true" {
                let n = SimRequest.tokens(forBytes: text.utf8.count)
                out += "data: {\"id\":\"\(id)\",\"object\":\"transcription.chunk\",\"created\":\(created),\"model\":\(JSONText.quote(model)),"
                    + "\"choices\":[],\"usage\":{\"prompt_tokens\":\(seconds),\"total_tokens\":\(seconds + n),\"completion_tokens\":\(n)}}\n\n"
            }
            out += "data: [DONE]\n\n"
            resp.writeChunk(Array(out.utf8))
            resp.endStream()
            return
        }
        if format == "text" {
            return resp.respond(status: 200, contentType: "text/plain; charset=utf-8", text)
        }
        let body = translation
            ? "{\"text\":\(JSONText.quote(text))}"
            : "{\"text\":\(JSONText.quote(text)),\"usage\":{\"type\":\"duration\",\"seconds\":\(seconds)}}"
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(body.utf8))
    }
}
