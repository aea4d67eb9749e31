import SluiceIO
import SluiceHTTP

/// The pooling APIs (rerank, score, classify, pooling) and tokenize/detokenize, answered at once
/// with deterministic numbers in vLLM 0.32's shapes (Tests/vllm-captures/pooling-*.txt and
/// generate-tokenize.txt). One vLLM server is either generative or a pooling runner; the
/// simulator serves both kinds of paths. Tokens are the simulator's: 4 prompt bytes each, so
/// `/tokenize` gives one little-endian 32-bit id per 4 bytes and `/detokenize` inverts it.
extension SimServer {
    private func usageLong(_ n: Int) -> String {
        "{\"prompt_tokens\":\(n),\"total_tokens\":\(n),\"completion_tokens\":0,\"prompt_tokens_details\":null,\"completion_tokens_details\":null}"
    }

    /// The pooling runner's 404 for an unknown model (no list of aliases there).
    private func poolingUnknownModel(_ resp: HTTPResponder, _ model: String) {
        sendError(resp, status: 404, message: "The model `\(model)` does not exist.", type: "NotFoundError", param: nil)
    }

    /// A score in [0, 1] for a pair, a function of the texts, the model and the seed.
    private func pairScore(_ a: String, _ b: String, _ model: String) -> Double {
        let h = SimRandom.hash(a + "\u{1F}" + b, seed: SimRandom.hash(model) ^ options.seed)
        return Double(h >> 11) / 9_007_199_254_740_992.0
    }

    /// The texts of a score input: a string, a list of strings, or multimodal objects (their
    /// `text` parts); nil for other types.
    private static func texts(_ v: JSONValue?) -> [String]? {
        switch v {
        case .string(let s)?: return [s]
        case .array(let items)?:
            var out: [String] = []
            for i in items {
                if let s = i.string { out.append(s) } else if i.isObject { out.append(i["text"]?.string ?? "") } else { return nil }
            }
            return out
        case .object?: return [v?["text"]?.string ?? ""]
        default: return nil
        }
    }

    private static func tokens(_ texts: [String]) -> Int { texts.reduce(0) { $0 + SimRequest.tokens(forBytes: $1.utf8.count) } }

    private func poolingModel(_ body: JSONValue, _ resp: HTTPResponder) -> String? {
        let name = body["model"]?.string
        guard let (model, _) = resolve(name) else { poolingUnknownModel(resp, name ?? ""); return nil }
        return model
    }

