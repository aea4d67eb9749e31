/// One header field: where its name and (trimmed) value are, and what the parser knows of it.
public struct HeaderField: Sendable {
    public var name: ByteRange
    public var value: ByteRange
    public var known: KnownHeader
}

/// Headers the proxy acts on; everything else is `.other`.
public enum KnownHeader: UInt8, Sendable {
    case other, host, contentLength, transferEncoding, connection, keepAlive, te, trailer, upgrade
    case proxyConnection, proxyAuthenticate, proxyAuthorization, expect, contentType
    case xForwardedFor, xForwardedProto, xRequestID, traceparent, authorization, forwarded, via
    case xForwardedHost, xForwardedPort, xRealIP, tracestate

    /// What an earlier proxy says about the client (`Forwarded`, `X-Forwarded-*`,
    /// `X-Real-IP`): believed only from a trusted hop, otherwise any client could claim any
    /// address or scheme.
    @inlinable public var isForwardingInfo: Bool {
        switch self {
        case .forwarded, .xForwardedFor, .xForwardedProto, .xForwardedHost, .xForwardedPort, .xRealIP: true
        default: false
        }
    }

    /// RFC 9110 §7.6.1 hop-by-hop fields (plus the `Proxy-*` family and Keep-Alive), which a
    /// proxy never forwards. Content-Length and Transfer-Encoding are re-derived per hop.
    @inlinable public var isHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .te, .trailer, .upgrade, .proxyConnection, .proxyAuthenticate,
             .proxyAuthorization, .transferEncoding, .contentLength:
            true
        default:
            false
        }
    }
}

/// How a message body is delimited (RFC 9112 §6.3).
public enum BodyFraming: Equatable, Sendable {
    case none
    case length(Int)
    case chunked
    /// Response bodies only: the body ends when the server closes.
    case untilClose
}

public enum HTTPVersion: UInt8, Sendable { case http10, http11 }

/// A parsed request or response head. The fields refer to the bytes it was parsed from; the
/// header table is reused across messages on one connection (no allocation per request).
///
/// Owned by one connection (one thread); reset by the parser at the start of each message.
public final class HTTPHead {
    /// The most fields a head may have (the parser answers `tooManyHeaders` beyond it).
    public let capacity: Int
    public private(set) var count = 0
    /// The table starts small and doubles up to `capacity` when a message needs more, so a
    /// connection costs a few hundred bytes for the dozen fields typical of API traffic, not
    /// `capacity` × 20 (which 10,000 open streams would pay in full).
    @usableFromInline var fields: UnsafeMutablePointer<HeaderField>
    @usableFromInline var allocated: Int
    static let initialFields = 16

    // Start line.
    public var method: HTTPMethod = .get
    public var methodRange = ByteRange.empty
    public var target = ByteRange.empty
    public var status = 0
    public var reason = ByteRange.empty
    public var version: HTTPVersion = .http11
    /// Bytes of the head including the final empty line.
    public var length = 0

    // What the fields say, decided once by the parser.
    public var framing: BodyFraming = .none
    /// The connection stays open after this message (version default, `Connection` tokens).
    public var keepAlive = true
    public var expectContinue = false
    public var host = ByteRange.empty
    /// Indices of Connection headers, for finding the fields they name (hop-by-hop).
    public var hasConnectionOptions = false

    public init(capacity: Int) {
        self.capacity = capacity
        allocated = max(1, min(capacity, Self.initialFields))
        fields = .allocate(capacity: allocated)
    }

    deinit { fields.deallocate() }

    @inlinable public subscript(i: Int) -> HeaderField { fields[i] }

    func reset() {
        count = 0
        method = .other
        methodRange = .empty
        target = .empty
        status = 0
        reason = .empty
        version = .http11
        length = 0
        framing = .none
        keepAlive = true
        expectContinue = false
        host = .empty
        hasConnectionOptions = false
    }

    /// Adds a field; false when the table is full.
    func append(_ f: HeaderField) -> Bool {
        if count == allocated {
            if count >= capacity { return false }
            let bigger = UnsafeMutablePointer<HeaderField>.allocate(capacity: min(capacity, allocated * 2))
            bigger.moveInitialize(from: fields, count: count)
            fields.deallocate()
            fields = bigger
            allocated = min(capacity, allocated * 2)
        }
        fields[count] = f
        count += 1
        return true
    }

    /// The first field of kind `known`, if any.
    public func first(_ known: KnownHeader) -> HeaderField? {
        for i in 0..<count where fields[i].known == known { return fields[i] }
        return nil
    }

    /// The index of the first field named `name` (ASCII case-insensitive), if any.
    public func index(named name: StaticString, in bytes: UnsafeRawBufferPointer) -> Int? {
        let n = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        for i in 0..<count {
            let r = fields[i].name
            if r.count == n.count && ASCIICase.equal(bytes, r, n) { return i }
        }
        return nil
    }

    /// True when a `Connection` header of this message names field `i` (so it is hop-by-hop).
    public func isNamedByConnection(_ i: Int, in bytes: UnsafeRawBufferPointer) -> Bool {
        guard hasConnectionOptions else { return false }
        let name = fields[i].name
        for j in 0..<count where fields[j].known == .connection {
            var found = false
            Tokens.forEach(in: bytes, fields[j].value) { tok in
                if tok.count == name.count && ASCIICase.equal(bytes, tok, bytes, name) { found = true }
            }
            if found { return true }
        }
        return false
    }
}

public enum HTTPMethod: UInt8, Sendable {
    case get, head, post, put, delete, options, patch, trace, connect, other

    /// The method's token as sent (`OTHER` for the ones Sluice does not tell apart). A string
    /// literal: no formatting, no allocation.
    public var name: String {
        switch self {
        case .get: "GET"
        case .head: "HEAD"
        case .post: "POST"
        case .put: "PUT"
        case .delete: "DELETE"
        case .options: "OPTIONS"
        case .patch: "PATCH"
        case .trace: "TRACE"
        case .connect: "CONNECT"
        case .other: "OTHER"
        }
    }

    /// Whether the method is idempotent (RFC 9110 §9.2.2), which makes a retry after a partial
    /// send safe.
    public var isIdempotent: Bool {
        switch self {
        case .get, .head, .put, .delete, .options, .trace: true
        default: false
        }
    }
}

extension HTTPHead {
    /// Calls `body` with the index of every end-to-end field: not hop-by-hop (RFC 9110 §7.6.1)
    /// and not named by a `Connection` header. Content-Length and Transfer-Encoding are skipped
    /// too: each hop frames the body itself.
    @inlinable
    public func forEachEndToEndField(in bytes: UnsafeRawBufferPointer, _ body: (Int) -> Void) {
        for i in 0..<count {
            let f = fields[i]
            if f.known.isHopByHop { continue }
            if f.known == .other && isNamedByConnection(i, in: bytes) { continue }
            body(i)
        }
    }
}
