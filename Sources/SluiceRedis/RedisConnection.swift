import Glibc
public import SluiceIO

/// One Redis connection driven by one ``EventLoop``: non-blocking connect, AUTH/SELECT, pipelined
/// commands whose replies are matched first-in first-out, a per-command timeout, and reconnects
/// with exponential backoff.
///
/// Why hiredis's reader and our own socket code rather than hiredis's async context: the async
/// context wants an adapter that toggles read/write interest per state change (an `epoll_ctl` each),
/// keeps its own output buffer (an `sds` copy of every command) and has no timeouts in 0.14.
/// Our loop registers descriptors once, edge-triggered; we batch every command written during a
/// loop iteration into one `send`, and keep timeouts on the loop's timer heap.
///
/// ```
///          start()                    connected              handshake replies OK
///   idle ─────────► connecting ─────────────────► handshaking ─────────────────► ready
///                     ▲    │ failed/timed out        │ failed/timed out            │ EOF, error,
///      backoff timer  │    ▼                         ▼                             │ timeout
///                   waiting ◄──────────────────────────────────────────────────────┘
///   any ── close() ──► closed
/// ```
///
/// Which commands are accepted: in `ready`, all (up to ``RedisConfiguration/maxPendingCommands``);
/// while `connecting`/`handshaking` for the first time (no failure yet), they are queued behind the
/// handshake; after a failure, until the connection is ready again, they fail at once with
/// ``RedisError/unavailable`` (fail fast while Redis is down; no queue grows). A ready connection
/// that the server closes while idle reconnects at once without counting as a failure.
///
/// Thread confinement: create it anywhere, then use it only on its loop's thread. Completions run
/// on that thread, never inside ``send(_:completion:)`` itself (rejections are deferred to the end
/// of the loop iteration), so a caller may send again from a completion.
public final class RedisConnection: EventHandler, @unchecked Sendable {
    public typealias Completion = (Result<RedisValue, RedisError>) -> Void

    public enum State: Equatable, Sendable {
        case idle, connecting, handshaking, ready, waiting, closed
    }

    /// Counters for metrics and tests.
    public struct Stats: Equatable, Sendable {
        public var commands = 0
        public var timeouts = 0
        /// Successful connects (including the first).
        public var connects = 0
        /// Connects that failed and connections lost.
        public var failures = 0
        public var rejected = 0
        /// Ready connections the server closed while idle (reconnected at once, not failures
        /// for backoff purposes).
        public var idleCloses = 0
    }

    struct Pending {
        /// nil for the connection's own handshake commands.
        var completion: Completion?
        var deadline: Instant
    }

    public let loop: EventLoop
    public let configuration: RedisConfiguration
    public private(set) var state: State = .idle
    public private(set) var stats = Stats()
    /// The most recent failure, for health pages (never holds a secret).
    public private(set) var lastError: String?

    private var fd: Int32 = -1
    private var registration: Registration?
    private var reader = RedisReplyReader()
    private var pending = Ring<Pending>(capacity: 64)
    /// Commands encoded and not yet written: `out[outSent...]`.
    private var out: [UInt8] = []
    private var outSent = 0
    private var flushScheduled = false
    /// Handshake commands not yet answered.
    private var handshakeLeft = 0
    /// Consecutive failures since the last time the connection was ready.
    private var consecutiveFailures = 0
    /// Bumped whenever the socket goes away, so code that ran a completion can tell the world
    /// changed under it.
    private var epoch = 0
    private let readBuffer: UnsafeMutableRawPointer
    private let readCapacity = 16 * 1024

    // Timers capture `self` unowned: the connection owns them and cancels them in close().
    private lazy var commandTimer = Timer { [unowned self] in self.commandTimerFired() }
    private lazy var connectTimer = Timer { [unowned self] in self.fail("connect timed out") }
    private lazy var reconnectTimer = Timer { [unowned self] in self.connect() }

    public init(loop: EventLoop, configuration: RedisConfiguration) {
        self.loop = loop
        self.configuration = configuration
        readBuffer = .allocate(byteCount: readCapacity, alignment: 16)
        out.reserveCapacity(4096)
    }

    deinit {
        readBuffer.deallocate()
        if fd >= 0 { Sys.close(fd) }  // only if close() was never called; the loop holds no reference then
    }

    /// True when commands go straight to Redis.
    public var isReady: Bool { state == .ready }

    /// True when ``send(_:completion:)`` would not reject with `.unavailable`.
    public var acceptsCommands: Bool {
        switch state {
        case .ready: return true
        case .connecting, .handshaking: return consecutiveFailures == 0
        case .idle, .waiting, .closed: return false
        }
    }

    /// Commands sent and not yet answered (or queued behind the handshake).
    public var pendingCount: Int { pending.count }

