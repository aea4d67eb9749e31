import Glibc
package import CSluiceLinux

/// An IPv4 or IPv6 socket address.
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(host: UInt32, port: UInt16)  // host in network byte order
    case v6(host: [UInt8], port: UInt16, scope: UInt32)

    public var port: UInt16 {
        switch self {
        case .v4(_, let p), .v6(_, let p, _): return p
        }
    }

    public var family: Int32 {
        switch self {
        case .v4: return AF_INET
        case .v6: return AF_INET6
        }
    }

    /// The host part as text: `127.0.0.1`, `::1`.
    public var host: String {
        switch self {
        case .v4(let h, _):
            var a = in_addr(s_addr: h)
            var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            _ = inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        case .v6(let h, _, _):
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: h) }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public var description: String {
        switch self {
        case .v4: return "\(host):\(port)"
        case .v6: return "[\(host)]:\(port)"
        }
    }

    /// Parses a numeric `host:port` or `[v6]:port` (no name resolution).
    public init?(_ text: String) {
        guard let (host, port) = Self.split(text) else { return nil }
        self.init(numericHost: host, port: port)
    }

    /// A numeric IPv4/IPv6 host with a port.
    public init?(numericHost host: String, port: UInt16) {
        var a4 = in_addr()
        if inet_pton(AF_INET, host, &a4) == 1 {
            self = .v4(host: a4.s_addr, port: port)
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, host, &a6) == 1 {
            self = .v6(host: withUnsafeBytes(of: &a6) { Array($0) }, port: port, scope: 0)
            return
        }
        return nil
    }

    /// Splits `host:port` / `[v6]:port` into its parts; nil when malformed.
    public static func split(_ text: String) -> (host: String, port: UInt16)? {
        let s = Substring(text)
        let host: Substring
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
            if host.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !host.isEmpty, !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let p = Int(portText), p >= 0, p <= 65535 else { return nil }
        return (String(host), UInt16(p))
    }

    /// Resolves `host` (a name or a literal) with getaddrinfo. Blocking: call it off the
    /// workers' request path (at startup, or on the control thread).
    public static func resolve(host: String, port: UInt16) throws(SyscallError) -> [SocketAddress] {
        if let literal = SocketAddress(numericHost: host, port: port) { return [literal] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = CSLUICE_SOCK_STREAM
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        if rc != 0 { throw SyscallError("getaddrinfo", errno: rc == EAI_SYSTEM ? errno : ENOENT) }
        defer { freeaddrinfo(result) }
        var out: [SocketAddress] = []
        var p = result
        while let ai = p {
            if let a = ai.pointee.ai_addr, let addr = SocketAddress(sockaddr: a) {
                if !out.contains(addr) { out.append(addr) }
            }
            p = ai.pointee.ai_next
        }
        return out
    }

    package init?(sockaddr p: UnsafePointer<sockaddr>) {
        switch Int32(p.pointee.sa_family) {
        case AF_INET:
            let sin = UnsafeRawPointer(p).load(as: sockaddr_in.self)
            self = .v4(host: sin.sin_addr.s_addr, port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = UnsafeRawPointer(p).load(as: sockaddr_in6.self)
            var a = sin6.sin6_addr
            self = .v6(host: withUnsafeBytes(of: &a) { Array($0) }, port: UInt16(bigEndian: sin6.sin6_port),
                       scope: sin6.sin6_scope_id)
        default:
            return nil
        }
    }

    /// Calls `body` with this address as a `sockaddr`.
    package func withSockAddr<R, E: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R) throws(E) -> R {
        switch self {
        case .v4(let h, let p):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = p.bigEndian
            sin.sin_addr = in_addr(s_addr: h)
            return try withUnsafePointer(to: &sin) { (q) throws(E) -> R in
                try q.withMemoryRebound(to: sockaddr.self, capacity: 1) { (s) throws(E) -> R in
                    try body(s, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .v6(let h, let p, let scope):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = p.bigEndian
            sin6.sin6_scope_id = scope
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: h) }
            return try withUnsafePointer(to: &sin6) { (q) throws(E) -> R in
                try q.withMemoryRebound(to: sockaddr.self, capacity: 1) { (s) throws(E) -> R in
                    try body(s, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }
}
