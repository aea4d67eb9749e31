import CNghttp2
import Glibc
public import SluiceIO

/// Limits and deadlines an ``HTTP2ServerConnection`` enforces (read from its delegate at each
/// use, so a reload applies to connections already open).
public struct HTTP2ServerLimits: Sendable {
    public var maxConcurrentStreams: Int
    /// The request head (header block and trailers together), as for HTTP/1.1.
    public var head: HTTP1Limits
    public var maxBodyBytes: Int
    /// Request body bytes the streams still arriving may hold together beyond the oldest one's.
    public var bodyBudget: Int
    /// A header block must be complete within this of its first frame.
    public var clientHeader: Duration
    /// A request's body must be complete within this of the end of its header block.
    public var clientBody: Duration
    /// The connection closes after this without a frame from the client while no request is
    /// being answered.
    public var idle: Duration

    public init(maxConcurrentStreams: Int, head: HTTP1Limits, maxBodyBytes: Int, bodyBudget: Int,
                clientHeader: Duration, clientBody: Duration, idle: Duration) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.head = head
        self.maxBodyBytes = maxBodyBytes
        self.bodyBudget = bodyBudget
        self.clientHeader = clientHeader
        self.clientBody = clientBody
        self.idle = idle
    }
}

/// What serves an ``HTTP2ServerConnection``: hears about requests and refusals, and when the
/// connection ends.
public protocol HTTP2ServerDelegate: AnyObject {
    var http2Limits: HTTP2ServerLimits { get }
    /// New streams are refused (a graceful stop).
    var isDraining: Bool { get }
    /// A request arrived whole: its head parsed (`stream.head`), its body in `stream.requestBody`.
    /// The delegate sets `stream.handler` and answers through the stream's connection.
    func requestArrived(_ stream: HTTP2ServerStream)
    /// The connection refused a request (a bad head, a body too large, a deadline): answer
    /// `status` with `message` on `stream`.
    func refuse(_ stream: HTTP2ServerStream, status: Int, message: String)
    /// The connection closed (every stream's handler heard first).
    func connectionClosed(_ connection: HTTP2ServerConnection)
}

/// Who answers one stream's request.
public protocol HTTP2StreamHandler: AnyObject {
    /// The stream closed: its response went out, the client reset it, or the connection ended.
    func streamClosed()
    /// The response queue drained below its high-water mark (reading the upstream may resume).
    func streamDrained()
    /// Tunnel streams (extended CONNECT) only: DATA from the client. The handler copies the
    /// bytes and reports them passed on with ``HTTP2ServerStream/tunnelWritten(_:)``: until then
    /// they hold the stream's flow-control window shut (and count against the connection's
    /// budget), so a client cannot send faster than the upstream takes them.
    func tunnelReceived(_ bytes: UnsafeRawBufferPointer)
    /// Tunnel streams only: the client ended its side (END_STREAM).
    func tunnelClientEnded()
}

/// One HTTP/2 request/response on an ``HTTP2ServerConnection``, as the codec keeps it: the
/// request's head (rebuilt as HTTP/1.1 text — `METHOD :path HTTP/1.1`, `Host: :authority`, then
/// the fields as they arrive; pseudo-headers precede fields, which nghttp2 enforces — and parsed
/// by the same strict parser as an HTTP/1.1 client's, so both protocols meet the same limits,
/// checks and header policy), its body, where it is in arriving, and the response body waiting
/// for flow control. Lives exactly as long as nghttp2's stream.
public final class HTTP2ServerStream {
    public let id: Int32
    public unowned(unsafe) let connection: HTTP2ServerConnection
    /// Answers the request once it arrived (nil before).
    public var handler: (any HTTP2StreamHandler)?

    // Request.
    private var method: [UInt8] = []
    private var path: [UInt8] = []
    private var authority: [UInt8] = []
    /// `:protocol` (RFC 8441), empty without one.
    private var connectProtocol: [UInt8] = []
    private var sawWebSocketVersion = false
    /// What the pseudo-headers ask for; `.request` until the header block is complete.
    public private(set) var kind = HTTP2RequestKind.request
    /// A WebSocket over this stream (extended CONNECT): DATA flows both ways for the stream's
    /// life, to the handler's ``HTTP2StreamHandler/tunnelReceived(_:)``.
    public var isTunnel: Bool { kind == .websocket }
    /// The client ended its side of a tunnel (END_STREAM).
    public internal(set) var clientEnded = false
    /// Tunnel bytes received and not yet passed on by the handler.
    var tunnelHeld = 0
    /// The head as HTTP/1.1 text (a pool block), once the first field (or the end) arrives.
    public private(set) var headText: ByteBuffer
    /// `headText` parsed (nil until the request is complete, and after ``releaseRequest()``).
    public private(set) var head: HTTPHead?
    private var headerBytes = 0
    private var headerCount = 0
    /// Reading the trailers' header block (fields counted against the limits, then dropped).
    private var inTrailers = false
    public var requestBody: ByteBuffer
    /// The request was handed on (or refused) once.
    public private(set) var started = false