    /// Starts connecting. Call on the loop's thread.
    public func start() {
        guard state == .idle else { return }
        connect()
    }

    /// Closes the connection for good; pending commands fail with `.closed`.
    public func close() {
        if state == .closed { return }
        state = .closed
        loop.cancel(connectTimer)
        loop.cancel(reconnectTimer)
        loop.cancel(commandTimer)
        teardownSocket()
        failAll(first: .closed, rest: .closed)
    }

    // MARK: sending

    /// Sends `command`; `completion` gets its reply (error replies included, as values).
    public func send(_ command: RedisCommand, completion: @escaping Completion) {
        guard acceptsCommands else { return reject(.unavailable, completion) }
        guard pending.count < configuration.maxPendingCommands else { return reject(.overloaded, completion) }
        command.encode(into: &out)
        enqueue(Pending(completion: completion, deadline: loop.now + configuration.commandTimeout))
        stats.commands += 1
        if state == .ready { scheduleFlush() }
    }

    /// Sends a command given as raw arguments (the first is the command name).
    public func send(_ args: [[UInt8]], completion: @escaping Completion) {
        send(RedisCommand(args), completion: completion)
    }

    private func reject(_ error: RedisError, _ completion: @escaping Completion) {
        stats.rejected += 1
        loop.deferUntilEndOfIteration { completion(.failure(error)) }
    }

    private func enqueue(_ p: Pending) {
        pending.append(p)
        if !commandTimer.isArmed { loop.schedule(commandTimer, at: p.deadline) }
    }

    private func scheduleFlush() {
        if flushScheduled { return }
        flushScheduled = true
        // Everything sent during this iteration goes out in one write.
        loop.deferUntilEndOfIteration { [self] in
            flushScheduled = false
            if state == .ready || state == .handshaking { flush() }
        }
    }

    private func flush() {
        while outSent < out.count {
            let result: IOResult<Int>
            do {
                result = try out.withUnsafeBytes { (b) throws(SyscallError) -> IOResult<Int> in
                    try Sys.send(fd, b.baseAddress! + outSent, b.count - outSent)
                }
            } catch {
                return fail("write: \(error)")
            }
            switch result {
            case .processed(let n): outSent += n
            case .wouldBlock: return  // the edge-triggered EPOLLOUT brings us back
            }
        }
        outSent = 0
        if out.capacity > 1 << 20 {
            out = []  // a huge SET passed through; do not keep its buffer
            out.reserveCapacity(4096)
        } else {
            out.removeAll(keepingCapacity: true)
        }
    }

    // MARK: connecting

    private func connect() {
        guard state == .idle || state == .waiting else { return }
        state = .connecting
        let result: IOResult<Void>
        do {
            (fd, result) = try TCP.connect(configuration.address)
        } catch {
            return fail("connect: \(error)")
        }
        TCP.setNoDelay(fd)
        do {
            registration = try loop.register(fd, events: EventLoop.Events.connection, handler: self)
        } catch {
            Sys.close(fd)
            fd = -1
            return fail("register: \(error)")
        }
        switch result {
        case .processed: connected()
        case .wouldBlock: loop.schedule(connectTimer, after: configuration.connectTimeout)
        }
    }

    private func connected() {
        loop.cancel(connectTimer)
        stats.connects += 1
        // The handshake goes in front of anything queued while connecting.
        var hello: [UInt8] = []
        var handshake: [Pending] = []
        let deadline = loop.now + configuration.commandTimeout
        let url = configuration.url
        if let password = url.password {
            var auth = RedisCommand("AUTH")
            if let user = url.username { auth.append(user) }
            auth.append(password)
            auth.encode(into: &hello)
            handshake.append(Pending(completion: nil, deadline: deadline))
        }
        if url.database != 0 {
            var select = RedisCommand("SELECT")
            select.append(url.database)
            select.encode(into: &hello)
            handshake.append(Pending(completion: nil, deadline: deadline))
        }
        handshakeLeft = handshake.count
        if handshakeLeft == 0 {
            becomeReady()
            return
        }
        out.insert(contentsOf: hello, at: 0)
        var queued = Ring<Pending>(capacity: 64)
        swap(&queued, &pending)
        for h in handshake { pending.append(h) }
        while let p = queued.removeFirst() { pending.append(p) }
        loop.schedule(commandTimer, at: pending.pointer(at: 0).pointee.deadline)
        state = .handshaking
        flush()
    }

    private func becomeReady() {
        state = .ready
        consecutiveFailures = 0
        lastError = nil
        flush()
    }

