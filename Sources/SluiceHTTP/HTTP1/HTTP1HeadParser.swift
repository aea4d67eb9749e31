import Glibc

/// Limits the parser enforces while reading a head.
public struct HTTP1Limits: Sendable, Equatable {
    /// The whole head (start line, fields, final CRLF).
    public var maxHeadBytes: Int
    public var maxHeaderCount: Int
    public var maxRequestLine: Int

    public init(maxHeadBytes: Int = 32 << 10, maxHeaderCount: Int = 100, maxRequestLine: Int = 8 << 10) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxRequestLine = maxRequestLine
    }
}

/// An incremental, strict HTTP/1.1 head parser (RFC 9112) for requests from clients and
/// responses from upstreams.
///
/// Works in place: give it the bytes received so far for the current message (starting at the
/// message's first byte); it remembers how far it has looked for the end of the head, so bytes
/// arriving one at a time cost O(n) in total, then parses the complete head once into an
/// ``HTTPHead`` whose ranges are offsets into those bytes (picohttpparser's approach).
public struct HTTP1HeadParser: Sendable {
    public enum Kind: Sendable { case request, response }
    public enum Result: Equatable, Sendable {
        case incomplete
        /// The head is complete; it is `head.length` bytes long.
        case complete
        case error(HTTPParseError)
    }

    public let kind: Kind
    public var limits: HTTP1Limits
    /// Offset up to which the end of the head was searched for.
    private var scanned = 0
    /// For responses: the request method, which decides whether a body follows.
    public var requestMethod: HTTPMethod = .get

    public init(kind: Kind, limits: HTTP1Limits = HTTP1Limits()) {
        self.kind = kind
        self.limits = limits
    }

    /// Starts over for the next message.
    public mutating func reset() { scanned = 0 }

