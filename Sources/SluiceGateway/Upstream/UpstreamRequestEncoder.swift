import SluiceSettings
import SluiceTracing
import Glibc
import SluiceHTTP
import SluiceIO

/// A client's request as every downstream protocol hands it to the upstream: its head parsed by
/// the one strict HTTP/1.1 parser (an HTTP/2 stream rebuilds its pseudo-headers and fields as
/// HTTP/1.1 text first, see `HTTP2Stream`), the bytes the head's ranges point into, the body as
/// it will be sent, and who sent it.
struct DownstreamRequest {
    let head: HTTPHead
    /// The bytes `head` was parsed from (its ranges are offsets into them).
    let bytes: UnsafeRawBufferPointer
    /// The body to send: as received, or as the forward phase rewrote it.
    let body: UnsafeRawBufferPointer
    /// The client's address as text.
    let peer: UnsafeRawBufferPointer
    let isTLS: Bool
    /// The id Sluice gave the request (used when the client sent no usable `X-Request-Id`).
    let requestID: UInt64

    /// The request target as sent (path and query; absolute-form for some HTTP/1.1 clients).
    var target: UnsafeRawBufferPointer { bytes.slice(head.target) }

    /// The value of the first field named `name` (ASCII case-insensitive), if any.
    func header(named name: String) -> UnsafeRawBufferPointer? { head.value(named: name, in: bytes) }
}

