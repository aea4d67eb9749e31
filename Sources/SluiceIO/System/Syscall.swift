public import Glibc
public import CSluiceLinux

/// A failed system call: which call, and the errno it returned.
///
/// Syscalls are wrapped once, here. EINTR is retried, EAGAIN becomes ``IOResult/wouldBlock``,
/// EBADF and EFAULT are programming errors and trap, everything else is thrown as this value.
public struct SyscallError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: StaticString
    public let errno: Int32
    /// What the call was for, when the caller knows better than the call's name
    /// (`admin listener 127.0.0.1:9090`); the description then names it instead of the call.
    public var context: String?

    @inlinable
    public init(_ call: StaticString, errno: Int32) {
        self.call = call
        self.errno = errno
        self.context = nil
    }

    /// The same failure, said of `context` (`listener 0.0.0.0:8080: address already in use`).
    public func about(_ context: String) -> SyscallError {
        var e = self
        e.context = context
        return e
    }

    public var description: String {
        let text = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        guard let context else { return "\(call): \(text)" }
        // strerror's capital belongs at the start of a sentence, not after "listener ...:".
        return "\(context): \(text.prefix(1).lowercased() + text.dropFirst())"
    }

    public static func == (a: SyscallError, b: SyscallError) -> Bool {
        a.errno == b.errno && a.call.utf8Start == b.call.utf8Start
    }

    /// The peer reset or went away: expected on the network, not a bug.
    @inlinable
    public var isConnectionReset: Bool {
        errno == ECONNRESET || errno == EPIPE || errno == ECONNABORTED || errno == ETIMEDOUT
    }
}

/// The result of a non-blocking operation: it did something, or it would have had to wait.
@frozen
public enum IOResult<Value> {
    case processed(Value)
    case wouldBlock
}

extension IOResult: Sendable where Value: Sendable {}
extension IOResult: Equatable where Value: Equatable {}

/// Thin wrappers around the system calls Sluice uses. Each retries EINTR, maps EAGAIN to
/// `.wouldBlock`, traps on EBADF/EFAULT (a closed or wild descriptor is our bug, and continuing
/// could touch another connection's fd), and throws the rest with the call's name.
public enum Sys {
    @usableFromInline
    static func check(_ call: StaticString, _ e: Int32) {
        if e == EBADF || e == EFAULT {
            fatalError("\(call) failed with \(e == EBADF ? "EBADF" : "EFAULT"): descriptor misuse")
        }
    }

    /// Runs a call returning -1 on error until it does not fail with EINTR.
    @inlinable
    static func retrying<T: BinaryInteger>(
        _ call: StaticString, _ body: () -> T
    ) throws(SyscallError) -> IOResult<T> {
        while true {
            let r = body()
            if r >= 0 { return .processed(r) }
            let e = Glibc.errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            check(call, e)
            throw SyscallError(call, errno: e)
        }
    }

    /// Like `retrying` for calls that must not block (EAGAIN is an error for them).
    @inlinable
    static func mustSucceed<T: BinaryInteger>(_ call: StaticString, _ body: () -> T) throws(SyscallError) -> T {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = Glibc.errno
            if e == EINTR { continue }
            check(call, e)
            throw SyscallError(call, errno: e)
        }
    }

    @inlinable
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try retrying("read") { Glibc.read(fd, buffer, count) }
    }

    @inlinable
    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try retrying("write") { Glibc.write(fd, buffer, count) }
    }

    @inlinable
    public static func writev(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) throws(SyscallError) -> IOResult<Int> {
        try retrying("writev") { Glibc.writev(fd, iov, count) }
    }

    /// `send` with MSG_NOSIGNAL: a write to a reset socket returns EPIPE instead of killing us.
    @inlinable
    public static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try retrying("send") { Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL)) }
    }

    /// Gathered send with MSG_NOSIGNAL (sendmsg), the socket form of writev.
    @inlinable
    public static func sendmsg(_ fd: Int32, _ iov: UnsafeMutablePointer<iovec>, _ count: Int32) throws(SyscallError) -> IOResult<Int> {
        var msg = msghdr()
        msg.msg_iov = iov
        msg.msg_iovlen = Int(count)
        return try retrying("sendmsg") { csluice_sendmsg(fd, &msg, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads from a socket (recv with no flags: cheaper in the kernel than read, which goes
    /// through the VFS, and without glibc's cancellation wrapper).
    @inlinable
    public static func recv(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(SyscallError) -> IOResult<Int> {
        try retrying("recv") { csluice_recv(fd, buffer, count) }
    }

    @inlinable
    public static func close(_ fd: Int32) {
        // Linux releases the descriptor even when close reports EINTR, so never retry it.
        let r = Glibc.close(fd)
        if r < 0 { check("close", Glibc.errno) }
    }

    @inlinable
    public static func shutdown(_ fd: Int32, _ how: Int32) {
        // ENOTCONN after the peer reset is expected and harmless.
        _ = Glibc.shutdown(fd, how)
    }

    public static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32) throws(SyscallError) -> Int32 {
        try mustSucceed("socket") {
            Glibc.socket(domain, type | CSLUICE_SOCK_NONBLOCK | CSLUICE_SOCK_CLOEXEC, proto)
        }
    }

    public static func accept(_ fd: Int32) throws(SyscallError) -> IOResult<Int32> {
        while true {
            let r = csluice_accept4(fd, nil, nil, CSLUICE_SOCK_NONBLOCK | CSLUICE_SOCK_CLOEXEC)
            if r >= 0 { return .processed(r) }
            let e = Glibc.errno
            switch e {
            case EINTR, ECONNABORTED, EPROTO:
                // The connection died in the backlog: look for the next one.
                continue
            case EAGAIN, EWOULDBLOCK:
                return .wouldBlock
            default:
                check("accept4", e)
                throw SyscallError("accept4", errno: e)
            }
        }
    }

    public static func setOption<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) throws(SyscallError) {
        var v = value
        _ = try mustSucceed("setsockopt") {
            Glibc.setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<T>.size))
        }
    }

    public static func getOption(_ fd: Int32, _ level: Int32, _ name: Int32) throws(SyscallError) -> Int32 {
        var v: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = try mustSucceed("getsockopt") { Glibc.getsockopt(fd, level, name, &v, &len) }
        return v
    }

    public static func eventfd() throws(SyscallError) -> Int32 {
        try mustSucceed("eventfd") { CSluiceLinux.eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    public static func epollCreate() throws(SyscallError) -> Int32 {
        try mustSucceed("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    @inlinable
    public static func epollControl(_ epfd: Int32, _ op: Int32, _ fd: Int32, _ events: UInt32, _ data: UInt64) throws(SyscallError) {
        _ = try mustSucceed("epoll_ctl") { csluice_epoll_ctl(epfd, op, fd, events, data) }
    }

    public static func pipe() throws(SyscallError) -> (read: Int32, write: Int32) {
        var fds: (Int32, Int32) = (-1, -1)
        _ = try withUnsafeMutablePointer(to: &fds) { (p) throws(SyscallError) -> Int32 in
            try p.withMemoryRebound(to: Int32.self, capacity: 2) { (q) throws(SyscallError) -> Int32 in
                try mustSucceed("pipe2") { csluice_pipe2(q, Int32(O_NONBLOCK | O_CLOEXEC)) }
            }
        }
        return fds
    }
}
