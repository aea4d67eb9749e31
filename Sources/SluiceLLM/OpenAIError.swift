/// An OpenAI-style error response: HTTP status plus the body
/// `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
///
/// Contract: ``render()`` produces valid JSON whatever the strings contain (quotes, backslashes and
/// control characters are escaped; Swift strings are always valid UTF-8). `param` and `code` render
/// as `null` when nil. Errors are off the hot path, so this type holds `String`s.
///
/// Types and codes follow OpenAI's API: 400/404/408/413/431 are `invalid_request_error`; 429 is
/// type `requests` or `tokens` with code `rate_limit_exceeded` (what api.openai.com sends); 5xx are
/// `server_error`, a gateway timeout is type `timeout`.
public struct OpenAIError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Response fields to send with it (`retry-after`, `x-ratelimit-*`, `www-authenticate`).
    public var headers: [Header] = []

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    // MARK: the common ones

    /// 400: a malformed or invalid request.
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 401: missing or unknown API key.
    public static func invalidAPIKey(_ message: String = "Incorrect API key provided.") -> OpenAIError {
        OpenAIError(status: 401, message: message, type: "invalid_request_error", code: "invalid_api_key")
    }

    /// 404: no such model (or not visible to this key).
    public static func modelNotFound(_ model: String) -> OpenAIError {
        OpenAIError(status: 404, message: "The model `\(model)` does not exist or you do not have access to it.",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    /// Which limit a 429 is about.
    public enum RateLimitKind: String, Sendable {
        case requests, tokens
    }

    /// 429: a rate limit was hit; `retryAfterSeconds` goes into the message (the gateway also sends
    /// `retry-after` and `x-ratelimit-*` headers).
    public static func rateLimited(_ kind: RateLimitKind, limit: Int, retryAfterSeconds: Double? = nil) -> OpenAIError {
        let unit = kind == .requests ? "requests" : "tokens"
        var m = "Rate limit reached for \(unit): limit \(limit)."
        if let r = retryAfterSeconds { m += " Please try again in \(formatSeconds(r))." }
        return OpenAIError(status: 429, message: m, type: kind.rawValue, code: "rate_limit_exceeded")
    }

    /// 408: the client did not send its request in time.
    public static func requestTimeout() -> OpenAIError {
        OpenAIError(status: 408, message: "Timed out waiting for the request.", type: "invalid_request_error", code: "request_timeout")
    }

    /// 413: the body is larger than the configured limit.
    public static func requestTooLarge(limitBytes: Int) -> OpenAIError {
        OpenAIError(status: 413, message: "Request body too large (limit \(limitBytes) bytes).",
                    type: "invalid_request_error", code: "request_too_large")
    }

    /// 431: the request head is larger than the configured limit.
    public static func headersTooLarge() -> OpenAIError {
        OpenAIError(status: 431, message: "Request header fields too large.", type: "invalid_request_error",
                    code: "request_header_fields_too_large")
    }

    /// 502: the upstream failed (connection refused or reset, malformed response).
    public static func badGateway(_ message: String = "The model server failed to answer.") -> OpenAIError {
        OpenAIError(status: 502, message: message, type: "server_error", code: "bad_gateway")
    }

    /// 503: no endpoint can take the request (none healthy, all saturated, draining).
    public static func serviceUnavailable(_ message: String = "No model server is available for this model.") -> OpenAIError {
        OpenAIError(status: 503, message: message, type: "server_error", code: "service_unavailable")
    }

    /// 504: the upstream did not answer in time.
    public static func gatewayTimeout(_ message: String = "The model server did not answer in time.") -> OpenAIError {
        OpenAIError(status: 504, message: message, type: "timeout", code: "upstream_timeout")
    }

    /// 500: a bug or unexpected state in the gateway.
    public static func internalError(_ message: String = "Internal error.") -> OpenAIError {
        OpenAIError(status: 500, message: message, type: "server_error")
    }

    static func formatSeconds(_ s: Double) -> String {
        if s < 1 { return "\(Int((s * 1000).rounded(.up)))ms" }
        let tenths = (s * 10).rounded(.up) / 10
        return tenths == tenths.rounded() ? "\(Int(tenths))s" : "\(tenths)s"
    }

    // MARK: rendering

    /// The JSON body.
    public func render() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + message.utf8.count + type.utf8.count)
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

    /// Emits the body in pieces (shared by both renderers).
    func write(_ emit: (UnsafeBufferPointer<UInt8>) -> Void) {
        func raw(_ s: StaticString) { emit(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount)) }
        func string(_ s: String?) {
            guard let s else { raw("null"); return }
            raw("\"")
            Self.escape(s, emit)
            raw("\"")
        }
        raw("{\"error\":{\"message\":")
        string(message)
        raw(",\"type\":")
        string(type)
        raw(",\"param\":")
        string(param)
        raw(",\"code\":")
        string(code)
        raw("}}")
    }

    /// JSON string escaping: `"` and `\` get a backslash, control characters use the short forms
    /// or `\u00XX`. Everything else (including non-ASCII) is copied as UTF-8.
    static func escape(_ s: String, _ emit: (UnsafeBufferPointer<UInt8>) -> Void) {
        var s = s
        s.withUTF8 { u in
            var runStart = 0
            var i = 0
            func flush() {
                if i > runStart { emit(UnsafeBufferPointer(rebasing: u[runStart..<i])) }
            }
            while i < u.count {
                let c = u[i]
                if c >= 0x20 && c != UInt8(ascii: "\"") && c != UInt8(ascii: "\\") { i += 1; continue }
                flush()
                var esc: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (UInt8(ascii: "\\"), 0, 0, 0, 0, 0)
                var len = 2
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): esc.1 = c
                case 0x0A: esc.1 = UInt8(ascii: "n")
                case 0x0D: esc.1 = UInt8(ascii: "r")
                case 0x09: esc.1 = UInt8(ascii: "t")
                case 0x08: esc.1 = UInt8(ascii: "b")
                case 0x0C: esc.1 = UInt8(ascii: "f")
                default:
                    let hex: StaticString = "0123456789abcdef"
                    esc = (UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                           hex.utf8Start[Int(c >> 4)], hex.utf8Start[Int(c & 15)])
                    len = 6
                }
                withUnsafeBytes(of: &esc) { emit(UnsafeBufferPointer(start: $0.baseAddress!.assumingMemoryBound(to: UInt8.self), count: len)) }
                i += 1
                runStart = i
            }
            flush()
        }
    }
}
