import Glibc
import CNghttp2
import SluiceLLM
import SluiceHTTP
import SluiceIO

/// One HTTP/2 request/response on an ``HTTP2Connection``: collects the request (pseudo-headers,
/// fields, body), runs an ``Exchange`` for it, and holds the response body until flow control
/// lets DATA frames carry it out.
///
/// The request head is rebuilt as HTTP/1.1 text (`METHOD :path HTTP/1.1`, `Host: :authority`,
/// then the fields as they arrive; pseudo-headers precede fields, which nghttp2 enforces) and
/// parsed by the same strict parser as an HTTP/1.1 client's, so both protocols meet the same
/// limits, checks and header policy (``UpstreamRequestEncoder``).
final class HTTP2Stream: Downstream {
    let id: Int32
    unowned(unsafe) let connection: HTTP2Connection
    var worker: Worker { connection.worker }
    private(set) var exchange: Exchange?

    // Request.
    private var method: [UInt8] = []
    private var methodKind = HTTPMethod.other
    private var path: [UInt8] = []
    private var authority: [UInt8] = []
    /// The head as HTTP/1.1 text (a pool block), once the first field (or the end) arrives.
    private var headText: ByteBuffer
    /// `headText` parsed (nil until the request is complete).
    private var head: HTTPHead?
    private var headerBytes = 0
    private var headerCount = 0
    private var clientRequestID: [UInt8]? = nil
    private var requestBody: ByteBuffer
    /// The body rewritten for the upstream (model, include_usage); unallocated otherwise.
    private var upstreamBody: ByteBuffer
    private var started = false
    private var requestID: UInt64 = 0
    /// Reading the trailers' header block (fields counted against the limits, then dropped).
    private var inTrailers = false

    // Arrival (kept by the connection: deadlines and the body budget).
    /// The request's header block is complete.
    var headersDone = false
    /// The request is still arriving and its body bytes are kept.
    var isArriving = true
    /// When the header block (then the body) must have arrived.
    var deadline = Instant(nanoseconds: .max)
    /// Body bytes received but not yet consumed (the client's window not yet reopened for them).
    var unconsumed = 0
    var requestBodyBytes: Int { requestBody.readableBytes }

    // Response.
    /// Body bytes waiting for flow control.
    var body: OutputQueue
    private var ended = false
    private(set) var responseFinished = false
    var wasBackpressured = false

    init(id: Int32, connection: HTTP2Connection) {
        self.id = id
        self.connection = connection
        requestBody = ByteBuffer(emptyIn: connection.worker.loop.bufferPool)
        upstreamBody = ByteBuffer(emptyIn: connection.worker.loop.bufferPool)
        headText = ByteBuffer(emptyIn: connection.worker.loop.bufferPool)
        body = OutputQueue(pool: connection.worker.loop.bufferPool)
    }

    // MARK: request

    /// The trailers begin: their fields are counted, not kept.
    func beginTrailers() { inTrailers = true }

    /// Adds one field; false when the header list (with the trailers) exceeds its limit.
    func addHeader(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        headerBytes += name.count + value.count + 32
        headerCount += 1
        if headerBytes > worker.settings.limits.head.maxHeadBytes || headerCount > worker.settings.limits.head.maxHeaderCount + 8 { return false }
        if inTrailers { return true }
        func named(_ s: StaticString) -> Bool {
            name.count == s.utf8CodeUnitCount && memcmp(name.baseAddress!, s.utf8Start, name.count) == 0
        }
        if name.first == UInt8(ascii: ":") {
            if named(":method") { method = Array(value) }
            else if named(":path") { path = Array(value) }
            else if named(":authority") { authority = Array(value) }
            return true
        }
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
        headText = worker.loop.bufferPool.take(minimumCapacity: 1024)
        method.withUnsafeBytes { headText.append($0) }
        headText.append(" ")
        path.withUnsafeBytes { headText.append($0) }
        headText.append(" HTTP/1.1\r\n")
        if !authority.isEmpty {
            headText.append("Host: ")
            authority.withUnsafeBytes { headText.append($0) }
            headText.append("\r\n")
        }
    }

    /// Parses the rebuilt head; nil (and an error answered) when the HTTP/1.1 rules refuse it.
    private func parseHead() -> HTTPHead? {
        beginHeadText()
        headText.append("\r\n")
        let limits = worker.settings.limits.head
        var parser = HTTP1HeadParser(kind: .request, limits: HTTP1Limits(maxHeadBytes: limits.maxHeadBytes + 1024,
                                                                         maxHeaderCount: limits.maxHeaderCount + 8,
                                                                         maxRequestLine: limits.maxRequestLine))
        let h = HTTPHead(capacity: limits.maxHeaderCount + 8)
        switch parser.parse(headText.readable, into: h) {
        case .complete:
            return h
        case .incomplete:
            respondError(.client(400, "Invalid request head."))
        case .error(let e):
            respondError(.client(e.status, e.message))
        }
        return nil
    }

