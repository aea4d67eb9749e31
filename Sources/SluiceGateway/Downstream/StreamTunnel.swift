import SluiceHTTP
import SluiceIO

/// A WebSocket over HTTP/2 (RFC 8441 extended CONNECT on `/v1/realtime`) after the model server
/// switched protocols: one stream of the client's HTTP/2 connection joined to the server's
/// upgraded HTTP/1.1 connection, byte for byte. The stream's other half — the connection, its
/// other streams — carries on; this is the stream's handler from the `:status 200` on.
///
/// ```
/// open ──server EOF──▶ END_STREAM after what the server sent (RST_STREAM follows if the client
///   │                  still sends), server closed
///   ├──client END_STREAM──▶ what it sent is written to the server, then the server is closed
///   │                       and the stream ends with what the server sent before
///   ├──client RST_STREAM / connection gone──▶ server closed
///   └──idle for realtime.idle_timeout / server error──▶ RST_STREAM (CANCEL / INTERNAL_ERROR),
///                                                        server closed
/// ```
/// Bounded both ways. Client → server: DATA is copied into the server's queue, and the codec
/// reopens the stream's flow-control window only for bytes written to the socket
/// (``HTTP2ServerStream/tunnelWritten(_:)``), so the queue holds at most one stream window
/// (the connection's window is shared within `limits.http2_buffer_bytes`, see
/// `HTTP2ServerConnection.tunnelHeld`). Server → client: reads go to the stream's response
/// queue as pool blocks (no copy) and stop while it is over its high-water mark (the client's
/// window closed), resuming when the codec reports it drained. Every wait has a deadline:
/// `realtime.idle_timeout` measured from the last byte either way. Holds the endpoint's lease
/// and one `realtime.max_connections` slot (shared with HTTP/1.1 tunnels) until it closes.
/// Thread-confined to the worker.
final class StreamTunnel: HTTP2StreamHandler, TunnelSideOwner {
    unowned(unsafe) let worker: Worker
    unowned(unsafe) let loop: EventLoop
    /// Kept (the codec drops it when nghttp2 closes the stream); its connection is not used
    /// once the stream closed (`streamGone`).
    private let stream: HTTP2ServerStream
    /// The model server's connection (the same type as an HTTP/1.1 tunnel's sides).
    private let server: Tunnel.Side
    private var lease: EndpointLease?
    private let slots: SharedCounter
    private let idleTimeout: Duration
    private var lastActivity: Instant
    private var timer: Timer!
    private var closed = false
    /// nghttp2 closed the stream: it is not touched again.
    private var streamGone = false
    /// Client bytes in `inbound` and `server.out`, not yet reported written.
    private var held = 0
    /// Client bytes not yet queued for the server: one growing block, moved to `server.out`
    /// whenever that is empty, so DATA frames cost their bytes, not a pool block each (a
    /// client sending 1-byte frames to a server that does not read would otherwise pin a
    /// block per byte of its window).
    private var inbound: ByteBuffer
    /// Server reads queued for the stream at most (each is a block: a server trickling bytes
    /// to a client whose window is shut would otherwise pin a block per read).
    private static let maxQueuedReads = 64

    /// `toServer`: what the client sent on the stream before the server's 101 (held against
    /// the stream's window already).
    init(worker: Worker, stream: HTTP2ServerStream, server: Transport, toServer: consuming ByteBuffer,
         lease: consuming EndpointLease?, slots: SharedCounter) {
        self.worker = worker
        loop = worker.loop
        self.stream = stream
        self.server = Tunnel.Side(server, pool: loop.bufferPool, name: "server")
        self.lease = lease
        self.slots = slots
        idleTimeout = worker.settings.realtime.idleTimeout
        lastActivity = loop.now
        held = toServer.readableBytes
        inbound = ByteBuffer(emptyIn: loop.bufferPool)
        if held > 0 { self.server.out.append(toServer) }
        self.server.tunnel = self
        timer = Timer { [unowned self] in self.timerFired() }
    }

    /// Registers the server's socket and starts relaying (the stream's `:status 200` was
    /// submitted, with whatever the server sent after its 101 queued).
    func start() throws(SyscallError) {
        server.registration = try loop.register(server.transport.fd, handler: server)
        loop.schedule(timer, at: loop.now + idleTimeout)
        worker.metrics.add(worker.tunnelSlots["opened"]!)
        server.canRead = true
        flushServer()
        pump()
    }

    // MARK: the server's socket

