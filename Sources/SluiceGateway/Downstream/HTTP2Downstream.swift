import SluiceHTTP
import SluiceIO
import SluiceLLM

/// The gateway side of one HTTP/2 stream: the ``Downstream`` its ``Exchange`` reads the request
/// from and writes the response to. The codec (``HTTP2ServerStream``, SluiceHTTP) holds the
/// stream's bytes and flow control; this holds the exchange and what the response adds (the
/// request id, the split arm).
final class HTTP2Downstream: Downstream, HTTP2StreamHandler {
    unowned(unsafe) let stream: HTTP2ServerStream
    unowned(unsafe) let worker: Worker
    private(set) var exchange: Exchange?
    private let requestID: UInt64
    /// The client's `X-Request-Id` when usable (echoed, forwarded).
    private var clientRequestID: [UInt8]?
    private let method: HTTPMethod
    /// The body rewritten for the upstream (model, include_usage); unallocated otherwise.
    private var upstreamBody: ByteBuffer

    init(stream: HTTP2ServerStream, worker: Worker, requestID: UInt64, method: HTTPMethod) {
        self.stream = stream
        self.worker = worker
        self.requestID = requestID
        self.method = method
        upstreamBody = ByteBuffer(emptyIn: worker.loop.bufferPool)
    }

    /// Runs the request that arrived on `stream` through the pipeline.
    func start() {
        guard let head = stream.head else { return }
        let bytes = stream.headText.readable
        if head.method == .connect {
            Self.answer(stream, LocalResponse(.client(405, "CONNECT is not supported by this gateway.")), requestID: requestID, clientRequestID: nil, arm: nil)
            return
        }
        if let r = UpstreamRequestEncoder.clientRequestID(head, bytes) { clientRequestID = Array(bytes.slice(r)) }
        let x = Exchange(client: self, worker: worker, method: head.method, requestID: requestID)
        if worker.accessLog != nil { x.logRequestID = clientRequestID.map { String(decoding: $0, as: UTF8.self) } ?? hex16(requestID) }
        exchange = x
        x.start()
    }

    // MARK: the request

    func withRequest(_ body: (DownstreamRequest) -> Void) {
        guard let head = stream.head else { return }
        let sent = upstreamBody.isAllocated ? upstreamBody.readable : stream.requestBody.readable
        stream.connection.peerAddress.withUnsafeBytes { p in
            body(DownstreamRequest(head: head, bytes: stream.headText.readable, body: sent, peer: p,
                                   isTLS: stream.connection.isTLS, requestID: requestID))
        }
    }

    func setUpstreamBody(_ body: consuming ByteBuffer) { upstreamBody = body }

    func releaseRequest() {
        stream.releaseRequest()
        upstreamBody.release()
    }

    // MARK: the response

    func writeResponseHead(_ uh: HTTPHead, _ ub: UnsafeRawBufferPointer, exchange: Exchange) {
        let f = stream.connection.responseFields
        f.reset()
        f.add(":status", decimal: uh.status)
        uh.forEachEndToEndField(in: ub) { i in
            f.add(ub.slice(uh[i].name), ub.slice(uh[i].value))
        }
        if case .length(let n) = uh.framing { f.add("content-length", decimal: n) }
        if uh.first(.xRequestID) == nil { Self.addRequestID(f, requestID, clientRequestID) }
        if let arm = exchange.ctx.target.arm { f.add("x-sluice-arm", arm) }
        for h in exchange.ctx.response.headers { f.add(h.name, h.value) }
        let hasBody = uh.framing != .none && method != .head
        if !hasBody { stream.endWithoutBody() }
        stream.connection.submitResponse(stream, hasBody: hasBody)
    }

    func writeResponseBody(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        if let ranges {
            if ranges.isEmpty { return }
            for (k, r) in ranges.enumerated() {
                if k == ranges.count - 1 {
                    stream.body.append(buffer, from: r.0, to: r.1)
                    break
                }
                stream.body.append(borrowing: buffer.bytes(r.0, r.1))
            }
        } else {
            stream.body.append(buffer)
        }
        stream.bodyQueued()
    }

