public import SluiceIO
import Glibc

/// A response as the simple client returns it (copied; this client is for the control plane:
/// health checks, telemetry scrapes, adapter loads — not the proxy path).
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }
}

public enum HTTPClientError: Error, Equatable, Sendable {
    case connect(Int32)
    case closed
    case timeout
    case protocolError
    /// The response was larger than ``HTTPClient/maxResponseBytes``.
    case tooLarge
}

/// A keep-alive HTTP/1.1 client to one server, on one event loop. Requests are sent one at a
/// time in order; each completes exactly once, with a response or an error. The connection is
/// opened on demand and re-opened after the server closes it.
public final class HTTPClient: EventHandler {
    public typealias Completion = (Result<HTTPClientResponse, HTTPClientError>) -> Void

    struct Pending {
        var request: [UInt8]
        var method: HTTPMethod
        var timeout: Duration
        var completion: Completion
    }

    public let address: SocketAddress
    /// Responses (head and body) larger than this fail with `.tooLarge` and the connection
    /// closes: a control-plane peer (a model server's /metrics) cannot make the gateway buffer
    /// without bound.
    public var maxResponseBytes = 16 << 20
    let hostHeader: String
    unowned let loop: EventLoop
    private var fd: Int32 = -1
    private var registration: Registration?
    private var connected = false
    private var queue: [Pending] = []
    private var inflight: Pending?
    /// The request being written, and how much of it went out (an offset rather than removing
    /// what was sent: a large request is neither shifted per partial send nor copied; once
    /// sent it is let go, so a caller reusing its buffer gets it back unshared).
    private var outbuf: [UInt8] = []
    private var outSent = 0
    private var inbuf: [UInt8] = []
    private var parser = HTTP1HeadParser(kind: .response, limits: HTTP1Limits(maxHeadBytes: 64 << 10, maxHeaderCount: 200, maxRequestLine: 8 << 10))
    private let head = HTTPHead(capacity: 200)
    private var timer: Timer!

