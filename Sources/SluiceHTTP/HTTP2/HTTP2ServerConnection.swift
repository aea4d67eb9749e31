import CNghttp2
import Glibc
public import SluiceIO

/// A client's HTTP/2 connection, driven through nghttp2 bytes-in / bytes-out: socket reads go to
/// `nghttp2_session_mem_recv`, frames come back from `nghttp2_session_mem_send` and response
/// DATA frames are written by us from our own buffers (`NGHTTP2_DATA_FLAG_NO_COPY`). Every
/// nghttp2 callback is a thin C thunk into this object (swift-nio-ssl's pattern).
///
/// Each stream (``HTTP2ServerStream``) carries one request, handed whole to the delegate (the
/// gateway runs it through its pipeline like an HTTP/1.1 request) and answered through
/// ``submitResponse(_:hasBody:)``. Flow control is nghttp2's: a stream whose client window is
/// closed keeps its body in its own queue, and once that queue passes the high-water mark its
/// handler stops reading the upstream — a slow client backs pressure up to the model server.
///
/// WebSockets (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised. A stream whose header
/// block asks for CONNECT is decided when that block is complete (`HTTP2RequestKind`): with
/// `:protocol websocket` it becomes a tunnel stream, handed to the delegate at once (its head
/// rebuilt as the HTTP/1.1 upgrade) and carrying DATA both ways for its life: the client's DATA
/// goes to the handler, and the stream's window reopens only as the handler reports the bytes
/// passed on; the connection window reopens at once while the tunnels' unpassed bytes are
/// within `limits.http2_buffer_bytes` (so other streams keep flowing), past it only as they
/// drain. Plain CONNECT (405) and other protocols (400) are refused.
///
/// Protections (nghttp2 1.52 predates its own rapid-reset and CONTINUATION limits): streams
/// reset by the client before their response completed, CONTINUATION frames per header block
/// and empty DATA frames are counted; past a limit the connection gets GOAWAY
/// (ENHANCE_YOUR_CALM) and closes. Ping/SETTINGS floods are bounded by nghttp2's outbound-ack
/// limit.
///
/// Bounds and deadlines (issue 22): a stream object lives exactly as long as nghttp2's stream
/// (created by the request's HEADERS, removed by the close callback; trailers are a second
/// HEADERS on the same stream, read and dropped). Request bodies are flow-controlled by hand
/// (`no_auto_window_update`): bytes are consumed — the client's window reopened — as they
/// arrive for the oldest request still arriving, and for the others only while the bodies they
/// hold together stay within `limits.http2_buffer_bytes`; past it their windows stay shut until
/// a request completes. So one connection holds at most one body of `max_body_bytes`, the
/// budget, and one connection window of bytes in flight, however many streams it opens. Each
/// request must arrive within `timeouts.client_header` (its header block) and
/// `timeouts.client_body` (its body); the connection closes after `timeouts.idle` without a
/// frame from the client while no request is being forwarded.
public final class HTTP2ServerConnection: EventHandler {
    public let transport: Transport
    var fd: Int32 { transport.fd }
    public unowned(unsafe) let loop: EventLoop
    /// Holds the connection (its client table), so not retained here.
    unowned(unsafe) let delegate: any HTTP2ServerDelegate
    var limits: HTTP2ServerLimits { delegate.http2Limits }
    private var registration: Registration?
    private var session: OpaquePointer!
    var out: OutputQueue
    /// Frames nghttp2 serialized (headers, settings, ...) not yet moved into `out`.
    private var frames: ByteBuffer
    private var inbuf: ByteBuffer
    private var streams: [Int32: HTTP2ServerStream] = [:]
    private var closed = false
    private var sending = false
    private var sendAgain = false
    private var canRead = false
    private var goingAway = false
    /// Exchanges to notify that their stream's queue drained (after the send loop, so that
    /// nghttp2 is never re-entered from its own callback).
    private var drained: [HTTP2ServerStream] = []
    private let peer: [UInt8]
    private var idleTimer: Timer!
    /// When the client last sent anything (the idle timeout is measured from it).
    private var lastRead: Instant
    /// Streams whose request is still arriving, oldest first: their deadlines, and the body
    /// budget they share.
    private var arriving: [HTTP2ServerStream] = []
    /// Request body bytes held by the streams in `arriving`.
    private var arrivingBytes = 0
    /// Fires at the earliest deadline of an arriving request (moved only earlier; see `setDeadline`).
    private var streamTimer: Timer!
    /// Streams that answered before their request was complete: once that answer is out they
    /// get RST_STREAM(NO_ERROR), asking the client to stop sending (RFC 9113 §8.1).
    private var resetAfterResponse: [HTTP2ServerStream] = []
    /// Tunnel bytes (extended CONNECT streams) received and not yet passed on by their
    /// handlers, across the connection. While within `bodyBudget` the connection window is
    /// reopened for them at once (other streams keep flowing); past it, only as they drain.
    /// Each tunnel's own window reopens only as its bytes are passed on.
    private var tunnelHeld = 0
    /// Connection-window bytes of tunnels not reopened yet (received past the budget).
    private var tunnelDeferred = 0