    // Arrival (kept by the connection: deadlines and the body budget).
    var headersDone = false
    var isArriving = true
    var deadline = Instant(nanoseconds: .max)
    /// Body bytes received but not yet consumed (the client's window not yet reopened for them).
    var unconsumed = 0
    var requestBodyBytes: Int { requestBody.readableBytes }

    // Response.
    /// Body bytes waiting for flow control.
    public var body: OutputQueue
    /// Nothing more will be added to `body`.
    public internal(set) var ended = false
    /// The last DATA frame (or a HEADERS frame ending the stream) was produced.
    public internal(set) var responseFinished = false
    var wasBackpressured = false

    init(id: Int32, connection: HTTP2ServerConnection) {
        self.id = id
        self.connection = connection
        let pool = connection.loop.bufferPool
        requestBody = ByteBuffer(emptyIn: pool)
        headText = ByteBuffer(emptyIn: pool)
        body = OutputQueue(pool: pool)
    }

    // MARK: request

    /// The trailers begin: their fields are counted, not kept.
    func beginTrailers() { inTrailers = true }

    /// Adds one field; false when the header list (with the trailers) exceeds its limit.
    func addHeader(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ limits: HTTP1Limits) -> Bool {
        headerBytes += name.count + value.count + 32
        headerCount += 1
        if headerBytes > limits.maxHeadBytes || headerCount > limits.maxHeaderCount + 8 { return false }
        if inTrailers { return true }
        func named(_ s: StaticString) -> Bool {
            name.count == s.utf8CodeUnitCount && memcmp(name.baseAddress!, s.utf8Start, name.count) == 0
        }
        if name.first == UInt8(ascii: ":") {
            if named(":method") { method = Array(value) }
            else if named(":path") { path = Array(value) }
            else if named(":authority") { authority = Array(value) }
            else if named(":protocol") { connectProtocol = Array(value) }
            return true
        }
        if named("sec-websocket-version") { sawWebSocketVersion = true }
        // An extended CONNECT carries no key (RFC 8441 §5); the gateway writes its own.
        if !connectProtocol.isEmpty && named("sec-websocket-key") { return true }
        // Re-derived for the hop (and `Host` comes from `:authority` when there is one).
        if named("content-length") || named("host") && !authority.isEmpty { return true }
        beginHeadText()
        headText.append(name)
        headText.append(": ")
        headText.append(value)
        headText.append("\r\n")
        return true
    }

    /// Writes the request line and Host (from the pseudo-headers, which came first).
    private func beginHeadText() {
        guard !headText.isAllocated else { return }
        headText = connection.loop.bufferPool.take(minimumCapacity: 1024)
        if !connectProtocol.isEmpty {
            // Extended CONNECT is mapped to the HTTP/1.1 upgrade it stands for (RFC 8441 §5);
            // `finishTunnelHead` adds the upgrade fields. Other protocols are refused before
            // the head is read.
            headText.append("GET")
        } else {
            method.withUnsafeBytes { headText.append($0) }
        }
        headText.append(" ")
        path.withUnsafeBytes { headText.append($0) }
        headText.append(" HTTP/1.1\r\n")
        if !authority.isEmpty {
            headText.append("Host: ")
            authority.withUnsafeBytes { headText.append($0) }
            headText.append("\r\n")
        }
    }

    /// Adds request body bytes; false when over `limit`.
    func addBody(_ bytes: UnsafeRawBufferPointer, limit: Int) -> Bool {
        if requestBody.readableBytes + bytes.count > limit { return false }
        requestBody.append(bytes)
        return true
    }

    /// CONNECT is decided when its header block is complete (its DATA is not a body).
    var isConnect: Bool { method.withUnsafeBytes { ASCIIBytes.equal($0, "CONNECT") } }

    /// Classifies the stream by its pseudo-headers (the header block is complete).
    func classify() -> HTTP2RequestKind {
        kind = method.withUnsafeBytes { m in connectProtocol.withUnsafeBytes { HTTP2RequestKind.classify(method: m, protocol: $0) } }
        return kind
    }

