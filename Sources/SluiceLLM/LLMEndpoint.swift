/// Every API path of vLLM 0.32 the gateway knows (plus KServe's Open Inference Protocol v2, which
/// vLLM itself does not serve: pools of v2 servers speak it), and what the gateway needs to know
/// about each: where the model name is, whether the body carries prompt text for prefix
/// affinity, whether an answer may be cached, whether it produces tokens, how usage is reported,
/// how streams and errors look. One static table (``traits``), no allocation.
///
/// ```
/// guard let m = LLMEndpoint.match(path: target) else { /* not an LLM path: pass through */ }
/// let t = m.endpoint.traits
/// switch t.model {
/// case .jsonField:      try RequestScanner().scan(body, for: m.endpoint, segments: buf)  // .model
/// case .formField:      MultipartScanner / RequestScanner.scanMultipart                   // .model
/// case .queryParameter: QueryString.value(named: "model", in: target)
/// case .pathSegment:    m.parameter (the v2 model name; percent-decode when m.parameterEncoded)
/// case .storedResponse: m.parameter is the response id: route to the endpoint that made it
/// case .none:           health: any endpoint of the pool
/// }
/// ```
public enum LLMEndpoint: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// `POST /v1/chat/completions`
    case chatCompletions
    /// `POST /v1/completions`
    case completions
    /// `POST /v1/embeddings`
    case embeddings
    /// `POST /v1/responses` (OpenAI Responses API; the server keeps the response in memory)
    case responses
    /// `GET /v1/responses/{id}`: only the server that made `{id}` knows it.
    case responseRetrieve
    /// `POST /v1/responses/{id}/cancel`: likewise.
    case responseCancel
    /// `POST /v1/messages` (Anthropic Messages)
    case messages
    /// `POST /v1/messages/count_tokens`
    case messagesCountTokens
    /// `POST /v1/rerank`, `/rerank`, `/v2/rerank`
    case rerank
    /// `POST /v1/score`, `/score`
    case score
    /// `POST /pooling`
    case pooling
    /// `POST /classify`
    case classify
    /// `POST /tokenize`
    case tokenize
    /// `POST /detokenize`
    case detokenize
    /// `POST /v1/audio/transcriptions` (multipart/form-data)
    case audioTranscriptions
    /// `POST /v1/audio/translations` (multipart/form-data)
    case audioTranslations
    /// `GET /v1/realtime` (WebSocket upgrade; the model in the query, `?model=NAME`)
    case realtime
    /// `POST /v2/models/{name}[/versions/{v}]/infer` (KServe v2)
    case v2Infer
    /// `GET /v2/models/{name}[/versions/{v}]` (KServe v2 model metadata)
    case v2ModelMetadata
    /// `GET /v2/models/{name}[/versions/{v}]/ready`
    case v2ModelReady
    /// `GET /v2/health/live`
    case v2HealthLive
    /// `GET /v2/health/ready`
    case v2HealthReady

    public var description: String {
        switch self {
        case .chatCompletions: "chat_completions"
        case .completions: "completions"
        case .embeddings: "embeddings"
        case .responses: "responses"
        case .responseRetrieve: "response_retrieve"
        case .responseCancel: "response_cancel"
        case .messages: "messages"
        case .messagesCountTokens: "messages_count_tokens"
        case .rerank: "rerank"
        case .score: "score"
        case .pooling: "pooling"
        case .classify: "classify"
        case .tokenize: "tokenize"
        case .detokenize: "detokenize"
        case .audioTranscriptions: "audio_transcriptions"
        case .audioTranslations: "audio_translations"
        case .realtime: "realtime"
        case .v2Infer: "v2_infer"
        case .v2ModelMetadata: "v2_model_metadata"
        case .v2ModelReady: "v2_model_ready"
        case .v2HealthLive: "v2_health_live"
        case .v2HealthReady: "v2_health_ready"
        }
    }

    /// The endpoint of the three OpenAI inference paths the gateway scanned before this table.
    public init(_ e: OpenAIEndpoint) {
        switch e {
        case .chatCompletions: self = .chatCompletions
        case .completions: self = .completions
        case .embeddings: self = .embeddings
        }
    }
}

