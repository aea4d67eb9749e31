import Glibc

/// The fuzzer's side of one HTTP/2 connection: a non-blocking socket, the bytes to write, and
/// a frame reader for what the gateway sends back. Every wait is bounded.
///
/// What comes back must be well-formed HTTP/2 (frames of a known type, no longer than the
/// MAX_FRAME_SIZE the client announced): the gateway writes DATA frames itself, from its own
/// queues, so a miscounted frame would show up here as garbage framing even without a crash.
final class H2Client {
    let fd: Int32
    private var inbuf: [UInt8] = []
    /// The peer closed (EOF or reset); later writes are dropped.
    private(set) var peerClosed = false
    private(set) var goawayReceived = false
    private(set) var bytesReceived = 0
    var maxFrameSize = 16384
    var ackServerSettings = true
    /// DATA payload received and not yet given back with WINDOW_UPDATE, per stream (0 = the
    /// connection).
    private var unacknowledged: [UInt32: Int] = [:]
    private var owedSettingsAcks = 0
    /// Response HEADERS seen, by stream: the first field byte (0x88 is `:status: 200`).
    private(set) var responseHeads: [UInt32: UInt8] = [:]
    /// The first DATA payload of each stream, up to 200 bytes (an error's message, for reports).
    private(set) var firstData: [UInt32: [UInt8]] = [:]
    private(set) var ended: Set<UInt32> = []
    private var pingMarker: [UInt8]? = nil
    private(set) var pingAcked = false

    init?(port: UInt16) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if fd < 0 { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { Glibc.close(fd); return nil }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Writes all of `bytes`, reading meanwhile so neither side's buffers fill up. Gives up
    /// after `limitMs` without progress (the gateway may legitimately stop reading).
    func write(_ bytes: [UInt8], limitMs: Int = 500) {
        var off = 0
        var stalled = 0
        while off < bytes.count && !peerClosed {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; stalled = 0; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if stalled >= limitMs { return }
                var p = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT), revents: 0)
                _ = poll(&p, 1, 1)
                stalled += 1
                readAvailable()
                continue
            }
            peerClosed = true
        }
        readAvailable()
    }

    /// Reads for `ms` milliseconds (at least once, without waiting, when 0).
    func read(forMs ms: Int) {
        let end = monotonicMs() + ms
        repeat {
            readAvailable()
            if peerClosed { return }
            let left = end - monotonicMs()
            if left <= 0 { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(left))
        } while true
    }

    /// Reads until `done` holds, the peer closes, or `limitMs` pass.
    func read(until done: () -> Bool, limitMs: Int) {
        let end = monotonicMs() + limitMs
        while !done() && !peerClosed {
            let left = end - monotonicMs()
            if left <= 0 { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(min(left, 5)))
            readAvailable()
        }
    }

    /// Reads until nothing has arrived for `quietMs` (at most `limitMs` in all).
    func readUntilQuiet(quietMs: Int, limitMs: Int) {
        let end = monotonicMs() + limitMs
        while !peerClosed {
            let before = bytesReceived
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(quietMs))
            readAvailable()
            if bytesReceived == before || monotonicMs() >= end { return }
        }
    }

    /// Sends a PING with a marker and waits for its ACK: once it is back, the gateway has
    /// processed every frame written before it.
    func barrier(limitMs: Int) -> Bool {
        let marker: [UInt8] = Array("SLUICEFZ".utf8)
        pingMarker = marker
        pingAcked = false
        write([0, 0, 8, Script.PING, 0, 0, 0, 0, 0] + marker)
        read(until: { pingAcked }, limitMs: limitMs)
        return pingAcked
    }

    /// WINDOW_UPDATEs for the DATA read so far, and SETTINGS ACKs owed (what a client does).
    func replenish() {
        var out: [UInt8] = []
        for (sid, n) in unacknowledged where n > 0 {
            out += [0, 0, 4, Script.WINDOW_UPDATE, 0] + be32(sid) + be32(UInt32(n))
        }
        unacknowledged.removeAll()
        if !out.isEmpty { write(out) }
    }

    private func readAvailable() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !peerClosed {
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                inbuf += chunk[0..<n]
                bytesReceived += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { break }
            peerClosed = true
        }
        parseFrames()
        if ackServerSettings && owedSettingsAcks > 0 && !peerClosed {
            let acks = owedSettingsAcks
            owedSettingsAcks = 0
            write(Array((0..<acks).map { _ in [0, 0, 0, Script.SETTINGS, Script.ACK, 0, 0, 0, 0] }.joined()))
        }
    }

    private func parseFrames() {
        var pos = 0
        while inbuf.count - pos >= 9 {
            let len = Int(inbuf[pos]) << 16 | Int(inbuf[pos + 1]) << 8 | Int(inbuf[pos + 2])
            let type = inbuf[pos + 3], flags = inbuf[pos + 4]
            let sid = (UInt32(inbuf[pos + 5]) << 24 | UInt32(inbuf[pos + 6]) << 16 | UInt32(inbuf[pos + 7]) << 8 | UInt32(inbuf[pos + 8])) & 0x7fff_ffff
            if type > Script.CONTINUATION || type == Script.PUSH_PROMISE {
                fatalError("FuzzHTTP2: the gateway sent a frame of type \(type) (length \(len), stream \(sid)): its output is misframed")
            }
            if len > maxFrameSize {
                fatalError("FuzzHTTP2: the gateway sent a \(len)-byte frame (type \(type), stream \(sid)) past MAX_FRAME_SIZE \(maxFrameSize)")
            }
            if inbuf.count - pos - 9 < len { break }
            let payload = inbuf[(pos + 9)..<(pos + 9 + len)]
            switch type {
            case Script.DATA:
                if sid == 0 { fatalError("FuzzHTTP2: the gateway sent DATA on stream 0") }
                unacknowledged[sid, default: 0] += len
                unacknowledged[0, default: 0] += len
                if firstData[sid] == nil { firstData[sid] = Array(payload.prefix(200)) }
                if flags & Script.END_STREAM != 0 { ended.insert(sid) }
            case Script.HEADERS:
                var first = payload.startIndex
                if flags & Script.PADDED != 0 { first += 1 }
                if flags & Script.PRIORITY_FLAG != 0 { first += 5 }
                if responseHeads[sid] == nil, first < payload.endIndex { responseHeads[sid] = payload[first] }
                if flags & Script.END_STREAM != 0 { ended.insert(sid) }
            case Script.RST_STREAM:
                ended.insert(sid)
            case Script.SETTINGS:
                if flags & Script.ACK == 0 { owedSettingsAcks += 1 }
            case Script.PING:
                if flags & Script.ACK != 0, let m = pingMarker, payload.elementsEqual(m) { pingAcked = true }
            case Script.GOAWAY:
                goawayReceived = true
            default:
                break
            }
            pos += 9 + len
        }
        if pos > 0 { inbuf.removeFirst(pos) }
    }

    /// Closes the connection: plainly, with a RST (SO_LINGER 0), or after a half-close and
    /// reading to EOF (bounded).
    func close(_ how: Script.Close) {
        switch how {
        case .close:
            break
        case .reset:
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        case .halfClose:
            shutdown(fd, Int32(SHUT_WR))
            read(until: { false }, limitMs: 20)
        }
        Glibc.close(fd)
    }
}

func monotonicMs() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}