    public init(address: SocketAddress, host: String? = nil, loop: EventLoop) {
        self.address = address
        self.hostHeader = host ?? address.description
        self.loop = loop
        timer = Timer { [unowned self] in self.timedOut() }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Sends a request; `completion` runs on the loop.
    public func send(method: String = "GET", path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                     timeout: Duration = .seconds(5), completion: @escaping Completion) {
        var request: [UInt8] = []
        request.reserveCapacity(256 + body.count)
        writeHead(method: method, path: path, headers: headers, contentLength: body.count, into: &request)
        request += body
        send(request: request, method: method, timeout: timeout, completion: completion)
    }

    /// A request's head (request line, `Host`, `headers`, `Content-Length` for a body or a
    /// POST/PUT), appended to `out`: for a caller that writes the body after it into a buffer
    /// of its own (``send(request:method:timeout:completion:)``).
    public func writeHead(method: String, path: String, headers: [(String, String)] = [], contentLength: Int,
                          into out: inout [UInt8]) {
        var h = "\(method) \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\n"
        for (k, v) in headers { h += "\(k): \(v)\r\n" }
        if contentLength > 0 || method == "POST" || method == "PUT" { h += "Content-Length: \(contentLength)\r\n" }
        h += "\r\n"
        out += h.utf8
    }

    /// Sends a whole request, head and body (see ``writeHead(method:path:headers:contentLength:into:)``).
    /// The client holds `request` only until it is written, so a caller that keeps it gets an
    /// unshared buffer back to reuse.
    public func send(request: [UInt8], method: String, timeout: Duration = .seconds(5), completion: @escaping Completion) {
        let m: HTTPMethod = method == "HEAD" ? .head : (method == "GET" ? .get : .post)
        queue.append(Pending(request: request, method: m, timeout: timeout, completion: completion))
        if inflight == nil { startNext() }
    }

    public func get(_ path: String, timeout: Duration = .seconds(5), completion: @escaping Completion) {
        send(path: path, timeout: timeout, completion: completion)
    }

    /// Fails everything pending and closes the connection.
    public func close() {
        disconnect()
        let all = (inflight.map { [$0] } ?? []) + queue
        inflight = nil
        queue.removeAll()
        for p in all { p.completion(.failure(.closed)) }
    }

    private func startNext() {
        guard inflight == nil, !queue.isEmpty else { return }
        var p = queue.removeFirst()
        outbuf = p.request
        outSent = 0
        p.request = []
        inflight = p
        parser.reset()
        parser.requestMethod = p.method
        inbuf.removeAll(keepingCapacity: true)
        loop.schedule(timer, after: p.timeout)
        if fd < 0 {
            do {
                let (newFD, result) = try TCP.connect(address)
                fd = newFD
                registration = try loop.register(fd, handler: self)
                connected = { if case .processed = result { return true } else { return false } }()
            } catch {
                finish(.failure(.connect(error.errno)), reusable: false)
                return
            }
        }
        if connected { flush() }
    }

    public func handleEvent(_ events: UInt32) {
        if !connected {
            if events & (EventLoop.Events.error | EventLoop.Events.hangup) != 0 {
                finish(.failure(.connect(ECONNREFUSED)), reusable: false)
                return
            }
            if events & EventLoop.Events.writable != 0 {
                do { try TCP.finishConnect(fd) } catch {
                    finish(.failure(.connect(error.errno)), reusable: false)
                    return
                }
                connected = true
            }
        }
        if events & EventLoop.Events.writable != 0 { flush() }
        if events & (EventLoop.Events.readable | EventLoop.Events.readHangup | EventLoop.Events.hangup | EventLoop.Events.error) != 0 {
            readAll()
        }
    }

    private func flush() {
        while outSent < outbuf.count && fd >= 0 {
            let r = outbuf.withUnsafeBytes { try? Sys.send(fd, $0.baseAddress! + outSent, $0.count - outSent) }
            switch r {
            case .processed(let n)?:
                outSent += n
                if outSent == outbuf.count {
                    outbuf = []
                    outSent = 0
                }
            case .wouldBlock?: return
            case nil:
                finish(.failure(.closed), reusable: false)
                return
            }
        }
    }

    private func readAll() {
        while fd >= 0 {
            // Read into uninitialised space (zeroing 64 KiB per read cost more than the read).
            var r: IOResult<Int>?
            let chunk = [UInt8](unsafeUninitializedCapacity: 65536) { buf, count in
                r = try? Sys.read(fd, buf.baseAddress!, buf.count)
                if case .processed(let n)? = r { count = n } else { count = 0 }
            }
            switch r {
            case .processed(let n)? where n > 0:
                inbuf += chunk
                if inflight != nil && tryComplete(eof: false) { return }
                if inbuf.count > maxResponseBytes {
                    if inflight != nil { finish(.failure(.tooLarge), reusable: false) } else { disconnect() }
                    return
                }
            case .wouldBlock?:
                return
            default:
                // EOF or error.
                if inflight != nil && !tryComplete(eof: true) {
                    finish(.failure(.closed), reusable: false)
                } else {
                    disconnect()
                }
                return
            }
        }
    }

    /// Completes the in-flight request if its response is complete.
    private func tryComplete(eof: Bool) -> Bool {
        let r = inbuf.withUnsafeBytes { parser.parse($0, into: head) }
        switch r {
        case .incomplete: return false
        case .error:
            finish(.failure(.protocolError), reusable: false)
            return true
        case .complete: break
        }
        var body: [UInt8] = []
        switch head.framing {
        case .none: break
        case .length(let n):
            guard inbuf.count >= head.length + n else { return false }
            body = Array(inbuf[head.length..<(head.length + n)])
        case .chunked:
            switch inbuf.withUnsafeBytes({ ChunkedDecoder.decodeWhole($0, from: head.length) }) {
            case .complete(let payload, _): body = payload
            case .incomplete: return false
            case .invalid:
                finish(.failure(.protocolError), reusable: false)
                return true
            }
        case .untilClose:
            guard eof else { return false }
            body = Array(inbuf[head.length...])
        }
        let headers: [(name: String, value: String)] = inbuf.withUnsafeBytes { b in
            (0..<head.count).map { i in
                (String(decoding: b[Int(head[i].name.start)..<Int(head[i].name.end)], as: UTF8.self),
                 String(decoding: b[Int(head[i].value.start)..<Int(head[i].value.end)], as: UTF8.self))
            }
        }
        finish(.success(HTTPClientResponse(status: head.status, headers: headers, body: body)), reusable: head.keepAlive && !eof)
        return true
    }

    private func timedOut() {
        guard inflight != nil else { return }
        finish(.failure(.timeout), reusable: false)
    }

    private func finish(_ result: Result<HTTPClientResponse, HTTPClientError>, reusable: Bool) {
        if timer.isArmed { loop.cancel(timer) }
        if !reusable { disconnect() }
        guard let p = inflight else { return }
        inflight = nil
        p.completion(result)
        startNext()
    }

    private func disconnect() {
        if let r = registration { loop.deregister(r); registration = nil }
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        connected = false
        outbuf = []
        outSent = 0
    }
}