    /// Looks for a complete head in `bytes` and parses it into `head`.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, into head: HTTPHead) -> Result {
        // Skip empty lines before a request line (RFC 9112 §2.2: a server SHOULD ignore at
        // least one), which some clients send after a POST body.
        var start = 0
        if kind == .request {
            while start + 1 < bytes.count && bytes[start] == 13 && bytes[start + 1] == 10 { start += 2 }
            if start < bytes.count && bytes[start] == 10 { return .error(.badSyntax("bare LF")) }
        }
        let found = findEndOfHead(bytes, from: start)
        if found == -1 { return .error(.badSyntax("bare LF")) }
        guard let end = found else {
            if bytes.count - start > limits.maxHeadBytes {
                // Distinguish an endless request line from too many or too large fields.
                if kind == .request && !containsLF(bytes, start, min(bytes.count, start + limits.maxRequestLine)) {
                    return .error(.requestLineTooLong)
                }
                return .error(.headerTooLarge)
            }
            if kind == .request && bytes.count - start > limits.maxRequestLine
                && !containsLF(bytes, start, start + limits.maxRequestLine + 1) {
                return .error(.requestLineTooLong)
            }
            return .incomplete
        }
        if end - start > limits.maxHeadBytes { return .error(.headerTooLarge) }
        head.reset()
        head.length = end
        if let e = parseHead(bytes, start, end, head) { return .error(e) }
        return .complete
    }

    private func containsLF(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
        var i = from
        while i < to { if b[i] == 10 { return true }; i += 1 }
        return false
    }

    /// Offset just past the `CRLF CRLF` that ends the head, nil when not there yet, or -1 for a
    /// bare LF (rejected as soon as it is seen rather than waiting for a head that a lenient
    /// peer might think ended with `LF LF`).
    private mutating func findEndOfHead(_ b: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var i = max(start, scanned)
        let n = b.count
        let base = b.baseAddress!
        // Lines are short (a call to memchr per line cost more than the search): eight bytes
        // at a time, each LF in the word checked in turn.
        while i &+ 8 <= n {
            var m = Self.lineFeeds(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
            while m != 0 {
                let lf = i &+ (m.trailingZeroBitCount &>> 3)
                if let end = lineFeed(at: lf, b, start) { return end }
                m &= m &- 1
            }
            i &+= 8
        }
        while i < n {
            if b[i] == 10, let end = lineFeed(at: i, b, start) { return end }
            i += 1
        }
        scanned = max(start, n)
        return nil
    }

    /// At the LF at `lf`: -1 if it is bare, the end of the head if it completes `CRLF CRLF`,
    /// nil if it just ends a line.
    @inline(__always)
    private func lineFeed(at lf: Int, _ b: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        if lf == start || b[lf - 1] != 13 { return -1 }
        if lf >= start + 3 && b[lf - 2] == 10 && b[lf - 3] == 13 { return lf + 1 }
        return nil
    }

    /// The high bit of every byte of the little-endian word `w` that is LF.
    @inline(__always)
    static func lineFeeds(_ w: UInt64) -> UInt64 {
        CharacterClass.zeroBytes(w ^ 0x0A0A_0A0A_0A0A_0A0A)
    }

    // MARK: parsing a complete head

    private func parseHead(_ b: UnsafeRawBufferPointer, _ start: Int, _ end: Int, _ head: HTTPHead) -> HTTPParseError? {
        // The start line.
        guard let firstLineEnd = lineEnd(b, start, end) else { return .badSyntax("bare CR or LF") }
        if kind == .request {
            if firstLineEnd - start > limits.maxRequestLine { return .requestLineTooLong }
            if let e = parseRequestLine(b, start, firstLineEnd, head) { return e }
        } else {
            if let e = parseStatusLine(b, start, firstLineEnd, head) { return e }
        }
        // Fields.
        var i = firstLineEnd + 2
        var contentLength: Int? = nil
        var transferEncodingSeen = false
        var chunkedFinal = false
        var teError: HTTPParseError? = nil
        var hostCount = 0
        var closeToken = false
        var keepAliveToken = false
        while i < end - 2 {
            // obs-fold: a line starting with whitespace continues the previous one. Rejected.
            if b[i] == 32 || b[i] == 9 { return .badSyntax("obsolete line folding") }
            var j = i
            // Letters, digits and '-' eight at a time, then byte by byte to the colon.
            while j &+ 8 <= end {
                let n = CharacterClass.alphanumericOrDashPrefix(UnsafeRawPointer(b.baseAddress! + j).loadUnaligned(as: UInt64.self))
                j &+= n
                if n < 8 { break }
            }
            while j < end && CharacterClass.isToken(b[j]) { j += 1 }
            if j == i || j == end || b[j] != UInt8(ascii: ":") {
                return j < end && (b[j] == 32 || b[j] == 9)
                    ? .badSyntax("whitespace before colon") : .badSyntax("invalid header name")
            }
            let name = ByteRange(i, j)
            j += 1
            // The value runs to the first control byte, which must be the CR of CRLF: one pass
            // both validates it and finds the line end (eight bytes at a time while all are
            // plain field-value bytes).
            var le = j
            while le &+ 8 <= end && !Self.hasControlOrDEL(UnsafeRawPointer(b.baseAddress! + le).loadUnaligned(as: UInt64.self)) {
                le &+= 8
            }
            while le < end && (b[le] >= 0x20 || b[le] == 9) && b[le] != 0x7F { le += 1 }
            guard le + 1 < end, b[le] == 13, b[le + 1] == 10 else {
                return le < end && (b[le] == 13 || b[le] == 10)
                    ? .badSyntax("bare CR or LF") : .badSyntax("invalid character in header value")
            }
            while j < le && (b[j] == 32 || b[j] == 9) { j += 1 }
            var ve = le
            while ve > j && (b[ve - 1] == 32 || b[ve - 1] == 9) { ve -= 1 }
            let value = ByteRange(j, ve)
            let known = Self.classify(b, name)
            if !head.append(HeaderField(name: name, value: value, known: known)) { return .tooManyHeaders }
            switch known {
            case .contentLength:
                // A list of identical values is allowed (RFC 9110 §8.6); anything else is not.
                var invalid = false
                var differing = false
                Tokens.forEach(in: b, value) { tok in
                    guard let v = Self.parseLength(b, tok) else { invalid = true; return }
                    if let prev = contentLength, prev != v { differing = true }
                    contentLength = v
                }
                if invalid { return .badContentLength }
                if differing { return .ambiguousFraming("differing Content-Length values") }
                if value.isEmpty { return .badContentLength }
            case .transferEncoding:
                transferEncodingSeen = true
                Tokens.forEach(in: b, value) { tok in
                    if chunkedFinal {
                        // Anything after chunked, or chunked twice, is invalid framing.
                        teError = .ambiguousFraming("chunked must be the final transfer coding, once")
                    }
                    if ASCIICase.equal(b, tok, "chunked") {
                        chunkedFinal = true
                    } else if teError == nil {
                        teError = .unsupportedTransferEncoding
                    }
                }
                if value.isEmpty { teError = .badSyntax("empty Transfer-Encoding") }
            case .host:
                hostCount += 1
                head.host = value
            case .connection:
                Tokens.forEach(in: b, value) { tok in
                    if ASCIICase.equal(b, tok, "close") { closeToken = true }
                    else if ASCIICase.equal(b, tok, "keep-alive") { keepAliveToken = true }
                    else { head.hasConnectionOptions = true }
                }
            case .expect:
                if kind == .request {
                    if ASCIICase.equal(b, value, "100-continue") { head.expectContinue = true }
                    else { return .expectationFailed }
                }
            default:
                break
            }
            i = le + 2
        }

        // Keep-alive: HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive".
        head.keepAlive = head.version == .http11 ? !closeToken : (keepAliveToken && !closeToken)

        if kind == .request {
            if head.version == .http11 && hostCount != 1 { return .missingHost }
            if hostCount > 1 { return .missingHost }
            if transferEncodingSeen {
                // RFC 9112 §6.1: TE in HTTP/1.0 is a sign of smuggling; CL with TE likewise.
                if head.version == .http10 { return .ambiguousFraming("Transfer-Encoding in HTTP/1.0") }
                if contentLength != nil { return .ambiguousFraming("both Content-Length and Transfer-Encoding") }
                // §6.3 (4): chunked not last means the length cannot be known: 400 and close
                // (a MUST), before §6.1's 501 for a coding we do not implement (a SHOULD).
                if !chunkedFinal { return .ambiguousFraming("the final transfer coding must be chunked") }
                if let e = teError { return e }
                head.framing = .chunked
            } else if let n = contentLength {
                head.framing = n > 0 ? .length(n) : .none
            } else {
                head.framing = .none
            }
            if head.method == .connect { return .methodNotAllowed }
        } else {
            let s = head.status
            if requestMethod == .head || (100...199).contains(s) || s == 204 || s == 304 {
                head.framing = .none
            } else if transferEncodingSeen {
                // Upstreams get no benefit of the doubt either: ambiguity is a bad gateway.
                if contentLength != nil { return .ambiguousFraming("both Content-Length and Transfer-Encoding") }
                if let e = teError { return e }
                head.framing = .chunked
            } else if let n = contentLength {
                head.framing = n > 0 ? .length(n) : .none
            } else {
                head.framing = .untilClose
                head.keepAlive = false
            }
        }
        return nil
    }

    /// The offset of the CR of the CRLF ending the line that starts at `i`; nil when a bare CR
    /// comes first. (Every LF of a complete head was already checked to follow a CR when the
    /// end of the head was found, so looking for the CR is enough.)
    /// Whether any of the eight bytes (read little-endian) is a control byte (< 0x20, which
    /// includes HTAB, CR and LF) or DEL: the classic "has a byte less than n" and "has a zero
    /// byte" word tricks, exact for the existence test that is all this answers.
    @inline(__always)
    static func hasControlOrDEL(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let below20 = (w &- ones &* 0x20) & ~w & highs
        let x = w ^ (ones &* 0x7F)
        let del = (x &- ones) & ~x & highs
        return below20 | del != 0
    }

    private func lineEnd(_ b: UnsafeRawBufferPointer, _ i: Int, _ end: Int) -> Int? {
        guard i < end, let p = memchr(b.baseAddress! + i, 13, end - i) else { return nil }
        let cr = UnsafeRawPointer(p) - b.baseAddress!
        return cr + 1 < end && b[cr + 1] == 10 ? cr : nil
    }

    private func parseRequestLine(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ head: HTTPHead) -> HTTPParseError? {
        var i = s
        while i < e && CharacterClass.isToken(b[i]) { i += 1 }
        if i == s || i >= e || b[i] != 32 { return .badSyntax("invalid method") }
        head.methodRange = ByteRange(s, i)
        head.method = Self.method(b, s, i)
        i += 1
        let ts = i
        while i < e && CharacterClass.isTarget(b[i]) { i += 1 }
        if i == ts || i >= e || b[i] != 32 { return .badSyntax("invalid request target") }
        head.target = ByteRange(ts, i)
        // origin-form, absolute-form (RFC 9112 §3.2.2: servers MUST accept it) or `*` for OPTIONS.
        let first = b[ts]
        if first != UInt8(ascii: "/") {
            if first == UInt8(ascii: "*") && i - ts == 1 && head.method == .options {
            } else if head.method == .connect {
            } else if !(ASCIICase.equal(b, ByteRange(ts, min(i, ts + 7)), "http://")
                        || ASCIICase.equal(b, ByteRange(ts, min(i, ts + 8)), "https://")) {
                return .badSyntax("invalid request target")
            }
        }
        i += 1
        return parseVersion(b, i, e, head, trailing: false)
    }

    private func parseStatusLine(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ head: HTTPHead) -> HTTPParseError? {
        if e - s < 12 { return .badSyntax("short status line") }
        if let err = parseVersion(b, s, s + 8, head, trailing: false) { return err }
        if b[s + 8] != 32 { return .badSyntax("invalid status line") }
        var status = 0
        for k in 0..<3 {
            let c = b[s + 9 + k]
            guard c >= 48 && c <= 57 else { return .badSyntax("invalid status code") }
            status = status * 10 + Int(c - 48)
        }
        if status < 100 { return .badSyntax("invalid status code") }
        head.status = status
        if s + 12 < e {
            if b[s + 12] != 32 { return .badSyntax("invalid status line") }
            for k in (s + 13)..<e where !CharacterClass.isFieldValue(b[k]) { return .badSyntax("invalid reason phrase") }
            head.reason = ByteRange(s + 13, e)
        }
        return nil
    }

    private func parseVersion(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ head: HTTPHead, trailing: Bool) -> HTTPParseError? {
        guard e - s == 8, b[s] == 72, b[s + 1] == 84, b[s + 2] == 84, b[s + 3] == 80, b[s + 4] == 47,
              b[s + 6] == 46 else { return .badSyntax("invalid HTTP version") }
        let major = b[s + 5], minor = b[s + 7]
        guard major >= 48 && major <= 57 && minor >= 48 && minor <= 57 else { return .badSyntax("invalid HTTP version") }
        if major != 49 { return .versionNotSupported }
        head.version = minor == 48 ? .http10 : .http11  // 1.x with x > 1 is treated as 1.1
        return nil
    }

    static func parseLength(_ b: UnsafeRawBufferPointer, _ r: ByteRange) -> Int? {
        // Digits only: no sign, no spaces, no hex; at most 15 digits so it cannot overflow.
        if r.isEmpty || r.count > 15 { return nil }
        var v = 0
        for k in Int(r.start)..<Int(r.end) {
            let c = b[k]
            guard c >= 48 && c <= 57 else { return nil }
            v = v * 10 + Int(c - 48)
        }
        return v
    }

    /// The method named by `bytes` (case-sensitive), `.other` for extension methods.
    public static func method(_ bytes: [UInt8]) -> HTTPMethod {
        bytes.withUnsafeBytes { method($0, 0, bytes.count) }
    }

    static func method(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> HTTPMethod {
        // Methods are case-sensitive (RFC 9110 §9.1).
        func eq(_ lit: StaticString) -> Bool {
            guard lit.utf8CodeUnitCount == e - s else { return false }
            for k in 0..<(e - s) where b[s + k] != lit.utf8Start[k] { return false }
            return true
        }
        switch e - s {
        case 3: return eq("GET") ? .get : eq("PUT") ? .put : .other
        case 4: return eq("POST") ? .post : eq("HEAD") ? .head : .other
        case 5: return eq("PATCH") ? .patch : eq("TRACE") ? .trace : .other
        case 6: return eq("DELETE") ? .delete : .other
        case 7: return eq("OPTIONS") ? .options : eq("CONNECT") ? .connect : .other
        default: return .other
        }
    }

    static func classify(_ b: UnsafeRawBufferPointer, _ name: ByteRange) -> KnownHeader {
        // By length first (one jump table), then by first letter: most names are settled by
        // two compares before any full comparison.
        let first = ASCIICase.lower(b[Int(name.start)])
        func eq(_ lit: StaticString) -> Bool { ASCIICase.equal(b, name, lit) }
        switch name.count {
        case 2: return first == UInt8(ascii: "t") && eq("te") ? .te : .other
        case 3: return first == UInt8(ascii: "v") && eq("via") ? .via : .other
        case 4: return first == UInt8(ascii: "h") && eq("host") ? .host : .other
        case 6: return first == UInt8(ascii: "e") && eq("expect") ? .expect : .other
        case 7:
            if first == UInt8(ascii: "t") { return eq("trailer") ? .trailer : .other }
            return first == UInt8(ascii: "u") && eq("upgrade") ? .upgrade : .other
        case 9:
            if first == UInt8(ascii: "f") { return eq("forwarded") ? .forwarded : .other }
            return first == UInt8(ascii: "x") && eq("x-real-ip") ? .xRealIP : .other
        case 10:
            switch first {
            case UInt8(ascii: "c"): return eq("connection") ? .connection : .other
            case UInt8(ascii: "k"): return eq("keep-alive") ? .keepAlive : .other
            case UInt8(ascii: "t"): return eq("tracestate") ? .tracestate : .other
            default: return .other
            }
        case 11: return first == UInt8(ascii: "t") && eq("traceparent") ? .traceparent : .other
        case 12:
            if first == UInt8(ascii: "c") { return eq("content-type") ? .contentType : .other }
            return first == UInt8(ascii: "x") && eq("x-request-id") ? .xRequestID : .other
        case 13: return first == UInt8(ascii: "a") && eq("authorization") ? .authorization : .other
        case 14: return first == UInt8(ascii: "c") && eq("content-length") ? .contentLength : .other
        case 15: return first == UInt8(ascii: "x") && eq("x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            if first == UInt8(ascii: "p") { return eq("proxy-connection") ? .proxyConnection : .other }
            guard first == UInt8(ascii: "x") else { return .other }
            return eq("x-forwarded-host") ? .xForwardedHost : eq("x-forwarded-port") ? .xForwardedPort : .other
        case 17:
            if first == UInt8(ascii: "t") { return eq("transfer-encoding") ? .transferEncoding : .other }
            guard first == UInt8(ascii: "x") else { return .other }
            return eq("x-forwarded-proto") ? .xForwardedProto : eq("x-sluice-priority") ? .xSluicePriority : .other
        case 18: return first == UInt8(ascii: "p") && eq("proxy-authenticate") ? .proxyAuthenticate : .other
        case 19: return first == UInt8(ascii: "p") && eq("proxy-authorization") ? .proxyAuthorization : .other
        default: return .other
        }
    }
}
