import Glibc
import CNghttp2
import SluiceLLM
import SluiceHTTP
import SluiceIO

/// One HTTP/2 request/response on an ``HTTP2Connection``: collects the request (pseudo-headers,
/// fields, body), runs an ``Exchange`` for it, and holds the response body until flow control
/// lets DATA frames carry it out.
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
    /// Forwardable fields as HTTP/1.1 lines (`name: value\r\n`), ready for the upstream head.
    private var fieldLines: [UInt8] = []
    private var headerBytes = 0
    private var headerCount = 0
    private var xff: [UInt8]? = nil
    private var clientRequestID: [UInt8]? = nil
    private var hasTraceparent = false
    private var requestBody: ByteBuffer
    /// The body rewritten for the upstream (model, include_usage); unallocated otherwise.
    private var upstreamBody: ByteBuffer
    private var started = false
    private var requestID: UInt64 = 0

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
        body = OutputQueue(pool: connection.worker.loop.bufferPool)
    }

    // MARK: request

    /// Adds one field; false when the header list exceeds its limit.
    func addHeader(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        headerBytes += name.count + value.count + 32
        headerCount += 1
        if headerBytes > worker.settings.limits.head.maxHeadBytes || headerCount > worker.settings.limits.head.maxHeaderCount + 8 { return false }
        func named(_ s: StaticString) -> Bool {
            name.count == s.utf8CodeUnitCount && memcmp(name.baseAddress!, s.utf8Start, name.count) == 0
        }
        if name.first == UInt8(ascii: ":") {
            if named(":method") { method = Array(value) }
            else if named(":path") { path = Array(value) }
            else if named(":authority") { authority = Array(value) }
            return true
        }
        // Connection-specific fields are already refused by nghttp2 (RFC 9113 §8.2.2); these
        // are re-derived per hop.
        if named("content-length") || named("te") || named("x-forwarded-proto") || named("host") && !authority.isEmpty { return true }
        if named("host") { authority = Array(value); return true }
        if named("x-forwarded-for") { xff = Array(value); return true }
        if named("x-request-id") { clientRequestID = Array(value) }
        if named("traceparent") { hasTraceparent = value.count == 55 }
        fieldLines += name
        fieldLines += ": ".utf8
        fieldLines += value
        fieldLines += "\r\n".utf8
        return true
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
        let m = HTTP1HeadParser.method(method)
        methodKind = m
        if m == .connect {
            respondError(.client(405, "CONNECT is not supported by this gateway."))
            return
        }
        let plan = path.withUnsafeBytes { p in
            worker.plan(method: m, path: p, body: requestBody.readable, headerNamed: { self.header($0) },
                        requestID: { self.clientRequestID.map { String(decoding: $0, as: UTF8.self) } ?? hex16(self.requestID) },
                        rewritten: &upstreamBody)
        }
        let x: Exchange
        switch plan {
        case .reject(let e):
            respondError(e)
            return
        case .local(let status, let contentType, let body):
            respondLocal(status, contentType: contentType, body: body)
            return
        case .forward(let pool, let arm, let adapter, let ticket):
            x = Exchange(client: self, worker: worker, pool: pool, method: m, features: worker.inspected)
            worker.inspected = nil
            x.arm = arm
            x.adapter = adapter
            x.ticket = ticket
            if worker.accessLog != nil {
                x.requestID = clientRequestID.map { String(decoding: $0, as: UTF8.self) } ?? hex16(requestID)
                if let f = x.features {
                    x.clientModel = String(decoding: requestBody.readable[Int(f.scanned.model.start)..<Int(f.scanned.model.end)], as: UTF8.self)
                }
            }
        }
        exchange = x
        x.start()
    }

    func writeUpstreamRequest(into queue: inout OutputQueue, endpoint: UpstreamPool.Endpoint) {
        var h = worker.loop.bufferPool.take(minimumCapacity: fieldLines.count + path.count + 512)
        method.withUnsafeBytes { h.append($0) }
        h.append(" ")
        path.withUnsafeBytes { h.append($0) }
        h.append(" HTTP/1.1\r\nHost: ")
        if authority.isEmpty { h.append(endpoint.config.authority.utf8) } else { authority.withUnsafeBytes { h.append($0) } }
        h.append("\r\n")
        fieldLines.withUnsafeBytes { h.append($0) }
        if worker.settings.proxy.xForwarded {
            h.append("X-Forwarded-For: ")
            if let xff {
                xff.withUnsafeBytes { h.append($0) }
                h.append(", ")
            }
            connection.peerAddress.withUnsafeBytes { h.append($0) }
            h.append(connection.isTLS ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n")
        }
        if clientRequestID == nil {
            h.append("X-Request-Id: ")
            h.appendHex64(requestID)
            h.append("\r\n")
        }
        if !hasTraceparent {
            h.append("traceparent: 00-")
            h.appendHex64(requestID &* 0x9E37_79B9_7F4A_7C15 ^ 0x5851_F42D_4C95_7F2D)
            h.appendHex64(requestID)
            h.append("-")
            h.appendHex64(requestID)
            h.append("-00\r\n")
        }
        let n = upstreamBody.isAllocated ? upstreamBody.readableBytes : requestBody.readableBytes
        if n > 0 || methodKind == .post || methodKind == .put || methodKind == .patch {
            h.append("Content-Length: ")
            h.appendDecimal(n)
            h.append("\r\n")
        }
        h.append("\r\n")
        queue.append(h)
        if n > 0 { queue.append(borrowing: upstreamBody.isAllocated ? upstreamBody.readable : requestBody.readable) }
    }

    // MARK: response

    func releaseRequest() {
        requestBody.release()
        upstreamBody.release()
        // The request's fields were only needed to build (and maybe rebuild) the upstream head.
        path = []
        authority = []
        fieldLines = []
        xff = nil
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
        if let arm = exchange.arm { f.add("x-sluice-arm", arm) }
        for h in exchange.responseHeaders { f.add(h.name, h.value) }
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

    func exchangeFailed(_ error: ErrorResponse) {
        exchange = nil
        respondError(error)
    }

    /// The value of a request field by name, from the collected field lines (control path only).
    private func header(_ name: String) -> UnsafeRawBufferPointer? {
        let needle = Array(name.lowercased().utf8) + Array(": ".utf8)
        var i = 0
        let b = fieldLines
        while i < b.count {
            var end = i
            while end + 1 < b.count && !(b[end] == 13 && b[end + 1] == 10) { end += 1 }
            if end - i >= needle.count && Array(b[i..<(i + needle.count)]) == needle {
                return fieldLines.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[(i + needle.count)..<end]) }
            }
            i = end + 2
        }
        return nil
    }

    private func respondLocal(_ status: Int, contentType: String, body b: [UInt8]) {
        var buf = worker.loop.bufferPool.take(minimumCapacity: max(b.count, 1))
        b.withUnsafeBytes { buf.append($0) }
        if b.count > 0 { body.append(buf) }
        ended = true
        let f = connection.responseFields
        f.reset()
        f.add(":status", decimal: status)
        f.add("content-type", contentType)
        f.add("content-length", decimal: b.count)
        addRequestID(f)
        connection.submitResponse(self, hasBody: b.count > 0)
    }

    func respondError(_ e: ErrorResponse) {
        guard !responseFinished, !ended else { return }
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
        let b = e.body()
        var buf = worker.loop.bufferPool.take(minimumCapacity: b.count)
        b.withUnsafeBytes { buf.append($0) }
        body.append(buf)
        ended = true
        let f = connection.responseFields
        f.reset()
        f.add(":status", decimal: e.status)
        f.add("content-type", "application/json")
        f.add("content-length", decimal: b.count)
        addRequestID(f)
        for h in e.headers { f.add(h.name, h.value) }
        connection.submitResponse(self, hasBody: true)
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
    }

}
