/// A Redis reply (RESP2).
///
/// Error replies are values, not failures: a command that reached Redis and was answered with
/// `-ERR …` completes with `.success(.error(…))`; ``RedisError`` is for the transport (timeouts,
/// disconnects, overload). Convenience commands on ``RedisClient`` turn error replies into
/// ``RedisError/server(_:)``.
public enum RedisValue: Equatable, Sendable {
    /// `+OK` and other simple strings.
    case status(String)
    /// `-ERR …`, `-NOSCRIPT …`, `-WRONGPASS …`.
    case error(String)
    case integer(Int)
    /// A bulk string; nil is the nil reply (`$-1`, and `*-1`, which hiredis does not tell apart).
    case bulk([UInt8]?)
    case array([RedisValue])

    /// The bytes of a bulk or status reply.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let b): return b
        case .status(let s): return Array(s.utf8)
        default: return nil
        }
    }

    /// An integer reply, or a bulk/status reply holding a decimal integer.
    public var int: Int? {
        switch self {
        case .integer(let i): return i
        case .bulk(let b?): return Int(String(decoding: b, as: UTF8.self))
        case .status(let s): return Int(s)
        default: return nil
        }
    }

    public var isNil: Bool {
        if case .bulk(nil) = self { return true }
        return false
    }

    public var errorMessage: String? {
        if case .error(let m) = self { return m }
        return nil
    }
}
