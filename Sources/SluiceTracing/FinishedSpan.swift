/// One finished span, as the request path hands it to its worker's ``SpanRecorder``.
///
/// Attribute keys are `StaticString`s: a key is always a name written in Sluice's source (the
/// ones in ``SpanKey``), never text from a request, so no header, API key or prompt can become
/// an attribute by accident. Values are the caller's to choose: model names, pools, endpoints,
/// tenants, counts, outcomes — never prompt text or keys.
public struct FinishedSpan: Sendable {
    public var traceID: TraceID
    public var spanID: UInt64
    /// 0 for a root span.
    public var parentSpanID: UInt64
    /// The parent is the client's span (the server span of a continued trace).
    public var parentIsRemote: Bool
    public var name: String
    public var kind: SpanKind
    public var startUnixNanos: UInt64
    public var endUnixNanos: UInt64
    public var status: SpanStatus
    public var attributes: [SpanAttribute]
    public var events: [SpanEvent]

    public init(traceID: TraceID, spanID: UInt64, parentSpanID: UInt64 = 0, parentIsRemote: Bool = false, name: String,
                kind: SpanKind = .internal, startUnixNanos: UInt64, endUnixNanos: UInt64, status: SpanStatus = .unset,
                attributes: [SpanAttribute] = [], events: [SpanEvent] = []) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.parentIsRemote = parentIsRemote
        self.name = name
        self.kind = kind
        self.startUnixNanos = startUnixNanos
        self.endUnixNanos = endUnixNanos
        self.status = status
        self.attributes = attributes
        self.events = events
    }

    /// The server span of a request under `context`.
    public static func server(_ context: TraceContext, name: String, start: UInt64, end: UInt64, status: SpanStatus = .unset,
                              attributes: [SpanAttribute] = [], events: [SpanEvent] = []) -> FinishedSpan {
        FinishedSpan(traceID: context.traceID, spanID: context.spanID, parentSpanID: context.parentSpanID,
                     parentIsRemote: context.hasRemoteParent, name: name, kind: .server, startUnixNanos: start, endUnixNanos: end,
                     status: status, attributes: attributes, events: events)
    }

    /// A child of the server span of `context` (admission, routing, an upstream attempt).
    public static func child(of context: TraceContext, spanID: UInt64, name: String, kind: SpanKind = .internal, start: UInt64,
                             end: UInt64, status: SpanStatus = .unset, attributes: [SpanAttribute] = [],
                             events: [SpanEvent] = []) -> FinishedSpan {
        FinishedSpan(traceID: context.traceID, spanID: spanID, parentSpanID: context.spanID, name: name, kind: kind,
                     startUnixNanos: start, endUnixNanos: end, status: status, attributes: attributes, events: events)
    }

    public var isError: Bool { if case .error = status { true } else { false } }
}

/// OTLP's `Span.SpanKind`.
public enum SpanKind: Int, Sendable {
    case `internal` = 1
    case server = 2
    case client = 3
}

/// OTLP's `Status`: unset (the default: HTTP semconv leaves 4xx unset on server spans), ok, or an
/// error with a short message (Sluice's own wording, never a model server's body).
public enum SpanStatus: Sendable, Equatable {
    case unset
    case ok
    case error(String)
}

public struct SpanAttribute: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case strings([String])
    }

    public let key: StaticString
    public let value: Value

    public init(_ key: StaticString, _ value: Value) {
        self.key = key
        self.value = value
    }
    public init(_ key: StaticString, _ v: String) { self.init(key, .string(v)) }
    public init(_ key: StaticString, _ v: Int) { self.init(key, .int(v)) }
    public init(_ key: StaticString, _ v: Double) { self.init(key, .double(v)) }
    public init(_ key: StaticString, _ v: Bool) { self.init(key, .bool(v)) }
    public init(_ key: StaticString, _ v: [String]) { self.init(key, .strings(v)) }

    public var keyString: String { key.withUTF8Buffer { String(decoding: $0, as: UTF8.self) } }
}

/// A point in time within a span (a first token, a retry, a cache lookup's answer).
public struct SpanEvent: Sendable {
    public var name: StaticString
    public var unixNanos: UInt64
    public var attributes: [SpanAttribute]
    public init(_ name: StaticString, at unixNanos: UInt64, attributes: [SpanAttribute] = []) {
        self.name = name
        self.unixNanos = unixNanos
        self.attributes = attributes
    }
}

/// The attribute keys Sluice's spans use: the OpenTelemetry GenAI semantic conventions where
/// they have a name, HTTP's for the protocol, and `sluice.*` for the gateway's own decisions.
public enum SpanKey {
    // GenAI (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
    public static let operationName: StaticString = "gen_ai.operation.name"
    public static let requestModel: StaticString = "gen_ai.request.model"
    public static let responseModel: StaticString = "gen_ai.response.model"
    public static let requestMaxTokens: StaticString = "gen_ai.request.max_tokens"
    public static let requestStream: StaticString = "gen_ai.request.stream"
    public static let inputTokens: StaticString = "gen_ai.usage.input_tokens"
    public static let outputTokens: StaticString = "gen_ai.usage.output_tokens"
    public static let finishReasons: StaticString = "gen_ai.response.finish_reasons"
    /// Seconds from the request to the first generated token.
    public static let timeToFirstToken: StaticString = "gen_ai.server.time_to_first_token"
    // HTTP and network
    public static let httpMethod: StaticString = "http.request.method"
    public static let httpStatus: StaticString = "http.response.status_code"
    public static let urlPath: StaticString = "url.path"
    public static let serverAddress: StaticString = "server.address"
    public static let serverPort: StaticString = "server.port"
    public static let protocolVersion: StaticString = "network.protocol.version"
    public static let errorType: StaticString = "error.type"
    // Sluice
    public static let requestID: StaticString = "sluice.request_id"
    public static let pool: StaticString = "sluice.pool"
    public static let endpoint: StaticString = "sluice.endpoint"
    public static let routeReason: StaticString = "sluice.route.reason"
    public static let routeCandidates: StaticString = "sluice.route.candidates"
    public static let predictedTTFT: StaticString = "sluice.route.predicted_ttft"
    public static let splitArm: StaticString = "sluice.split.arm"
    public static let adapter: StaticString = "sluice.adapter"
    public static let tenant: StaticString = "sluice.tenant"
    public static let cacheResult: StaticString = "sluice.cache.result"
    public static let rateLimitResult: StaticString = "sluice.rate_limit.result"
    public static let queueWait: StaticString = "sluice.queue.wait"
    public static let attempts: StaticString = "sluice.attempts"
    public static let attempt: StaticString = "sluice.attempt"
    public static let retryReason: StaticString = "sluice.retry.reason"
}