    /// Adds request body bytes; false when over the body limit.
    func addBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if requestBody.readableBytes + bytes.count > worker.settings.limits.maxBodyBytes { return false }
        requestBody.append(bytes)
        return true
    }

    func requestComplete() {
        guard !started, !responseFinished, !ended else { return }
        started = true
        requestID = worker.nextRequestID()
        guard !method.isEmpty, !path.isEmpty else {
            respondError(.client(400, "Missing :method or :path."))
            return
        }
        guard let head = parseHead() else { return }
        self.head = head
        let bytes = headText.readable
        let m = head.method
        methodKind = m
        if m == .connect {
            respondError(.client(405, "CONNECT is not supported by this gateway."))
            return
        }
        if let r = UpstreamRequestEncoder.clientRequestID(head, bytes) { clientRequestID = Array(bytes.slice(r)) }
        let x = Exchange(client: self, worker: worker, method: m, requestID: requestID)
        if worker.accessLog != nil { x.logRequestID = clientRequestID.map { String(decoding: $0, as: UTF8.self) } ?? hex16(requestID) }
        exchange = x
        x.start()
    }

    func setUpstreamBody(_ body: consuming ByteBuffer) { upstreamBody = body }

    func withRequest(_ body: (DownstreamRequest) -> Void) {
        guard let head else { return }
        let sent = upstreamBody.isAllocated ? upstreamBody.readable : requestBody.readable
        connection.peerAddress.withUnsafeBytes { p in
            body(DownstreamRequest(head: head, bytes: headText.readable, body: sent, peer: p, isTLS: connection.isTLS, requestID: requestID))
        }
    }

    // MARK: response

    func releaseRequest() {
        requestBody.release()
        upstreamBody.release()
        // The request's head was only needed to build (and maybe rebuild) the upstream head.
        headText.release()
        head = nil
        method = []
        path = []
        authority = []
    }

    func writeResponseHead(_ uh: HTTPHead, _ ub: UnsafeRawBufferPointer, exchange: Exchange) {
        let f = connection.responseFields
        f.reset()
        f.add(":status", decimal: uh.status)
        uh.forEachEndToEndField(in: ub) { i in
            f.add(ub.slice(uh[i].name), ub.slice(uh[i].value))
        }
        if case .length(let n) = uh.framing { f.add("content-length", decimal: n) }
        if uh.first(.xRequestID) == nil { addRequestID(f) }
        if let arm = exchange.ctx.target.arm { f.add("x-sluice-arm", arm) }
        for h in exchange.ctx.response.headers { f.add(h.name, h.value) }
        let hasBody = uh.framing != .none && !isHead
        if !hasBody { ended = true; responseFinished = true }
        connection.submitResponse(self, hasBody: hasBody)
    }

    private var isHead: Bool { methodKind == .head }

    private func addRequestID(_ f: HeaderBlock) {
        if let id = clientRequestID { id.withUnsafeBytes { f.add("x-request-id", $0) } } else { f.add("x-request-id", hex16: requestID) }
    }

    func writeResponseBody(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        if let ranges {
            if ranges.isEmpty { return }
            for (k, r) in ranges.enumerated() {
                if k == ranges.count - 1 {
                    body.append(buffer, from: r.0, to: r.1)
                    break
                }
                body.append(borrowing: buffer.bytes(r.0, r.1))
            }
        } else {
            body.append(buffer)
        }
        if isBackpressured { wasBackpressured = true }
        connection.resumeData(self)
    }

    var isBackpressured: Bool { body.pendingBytes > 256 << 10 }

    /// DATA frames are produced as flow control allows (resumeData already ran nghttp2's send loop).
    func flushResponse() {}

    func exchangeCompleted() {
        exchange = nil
        ended = true
        connection.resumeData(self)
    }

    /// HTTP/2 ends the stream cleanly after the error event; the connection carries on.
    func exchangeEndedWithError(event: [UInt8]) {
        var buf = worker.loop.bufferPool.take(minimumCapacity: event.count)
        event.withUnsafeBytes { buf.append($0) }
        body.append(buf)
        exchangeCompleted()
    }

    func exchangeAborted() {
        exchange = nil
        ended = true
        responseFinished = true
        connection.resetStream(self)
    }

    /// Sluice's own answer (an error, a local endpoint, a cached response).
    func writeLocal(_ r: LocalResponse, exchange x: Exchange) {
        exchange = nil
        respond(r, arm: x.ctx.target.arm)
    }

    /// An error answered before (or instead of) an exchange.
    func respondError(_ e: ErrorResponse) {
        guard !responseFinished, !ended else { return }
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
        if requestID == 0 { requestID = worker.nextRequestID() }
        if isArriving || !started { connection.answeredEarly(self) }
        respond(LocalResponse(e), arm: nil)
    }

    /// Writes a whole answer: head and body, the stream then ends.
    private func respond(_ r: LocalResponse, arm: String?) {
        guard !responseFinished, !ended else { return }
        if r.body.count > 0 {
            var buf = worker.loop.bufferPool.take(minimumCapacity: r.body.count)
            r.body.withUnsafeBytes { buf.append($0) }
            body.append(buf)
        }
        ended = true
        let f = connection.responseFields
        f.reset()
        f.add(":status", decimal: r.status)
        if !r.contentType.isEmpty { r.contentType.withUnsafeBytes { f.add("content-type", $0) } }
        f.add("content-length", decimal: r.body.count)
        addRequestID(f)
        if let arm { f.add("x-sluice-arm", arm) }
        for h in r.headers { f.add(h.name, h.value) }
        connection.submitResponse(self, hasBody: r.body.count > 0)
    }

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

    // MARK: end

    /// The connection is going away: stop the upstream request.
    func connectionClosed() {
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
    }

    /// nghttp2 closed the stream (done, or reset by the client). Buffers that DATA frames
    /// in `out` still borrow from are handed to it.
    func closed(into out: inout OutputQueue) {
        connectionClosed()
        body.retire(into: &out)
        requestBody.release()
        upstreamBody.release()
        headText.release()
    }

}
