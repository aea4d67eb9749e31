import Glibc
import SluiceHTTP
import SluiceIO

/// A client's HTTP/1.1 connection: reads a request into one buffer (head and body, so the body
/// can be forwarded from where it was read and re-sent on a retry), runs an ``Exchange`` for
/// it, writes the response, and repeats for keep-alive and pipelined requests — one request
/// at a time, in order.
///
/// ```
/// readingHead ──head──▶ readingBody ──body complete──▶ proxying ──response done──▶ readingHead
///      │                    │                             │
///      └──── bad input: error response ──▶ closing ──▶ lingering ──▶ closed ◀── abort
/// ```
/// While proxying, the connection does not read from the socket: the request's bytes stay put
/// (the upstream's write queue borrows them) and pipelined requests wait in the kernel. A
/// read-side hang-up while proxying is taken as the client giving up (nginx does the same).
final class ClientConnection: EventHandler, Downstream, DownstreamConnection {
    enum State { case handshaking, readingHead, readingBody, proxying, closing, lingering, closed }
    enum ResponseFraming { case passthrough, chunked, untilClose }

    let transport: Transport
    var fd: Int32 { transport.fd }
    unowned(unsafe) let worker: Worker
    /// The worker's loop, held here so that reaching it costs no retain of the worker's field.
    unowned(unsafe) let loop: EventLoop
    private var registration: Registration?
    private(set) var state = State.readingHead
    private var inbuf: ByteBuffer
    private var out: OutputQueue
    private let head: HTTPHead
    private var parser: HTTP1HeadParser
    private var chunked = ChunkedDecoder()
    private var exchange: Exchange?
    private var canRead = false
    /// Bytes of the current request after its head: de-chunked body end, and where the raw
    /// message ends (the next pipelined request starts there). Offsets from `inbuf.readerIndex`.
    private var bodyEnd = 0
    private var chunkScan = 0
    private var messageEnd = 0
    private var keepAlive = true
    private var framing = ResponseFraming.passthrough
    private var requestID: UInt64 = 0
    private var clientRequestID = ByteRange.empty
    /// The peer's address as text, for X-Forwarded-For.
    private let peer: [UInt8]
    private var timer: Timer!
    private var deadline = Instant(nanoseconds: .max)
    private var requestStarted = Instant(nanoseconds: 0)
    private var requestsServed = 0
    /// The request body rewritten for the upstream (include_usage added); unallocated otherwise.
    private var upstreamBody: ByteBuffer
    /// The peer shut down its write side (reads must continue until EOF).
    private var peerHungUp = false
    /// The socket's receive low-water mark while waiting for the rest of a large body (0: the
    /// kernel's default of one byte).
    private var readLowWater = 0
    /// `process()` is on the stack: a request that ends at once leaves the next to its loop.
    private var processing = false

    init(transport: Transport, worker: Worker) {
        self.transport = transport
        let fd = transport.fd
        self.worker = worker
        self.loop = worker.loop
        let pool = loop.bufferPool
        inbuf = ByteBuffer(emptyIn: pool)
        upstreamBody = ByteBuffer(emptyIn: pool)
        out = OutputQueue(pool: pool)
        head = HTTPHead(capacity: worker.settings.limits.head.maxHeaderCount)
        parser = HTTP1HeadParser(kind: .request, limits: worker.settings.limits.head)
        peer = Array((TCP.peerAddress(fd)?.host ?? "unknown").utf8)
        timer = Timer { [unowned self] in self.timerFired() }
    }

    func start() throws(SyscallError) {
        TCP.setNoDelay(fd)
        registration = try loop.register(fd, handler: self)
        if !transport.handshakeDone {
            state = .handshaking
            schedule(worker.settings.timeouts.clientHeader)
        } else {
            armIdle()
        }
    }

    /// Advances the TLS handshake; on completion ALPN decides between HTTP/2 and HTTP/1.1.
    private func continueHandshake() {
        switch transport.handshake() {
        case .wouldBlock:
            return
        case .failed:
            close()
        case .done:
            if transport.negotiatedProtocol == "h2" {
                upgradeToHTTP2()
                return
            }
            state = .readingHead
            armIdle()
            canRead = true
            readLoop()
        }
    }