// MARK: traits

extension LLMEndpoint {
    /// The HTTP method the endpoint is served on (vLLM answers 405 to others).
    public enum Method: UInt8, Sendable {
        case get, post
    }

    /// What the request body is.
    public enum BodyFormat: UInt8, Sendable {
        /// No body (GET).
        case none
        /// A JSON object (``RequestScanner``).
        case json
        /// `multipart/form-data` (``MultipartScanner``).
        case multipart
    }

    /// Where the model name is.
    public enum ModelSource: UInt8, Sendable {
        /// Nowhere: any endpoint of the pool serves it (health).
        case none
        /// The JSON body's `model` (``ScannedRequest/model`` when ``ScannedRequest/hasModel``).
        case jsonField
        /// The form field `model` of a multipart body.
        case formField
        /// The query parameter `model` (``QueryString``).
        case queryParameter
        /// The path segment after `/v2/models/` (``LLMEndpoint/Match/parameter``).
        case pathSegment
        /// None: the path names a stored response (``LLMEndpoint/Match/parameter``), which only
        /// the server that produced it knows; route there.
        case storedResponse
    }

    /// May the answer be served from the response cache?
    public enum Cacheability: UInt8, Sendable {
        /// Never (state on the server, uploads, tunnels, health).
        case never
        /// The answer is a function of the body (pooling, tokenizing, counting).
        case deterministic
        /// Generation: only when sampling is greedy (`temperature: 0`, or a `seed` when so configured).
        case whenGreedy
    }

    /// How the answer reports token usage.
    public enum UsageReport: UInt8, Sendable {
        /// Not at all.
        case none
        /// `usage.prompt_tokens` / `completion_tokens` (chat, completions, streams' usage chunk).
        case openAI
        /// `usage.prompt_tokens` only (embeddings, pooling, classify, score, rerank).
        case promptOnly
        /// Anthropic: `usage.input_tokens` / `output_tokens` in the JSON body; in a stream,
        /// `message_start`'s `message.usage` and `message_delta`'s `usage` (``UsageTally`` merges).
        case anthropic
        /// Responses API: `usage.input_tokens` / `output_tokens` of the response object, in a stream
        /// that of `response.completed` (or `response.incomplete`).
        case responses
        /// `count_tokens`: `input_tokens` at the top level, nothing generated.
        case inputTokensCount
        /// Audio: `usage` is `{"type":"duration","seconds":N}` (no tokens), or OpenAI usage chunks
        /// when streaming.
        case audio
    }

    /// What a streamed answer (`stream: true`) looks like; read with ``SSEScanner`` in this dialect.
    public enum StreamFormat: UInt8, Sendable {
        /// The endpoint never streams.
        case none
        case openAI
        case anthropic
        case responses
    }

    /// What kind of server answers it (`pools[].protocol`).
    public enum ServerProtocol: UInt8, Sendable {
        /// vLLM's OpenAI-compatible server (and the Anthropic, pooling, audio paths it serves).
        case openAI
        /// KServe's Open Inference Protocol v2.
        case v2
    }

    /// The facts the gateway routes by; see ``traits``.
    public struct Traits: Sendable, Equatable {
        public var method: Method
        public var body: BodyFormat
        public var model: ModelSource
        /// vLLM rejects the request without a model (400); elsewhere it uses its served model.
        public var modelRequired: Bool
        /// The body carries prompt text worth hashing for prefix-cache affinity.
        public var prefixAffinity: Bool
        public var cache: Cacheability
        /// The server generates tokens (output-token limits and TTFT apply).
        public var producesTokens: Bool
        public var usage: UsageReport
        public var stream: StreamFormat
        public var errors: ErrorShape
        public var server: ServerProtocol
        /// A WebSocket upgrade (HTTP/1.1 `Upgrade: websocket`, or RFC 8441 over HTTP/2).
        public var upgrade: Bool
        /// The answer creates server-side state named by its id (``ScannedResponse/responseID``,
        /// ``SSEScanner/responseID`` in a stream):
        /// remember id → endpoint for later ``ModelSource/storedResponse`` requests and
        /// `previous_response_id` follow-ups (``ScannedRequest/previousResponseID``).
        public var createsStoredResponse: Bool
    }

