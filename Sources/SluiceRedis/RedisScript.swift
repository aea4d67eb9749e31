import SluiceBase
/// A Lua script known by its SHA-1, called with EVALSHA (one round trip, the body is not resent).
/// ``RedisClient/evaluate(_:script:completion:)`` falls back to EVAL when Redis answers NOSCRIPT
/// (after a restart or SCRIPT FLUSH), which also caches the script again.
public struct RedisScript: Sendable, Equatable {
    public let source: String
    /// Lower-case hex SHA-1 of ``source``, Redis's name for the script.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        sha1 = Hex.string(SHA1.hash(Array(source.utf8)))
    }

    /// `EVALSHA <sha1> <keyCount>`: append the keys, then the arguments, then pass it to
    /// ``RedisClient/evaluate(_:script:completion:)``.
    public func call(keyCount: Int) -> RedisCommand {
        var cmd = RedisCommand("EVALSHA", capacity: 128)
        cmd.append(sha1)
        cmd.append(keyCount)
        return cmd
    }

    /// The same call as EVAL with the script body (the NOSCRIPT fallback). Nil if `call` was not
    /// made by ``call(keyCount:)`` of this script.
    func evalFallback(for call: RedisCommand) -> RedisCommand? {
        var prefix = RedisCommand("EVALSHA")
        prefix.append(sha1)
        let n = prefix.arguments.count
        guard call.arguments.count >= n, call.arguments[0..<n].elementsEqual(prefix.arguments) else { return nil }
        var eval = RedisCommand("EVAL", capacity: source.utf8.count + call.arguments.count + 32)
        eval.append(source)
        eval.arguments.append(contentsOf: call.arguments[n...])
        eval._argumentCount += call.argumentCount - 2
        return eval
    }
}
