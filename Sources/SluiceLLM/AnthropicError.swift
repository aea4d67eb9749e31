/// An error in Anthropic's shape, for the `/v1/messages` paths:
/// `{"type":"error","error":{"type":…,"message":…}}` with the HTTP status.
///
/// Contract: ``render()`` produces valid JSON whatever the message holds (escaped as
/// ``OpenAIError`` escapes). The gateway makes every error as an ``OpenAIError``; on an Anthropic
/// path it renders it through ``init(_:)``, which keeps status, message and headers and names the
/// type by Anthropic's table for the status (docs.anthropic.com, "Errors"):
///
/// | status | type |
/// |---|---|
/// | 400 (and other 4xx) | `invalid_request_error` |
/// | 401 | `authentication_error` |
/// | 402 | `billing_error` |
/// | 403 | `permission_error` |
/// | 404 | `not_found_error` |
/// | 413 | `request_too_large` |
/// | 429 | `rate_limit_error` |
/// | 503, 529 | `overloaded_error` |
/// | 504 | `timeout_error` |
/// | other 5xx | `api_error` |
public struct AnthropicError: Error, Sendable, Equatable {
    public var status: Int
    public var type: String
    public var message: String
    /// Response fields to send with it (`retry-after`, `x-ratelimit-*`, ...).
    public var headers: [OpenAIError.Header] = []

    public init(status: Int, type: String, message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    /// The same error as Anthropic words its type.
    public init(_ e: OpenAIError) {
        self.init(status: e.status, type: Self.type(forStatus: e.status), message: e.message)
        headers = e.headers
    }

    /// Anthropic's error type for an HTTP status (the table above).
    public static func type(forStatus status: Int) -> String {
        switch status {
        case 401: "authentication_error"
        case 402: "billing_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 504: "timeout_error"
        case 500...599: "api_error"
        default: "invalid_request_error"
        }
    }

    /// The JSON body.
    public func render() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(48 + message.utf8.count + type.utf8.count)
        write { out.append(contentsOf: $0) }
        return out
    }

    /// Renders the JSON body into `buffer`; returns the byte count, or nil if it does not fit.
    public func render(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        var n = 0
        var fits = true
        write { bytes in
            guard fits, n + bytes.count <= buffer.count else { fits = false; return }
            for b in bytes { buffer[n] = b; n += 1 }
        }
        return fits ? n : nil
    }

    func write(_ emit: (UnsafeBufferPointer<UInt8>) -> Void) {
        func raw(_ s: StaticString) { emit(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
        raw("{\"type\":\"error\",\"error\":{\"type\":\"")
        OpenAIError.escape(type, emit)
        raw("\",\"message\":\"")
        OpenAIError.escape(message, emit)
        raw("\"}}")
    }
}

/// How a path words its errors; the gateway keeps making ``OpenAIError``s and renders them in the
/// shape of the path they answer (``LLMEndpoint/Traits/errors``).
public enum ErrorShape: UInt8, Sendable {
    /// `{"error":{"message","type","param","code"}}`.
    case openAI
    /// `{"type":"error","error":{"type","message"}}` (``AnthropicError``).
    case anthropic
    /// KServe's Open Inference Protocol v2: `{"error":"message"}`.
    case kserve

    /// The body of `e` in this shape (the status and headers stay those of `e`).
    public func render(_ e: OpenAIError) -> [UInt8] {
        switch self {
        case .openAI:
            return e.render()
        case .anthropic:
            return AnthropicError(e).render()
        case .kserve:
            var out: [UInt8] = []
            out.reserveCapacity(16 + e.message.utf8.count)
            let emit: (UnsafeBufferPointer<UInt8>) -> Void = { out.append(contentsOf: $0) }
            out.append(contentsOf: "{\"error\":\"".utf8)
            OpenAIError.escape(e.message, emit)
            out.append(contentsOf: "\"}".utf8)
            return out
        }
    }
}