    // MARK: events

    func handleEvent(_ events: UInt32) {
        if events & EventLoop.Events.error != 0 {
            abort()
            return
        }
        if state == .handshaking {
            continueHandshake()
            return
        }
        if events & EventLoop.Events.writable != 0 { flush() }
        guard state != .closed else { return }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 {
            canRead = true
            if events & (EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 { peerHungUp = true }
            if state == .proxying {
                if events & (EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 { abort() }
                return
            }
            readLoop()
        }
    }

    private func readLoop() {
        while canRead && (state == .readingHead || state == .readingBody || state == .lingering) {
            if state == .lingering {
                var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
                let r = withUnsafeMutableBytes(of: &scratch) { try? transport.read($0) }
                switch r {
                case .processed(let n)? where n > 0: continue
                case .wouldBlock?: canRead = false
                default: close()
                }
                return
            }
            if inbuf.writableBytes < 1024 { inbuf.reserve(writable: 4096) }
            let r: IOResult<Int>
            do {
                let w = inbuf.writable
                r = try transport.read(w)
            } catch {
                abort()
                return
            }
            switch r {
            case .wouldBlock:
                canRead = false
                if state == .readingBody { awaitBody() }
            case .processed(0):
                // EOF: between requests it is a normal close; mid-request the client gave up.
                canRead = false
                close()
                return
            case .processed(let n):
                if inbuf.readableBytes == 0 && state == .readingHead { requestStarted = loop.now; armHeaderTimeout() }
                // A short read drained the socket: skip the read that would only say EAGAIN
                // (edge-triggered epoll reports the next arrival). nginx does the same. Not
                // over TLS, where a read returns one record and says nothing about the rest.
                if n < inbuf.writableBytes && !peerHungUp && transport.shortReadDrains { canRead = false }
                inbuf.writerIndex += n
                process()
                if !canRead && state == .readingBody { awaitBody() }
            }
        }
    }

    /// Waiting for the rest of a large body: asks the kernel (SO_RCVLOWAT) to report the socket
    /// readable only once all of it is there, instead of at every segment. The body is then
    /// read in one go and scanned and forwarded while it is still in the cache, and the wakeups,
    /// reads and window updates of the segments in between are saved. The kernel may still wake
    /// us early (memory pressure, a closing window, its own cap on the mark): the mark is then
    /// set again for what is still missing, or dropped when that is little, never left above it.
    private func awaitBody() {
        guard case .length(let n) = head.framing else { return }
        let mark = min(transport.lowWaterMark(forPlaintext: head.length + n - inbuf.readableBytes), Int(Int32.max))
        let minimum = worker.settings.proxy.bodyLowWater
        setReadLowWater(minimum > 0 && mark >= minimum ? mark : 0)
    }

    /// Sets the socket's receive low-water mark (0: the default, one byte).
    private func setReadLowWater(_ mark: Int) {
        guard mark != readLowWater else { return }
        if (try? Sys.setOption(fd, SOL_SOCKET, SO_RCVLOWAT, Int32(max(mark, 1)))) != nil { readLowWater = mark }
    }

    /// Advances the request state machine over the buffered bytes.
    private func process() {
        processing = true
        defer { processing = false }
        while true {
            switch state {
            case .readingHead:
                if inbuf.readableBytes == 0 { return }
                if requestsServed == 0 && worker.settings.http2 {
                    switch Self.matchPreface(inbuf.readable) {
                    case .partial: return
                    case .full:
                        upgradeToHTTP2()
                        return
                    case .no: break
                    }
                }
                switch parser.parse(inbuf.readable, into: head) {
                case .incomplete:
                    return
                case .error(let e):
                    respondError(.client(e.status, e.message), close: true)
                    return
                case .complete:
                    bodyEnd = head.length
                    chunkScan = head.length
                    chunked.reset()
                    if case .length(let n) = head.framing {
                        if n > worker.settings.limits.maxBodyBytes {
                            respondError(.client(413, "Request body too large: \(n) bytes, the limit is \(worker.settings.limits.maxBodyBytes)."), close: true)
                            return
                        }
                        // One block for the whole request, so the body is contiguous.
                        inbuf.reserve(writable: head.length + n - inbuf.readableBytes)
                    }
                    state = .readingBody
                    armBodyTimeout()
                    if head.expectContinue && inbuf.readableBytes == head.length && head.framing != .none {
                        out.append("HTTP/1.1 100 Continue\r\n\r\n")
                        flush()
                    }
                }
            case .readingBody:
                switch head.framing {
                case .none, .untilClose:
                    messageEnd = head.length
                case .length(let n):
                    if inbuf.readableBytes < head.length + n { return }
                    bodyEnd = head.length + n
                    messageEnd = bodyEnd
                case .chunked:
                    if !dechunk() { return }
                }
                startExchange()
                // An answer written at once (a local endpoint, an error, a cache hit) may have
                // ended the exchange already: the next pipelined request is taken by this loop,
                // never by recursion (20,000 pipelined requests would overflow the stack).
                if state != .readingHead { return }
            case .handshaking, .proxying, .closing, .lingering, .closed:
                return
            }
        }
    }

    /// Decodes the chunked body in place, moving payload down over the framing so the body is
    /// contiguous (clients rarely chunk requests; upstreams get a Content-Length).
    private func dechunk() -> Bool {
        let base = inbuf.base + inbuf.readerIndex
        while true {
            let all = UnsafeRawBufferPointer(start: base, count: inbuf.readableBytes)
            switch chunked.next(all, from: chunkScan) {
            case .data(let s, let e):
                if s != bodyEnd { (base + bodyEnd).copyMemory(from: base + s, byteCount: e - s) }
                bodyEnd += e - s
                chunkScan = e
                if bodyEnd - head.length > worker.settings.limits.maxBodyBytes {
                    respondError(.client(413, "Request body too large; the limit is \(worker.settings.limits.maxBodyBytes) bytes."), close: true)
                    return false
                }
            case .needMore:
                chunkScan = inbuf.readableBytes
                // The whole chunked body as sent (payload, sizes, extensions, trailers) is held
                // until it is complete, so it is what the body limit bounds; a client's framing
                // overhead is a few bytes per chunk.
                if chunkScan - head.length > worker.settings.limits.maxBodyBytes {
                    respondError(.client(413, "Request body too large; the limit is \(worker.settings.limits.maxBodyBytes) bytes (chunk framing included)."), close: true)
                }
                return false
            case .done(let end):
                if end - head.length > worker.settings.limits.maxBodyBytes {
                    respondError(.client(413, "Request body too large; the limit is \(worker.settings.limits.maxBodyBytes) bytes (chunk framing included)."), close: true)
                    return false
                }
                messageEnd = end
                return true
            case .error(let e):
                respondError(.client(e.status, e.message), close: true)
                return false
            }
        }
    }

    enum PrefaceMatch { case no, partial, full }

    /// The HTTP/2 connection preface (RFC 9113 §3.4): prior-knowledge h2c on this port.
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func matchPreface(_ b: UnsafeRawBufferPointer) -> PrefaceMatch {
        let n = min(b.count, preface.count)
        for i in 0..<n where b[i] != preface[i] { return .no }
        return n == preface.count ? .full : .partial
    }

    private func upgradeToHTTP2() {
        disarm()
        if timer.isArmed { loop.cancel(timer) }
        let reg = registration
        registration = nil
        state = .closed
        let bytes = Array(inbuf.readable)
        inbuf.release()
        bytes.withUnsafeBytes { worker.upgradeToHTTP2(from: self, transport: transport, registration: reg, peer: peer, bytes: $0) }
    }

    var canUpgrade: Bool { true }

    /// The upstream switched protocols (WebSocket): the connection leaves HTTP. Nothing of the
    /// response was written; the tunnel writes the 101 head. The bytes the client sent after
    /// its request (frames it did not wait to send) go with the transport.
    func takeOverForTunnel() -> TunnelEnd? {
        guard state == .proxying, let reg = registration else { return nil }
        exchange = nil
        disarm()
        if timer.isArmed { loop.cancel(timer) }
        loop.deregister(reg)
        registration = nil
        state = .closed
        inbuf.readerIndex += messageEnd
        messageEnd = 0
        let pending = inbuf.readableBytes > 0 ? inbuf.take() : ByteBuffer(emptyIn: loop.bufferPool)
        inbuf.release()
        upstreamBody.release()
        out.removeAll()
        return TunnelEnd(transport: transport, pending: pending)
    }

    private func startExchange() {
        requestsServed += 1
        setReadLowWater(0)
        state = .proxying
        disarm()
        keepAlive = head.keepAlive && !worker.draining
        let bytes = inbuf.readable
        clientRequestID = UpstreamRequestEncoder.clientRequestID(head, bytes) ?? .empty
        requestID = worker.nextRequestID()
        let x = Exchange(client: self, worker: worker, method: head.method, requestID: requestID)
        if worker.accessLog != nil {
            x.logRequestID = clientRequestID.isEmpty ? hex16(requestID) : String(decoding: bytes.slice(clientRequestID), as: UTF8.self)
        }
        exchange = x
        x.start()
    }

    // MARK: the request for the upstream

    func setUpstreamBody(_ body: consuming ByteBuffer) { upstreamBody = body }

    func withRequest(_ body: (DownstreamRequest) -> Void) {
        let b = inbuf.readable
        let sent = upstreamBody.isAllocated ? upstreamBody.readable : UnsafeRawBufferPointer(rebasing: b[head.length..<bodyEnd])
        peer.withUnsafeBytes { p in
            body(DownstreamRequest(head: head, bytes: b, body: sent, peer: p, isTLS: transport.isTLS, requestID: requestID))
        }
    }

    private func appendRequestID(_ h: inout ByteBuffer) { h.appendHex64(requestID) }

    // MARK: writing the response

    func writeResponseHead(_ uh: HTTPHead, _ ub: UnsafeRawBufferPointer, exchange x: Exchange) {
        if !uh.keepAlive && uh.framing == .untilClose && head.version == .http10 { keepAlive = false }
        switch uh.framing {
        case .length, .none: framing = .passthrough
        case .chunked, .untilClose: framing = head.version == .http11 ? .chunked : .untilClose
        }
        if framing == .untilClose || worker.draining { keepAlive = false }
        var h = loop.bufferPool.take(minimumCapacity: uh.length + 256)
        HTTP1ResponseHead.start(uh.status, reason: uh.reason.isEmpty ? nil : ub.slice(uh.reason), into: &h)
        var lines = FieldLineCopier()
        uh.forEachEndToEndField(in: ub) { i in lines.add(uh[i], from: ub, to: &h) }
        lines.flush(from: ub, to: &h)
        let bodyFraming: HTTP1ResponseHead.Framing
        switch uh.framing {
        case .length(let n):
            bodyFraming = .length(n)
        case .none:
            // HEAD and 304 keep the length the upstream announced; others have an empty body.
            if let cl = uh.first(.contentLength), head.method == .head || uh.status == 304 {
                h.append("Content-Length: ")
                h.append(ub.slice(cl.value))
                h.append("\r\n")
                bodyFraming = .none
            } else {
                bodyFraming = uh.status != 204 && uh.status != 304 ? .length(0) : .none
            }
        case .chunked, .untilClose:
            bodyFraming = framing == .chunked ? .chunked : .untilClose
        }
        appendGatewayFields(x, upstreamHasID: uh.first(.xRequestID) != nil, extra: x.ctx.response.headers, to: &h)
        HTTP1ResponseHead.end(bodyFraming, close: !keepAlive, into: &h)
        // Not flushed here: the body bytes of the same upstream read follow, and everything
        // goes out in one sendmsg (flushResponse, or exchangeCompleted).
        out.append(h)
    }

    /// The fields Sluice adds to every response: the request id (unless the upstream set
    /// one), the split arm, and `extra` (rate-limit state, cache result, route, Retry-After).
    private func appendGatewayFields(_ x: Exchange?, upstreamHasID: Bool, extra: [ErrorResponse.Header], to h: inout ByteBuffer) {
        if !upstreamHasID {
            h.append("X-Request-Id: ")
            // The client's own id only for its exchange (an early error has none yet).
            if x == nil || clientRequestID.isEmpty { appendRequestID(&h) } else { h.append(inbuf.readable.slice(clientRequestID)) }
            h.append("\r\n")
        }
        if let arm = x?.ctx.target.arm { HTTP1ResponseHead.field("X-Sluice-Arm", arm, into: &h) }
        for f in extra { HTTP1ResponseHead.field(f.name, f.value, into: &h) }
    }

    /// Sluice's own answer (an error, a local endpoint, a cached response), then the next
    /// request (or the close the answer asks for).
    func writeLocal(_ r: LocalResponse, exchange x: Exchange) {
        exchange = nil
        answer(r, exchange: x)
        if keepAlive && state == .proxying { nextRequest() }
    }

    private func answer(_ r: LocalResponse, exchange x: Exchange?) {
        if r.close { keepAlive = false }
        var h = loop.bufferPool.take(minimumCapacity: r.body.count + 256)
        HTTP1ResponseHead.start(r.status, into: &h)
        if !r.contentType.isEmpty {
            h.append("Content-Type: ")
            r.contentType.withUnsafeBytes { h.append($0) }
            h.append("\r\n")
        }
        appendGatewayFields(x, upstreamHasID: false, extra: r.headers, to: &h)
        HTTP1ResponseHead.end(.length(r.body.count), close: !keepAlive, into: &h)
        r.body.withUnsafeBytes { h.append($0) }
        out.append(h)
        if !keepAlive {
            state = .closing
            // Bound how long a client that does not read its answer may hold the connection.
            setDeadline(loop.now + .seconds(5))
        }
        flush()
    }

    func releaseRequest() {
        // Bytes of a pipelined next request (rare) keep the buffer until that request's turn.
        guard inbuf.readableBytes == messageEnd else { return }
        inbuf.release()
        upstreamBody.release()
        messageEnd = 0
        bodyEnd = 0
    }

    func writeResponseBody(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        if let ranges {
            var total = 0
            for r in ranges { total += r.1 - r.0 }
            // Nothing left (all stripped): a zero-size chunk would end the body.
            if total == 0 { return }
            if framing == .chunked { out.appendChunkHeader(total) }
            for (k, r) in ranges.enumerated() {
                if k == ranges.count - 1 {
                    out.append(buffer, from: r.0, to: r.1)
                    break
                }
                out.append(borrowing: buffer.bytes(r.0, r.1))
            }
            if framing == .chunked { out.append("\r\n") }
        } else {
            let n = buffer.readableBytes
            if framing == .chunked { out.appendChunkHeader(n) }
            out.append(buffer)
            if framing == .chunked { out.append("\r\n") }
        }
    }

    /// The upstream read that produced the queued response bytes is processed: send them.
    func flushResponse() { flush() }

    /// The client's queue is over its high-water mark: the upstream should stop reading.
    var isBackpressured: Bool { out.pendingBytes > 256 << 10 }

    func exchangeCompleted() {
        if framing == .chunked { out.append("0\r\n\r\n") }
        flush()
        endExchange()
    }

    /// The stream ends with the error event and a proper last chunk, and the connection closes
    /// (what follows on it would be unreliable). Without chunked framing the length or the end
    /// of the connection marks the body, so the only honest signal is a cut.
    func exchangeEndedWithError(event: [UInt8]) {
        guard framing == .chunked else { return exchangeAborted() }
        keepAlive = false
        var chunk = loop.bufferPool.take(minimumCapacity: event.count + 16)
        chunk.appendHex(event.count)
        chunk.append("\r\n")
        event.withUnsafeBytes { chunk.append($0) }
        chunk.append("\r\n0\r\n\r\n")
        out.append(chunk)
        flush()
        endExchange()
    }

    /// The response was cut off after its head was sent: all the client can be told is a
    /// closed connection (a truncated chunked body, which HTTP clients detect).
    func exchangeAborted() {
        exchange = nil
        abort()
    }

    private func endExchange() {
        exchange = nil
        if !keepAlive || worker.draining {
            state = .closing
            flush()
            return
        }
        nextRequest()
    }

    private func nextRequest() {
        requestID = 0
        clientRequestID = .empty
        upstreamBody.release()
        inbuf.readerIndex += messageEnd
        if inbuf.readableBytes == 0 { inbuf.release() }
        parser.reset()
        state = .readingHead
        if inbuf.readableBytes > 0 { requestStarted = loop.now; armHeaderTimeout() } else { armIdle() }
        // Called from within process() when an answer came at once: its loop goes on.
        if processing { return }
        process()
        if state == .readingHead || state == .readingBody { readLoop() }
    }

    // MARK: errors and closing

    /// An error answered before any exchange (a bad head, a body too large, a timeout).
    private func respondError(_ e: ErrorResponse, close: Bool) {
        // An error before the request got its id still gets one.
        if requestID == 0 { requestID = worker.nextRequestID() }
        var r = LocalResponse(e)
        r.close = close
        answer(r, exchange: nil)
    }

    private func flush() {
        guard state != .closed else { return }
        do {
            let empty = try transport.flush(&out)
            if !empty { return }
        } catch {
            abort()
            return
        }
        if let x = exchange { x.clientDrained() }
        if state == .closing {
            // Lingering close: stop writing, drain what the client still sends, then close,
            // so a pending request in our receive buffer doesn't turn into a RST that destroys
            // the response the client has not read yet.
            transport.shutdownWrite()
            state = .lingering
            setDeadline(loop.now + .seconds(2))
            canRead = true
            readLoop()
        }
    }

    /// Closes at once, aborting any exchange.
    func abort() {
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
        close()
    }

    func close() {
        guard state != .closed else { return }
        if let x = exchange {
            exchange = nil
            x.clientAborted()
        }
        state = .closed
        disarm()
        if timer.isArmed { loop.cancel(timer) }
        if let r = registration {
            loop.deregister(r)
            registration = nil
        }
        out.removeAll()
        inbuf.release()
        upstreamBody.release()
        transport.close()
        worker.clientClosed(self)
    }

    /// Called when the worker starts draining: idle keep-alive connections close now.
    func drain() {
        if state == .readingHead && inbuf.readableBytes == 0 && out.isEmpty { close() }
    }

    // MARK: timeouts

    private func armIdle() { schedule(worker.settings.timeouts.idle) }

    private func armHeaderTimeout() {
        let t = worker.settings.timeouts.clientHeader
        if t.isPositive { setDeadline(requestStarted + t) } else { disarm() }
    }

    private func armBodyTimeout() { schedule(worker.settings.timeouts.clientBody) }

    private func schedule(_ d: Duration) {
        if d.isPositive { setDeadline(loop.now + d) } else { disarm() }
    }

    /// Moves the connection's single deadline. The timer is only re-armed when the deadline
    /// moves earlier; a later deadline is picked up when the timer fires (it re-arms itself),
    /// so the timer heap is touched about once per timeout period, not several times per
    /// request.
    private func setDeadline(_ d: Instant) {
        deadline = d
        if !timer.isArmed || timer.deadline > d { loop.schedule(timer, at: d) }
    }

    private func disarm() {
        deadline = Instant(nanoseconds: .max)
    }

    private func timerFired() {
        if loop.now < deadline {
            // The deadline moved later since the timer was armed.
            if deadline.nanoseconds != .max { loop.schedule(timer, at: deadline) }
            return
        }
        switch state {
        case .readingHead where inbuf.readableBytes == 0:
            close()  // idle keep-alive timeout
        case .readingHead, .readingBody:
            respondError(.client(408, "Timed out reading the request."), close: true)
        case .closing, .lingering:
            close()
        case .handshaking:
            close()
        case .proxying, .closed:
            break
        }
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func slice(_ r: ByteRange) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[Int(r.start)..<Int(r.end)])
    }
}
