/// Why a message was rejected. Each kind knows the status a server answers with; for upstream
/// responses any kind means "bad gateway".
public enum HTTPParseError: Error, Equatable, Sendable {
    /// Malformed syntax (RFC 9112): bad token, bare CR or LF, obs-fold, whitespace before a
    /// colon, bad version string, NUL or other control characters in a field.
    case badSyntax(StaticString)
    /// Both Content-Length and Transfer-Encoding, or differing Content-Lengths: the
    /// request-smuggling cases RFC 9112 §6.3 says to reject.
    case ambiguousFraming(StaticString)
    case badContentLength
    case badChunk(StaticString)
    /// A Transfer-Encoding other than exactly `chunked`.
    case unsupportedTransferEncoding
    case missingHost
    case versionNotSupported
    case requestLineTooLong
    case headerTooLarge
    case tooManyHeaders
    case expectationFailed
    case methodNotAllowed

    public static func == (a: HTTPParseError, b: HTTPParseError) -> Bool {
        a.status == b.status && a.message == b.message
    }

    /// The status a server answers with.
    public var status: Int {
        switch self {
        case .badSyntax, .ambiguousFraming, .badContentLength, .badChunk, .missingHost: 400
        case .unsupportedTransferEncoding: 501
        case .versionNotSupported: 505
        case .requestLineTooLong: 414
        case .headerTooLarge, .tooManyHeaders: 431
        case .expectationFailed: 417
        case .methodNotAllowed: 405
        }
    }

    /// A short explanation for the error body.
    public var message: String {
        switch self {
        case .badSyntax(let what): "Malformed HTTP request: \(what)."
        case .ambiguousFraming(let what): "Ambiguous message framing: \(what)."
        case .badContentLength: "Invalid Content-Length."
        case .badChunk(let what): "Invalid chunked encoding: \(what)."
        case .unsupportedTransferEncoding: "Only Transfer-Encoding: chunked is supported."
        case .missingHost: "HTTP/1.1 requests need exactly one Host header."
        case .versionNotSupported: "HTTP version not supported."
        case .requestLineTooLong: "Request line too long."
        case .headerTooLarge: "Request header fields too large."
        case .tooManyHeaders: "Too many request header fields."
        case .expectationFailed: "Only Expect: 100-continue is supported."
        case .methodNotAllowed: "CONNECT is not supported by this gateway."
        }
    }
}
