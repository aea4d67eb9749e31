/// Why a command did not get a reply. Each case says whether the command may have run.
public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No reply within the command timeout. The command may have run. The connection that carried
    /// it is closed and reopened, because a late reply would be matched to the wrong command.
    case timeout
    /// Not connected (connecting after a failure, or waiting to reconnect): failed at once, the
    /// command was not sent.
    case unavailable
    /// Too many commands pending on the connection (the bound keeps memory finite when Redis is
    /// slow); the command was not sent.
    case overloaded
    /// The connection was lost (or closed after another command timed out) with this command in
    /// flight. It may have run.
    case connectionLost
    /// Redis answered with an error reply (only from the convenience commands; ``RedisConnection``
    /// delivers error replies as ``RedisValue/error(_:)``).
    case server(String)
    /// The reply was not of the shape the command expects.
    case unexpectedReply
    /// The byte stream was not valid RESP; the connection was reset.
    case protocolError
    /// The client was shut down.
    case closed

    public var description: String {
        switch self {
        case .timeout: return "redis: command timed out"
        case .unavailable: return "redis: not connected"
        case .overloaded: return "redis: too many pending commands"
        case .connectionLost: return "redis: connection lost"
        case .server(let m): return "redis: \(m)"
        case .unexpectedReply: return "redis: unexpected reply"
        case .protocolError: return "redis: protocol error"
        case .closed: return "redis: client closed"
        }
    }

    /// True when the command certainly did not run, so retrying cannot apply it twice.
    public var commandWasNotSent: Bool {
        switch self {
        case .unavailable, .overloaded, .closed: return true
        default: return false
        }
    }
}