    /// A tunnel's header block is complete: its head, rebuilt as the HTTP/1.1 upgrade (a fresh
    /// `Sec-WebSocket-Key`, version 13 unless the client named one), is handed on like a request.
    func tunnelRequested(_ delegate: any HTTP2ServerDelegate) {
        guard !started, !responseFinished, !ended else { return }
        started = true
        guard !path.isEmpty else {
            delegate.refuse(self, status: 400, message: "Missing :path.")
            return
        }
        beginHeadText()
        headText.append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ")
        var rng = SystemRandomNumberGenerator()
        HTTP2RequestKind.webSocketKey((rng.next(), rng.next())).withUnsafeBytes { headText.append($0) }
        headText.append("\r\n")
        if !sawWebSocketVersion { headText.append("Sec-WebSocket-Version: 13\r\n") }
        parseHead(delegate)
    }

    /// The request ended (END_STREAM): its head is parsed and it is handed on, or refused.
    func requestComplete(_ delegate: any HTTP2ServerDelegate) {
        guard !started, !responseFinished, !ended else { return }
        started = true
        guard !method.isEmpty, !path.isEmpty else {
            delegate.refuse(self, status: 400, message: "Missing :method or :path.")
            return
        }
        beginHeadText()
        parseHead(delegate)
    }

    private func parseHead(_ delegate: any HTTP2ServerDelegate) {
        headText.append("\r\n")
        let limits = delegate.http2Limits.head
        var parser = HTTP1HeadParser(kind: .request, limits: HTTP1Limits(maxHeadBytes: limits.maxHeadBytes + 1024,
                                                                         maxHeaderCount: limits.maxHeaderCount + 8,
                                                                         maxRequestLine: limits.maxRequestLine))
        let h = HTTPHead(capacity: limits.maxHeaderCount + 8)
        switch parser.parse(headText.readable, into: h) {
        case .complete:
            head = h
            delegate.requestArrived(self)
        case .incomplete:
            delegate.refuse(self, status: 400, message: "Invalid request head.")
        case .error(let e):
            delegate.refuse(self, status: e.status, message: e.message)
        }
    }

    /// The request is no longer needed (the response began, no retry can resend it): its
    /// buffers go back to the pool, so a long stream holds none.
    public func releaseRequest() {
        requestBody.release()
        headText.release()
        head = nil
        method = []
        path = []
        authority = []
        connectProtocol = []
    }

    /// Tunnel streams: `n` bytes the handler got from ``HTTP2StreamHandler/tunnelReceived(_:)``
    /// were passed on (written to the upstream, or dropped): the client may send as many more.
    public func tunnelWritten(_ n: Int) {
        connection.tunnelPassed(self, n)
    }

    // MARK: response

    /// nghttp2 asks for up to `length` bytes of DATA: we report how many are ready and write
    /// them ourselves in the send-data callback (NO_COPY).
    func readCallback(_ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        let n = min(length, body.pendingBytes)
        if n == 0 {
            if ended {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                responseFinished = true
                return 0
            }
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        if ended && n == body.pendingBytes {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            responseFinished = true
        }
        return n
    }

    /// True while more response bytes are queued than the high-water mark.
    public var isBackpressured: Bool { body.pendingBytes > 256 << 10 }

    /// The handler stopped adding to the response for a reason of its own (a tunnel's bound on
    /// queued reads): ``HTTP2StreamHandler/streamDrained()`` comes once a DATA frame leaves
    /// with the queue below its high-water mark.
    public func markBackpressured() { wasBackpressured = true }

    /// Response body bytes were queued: DATA frames follow as flow control allows.
    public func bodyQueued() {
        if isBackpressured { wasBackpressured = true }
        connection.resumeData(self)
    }

    /// Everything of the body is queued (before the response is submitted).
    public func bodyComplete() { ended = true }

    /// The response body is complete (its DATA frames may be under way).
    public func endBody() {
        ended = true
        connection.resumeData(self)
    }

    /// Marks the response as ending with its HEADERS (no body follows).
    public func endWithoutBody() {
        ended = true
        responseFinished = true
    }

    /// Cuts the response (RST_STREAM, INTERNAL_ERROR; CANCEL with `cancel`: the stream is no
    /// longer needed, as for a tunnel idle past its timeout).
    public func abort(cancel: Bool = false) {
        ended = true
        responseFinished = true
        connection.resetStream(self, code: UInt32(cancel ? NGHTTP2_CANCEL.rawValue : NGHTTP2_INTERNAL_ERROR.rawValue))
    }

    /// nghttp2 closed the stream. Buffers that DATA frames in `out` still borrow from are
    /// handed to it.
    func closed(into out: inout OutputQueue) {
        let h = handler
        handler = nil
        h?.streamClosed()
        body.retire(into: &out)
        requestBody.release()
        headText.release()
    }
}
