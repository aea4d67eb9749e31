public import SluiceIO

/// How to reach Redis and how patient to be with it. One value is shared by every worker's
/// ``RedisClient``.
///
/// The address is resolved once, up front (``init(resolving:)`` calls getaddrinfo, which blocks:
/// call it at startup or on the control thread, never on a worker loop). Reconnects reuse it; a
/// Redis that moves to a new IP needs a config reload.
public struct RedisConfiguration: Sendable, CustomStringConvertible {
    public var url: RedisURL
    public var address: SocketAddress
    /// How long a command may wait for its reply. Expiry fails it with ``RedisError/timeout`` and
    /// resets the connection (a late reply would otherwise be matched to the next command).
    public var commandTimeout: Duration = .milliseconds(500)
    /// How long a TCP connect (not counting AUTH/SELECT, which have the command timeout) may take.
    public var connectTimeout: Duration = .seconds(1)
    /// Reconnect delays: base, doubling per consecutive failure, capped at max, each scaled by a
    /// random factor in [0.5, 1] so many workers do not reconnect in lockstep.
    public var reconnectBaseDelay: Duration = .milliseconds(50)
    public var reconnectMaxDelay: Duration = .seconds(5)
    /// Commands waiting for a reply on one connection, at most; more fail with
    /// ``RedisError/overloaded``.
    public var maxPendingCommands = 10_000
    /// Connections each ``RedisClient`` (one per worker loop) keeps open.
    public var connectionsPerLoop = 2

    public init(url: RedisURL, address: SocketAddress) {
        self.url = url
        self.address = address
    }

    /// Resolves `url.host` (blocking: not on a worker loop). Takes the first address returned.
    public init(resolving url: RedisURL) throws(SyscallError) {
        let addresses = try SocketAddress.resolve(host: url.host, port: url.port)
        guard let first = addresses.first else { throw SyscallError("getaddrinfo", errno: 2 /* ENOENT */) }
        self.init(url: url, address: first)
    }

    /// Redacted (the URL's password never appears).
    public var description: String { "\(url) (\(address))" }
}
