import Glibc
import CSluiceLinux

/// TCP socket set-up calls.
public enum TCP {
    /// A non-blocking listening socket bound to `address`. With `reusePort`, each worker binds
    /// its own socket to the same address and the kernel spreads connections across them.
    public static func listen(_ address: SocketAddress, reusePort: Bool, backlog: Int32 = 4096) throws(SyscallError) -> Int32 {
        let fd = try Sys.socket(address.family, CSLUICE_SOCK_STREAM, 0)
        do {
            try Sys.setOption(fd, SOL_SOCKET, SO_REUSEADDR, Int32(1))
            if reusePort { try Sys.setOption(fd, SOL_SOCKET, SO_REUSEPORT, Int32(1)) }
            if case .v6 = address { try Sys.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1)) }
            _ = try address.withSockAddr { (sa, len) throws(SyscallError) -> Int32 in
                try Sys.mustSucceed("bind") { Glibc.bind(fd, sa, len) }
            }
            _ = try Sys.mustSucceed("listen") { Glibc.listen(fd, backlog) }
        } catch {
            Sys.close(fd)
            throw error
        }
        return fd
    }

    /// Starts a non-blocking connect. `.processed` means connected already (loopback can do
    /// that); `.wouldBlock` means in progress: wait for writability, then ``finishConnect(_:)``.
    public static func connect(_ address: SocketAddress) throws(SyscallError) -> (fd: Int32, IOResult<Void>) {
        let fd = try Sys.socket(address.family, CSLUICE_SOCK_STREAM, 0)
        let rc = address.withSockAddr { sa, len in Glibc.connect(fd, sa, len) }
        if rc == 0 { return (fd, .processed(())) }
        let e = errno
        if e == EINPROGRESS || e == EINTR { return (fd, .wouldBlock) }
        Sys.close(fd)
        throw SyscallError("connect", errno: e)
    }

    /// The outcome of a non-blocking connect once the socket is writable.
    public static func finishConnect(_ fd: Int32) throws(SyscallError) {
        let e = try Sys.getOption(fd, SOL_SOCKET, SO_ERROR)
        if e != 0 { throw SyscallError("connect", errno: e) }
    }

    public static func setNoDelay(_ fd: Int32) {
        _ = try? Sys.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, Int32(1))
    }

    /// Makes `close` send RST instead of FIN (abort an upstream request at once).
    public static func setLingerZero(_ fd: Int32) {
        _ = try? Sys.setOption(fd, SOL_SOCKET, SO_LINGER, linger(l_onoff: 1, l_linger: 0))
    }

    public static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                getsockname(fd, sa, &len) == 0 ? SocketAddress(sockaddr: sa) : nil
            }
        }
    }

    public static func peerAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                getpeername(fd, sa, &len) == 0 ? SocketAddress(sockaddr: sa) : nil
            }
        }
    }
}