    /// Backoff before reconnect attempt `failures` (1-based): base·2^(failures−1), capped,
    /// scaled by `jitter` ∈ [0.5, 1].
    public static func reconnectDelay(failures: Int, base: Duration, max: Duration, jitter: Double) -> Duration {
        let cap = Swift.max(max.nanoseconds, 0)
        var raw = Swift.max(base.nanoseconds, 0)
        var n = 1
        while n < failures && raw < cap {
            raw = raw > cap / 2 ? cap : raw * 2
            n += 1
        }
        raw = Swift.min(raw, cap)
        let j = Swift.min(Swift.max(jitter, 0.5), 1.0)
        return .nanoseconds(Int64(Double(raw) * j))
    }

    // MARK: failure

    /// Tears the connection down, fails what was in flight, and schedules a reconnect.
    private func fail(_ reason: String, first: RedisError = .connectionLost) {
        guard state != .closed && state != .waiting && state != .idle else { return }
        // A ready connection closed while idle (a server or proxy idle timeout) is not an
        // outage: reconnect at once and keep accepting commands meanwhile. If Redis is really
        // gone, that connect fails and the usual backoff and fail-fast take over.
        let idleClose = state == .ready && pending.isEmpty && first == .connectionLost
        lastError = reason
        stats.failures += 1
        loop.cancel(connectTimer)
        teardownSocket()
        state = .waiting
        if idleClose {
            stats.idleCloses += 1
            connect()
            return
        }
        consecutiveFailures += 1
        let delay = Self.reconnectDelay(failures: consecutiveFailures, base: configuration.reconnectBaseDelay,
                                        max: configuration.reconnectMaxDelay,
                                        jitter: Double.random(in: 0.5...1.0))
        loop.schedule(reconnectTimer, after: delay)
        failAll(first: first, rest: .connectionLost)
    }

    private func teardownSocket() {
        if let r = registration {
            loop.deregister(r)
            registration = nil
        }
        if fd >= 0 {
            Sys.close(fd)
            fd = -1
        }
        epoch &+= 1
        reader = RedisReplyReader()
        out.removeAll(keepingCapacity: true)
        outSent = 0
        handshakeLeft = 0
    }

    /// Fails every pending command: the oldest user command with `first`, the others with `rest`.
    /// State is settled before any completion runs (they may call send or close).
    private func failAll(first: RedisError, rest: RedisError) {
        var failed = Ring<Pending>(capacity: 64)
        swap(&failed, &pending)
        var error = first
        while let p = failed.removeFirst() {
            guard let c = p.completion else { continue }
            c(.failure(error))
            error = rest
        }
    }

    private func commandTimerFired() {
        guard pending.count > 0 else { return }
        let head = pending.pointer(at: 0).pointee.deadline
        if head <= loop.now {
            stats.timeouts += 1
            fail("command timed out", first: .timeout)
        } else {
            loop.schedule(commandTimer, at: head)
        }
    }

    // MARK: events

    public func handleEvent(_ events: UInt32) {
        switch state {
        case .connecting:
            do {
                try TCP.finishConnect(fd)
            } catch {
                return fail("\(error)")
            }
            if events & (EventLoop.Events.writable | EventLoop.Events.readable) != 0 { connected() }
        case .handshaking, .ready:
            if events & EventLoop.Events.writable != 0 && outSent < out.count { flush() }
            if state == .handshaking || state == .ready { readAvailable() }
        case .idle, .waiting, .closed:
            return
        }
    }

    private func readAvailable() {
        let myEpoch = epoch
        while true {
            let result: IOResult<Int>
            do {
                result = try Sys.recv(fd, readBuffer, readCapacity)
            } catch {
                return fail("read: \(error)")
            }
            switch result {
            case .wouldBlock:
                return
            case .processed(0):
                return fail("connection closed by server")
            case .processed(let n):
                guard reader.feed(UnsafeRawBufferPointer(start: readBuffer, count: n)) else {
                    return fail("protocol error", first: .protocolError)
                }
                deliverReplies()
                if epoch != myEpoch { return }  // a completion closed or reset the connection
                if n < readCapacity { return }
            }
        }
    }

    private func deliverReplies() {
        let myEpoch = epoch
        while true {
            switch reader.next() {
            case .needMoreData:
                return
            case .protocolError:
                return fail("protocol error", first: .protocolError)
            case .reply(let value):
                guard let p = pending.removeFirst() else {
                    return fail("reply without a command", first: .protocolError)
                }
                if let completion = p.completion {
                    completion(.success(value))
                    if epoch != myEpoch { return }
                } else {
                    if let message = value.errorMessage {
                        // Keep the server's words (e.g. WRONGPASS); they hold no secret.
                        return fail("handshake: \(message)")
                    }
                    handshakeLeft -= 1
                    if handshakeLeft == 0 { becomeReady() }
                }
            }
        }
    }
}