    var isBackpressured: Bool { stream.isBackpressured }

    /// DATA frames are produced as flow control allows (bodyQueued already ran the send loop).
    func flushResponse() {}

    func exchangeCompleted() {
        exchange = nil
        stream.endBody()
    }

    /// HTTP/2 ends the stream cleanly after the error event; the connection carries on.
    func exchangeEndedWithError(event: [UInt8]) {
        var buf = worker.loop.bufferPool.take(minimumCapacity: event.count)
        event.withUnsafeBytes { buf.append($0) }
        stream.body.append(buf)
        exchangeCompleted()
    }

    func exchangeAborted() {
        exchange = nil
        stream.abort()
    }

    /// Sluice's own answer (an error, a local endpoint, a cached response).
    func writeLocal(_ r: LocalResponse, exchange x: Exchange) {
        exchange = nil
        Self.answer(stream, r, requestID: requestID, clientRequestID: clientRequestID, arm: x.ctx.target.arm)
    }

    /// Writes a whole answer on `s`: head and body; the stream then ends.
    static func answer(_ s: HTTP2ServerStream, _ r: LocalResponse, requestID: UInt64, clientRequestID: [UInt8]?, arm: String?) {
        guard !s.responseFinished, !s.ended else { return }
        if r.body.count > 0 {
            var buf = s.connection.loop.bufferPool.take(minimumCapacity: r.body.count)
            r.body.withUnsafeBytes { buf.append($0) }
            s.body.append(buf)
            s.bodyComplete()
        } else {
            s.endWithoutBody()
        }
        let f = s.connection.responseFields
        f.reset()
        f.add(":status", decimal: r.status)
        if !r.contentType.isEmpty { r.contentType.withUnsafeBytes { f.add("content-type", $0) } }
        f.add("content-length", decimal: r.body.count)
        addRequestID(f, requestID, clientRequestID)
        if let arm { f.add("x-sluice-arm", arm) }
        for h in r.headers { f.add(h.name, h.value) }
        s.connection.submitResponse(s, hasBody: r.body.count > 0)
    }

    private static func addRequestID(_ f: HeaderBlock, _ requestID: UInt64, _ clientRequestID: [UInt8]?) {
        if let id = clientRequestID { id.withUnsafeBytes { f.add("x-request-id", $0) } } else { f.add("x-request-id", hex16: requestID) }
    }

    // MARK: the stream's end

    /// The stream closed (done, reset by the client, or the connection went away): stop the
    /// upstream request.
    func streamClosed() {
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
        upstreamBody.release()
    }

    func streamDrained() {
        exchange?.clientDrained()
    }
}

extension HTTP2ServerConnection: DownstreamConnection {}

extension Worker: HTTP2ServerDelegate {
    var http2Limits: HTTP2ServerLimits {
        let s = settings
        return HTTP2ServerLimits(maxConcurrentStreams: s.limits.maxConcurrentStreams, head: s.limits.head, maxBodyBytes: s.limits.maxBodyBytes,
                                 bodyBudget: s.limits.http2BufferBytes, clientHeader: s.timeouts.clientHeader,
                                 clientBody: s.timeouts.clientBody, idle: s.timeouts.idle)
    }

    var isDraining: Bool { draining }

    func requestArrived(_ stream: HTTP2ServerStream) {
        let d = HTTP2Downstream(stream: stream, worker: self, requestID: nextRequestID(), method: stream.head?.method ?? .other)
        stream.handler = d
        d.start()
    }

    func refuse(_ stream: HTTP2ServerStream, status: Int, message: String) {
        // Whatever was running for the stream stops first (its handler, if any, hears the
        // stream close when nghttp2 closes it).
        HTTP2Downstream.answer(stream, LocalResponse(.client(status, message)), requestID: nextRequestID(), clientRequestID: nil, arm: nil)
    }

    func connectionClosed(_ connection: HTTP2ServerConnection) {
        clientClosed(connection)
    }
}
