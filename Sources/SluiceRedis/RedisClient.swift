public import SluiceIO

/// A worker loop's Redis client: a few ``RedisConnection``s used round robin, and the commands
/// the gateway needs. Create one per worker loop; like its connections it is confined to that
/// loop's thread (create anywhere, then ``start()`` and use it on the loop).
///
/// Several connections instead of one: a timeout resets a connection (and fails what it
/// carried), so spreading commands limits the blast radius; pipelining makes a few enough.
///
/// Every completion runs on the loop, never inside the call that was given it.
public final class RedisClient: @unchecked Sendable {
    public let loop: EventLoop
    public let connections: [RedisConnection]
    private var next = 0

    public init(loop: EventLoop, configuration: RedisConfiguration) {
        self.loop = loop
        connections = (0..<max(1, configuration.connectionsPerLoop)).map { _ in
            RedisConnection(loop: loop, configuration: configuration)
        }
    }

    /// Starts connecting (on the loop's thread).
    public func start() { for c in connections { c.start() } }

    /// Closes every connection; pending commands fail with `.closed`.
    public func close() { for c in connections { c.close() } }

    /// Healthy: at least one connection is ready.
    public var isConnected: Bool { connections.contains { $0.isReady } }

    /// Sends on the next ready connection (round robin); while none is ready, on one still making
    /// its first connection; otherwise fails fast with `.unavailable`.
    public func send(_ command: RedisCommand, completion: @escaping RedisConnection.Completion) {
        guard let c = pick() else {
            loop.deferUntilEndOfIteration { completion(.failure(.unavailable)) }
            return
        }
        c.send(command, completion: completion)
    }

    private func pick() -> RedisConnection? {
        let n = connections.count
        for i in 0..<n {
            let c = connections[(next + i) % n]
            if c.isReady {
                next = (next + i + 1) % n
                return c
            }
        }
        return connections.first { $0.acceptsCommands }
    }

    // MARK: commands

    /// GET: the value, or nil when the key does not exist.
    public func get(_ key: [UInt8], completion: @escaping (Result<[UInt8]?, RedisError>) -> Void) {
        var cmd = RedisCommand("GET")
        cmd.append(key)
        send(cmd) { result in
            completion(result.flatMap { v in
                switch v {
                case .bulk(let b): return .success(b)
                case .error(let m): return .failure(.server(m))
                default: return .failure(.unexpectedReply)
                }
            })
        }
    }

    /// SET, with `PX` when `expireAfter` is given (rounded up to whole milliseconds, at least 1).
    public func set(_ key: [UInt8], _ value: [UInt8], expireAfter: Duration? = nil,
                    completion: @escaping (Result<Void, RedisError>) -> Void)
    {
        var cmd = RedisCommand("SET", capacity: key.count + value.count + 48)
        cmd.append(key)
        cmd.append(value)
        if let ttl = expireAfter {
            cmd.append("PX")
            cmd.append(max(1, Int((ttl.nanoseconds + 999_999) / 1_000_000)))
        }
        send(cmd) { result in
            completion(result.flatMap { v in
                switch v {
                case .status: return .success(())
                case .error(let m): return .failure(.server(m))
                default: return .failure(.unexpectedReply)
                }
            })
        }
    }

    /// DEL: how many of `keys` existed.
    public func del(_ keys: [[UInt8]], completion: @escaping (Result<Int, RedisError>) -> Void) {
        var cmd = RedisCommand("DEL")
        for k in keys { cmd.append(k) }
        send(cmd) { result in completion(Self.integer(result)) }
    }

    /// SCRIPT LOAD: Redis's SHA-1 for the script (equal to ``RedisScript/sha1``).
    public func scriptLoad(_ script: RedisScript, completion: @escaping (Result<String, RedisError>) -> Void) {
        var cmd = RedisCommand("SCRIPT")
        cmd.append("LOAD")
        cmd.append(script.source)
        send(cmd) { result in
            completion(result.flatMap { v in
                switch v {
                case .bulk(let b?): return .success(String(decoding: b, as: UTF8.self))
                case .error(let m): return .failure(.server(m))
                default: return .failure(.unexpectedReply)
                }
            })
        }
    }

    /// Runs `call` (made by ``RedisScript/call(keyCount:)``, keys and arguments appended). When
    /// Redis does not know the script (NOSCRIPT) it is sent once more as EVAL, which loads it.
    /// Error replies of the script itself arrive as ``RedisValue/error(_:)``.
    public func evaluate(_ call: RedisCommand, script: RedisScript,
                         completion: @escaping RedisConnection.Completion)
    {
        send(call) { [weak self] result in
            if case .success(.error(let m)) = result, m.hasPrefix("NOSCRIPT"),
               let self, let eval = script.evalFallback(for: call)
            {
                self.send(eval, completion: completion)
                return
            }
            completion(result)
        }
    }

    private static func integer(_ result: Result<RedisValue, RedisError>) -> Result<Int, RedisError> {
        result.flatMap { v in
            switch v {
            case .integer(let i): return .success(i)
            case .error(let m): return .failure(.server(m))
            default: return .failure(.unexpectedReply)
            }
        }
    }
}
