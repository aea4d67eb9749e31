import Glibc

/// A listening socket on one event loop. Registered level-triggered so it can stop after a
/// batch of accepts and let the loop serve what it accepted (fairness under a connect storm).
public final class Listener: EventHandler {
    public let fd: Int32
    /// The bound address (with the real port when bound to port 0).
    public let address: SocketAddress
    private unowned let loop: EventLoop
    private var registration: Registration?
    private let onAccept: (Int32) -> Void
    public private(set) var isPaused = false
    /// Accepts per readiness event before yielding to other work.
    private let acceptBatch = 64

    /// Binds and starts accepting; `onAccept` receives each new non-blocking descriptor.
    public init(address: SocketAddress, loop: EventLoop, reusePort: Bool = true, backlog: Int32 = 4096,
                onAccept: @escaping (Int32) -> Void) throws(SyscallError) {
        do {
            fd = try TCP.listen(address, reusePort: reusePort, backlog: backlog)
        } catch {
            // "bind: Address already in use" does not say which of several listeners clashed
            // (two instances on one host share the default admin port).
            throw error.about("listener \(address)")
        }
        self.address = TCP.localAddress(fd) ?? address
        self.loop = loop
        self.onAccept = onAccept
        do {
            registration = try loop.register(fd, events: EventLoop.Events.readable, handler: self)
        } catch {
            Sys.close(fd)
            throw error
        }
    }

    public func handleEvent(_ events: UInt32) {
        var n = 0
        while n < acceptBatch && registration != nil && !isPaused {
            let result: IOResult<Int32>
            do {
                result = try Sys.accept(fd)
            } catch {
                // EMFILE/ENFILE/ENOBUFS: out of descriptors or memory. Pause briefly rather
                // than spin on a readable listener we cannot drain.
                pauseBriefly()
                return
            }
            guard case .processed(let client) = result else { return }
            n += 1
            onAccept(client)
        }
    }

    private func pauseBriefly() {
        pause()
        let t = Timer { [weak self] in self?.resume() }
        loop.schedule(t, after: .milliseconds(100))
    }

    /// Stops accepting (the kernel keeps queueing in the backlog).
    public func pause() {
        guard !isPaused, let reg = registration else { return }
        isPaused = true
        try? loop.modify(reg, events: 0)
    }

    public func resume() {
        guard isPaused, let reg = registration else { return }
        isPaused = false
        try? loop.modify(reg, events: EventLoop.Events.readable)
    }

    /// Stops listening and closes the socket. Connections already accepted are unaffected.
    public func close() {
        guard let reg = registration else { return }
        loop.deregister(reg)
        registration = nil
        Sys.close(fd)
    }

    public var isOpen: Bool { registration != nil }
}
