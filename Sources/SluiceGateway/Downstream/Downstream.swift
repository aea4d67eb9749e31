import SluiceHTTP
import SluiceIO

/// The client side of an ``Exchange``: an HTTP/1.1 connection (one exchange at a time) or an
/// HTTP/2 stream (many per connection). The pipeline reads the request and writes the response
/// through it without knowing which.
protocol Downstream: AnyObject {
    /// Lends the request (head, bytes, body) to `body`: the phases read it, and the upstream
    /// encoder (the same for every protocol) writes it. The body stays where it was received
    /// until the exchange ends, so a retry can resend it.
    func withRequest(_ body: (DownstreamRequest) -> Void)
    /// The body to send instead of the received one (the inspect phase's rewrite).
    func setUpstreamBody(_ body: consuming ByteBuffer)
    /// The upstream's response head arrived; `bytes` holds the ranges `head` refers to.
    func writeResponseHead(_ head: HTTPHead, _ bytes: UnsafeRawBufferPointer, exchange: Exchange)
    /// Sluice answers itself (an error, a local endpoint, a cached response): head and body at
    /// once, nothing sent to the client before.
    func writeLocal(_ response: LocalResponse, exchange: Exchange)
    /// The upstream has written the whole request and begun its response, so no retry can
    /// resend it: the request's buffers may go back to the pool (a long stream then holds
    /// none). Request fields are not read after this.
    func releaseRequest()
    /// Response body bytes: all readable bytes of `buffer`, or the payload `ranges` of it.
    func writeResponseBody(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?)
    /// Sends what `writeResponseHead`/`writeResponseBody` queued (once per upstream read).
    func flushResponse()
    /// True while the client has more unsent response bytes than the high-water mark.
    var isBackpressured: Bool { get }
    func exchangeCompleted()
    /// The response was cut off after its head went out.
    func exchangeAborted()
    /// An event stream was cut off upstream: end it with `event` (an SSE error event) if the
    /// framing allows a clean end, then close; otherwise as ``exchangeAborted()``.
    func exchangeEndedWithError(event: [UInt8])
    /// Can carry a WebSocket upgrade (HTTP/1.1; an HTTP/2 extended CONNECT stream, RFC 8441).
    var canUpgrade: Bool { get }
    /// The upstream switched protocols: hand over the connection (its transport, unregistered,
    /// and the bytes the client sent after its request), or nil if it cannot be. (An HTTP/2
    /// stream is not a connection: the exchange gives it a `StreamTunnel` instead.)
    func takeOverForTunnel() -> TunnelEnd?
}

extension Downstream {
    var canUpgrade: Bool { false }
    func takeOverForTunnel() -> TunnelEnd? { nil }
}

/// A connection leaving HTTP for a ``Tunnel``: its transport (unregistered, open) and the
/// bytes already read from it that the other side must get.
struct TunnelEnd: ~Copyable {
    let transport: Transport
    var pending: ByteBuffer
}

/// A client connection as its worker sees it: HTTP/1.1 or HTTP/2.
protocol DownstreamConnection: AnyObject {
    /// Graceful stop: finish what is in progress, then close.
    func drain()
    /// Close now, aborting whatever is in progress.
    func abort()
}

extension HTTPHead {
    /// The value of the first field named `name` (ASCII case-insensitive), if any. For the
    /// control path (auth, cache directives, sticky headers), not per byte.
    func value(named name: String, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var lower = Array(name.utf8)
        for k in lower.indices where lower[k] >= 65 && lower[k] <= 90 { lower[k] |= 0x20 }
        return lower.withUnsafeBytes { n -> UnsafeRawBufferPointer? in
            for i in 0..<count {
                let f = self[i]
                if f.name.count == n.count && ASCIICase.equal(bytes, f.name, n) { return bytes.slice(f.value) }
            }
            return nil
        }
    }
}