    // Flood accounting (per connection, reset every second).
    private var windowStart = Instant(nanoseconds: 0)
    private var earlyResets = 0
    private var emptyDataFrames = 0
    private var continuations = 0
    static let maxEarlyResetsPerSecond = 200
    static let maxEmptyDataPerSecond = 1000
    static let maxContinuationsPerBlock = 16

    public init(transport: Transport, loop: EventLoop, delegate: any HTTP2ServerDelegate, peer: [UInt8], initialBytes: UnsafeRawBufferPointer) {
        self.transport = transport
        self.loop = loop
        self.delegate = delegate
        self.peer = peer
        let pool = loop.bufferPool
        out = OutputQueue(pool: pool)
        frames = ByteBuffer(emptyIn: pool)
        inbuf = ByteBuffer(emptyIn: pool)
        if initialBytes.count > 0 { inbuf.append(initialBytes) }
        lastRead = loop.now
        idleTimer = Timer { [unowned self] in self.idleExpired() }
        streamTimer = Timer { [unowned self] in self.streamDeadlinePassed() }
    }

    /// Request body bytes the streams of one connection may hold while their requests arrive,
    /// beyond the oldest one's (see the type's comment).
    var bodyBudget: Int { limits.bodyBudget }

    var maxConcurrentStreams: Int { limits.maxConcurrentStreams }