/// The one place a request head is written for the upstream (HTTP/1.1), whichever protocol the
/// client spoke, so the header policy cannot drift between protocols:
///
/// - request line: the method as received; the target in origin-form (an absolute-form
///   target loses scheme and authority), without a `#fragment`, `/` when empty;
/// - `Host`: an absolute-form target's authority, else the client's `Host` (HTTP/2:
///   `:authority`), else the endpoint's;
/// - dropped: hop-by-hop fields and those named by `Connection` (RFC 9110 §7.6.1, which
///   includes `Proxy-Authorization`), `Content-Length`/`Transfer-Encoding` (re-framed here),
///   `Expect` (Sluice answered it), and — unless `proxy.trust_forwarded` — the forwarding
///   fields a client could forge (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`);
/// - added: `X-Forwarded-For` (the peer, appended to a trusted hop's list) and
///   `X-Forwarded-Proto` with `proxy.x_forwarded`; `Via: 1.1 sluice` with `proxy.via`;
///   `X-Request-Id` when the client sent none usable (1–200 bytes); `traceparent`: with
///   tracing on always the gateway's (the request's trace, the attempt's client span as parent,
///   the sampling decision as flags), with it off a fresh one when the client's is missing or
///   malformed (W3C Trace Context §3.2: restart the trace; its `tracestate` goes with it);
///   `Content-Length` of the body.
///
/// The settings are the exchange's own snapshot, so a retry after a reload sends the same head.
enum UpstreamRequestEncoder {
    /// Writes the head (one small pool block) and then the body (borrowed: it stays where it
    /// was received until the exchange ends) into `queue`.
    static func encode(_ r: DownstreamRequest, proxy: GatewaySettings.Proxy, endpointAuthority: String,
                       trace: (context: TraceContext, spanID: UInt64)? = nil, into queue: inout OutputQueue, pool: BufferPool) {
        let b = r.bytes
        let head = r.head
        var h = pool.take(minimumCapacity: head.length + 512)
        h.append(b.slice(head.methodRange))
        h.append(" ")
        let authority = absoluteFormAuthority(head.target, b)
        appendOriginForm(head.target, authority, b, to: &h)
        h.append(" HTTP/1.1\r\n")
        var sawHost = false
        if let a = authority, !a.isEmpty {
            // With an absolute-form target the Host field is ignored and the target's authority
            // is sent instead (RFC 9112 §3.2.2).
            h.append("Host: ")
            h.append(b.slice(a))
            h.append("\r\n")
            sawHost = true
        }
        let trusted = proxy.trustForwarded
        let validTrace = hasValidTraceparent(head, b)
        let requestID = clientRequestID(head, b)
        var xff = ByteRange.empty
        var sawProto = false
        var lines = FieldLineCopier()
        head.forEachEndToEndField(in: b) { i in
            let f = head[i]
            switch f.known {
            case .host:
                if sawHost { return }
                sawHost = true
            case .expect:
                return
            case .xForwardedFor:
                // Re-written below (appended to when trusted).
                if trusted && xff.isEmpty { xff = f.value }
                if proxy.xForwarded || !trusted { return }
            case .forwarded, .xForwardedProto, .xForwardedHost, .xForwardedPort, .xRealIP:
                guard trusted else { return }
                if f.known == .xForwardedProto { sawProto = true }
            case .traceparent:
                // Traced: the gateway's own is written below (the attempt's span as parent).
                if !validTrace || trace != nil { return }
            case .tracestate:
                if !validTrace { return }
            case .xRequestID:
                if requestID == nil { return }
            default:
                break
            }
            lines.add(f, from: b, to: &h)
        }
        lines.flush(from: b, to: &h)
        if !sawHost {
            h.append("Host: ")
            h.append(endpointAuthority.utf8)
            h.append("\r\n")
        }
        if proxy.xForwarded {
            h.append("X-Forwarded-For: ")
            if !xff.isEmpty {
                h.append(b.slice(xff))
                h.append(", ")
            }
            h.append(r.peer)
            h.append("\r\n")
            if !sawProto { h.append(r.isTLS ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n") }
        }
        if proxy.via { h.append("Via: 1.1 sluice\r\n") }
        if requestID == nil {
            h.append("X-Request-Id: ")
            h.appendHex64(r.requestID)
            h.append("\r\n")
        }
        if let trace {
            // This trace (the client's continued, or one the gateway started), the attempt's
            // client span as the parent, the sampling decision in the flags.
            h.append("traceparent: ")
            withUnsafeTemporaryAllocation(byteCount: 55, alignment: 1) { tp in
                trace.context.writeTraceparent(spanID: trace.spanID, into: tp)
                h.append(UnsafeRawBufferPointer(tp))
            }
            h.append("\r\n")
        } else if !validTrace {
            // Tracing off: start a trace (not sampled: Sluice records no spans).
            h.append("traceparent: 00-")
            h.appendHex64(r.requestID &* 0x9E37_79B9_7F4A_7C15 ^ 0x5851_F42D_4C95_7F2D)
            h.appendHex64(r.requestID)
            h.append("-")
            h.appendHex64(r.requestID)
            h.append("-00\r\n")
        }
        if r.body.count > 0 || head.method == .post || head.method == .put || head.method == .patch {
            h.append("Content-Length: ")
            h.appendDecimal(r.body.count)
            h.append("\r\n")
        }
        h.append("\r\n")
        queue.append(h)
        if r.body.count > 0 { queue.append(borrowing: r.body) }
    }

    /// The client's `X-Request-Id` when usable (1 to 200 bytes): it is forwarded and echoed.
    static func clientRequestID(_ head: HTTPHead, _ b: UnsafeRawBufferPointer) -> ByteRange? {
        guard let f = head.first(.xRequestID), !f.value.isEmpty, f.value.count <= 200 else { return nil }
        return f.value
    }

    /// The authority of an absolute-form target (`http://host:port/path` → `host:port`), or nil
    /// for origin-form and `*`. The authority ends at `/`, `?` or `#` (RFC 3986 §3.2).
    static func absoluteFormAuthority(_ t: ByteRange, _ b: UnsafeRawBufferPointer) -> ByteRange? {
        if t.isEmpty || b[Int(t.start)] == UInt8(ascii: "/") || b[Int(t.start)] == UInt8(ascii: "*") { return nil }
        var i = Int(t.start)
        while i < Int(t.end) && b[i] != UInt8(ascii: ":") { i += 1 }
        i = min(i + 3, Int(t.end))  // "://"
        var e = i
        while e < Int(t.end) && b[e] != UInt8(ascii: "/") && b[e] != UInt8(ascii: "?") && b[e] != UInt8(ascii: "#") { e += 1 }
        return ByteRange(i, e)
    }

    /// The target in origin-form: absolute-form loses scheme and authority, a fragment is
    /// dropped (it is never sent in a request, RFC 9112 §3.2), an empty path becomes `/`
    /// (`http://h?q=1` → `/?q=1`, RFC 9112 §3.2.1).
    static func appendOriginForm(_ t: ByteRange, _ authority: ByteRange?, _ b: UnsafeRawBufferPointer, to h: inout ByteBuffer) {
        let rest = authority.map { Int($0.end) } ?? Int(t.start)
        var fragment = Int(t.end)
        if rest < fragment, let hash = memchr(b.baseAddress! + rest, Int32(UInt8(ascii: "#")), fragment - rest) {
            fragment = b.baseAddress!.distance(to: UnsafeRawPointer(hash))
        }
        if authority != nil && (rest >= fragment || b[rest] != UInt8(ascii: "/")) { h.append("/") }
        if authority == nil && rest >= fragment { h.append("/") }
        if rest < fragment { h.append(b.slice(ByteRange(rest, fragment))) }
    }

    /// A `traceparent` of the form `<2 hex version>-<32 hex>-<16 hex>-<2 hex>` (W3C Trace
    /// Context §3.2), lowercase, version not `ff`, neither id all zeros.
    static func hasValidTraceparent(_ head: HTTPHead, _ b: UnsafeRawBufferPointer) -> Bool {
        guard let f = head.first(.traceparent), f.value.count == 55 else { return false }
        let v = b.slice(f.value)
        if v[0] == UInt8(ascii: "f") && v[1] == UInt8(ascii: "f") { return false }
        var traceZero = true, spanZero = true
        for (i, c) in v.enumerated() {
            let isDash = i == 2 || i == 35 || i == 52
            if isDash {
                if c != UInt8(ascii: "-") { return false }
            } else if !((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) {
                return false
            } else if c != UInt8(ascii: "0") {
                if i > 2 && i < 35 { traceZero = false } else if i > 35 && i < 52 { spanZero = false }
            }
        }
        return !traceZero && !spanZero
    }
}
