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
    /// A tunnel stream's DATA that arrived before the server's 101 (held against the stream's
    /// window, so bounded by it); the tunnel writes it first.
    private var tunnelPending: ByteBuffer

    init(stream: HTTP2ServerStream, worker: Worker, requestID: UInt64, method: HTTPMethod) {
        self.stream = stream
        self.worker = worker
        self.requestID = requestID
        self.method = method
        upstreamBody = ByteBuffer(emptyIn: worker.loop.bufferPool)
        tunnelPending = ByteBuffer(emptyIn: worker.loop.bufferPool)
    }

    /// Runs the request that arrived on `stream` through the pipeline.
    func start() {
        guard let head = stream.head else { return }
        let bytes = stream.headText.readable
        if head.method == .connect {
            Self.answer(stream, LocalResponse(.client(405, "CONNECT is not supported by this gateway.")), requestID: requestID, clientRequestID: nil, arm: nil)
            return
        }
        if stream.isTunnel && LLMEndpoint.match(path: bytes.slice(head.target))?.endpoint.traits.upgrade != true {
            // Extended CONNECT opens a WebSocket only where the HTTP/1.1 upgrade would.
            stream.connection.answeredEarly(stream)
            Self.answer(stream, LocalResponse(.client(404, "WebSocket over HTTP/2 (extended CONNECT) is served on /v1/realtime only.")),
                        requestID: requestID, clientRequestID: nil, arm: nil)
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
        // A tunnel stream answered without a 101: the upgrade failed and the stream ends with
        // this answer. A 2xx would tell the client its tunnel opened (RFC 9113 §8.5): a 502.
        let status = stream.isTunnel && uh.status >= 200 && uh.status < 300 ? 502 : uh.status
        if stream.isTunnel { stream.connection.answeredEarly(stream) }
        f.add(":status", decimal: status)
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
        if stream.isTunnel { stream.connection.answeredEarly(stream) }
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
        tunnelPending.release()
    }

    func streamDrained() {
        exchange?.clientDrained()
    }

    // MARK: WebSocket over HTTP/2 (RFC 8441)

    /// The inspect phase tunnels `/v1/realtime` on an extended CONNECT stream (its head was
    /// rebuilt as the HTTP/1.1 upgrade, with a key of the gateway's).
    var canUpgrade: Bool { stream.isTunnel }

    func tunnelReceived(_ bytes: UnsafeRawBufferPointer) {
        guard exchange != nil else {
            stream.tunnelWritten(bytes.count)  // answered already: dropped
            return
        }
        tunnelPending.reserve(writable: bytes.count)
        tunnelPending.append(bytes)
    }

    /// Before the 101 nothing is to be done: the tunnel ends once what the client sent is
    /// written (``StreamTunnel``), an error answer ends the stream anyway.
    func tunnelClientEnded() {}

    /// The model server switched protocols: the stream answers `:status 200` (with the
    /// subprotocol and extensions the server chose: RFC 8441 §5 maps the 101's fields, not its
    /// Sec-WebSocket-Accept) and a ``StreamTunnel`` takes it over. False (the server's
    /// connection closed) when the server's head cannot be read again.
    func openTunnel(server: consuming TunnelEnd, lease: consuming EndpointLease?, slots: SharedCounter) -> Bool {
        var pending = server.pending.take()
        let transport = server.transport
        let uh = HTTPHead(capacity: 64)
        var parser = HTTP1HeadParser(kind: .response, limits: worker.settings.limits.head)
        guard case .complete = parser.parse(pending.readable, into: uh), !stream.responseFinished, !stream.ended else {
            transport.close()
            pending.release()
            return false
        }
        let f = stream.connection.responseFields
        f.reset()
        f.add(":status", decimal: 200)
        let hb = pending.readable
        if let v = uh.value(named: "sec-websocket-protocol", in: hb) { f.add("sec-websocket-protocol", v) }
        if let v = uh.value(named: "sec-websocket-extensions", in: hb) { f.add("sec-websocket-extensions", v) }
        Self.addRequestID(f, requestID, clientRequestID)
        pending.readerIndex += uh.length
        exchange = nil
        let t = StreamTunnel(worker: worker, stream: stream, server: transport, toServer: tunnelPending.take(), lease: lease, slots: slots)
        stream.handler = t
        stream.connection.submitResponse(stream, hasBody: true)
        if pending.readableBytes > 0 {
            worker.metrics.add(worker.tunnelByteSlots[1], Double(pending.readableBytes))
            stream.body.append(pending)
            stream.bodyQueued()
        } else {
            pending.release()
        }
        do throws(SyscallError) {
            try t.start()
        } catch {
            t.streamClosed()
            stream.abort()
        }
        return true
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