    func rerank(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp), let model = poolingModel(body, resp) else { return }
        guard let query = body["query"]?.string else { return body["query"] == nil ? missing(resp, "query", body) : invalid(resp, "query", "Input should be a valid string") }
        guard let docs = Self.texts(body["documents"]) else {
            return body["documents"] == nil ? missing(resp, "documents", body) : invalid(resp, "documents", "Input should be a valid list")
        }
        let topN = body["top_n"]?.int ?? 0
        var results = docs.enumerated().map { (index: $0.offset, text: $0.element, score: pairScore(query, $0.element, model)) }
        results.sort { $0.score > $1.score || ($0.score == $1.score && $0.index < $1.index) }
        if topN > 0 && topN < results.count { results = Array(results.prefix(topN)) }
        let n = Self.tokens([query]) * docs.count + Self.tokens(docs)
        let items = results.map {
            "{\"index\":\($0.index),\"document\":{\"text\":\(JSONText.quote($0.text)),\"multi_modal\":null},\"relevance_score\":\($0.score)}"
        }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"id\":\"\(newID("score-"))\",\"model\":\(JSONText.quote(model)),"
            + "\"usage\":{\"prompt_tokens\":\(n),\"total_tokens\":\(n)},\"results\":[" + items.joined(separator: ",") + "]}").utf8))
    }

    func score(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp), let model = poolingModel(body, resp) else { return }
        let pairsOf: [(String, String)] = [("text_1", "text_2"), ("queries", "documents"), ("queries", "items"), ("data_1", "data_2")]
        guard let (k1, k2) = pairsOf.first(where: { body[$0.0] != nil && body[$0.1] != nil }) else {
            return missing(resp, "queries", body)
        }
        guard let a = Self.texts(body[k1]), let b = Self.texts(body[k2]), !a.isEmpty, !b.isEmpty else {
            return invalid(resp, k1, "Input should be a valid string or list")
        }
        guard a.count == 1 || a.count == b.count else {
            return sendError(resp, status: 400, message: "Input lengths must be either 1:1, 1:N or N:N", type: "BadRequestError", param: nil)
        }
        let pairs = b.indices.map { (a.count == 1 ? a[0] : a[$0], b[$0]) }
        let data = pairs.enumerated().map { "{\"index\":\($0.offset),\"object\":\"score\",\"score\":\(pairScore($0.element.0, $0.element.1, model))}" }
        let n = pairs.reduce(0) { $0 + Self.tokens([$1.0, $1.1]) }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"id\":\"\(newID("score-"))\",\"object\":\"list\",\"created\":\(Int(Self.wallSeconds())),"
            + "\"model\":\(JSONText.quote(model)),\"data\":[" + data.joined(separator: ",") + "],\"usage\":\(usageLong(n))}").utf8))
    }

    /// `input` (a string or a list; token-id lists count 1 token per id) or chat `messages`.
    private func poolingInputs(_ body: JSONValue, _ resp: HTTPResponder) -> [String]? {
        if let m = body["messages"]?.array {
            guard let p = Self.chatPrompt(m) else { invalid(resp, "messages", "Input should be a valid list"); return nil }
            return [String(decoding: p, as: UTF8.self)]
        }
        guard let input = body["input"] else { missing(resp, "input", body); return nil }
        guard let list = Self.promptList(input) else { invalid(resp, "input", "Input should be a valid string or list"); return nil }
        return list.map { String(decoding: $0, as: UTF8.self) }
    }

    func classify(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp), let model = poolingModel(body, resp), let inputs = poolingInputs(body, resp) else { return }
        let data = inputs.enumerated().map { "{\"index\":\($0.offset),\"label\":\"LABEL_0\",\"probs\":[\(pairScore($0.element, "", model))],\"num_classes\":1}" }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"id\":\"\(newID("classify-"))\",\"object\":\"list\",\"created\":\(Int(Self.wallSeconds())),"
            + "\"model\":\(JSONText.quote(model)),\"data\":[" + data.joined(separator: ",") + "],\"usage\":\(usageLong(Self.tokens(inputs)))}").utf8))
    }

    func pooling(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp), let model = poolingModel(body, resp), let inputs = poolingInputs(body, resp) else { return }
        let data = inputs.enumerated().map { "{\"index\":\($0.offset),\"object\":\"pooling\",\"data\":[\(pairScore($0.element, "", model))]}" }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"id\":\"\(newID("pooling-"))\",\"object\":\"list\",\"created\":\(Int(Self.wallSeconds())),"
            + "\"model\":\(JSONText.quote(model)),\"data\":[" + data.joined(separator: ",") + "],\"usage\":\(usageLong(Self.tokens(inputs)))}").utf8))
    }

    /// The simulator's token ids of `bytes`: one little-endian 32-bit word per 4 bytes.
    static func tokenIDs(_ bytes: [UInt8]) -> [UInt32] {
        stride(from: 0, to: bytes.count, by: 4).map { i in
            var v: UInt32 = 0
            for k in 0..<4 where i + k < bytes.count { v |= UInt32(bytes[i + k]) << (8 * k) }
            return v
        }
    }

    func tokenize(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        let name = body["model"]?.string
        guard resolve(name) != nil else { return unknownModel(resp, name ?? "") }
        let bytes: [UInt8]
        if let m = body["messages"] {
            guard let list = m.array, let p = Self.chatPrompt(list) else { return invalid(resp, "messages", "Input should be a valid list") }
            bytes = p
        } else if let p = body["prompt"] {
            guard let s = p.string else { return invalid(resp, "prompt", "Input should be a valid string") }
            bytes = Array(s.utf8)
        } else {
            return missing(resp, "prompt", body)
        }
        let ids = Self.tokenIDs(bytes)
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array(("{\"count\":\(ids.count),\"max_model_len\":\(options.maxModelLen),"
            + "\"tokens\":[" + ids.map(String.init).joined(separator: ",") + "],\"token_strs\":null}").utf8))
    }

    func detokenize(_ req: HTTPServerRequest, _ resp: HTTPResponder) {
        guard let body = parseBody(req, resp) else { return }
        let name = body["model"]?.string
        guard resolve(name) != nil else { return unknownModel(resp, name ?? "") }
        guard let field = body["tokens"] else { return missing(resp, "tokens", body) }
        guard let list = field.array, list.allSatisfy({ ($0.int ?? -1) >= 0 }) else { return invalid(resp, "tokens", "Input should be a valid list of integers") }
        var bytes: [UInt8] = []
        for t in list {
            let v = UInt32(truncatingIfNeeded: t.int!)
            bytes += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
        }
        while bytes.last == 0 { bytes.removeLast() }
        resp.respond(status: 200, headers: Self.jsonHeaders, body: Array("{\"prompt\":\(JSONText.quote(String(decoding: bytes, as: UTF8.self)))}".utf8))
    }
}
