/// Finding the endpoint of a request target.
extension LLMEndpoint {
    /// An endpoint found in a request target, with the path parameter it names.
    public struct Match: Sendable, Equatable {
        public var endpoint: LLMEndpoint
        /// `{id}` of `/v1/responses/{id}[/cancel]` or `{name}` of `/v2/models/{name}/…`, as it
        /// appears in the target (offsets into the buffer given to ``match(path:)``); nil otherwise.
        public var parameter: ByteRange?
        /// The parameter holds `%` escapes (decode with ``QueryString/percentDecode(_:_:into:)``).
        public var parameterEncoded = false
        /// `{v}` of `/v2/models/{name}/versions/{v}/…`.
        public var version: ByteRange?

        public init(endpoint: LLMEndpoint, parameter: ByteRange? = nil, parameterEncoded: Bool = false, version: ByteRange? = nil) {
            self.endpoint = endpoint
            self.parameter = parameter
            self.parameterEncoded = parameterEncoded
            self.version = version
        }
    }

    /// The endpoint a request target (path, optionally with `?query`) addresses, or nil for a
    /// path the table does not know (`/v1/models`, `/health`, `/metrics`, anything else). Exact
    /// paths only: no trailing slash, no empty or multi-segment parameters, no dot segments.
    /// Allocation-free; compares bytes.
    public static func match(path target: UnsafeRawBufferPointer) -> Match? {
        let p = Bytes.prefix(target, before: UInt8(ascii: "?"))
        let n = p.count
        guard n >= 6, p[0] == UInt8(ascii: "/") else { return nil }
        // The fixed paths, by length first (one compare rejects most).
        switch n {
        case 6 where Bytes.equal(p, "/score"): return Match(endpoint: .score)
        case 7 where Bytes.equal(p, "/rerank"): return Match(endpoint: .rerank)
        case 8 where Bytes.equal(p, "/pooling"): return Match(endpoint: .pooling)
        case 9 where Bytes.equal(p, "/classify"): return Match(endpoint: .classify)
        case 9 where Bytes.equal(p, "/tokenize"): return Match(endpoint: .tokenize)
        case 9 where Bytes.equal(p, "/v1/score"): return Match(endpoint: .score)
        case 10 where Bytes.equal(p, "/v1/rerank"): return Match(endpoint: .rerank)
        case 10 where Bytes.equal(p, "/v2/rerank"): return Match(endpoint: .rerank)
        case 11 where Bytes.equal(p, "/detokenize"): return Match(endpoint: .detokenize)
        case 12 where Bytes.equal(p, "/v1/messages"): return Match(endpoint: .messages)
        case 12 where Bytes.equal(p, "/v1/realtime"): return Match(endpoint: .realtime)
        case 13 where Bytes.equal(p, "/v1/responses"): return Match(endpoint: .responses)
        case 15 where Bytes.equal(p, "/v2/health/live"): return Match(endpoint: .v2HealthLive)
        case 15 where Bytes.equal(p, "/v1/completions"): return Match(endpoint: .completions)
        case 14 where Bytes.equal(p, "/v1/embeddings"): return Match(endpoint: .embeddings)
        case 16 where Bytes.equal(p, "/v2/health/ready"): return Match(endpoint: .v2HealthReady)
        case 20 where Bytes.equal(p, "/v1/chat/completions"): return Match(endpoint: .chatCompletions)
        case 25 where Bytes.equal(p, "/v1/messages/count_tokens"): return Match(endpoint: .messagesCountTokens)
        case 22 where Bytes.equal(p, "/v1/audio/translations"): return Match(endpoint: .audioTranslations)
        case 24 where Bytes.equal(p, "/v1/audio/transcriptions"): return Match(endpoint: .audioTranscriptions)
        default: break
        }
        if n > 14 && Bytes.equal(UnsafeRawBufferPointer(rebasing: p[0..<14]), "/v1/responses/") {
            return responseMatch(p, from: 14)
        }
        if n > 11 && Bytes.equal(UnsafeRawBufferPointer(rebasing: p[0..<11]), "/v2/models/") {
            return v2Match(p, from: 11)
        }
        return nil
    }

    /// The end of the path segment starting at `from` (the next `/` or the end), and whether it
    /// holds a `%` escape; nil when the segment is empty or a dot segment.
    static func segment(_ p: UnsafeRawBufferPointer, from: Int) -> (end: Int, encoded: Bool)? {
        var i = from
        var encoded = false
        while i < p.count && p[i] != UInt8(ascii: "/") {
            if p[i] == UInt8(ascii: "%") { encoded = true }
            i += 1
        }
        let len = i - from
        if len == 0 { return nil }
        if p[from] == UInt8(ascii: ".") && (len == 1 || (len == 2 && p[from + 1] == UInt8(ascii: "."))) { return nil }
        return (i, encoded)
    }

    /// Whether `p[from...]` is exactly `literal`.
    static func rest(_ p: UnsafeRawBufferPointer, from: Int, is literal: StaticString) -> Bool {
        Bytes.equal(UnsafeRawBufferPointer(rebasing: p[from...]), literal)
    }

    /// `/v1/responses/{id}` or `/v1/responses/{id}/cancel`.
    static func responseMatch(_ p: UnsafeRawBufferPointer, from: Int) -> Match? {
        guard let (end, encoded) = segment(p, from: from) else { return nil }
        let id = ByteRange(start: from, end: end)
        if end == p.count { return Match(endpoint: .responseRetrieve, parameter: id, parameterEncoded: encoded) }
        if rest(p, from: end, is: "/cancel") { return Match(endpoint: .responseCancel, parameter: id, parameterEncoded: encoded) }
        return nil
    }

    /// `/v2/models/{name}[/versions/{v}]` followed by nothing, `/ready` or `/infer`.
    static func v2Match(_ p: UnsafeRawBufferPointer, from: Int) -> Match? {
        guard let (end, encoded) = segment(p, from: from) else { return nil }
        let name = ByteRange(start: from, end: end)
        var at = end
        var version: ByteRange?
        if p.count > at + 10 && Bytes.equal(UnsafeRawBufferPointer(rebasing: p[at..<(at + 10)]), "/versions/") {
            guard let (vEnd, _) = segment(p, from: at + 10) else { return nil }
            version = ByteRange(start: at + 10, end: vEnd)
            at = vEnd
        }
        let endpoint: LLMEndpoint
        if at == p.count { endpoint = .v2ModelMetadata }
        else if rest(p, from: at, is: "/ready") { endpoint = .v2ModelReady }
        else if rest(p, from: at, is: "/infer") { endpoint = .v2Infer }
        else { return nil }
        return Match(endpoint: endpoint, parameter: name, parameterEncoded: encoded, version: version)
    }
}