    /// The traits of this endpoint (a constant per case).
    public var traits: Traits {
        switch self {
        case .chatCompletions:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: true, cache: .whenGreedy,
                   producesTokens: true, usage: .openAI, stream: .openAI, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .completions:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: true, cache: .whenGreedy,
                   producesTokens: true, usage: .openAI, stream: .openAI, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .embeddings, .pooling, .classify:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: true, cache: .deterministic,
                   producesTokens: false, usage: .promptOnly, stream: .none, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .rerank, .score:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: true, cache: .deterministic,
                   producesTokens: false, usage: .promptOnly, stream: .none, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .responses:
            // Not cacheable: a cached answer would carry an id no server knows (and `store`
            // defaults to true).
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: true, cache: .never,
                   producesTokens: true, usage: .responses, stream: .responses, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: true)
        case .responseRetrieve, .responseCancel:
            Traits(method: self == .responseRetrieve ? .get : .post, body: .none, model: .storedResponse, modelRequired: false,
                   prefixAffinity: false, cache: .never, producesTokens: false, usage: .none, stream: .none, errors: .openAI,
                   server: .openAI, upgrade: false, createsStoredResponse: false)
        case .messages:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: true, prefixAffinity: true, cache: .whenGreedy,
                   producesTokens: true, usage: .anthropic, stream: .anthropic, errors: .anthropic, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .messagesCountTokens:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: true, prefixAffinity: false, cache: .deterministic,
                   producesTokens: false, usage: .inputTokensCount, stream: .none, errors: .anthropic, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .tokenize, .detokenize:
            Traits(method: .post, body: .json, model: .jsonField, modelRequired: false, prefixAffinity: false, cache: .deterministic,
                   producesTokens: false, usage: .none, stream: .none, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .audioTranscriptions, .audioTranslations:
            Traits(method: .post, body: .multipart, model: .formField, modelRequired: false, prefixAffinity: false, cache: .never,
                   producesTokens: true, usage: .audio, stream: .openAI, errors: .openAI, server: .openAI, upgrade: false,
                   createsStoredResponse: false)
        case .realtime:
            Traits(method: .get, body: .none, model: .queryParameter, modelRequired: false, prefixAffinity: false, cache: .never,
                   producesTokens: true, usage: .none, stream: .none, errors: .openAI, server: .openAI, upgrade: true,
                   createsStoredResponse: false)
        case .v2Infer:
            Traits(method: .post, body: .json, model: .pathSegment, modelRequired: true, prefixAffinity: false, cache: .never,
                   producesTokens: false, usage: .none, stream: .none, errors: .kserve, server: .v2, upgrade: false,
                   createsStoredResponse: false)
        case .v2ModelMetadata, .v2ModelReady:
            Traits(method: .get, body: .none, model: .pathSegment, modelRequired: true, prefixAffinity: false, cache: .never,
                   producesTokens: false, usage: .none, stream: .none, errors: .kserve, server: .v2, upgrade: false,
                   createsStoredResponse: false)
        case .v2HealthLive, .v2HealthReady:
            Traits(method: .get, body: .none, model: .none, modelRequired: false, prefixAffinity: false, cache: .never,
                   producesTokens: false, usage: .none, stream: .none, errors: .kserve, server: .v2, upgrade: false,
                   createsStoredResponse: false)
        }
    }
}