    func sideEvent(_ s: Tunnel.Side, _ events: UInt32) {
        guard !closed else { return }
        if events & EventLoop.Events.error != 0 { return close(outcome: "closed", reset: true) }
        if events & EventLoop.Events.writable != 0 {
            flushServer()
            if closed { return }
        }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup) != 0 {
            server.canRead = true
            pump()
        }
    }

    /// Reads the server into the stream's response queue until it has nothing more, the queue
    /// is over its high-water mark, or EOF.
    private func pump() {
        while !closed && server.canRead && !server.readClosed {
            if stream.isBackpressured || stream.body.chunkCount >= Self.maxQueuedReads {
                server.paused = true
                stream.markBackpressured()  // streamDrained() comes as frames leave
                return
            }
            var buf = loop.bufferPool.take(minimumCapacity: 16 << 10)
            let r: IOResult<Int>
            do {
                r = try server.transport.read(buf.writable)
            } catch {
                return close(outcome: "closed", reset: true)
            }
            switch r {
            case .wouldBlock:
                server.canRead = false
                return
            case .processed(0):
                server.canRead = false
                server.readClosed = true
                return serverEnded()
            case .processed(let n):
                buf.writerIndex += n
                lastActivity = loop.now
                worker.metrics.add(worker.tunnelByteSlots[1], Double(n))
                stream.body.append(buf)
                stream.bodyQueued()
            }
        }
    }

    /// Writes the client's bytes to the server; those written reopen the stream's window.
    private func flushServer() {
        guard !closed else { return }
        if server.out.isEmpty && inbound.readableBytes > 0 { server.out.append(inbound.take()) }
        if !server.out.isEmpty {
            do {
                _ = try server.transport.flush(&server.out)
            } catch {
                return close(outcome: "closed", reset: true)
            }
        }
        let written = held - server.out.pendingBytes - inbound.readableBytes
        if written > 0 {
            held -= written
            stream.tunnelWritten(written)
        }
        if stream.clientEnded && server.out.isEmpty && inbound.readableBytes == 0 { clientFinished() }
    }

    /// The server closed its side: the stream ends after what it sent.
    private func serverEnded() {
        stream.endBody()
        stream.connection.answeredEarly(stream)
        close(outcome: "closed", reset: false)
    }

    /// Everything the client sent before its END_STREAM reached the server: the server is
    /// closed and the stream ends after what the server had sent.
    private func clientFinished() {
        stream.endBody()
        close(outcome: "closed", reset: false)
    }

    // MARK: the stream (HTTP2StreamHandler)

    func tunnelReceived(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else {
            stream.tunnelWritten(bytes.count)
            return
        }
        inbound.reserve(writable: bytes.count)
        inbound.append(bytes)
        held += bytes.count
        lastActivity = loop.now
        worker.metrics.add(worker.tunnelByteSlots[0], Double(bytes.count))
        flushServer()
    }

    func tunnelClientEnded() {
        guard !closed else { return }
        if server.out.isEmpty && inbound.readableBytes == 0 { clientFinished() }  // else flushServer() does once it drained
    }

    func streamDrained() {
        guard !closed, server.paused else { return }
        server.paused = false
        pump()
    }

    /// The client reset the stream, or the connection went away.
    func streamClosed() {
        streamGone = true
        close(outcome: "closed", reset: false)
    }

    // MARK: the end

    private func timerFired() {
        guard !closed else { return }
        let due = lastActivity + idleTimeout
        if loop.now < due {
            loop.schedule(timer, at: due)
            return
        }
        close(outcome: "idle_closed", reset: true)
    }

    /// Ends the tunnel once: the server's connection, the slot, the lease; with `reset` the
    /// stream is cut (RST_STREAM) unless it already ended.
    private func close(outcome: String, reset: Bool) {
        guard !closed else { return }
        closed = true
        if timer.isArmed { loop.cancel(timer) }
        if let r = server.registration {
            loop.deregister(r)
            server.registration = nil
        }
        server.out.removeAll()
        inbound.release()
        if reset { TCP.setLingerZero(server.transport.fd) }
        server.transport.close()
        lease = nil
        Tunnel.recordClose(worker, slots: slots, outcome: outcome)
        if !streamGone {
            if reset && !stream.responseFinished { stream.abort(cancel: outcome == "idle_closed") }
            // What the client still sends is dropped (its window reopened) from here on.
            if held > 0 { stream.tunnelWritten(held) }
            held = 0
            // The stream holds this object: let go at the end of the iteration, not inside a
            // call of ours (a socket event reaches us through an unretained reference).
            let s = stream
            loop.deferUntilEndOfIteration { if s.handler === self { s.handler = nil } }
        }
    }
}