    /// Takes over the socket (registered with `old` by the connection that saw the preface) and
    /// processes what was read already.
    public func start(registrationFrom old: Registration?) throws(SyscallError) {
        session = makeSession()
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(limits.head.maxHeadBytes)),
            // WebSockets over HTTP/2 (RFC 8441): nghttp2 accepts `:protocol` from here on.
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL.rawValue), value: 1),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        // A connection window as large as the body budget (at least 1 MiB), so concurrent
        // uploads are not throttled while within it; bytes are consumed by hand (see `received`).
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(clamping: max(bodyBudget, 1 << 20)))
        if let old { loop.deregister(old) }
        registration = try loop.register(fd, handler: self)
        canRead = true
        if inbuf.readableBytes > 0 {
            feed(inbuf.readable)
            inbuf.clear()
        }
        readLoop()
        sendPending()
        armIdle()
    }

    private func makeSession() -> OpaquePointer {
        var cbs: OpaquePointer?
        nghttp2_session_callbacks_new(&cbs)
        defer { nghttp2_session_callbacks_del(cbs) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs) { _, frame, ud in
            HTTP2ServerConnection.from(ud).beginHeaders(frame!.pointee.hd.stream_id, trailers: frame!.pointee.headers.cat != NGHTTP2_HCAT_REQUEST)
        }
        nghttp2_session_callbacks_set_on_header_callback(cbs) { _, frame, name, namelen, value, valuelen, _, ud in
            HTTP2ServerConnection.from(ud).header(frame!.pointee.hd.stream_id, UnsafeRawBufferPointer(start: name, count: namelen),
                                             UnsafeRawBufferPointer(start: value, count: valuelen))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs) { _, frame, ud in
            HTTP2ServerConnection.from(ud).frameReceived(frame!.pointee.hd)
        }
        nghttp2_session_callbacks_set_on_begin_frame_callback(cbs) { _, hd, ud in
            HTTP2ServerConnection.from(ud).beginFrame(hd!.pointee)
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs) { _, _, streamID, data, len, ud in
            HTTP2ServerConnection.from(ud).data(streamID, UnsafeRawBufferPointer(start: data, count: len))
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs) { _, streamID, code, ud in
            HTTP2ServerConnection.from(ud).streamClosed(streamID, code)
        }
        nghttp2_session_callbacks_set_send_data_callback(cbs) { _, frame, framehd, length, source, ud in
            // The stream is the data provider's source (set in submitResponse), not looked up
            // by id: the bytes nghttp2 framed are that object's.
            let s = Unmanaged<HTTP2ServerStream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
            return HTTP2ServerConnection.from(ud).sendData(s, framehd!, length, padding: Int(frame!.pointee.data.padlen))
        }
        var opt: OpaquePointer?
        nghttp2_option_new(&opt)
        defer { nghttp2_option_del(opt) }
        nghttp2_option_set_max_outbound_ack(opt, 1000)
        nghttp2_option_set_max_settings(opt, 32)
        nghttp2_option_set_no_auto_window_update(opt, 1)
        var s: OpaquePointer?
        nghttp2_session_server_new2(&s, cbs, Unmanaged.passUnretained(self).toOpaque(), opt)
        return s!
    }

    static func from(_ ud: UnsafeMutableRawPointer?) -> HTTP2ServerConnection {
        Unmanaged<HTTP2ServerConnection>.fromOpaque(ud!).takeUnretainedValue()
    }

    // MARK: socket events

    public func handleEvent(_ events: UInt32) {
        if events & EventLoop.Events.error != 0 { abort(); return }
        if events & EventLoop.Events.writable != 0 { flush() }
        if closed { return }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 {
            if lingering {
                discardInput()
                return
            }
            canRead = true
            readLoop()
            sendPending()
        }
    }

    private func readLoop() {
        while canRead && !closed {
            // Stop reading while our output is backed up: nghttp2 would queue more frames.
            if out.pendingBytes > 4 << 20 { return }
            if inbuf.writableBytes < 4096 { inbuf.reserve(writable: 16 << 10) }
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
            case .processed(0):
                canRead = false
                abort()
                return
            case .processed(let n):
                inbuf.writerIndex += n
                lastRead = loop.now
                feed(inbuf.readable)
                inbuf.clear()
            }
        }
        inbuf.release()
    }

    private func feed(_ bytes: UnsafeRawBufferPointer) {
        let rv = nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rv < 0 {
            // A protocol error: nghttp2 queued a GOAWAY; send it and close.
            goingAway = true
        }
    }

    // MARK: sending

    /// Runs nghttp2's send loop: small frames are copied into `frames`, DATA frames are
    /// written by `sendData` from the streams' queues; then everything is flushed.
    public func sendPending() {
        if closed || lingering { return }
        if sending { sendAgain = true; return }
        sending = true
        repeat {
            sendAgain = false
            while out.pendingBytes < 4 << 20 {
                var p: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &p)
                if n < 0 { goingAway = true; break }
                if n == 0 { break }
                if frames.writableBytes < n { commitFrames(); frames.reserve(writable: max(n, 16 << 10)) }
                frames.append(UnsafeRawBufferPointer(start: p, count: n))
            }
            commitFrames()
        } while sendAgain
        sending = false
        if !resetAfterResponse.isEmpty {
            // Those whose answer went out whole in the frames above get their RST after it.
            var submitted = false
            resetAfterResponse.removeAll { s in
                guard streams[s.id] === s else { return true }
                guard s.responseFinished else { return false }
                nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), s.id, UInt32(NGHTTP2_NO_ERROR.rawValue))
                submitted = true
                return true
            }
            if submitted { scheduleSend() }
        }
        flush()
        let notify = drained
        drained.removeAll()
        for s in notify { s.handler?.streamDrained() }
        if !closed && !lingering && ((nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0)
                                      || goingAway) && out.isEmpty {
            lingerThenClose()
        }
    }

    /// After the last frame (a GOAWAY): stop writing, then discard what the peer still sends
    /// for a moment before closing, so unread input does not turn into a RST that destroys the
    /// GOAWAY before the peer reads it.
    private var lingering = false
    private func lingerThenClose() {
        lingering = true
        transport.shutdownWrite()
        let t = Timer { [unowned self] in self.close() }
        lingerTimer = t
        loop.schedule(t, after: .seconds(1))
        discardInput()
    }
    private var lingerTimer: Timer?

    private func discardInput() {
        var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while !closed {
            let r = withUnsafeMutableBytes(of: &scratch) { try? transport.read($0) }
            switch r {
            case .processed(let n)? where n > 0: continue
            case .wouldBlock?: return
            default:
                close()
                return
            }
        }
    }

    private func commitFrames() {
        if frames.readableBytes > 0 { out.append(frames.take()) }
    }

    private func sendData(_ s: HTTP2ServerStream, _ framehd: UnsafePointer<UInt8>, _ length: Int, padding: Int) -> Int32 {
        // readCallback promised `length` bytes from this queue and nothing runs in between; if
        // that ever fails, end the session rather than write a frame shorter than its header.
        guard s.body.pendingBytes >= length else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
        commitFrames()
        out.appendCopy(UnsafeRawBufferPointer(start: framehd, count: 9))
        if padding > 0 {
            var pad = UInt8(padding - 1)
            withUnsafeBytes(of: &pad) { out.appendCopy($0) }
        }
        s.body.transfer(length, to: &out)
        if padding > 1 {
            let zeros = [UInt8](repeating: 0, count: padding - 1)
            zeros.withUnsafeBytes { out.appendCopy($0) }
        }
        if s.wasBackpressured && !s.isBackpressured {
            s.wasBackpressured = false
            drained.append(s)
        }
        return 0
    }

    private func flush() {
        guard !closed else { return }
        do {
            _ = try transport.flush(&out)
        } catch {
            abort()
            return
        }
        if out.pendingBytes < 1 << 20 && !sending {
            // Room again: let nghttp2 produce more, and read what the client sent meanwhile.
            if canRead { readLoop() }
            if nghttp2_session_want_write(session) != 0 { sendPending() }
        }
    }

    // MARK: nghttp2 callbacks

    private func rotateWindow() {
        let now = loop.now
        if now.since(windowStart) > .seconds(1) {
            windowStart = now
            earlyResets = 0
            emptyDataFrames = 0
        }
    }

    private func enhanceYourCalm() -> Int32 {
        nghttp2_session_terminate_session(session, UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue))
        goingAway = true
        return 0
    }

    private func beginFrame(_ hd: nghttp2_frame_hd) -> Int32 {
        rotateWindow()
        switch UInt32(hd.type) {
        case NGHTTP2_CONTINUATION.rawValue:
            continuations += 1
            if continuations > Self.maxContinuationsPerBlock { return enhanceYourCalm() }
        case NGHTTP2_HEADERS.rawValue:
            continuations = 0
        case NGHTTP2_DATA.rawValue:
            if hd.length == 0 && hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) == 0 {
                emptyDataFrames += 1
                if emptyDataFrames > Self.maxEmptyDataPerSecond { return enhanceYourCalm() }
            }
        default:
            break
        }
        return 0
    }

    private func beginHeaders(_ id: Int32, trailers: Bool) -> Int32 {
        if trailers {
            // Trailers (RFC 9113 §8.1): a second header block on the request's stream; its
            // fields are read against the same limits and dropped (the upstream request is
            // framed by Content-Length, which carries no trailers).
            streams[id]?.beginTrailers()
            return 0
        }
        if goingAway || delegate.isDraining {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, UInt32(NGHTTP2_REFUSED_STREAM.rawValue))
            return 0
        }
        let now = loop.now
        let s = HTTP2ServerStream(id: id, connection: self)
        streams[id] = s
        arriving.append(s)
        let t = limits.clientHeader
        s.deadline = t.isPositive ? now + t : Instant(nanoseconds: .max)
        setDeadline(s.deadline)
        return 0
    }

    private func header(_ id: Int32, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Int32 {
        guard let s = streams[id] else { return 0 }
        if !s.addHeader(name, value, limits.head) {
            // A header block past the limit (the CONTINUATION flood of CVE-2024-27316 looks
            // like this): the whole connection goes, not just the stream, or the peer keeps
            // us decoding.
            return enhanceYourCalm()
        }
        return 0
    }

    private func data(_ id: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
        let found = streams[id]
        if let s = found, s.isTunnel, !s.clientEnded {
            tunnelData(s, bytes)
            return 0
        }
        guard let s = found, s.isArriving else {
            // A body nobody will read (its stream was answered already): consumed at once.
            nghttp2_session_consume(session, id, bytes.count)
            return 0
        }
        let limit = limits.maxBodyBytes
        if !s.addBody(bytes, limit: limit) {
            refuse(s, 413, "Request body too large; the limit is \(limit) bytes.", consumed: bytes.count)
            return 0
        }
        arrivingBytes += bytes.count
        s.unconsumed += bytes.count
        grantWindows()
        return 0
    }

    /// DATA on a tunnel stream: to its handler, the windows reopened as described at `tunnelHeld`.
    private func tunnelData(_ s: HTTP2ServerStream, _ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        guard n > 0 else { return }
        s.tunnelHeld += n
        tunnelHeld += n
        if tunnelHeld <= bodyBudget {
            nghttp2_session_consume_connection(session, n)
        } else {
            tunnelDeferred += n
        }
        if let h = s.handler {
            h.tunnelReceived(bytes)
        } else {
            tunnelPassed(s, n)
        }
    }

    /// `n` tunnel bytes of `s` were passed on: its window (and the connection's, if held back)
    /// reopens for them.
    func tunnelPassed(_ s: HTTP2ServerStream, _ n: Int) {
        guard !closed, streams[s.id] === s else { return }
        let n = min(n, s.tunnelHeld)
        guard n > 0 else { return }
        s.tunnelHeld -= n
        tunnelHeld -= n
        nghttp2_session_consume_stream(session, s.id, n)
        releaseTunnelWindow()
        scheduleSend()
    }

    private func releaseTunnelWindow() {
        if tunnelDeferred > 0 && tunnelHeld <= bodyBudget {
            nghttp2_session_consume_connection(session, tunnelDeferred)
            tunnelDeferred = 0
        }
    }

    /// Reopens the client's windows for the body bytes received so far, as the budget allows:
    /// the oldest arriving request always (so a large upload cannot deadlock), the others while
    /// what they hold together is within `bodyBudget`.
    private func grantWindows() {
        guard let head = arriving.first else { return }
        if head.unconsumed > 0 {
            nghttp2_session_consume(session, head.id, head.unconsumed)
            head.unconsumed = 0
        }
        guard arriving.count > 1, arrivingBytes - head.requestBodyBytes <= bodyBudget else { return }
        for s in arriving.dropFirst() where s.unconsumed > 0 {
            nghttp2_session_consume(session, s.id, s.unconsumed)
            s.unconsumed = 0
        }
    }

    /// `s` no longer receives a body to keep (complete, answered early, or closed): its bytes
    /// leave the budget and what it had not consumed is consumed (for a closed stream nghttp2
    /// counts it towards the connection only).
    private func stopArriving(_ s: HTTP2ServerStream, consumed extra: Int = 0) {
        if let i = arriving.firstIndex(where: { $0 === s }) {
            arriving.remove(at: i)
            arrivingBytes -= s.requestBodyBytes
        }
        s.isArriving = false
        if s.unconsumed + extra > 0 { nghttp2_session_consume(session, s.id, s.unconsumed + extra) }
        s.unconsumed = 0
        grantWindows()
    }

    private func frameReceived(_ hd: nghttp2_frame_hd) -> Int32 {
        let type = UInt32(hd.type)
        guard type == NGHTTP2_HEADERS.rawValue || type == NGHTTP2_DATA.rawValue, let s = streams[hd.stream_id] else { return 0 }
        let endStream = hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        if type == NGHTTP2_HEADERS.rawValue && !s.headersDone {
            // The request's header block is complete: its body is due within client_body.
            s.headersDone = true
            if s.isConnect { return connectRequested(s, endStream: endStream) }
            let t = limits.clientBody
            s.deadline = t.isPositive ? loop.now + t : Instant(nanoseconds: .max)
            setDeadline(s.deadline)
        }
        guard endStream else { return 0 }
        if s.isTunnel {
            if !s.clientEnded {
                s.clientEnded = true
                s.handler?.tunnelClientEnded()
            }
            return 0
        }
        if s.isArriving { stopArriving(s) }
        s.requestComplete(delegate)
        return 0
    }

    /// CONNECT is decided when its header block is complete: a WebSocket (RFC 8441) becomes a
    /// tunnel stream and is handed on at once (its DATA is the tunnel's, not a body, so it
    /// leaves `arriving` and its deadlines); plain CONNECT and other protocols are refused.
    private func connectRequested(_ s: HTTP2ServerStream, endStream: Bool) -> Int32 {
        let kind = s.classify()
        if let r = kind.refusal {
            refuse(s, r.status, r.message)
            return 0
        }
        stopArriving(s)
        if endStream { s.clientEnded = true }
        s.tunnelRequested(delegate)
        return 0
    }

    private func streamClosed(_ id: Int32, _ code: UInt32) -> Int32 {
        guard let s = streams.removeValue(forKey: id) else { return 0 }
        if s.tunnelHeld > 0 {
            tunnelHeld -= s.tunnelHeld
            s.tunnelHeld = 0
            releaseTunnelWindow()
        }
        if !s.responseFinished {
            // The client reset a stream that was still in progress.
            rotateWindow()
            earlyResets += 1
            if earlyResets > Self.maxEarlyResetsPerSecond { _ = enhanceYourCalm() }
        }
        if s.isArriving { stopArriving(s) }
        s.closed(into: &out)
        if streams.isEmpty && delegate.isDraining { startGoaway() }
        return 0
    }

    // MARK: request deadlines

    /// Moves the stream timer earlier if `d` is earlier than where it is queued (a later
    /// deadline is found when the timer fires).
    private func setDeadline(_ d: Instant) {
        guard d.nanoseconds != .max, !closed else { return }
        if !streamTimer.isArmed || streamTimer.deadline > d { loop.schedule(streamTimer, at: d) }
    }

    /// Requests that did not arrive in time: a header block still incomplete holds the whole
    /// connection (no other frame may come between its frames), so the connection closes; a
    /// body still incomplete gets 408 on its stream.
    private func streamDeadlinePassed() {
        guard !closed else { return }
        let now = loop.now
        var next = Instant(nanoseconds: .max)
        for s in arriving {
            if s.deadline > now { next = min(next, s.deadline); continue }
            if !s.headersDone {
                abort()
                return
            }
            refuse(s, 408, "Timed out reading the request body.")
        }
        setDeadline(next)
        sendPending()
    }

    /// Refuses a request still arriving: its body is discarded, the delegate answers, and the
    /// client is asked to stop sending once the answer is out.
    private func refuse(_ s: HTTP2ServerStream, _ status: Int, _ message: String, consumed: Int = 0) {
        stopArriving(s, consumed: consumed)
        answeredEarly(s)
        delegate.refuse(s, status: status, message: message)
    }

    /// A stream answered before its request was complete: once the answer is out it gets
    /// RST_STREAM(NO_ERROR), asking the client to stop sending (RFC 9113 §8.1).
    public func answeredEarly(_ s: HTTP2ServerStream) {
        if s.isArriving { stopArriving(s) }
        // A tunnel ended by the gateway (an error before it opened, the upstream gone) while
        // the client still sends: its END_STREAM is followed by a reset too.
        if !s.started || s.isArriving || (s.isTunnel && !s.clientEnded) { resetAfterResponse.append(s) }
    }

    // MARK: stream plumbing

    /// Response fields under construction (reused by every response on this connection).
    public let responseFields = HeaderBlock()

    /// Submits the response whose fields are in ``responseFields`` (`:status` first).
    public func submitResponse(_ s: HTTP2ServerStream, hasBody: Bool) {
        responseFields.withNVs { nva, count in
            if hasBody {
                var provider = nghttp2_data_provider()
                provider.source.ptr = Unmanaged.passUnretained(s).toOpaque()
                provider.read_callback = { _, _, _, length, dataFlags, source, _ in
                    let s = Unmanaged<HTTP2ServerStream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
                    return s.readCallback(length, dataFlags!)
                }
                nghttp2_submit_response(session, s.id, nva, count, &provider)
            } else {
                nghttp2_submit_response(session, s.id, nva, count, nil)
            }
        }
        scheduleSend()
    }

    func resumeData(_ s: HTTP2ServerStream) {
        nghttp2_session_resume_data(session, s.id)
        scheduleSend()
    }

    /// Runs the send loop once at the end of this loop iteration, so the responses of many
    /// streams completed in one iteration leave in one write.
    private var sendScheduled = false
    private func scheduleSend() {
        if sendScheduled || closed { return }
        sendScheduled = true
        loop.deferUntilEndOfIteration { [self] in
            sendScheduled = false
            sendPending()
        }
    }

    func resetStream(_ s: HTTP2ServerStream, code: UInt32 = UInt32(NGHTTP2_INTERNAL_ERROR.rawValue)) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), s.id, code)
        scheduleSend()
    }

    public var peerAddress: [UInt8] { peer }
    public var isTLS: Bool { transport.isTLS }

    // MARK: lifecycle

    private func armIdle() {
        // start() may already have closed the connection (EOF or a protocol error in the first
        // bytes): a timer armed then would fire into a freed connection (found by FuzzHTTP2).
        guard !closed else { return }
        let t = limits.idle
        if t.isPositive { loop.schedule(idleTimer, after: t) }
    }

    /// The idle timeout: measured from the client's last frame, and only while no request is
    /// being forwarded (a model server may take minutes to answer; the exchange's own
    /// deadlines cover that wait). Requests still arriving have their own deadlines, and a
    /// stream whose answer waits for a window the client never opens is not activity.
    private func idleExpired() {
        let t = limits.idle
        guard t.isPositive, !closed else { return }
        let due = lastRead + t
        // A stream with a handler whose response has not ended is being answered.
        if streams.values.contains(where: { $0.handler != nil && !$0.ended }) || due > loop.now {
            loop.schedule(idleTimer, at: max(due, loop.now + .milliseconds(100)))
            return
        }
        startGoaway()
        // Streams still open are stuck (a client that stopped reading or sending): close.
        if !streams.isEmpty { abort() }
    }

    private func startGoaway() {
        guard !closed else { return }
        let last = nghttp2_session_get_last_proc_stream_id(session)
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
        goingAway = true
        sendPending()
    }

    /// Graceful stop: GOAWAY now, close once the streams in progress are done.
    public func drain() {
        if streams.isEmpty { startGoaway() } else {
            let last = nghttp2_session_get_last_proc_stream_id(session)
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
            sendPending()
        }
    }

    /// Closes now; every stream's handler hears that its stream closed.
    public func abort() {
        close()
    }

    private func close() {
        guard !closed else { return }
        closed = true
        for s in streams.values { s.closed(into: &out) }
        streams.removeAll()
        arriving.removeAll()
        resetAfterResponse.removeAll()
        if idleTimer.isArmed { loop.cancel(idleTimer) }
        if streamTimer.isArmed { loop.cancel(streamTimer) }
        if let t = lingerTimer, t.isArmed { loop.cancel(t) }
        if let r = registration { loop.deregister(r); registration = nil }
        out.removeAll()
        frames.release()
        inbuf.release()
        transport.close()
        nghttp2_session_del(session)
        session = nil
        delegate.connectionClosed(self)
    }
}

