internal import CHiredis

/// RESP reply parsing, delegated to hiredis's reader (bytes in, replies out; none of hiredis's
/// socket code). Replies are converted to ``RedisValue`` and the C objects freed at once, so no
/// C type escapes this file.
///
/// Not thread-safe; owned by one connection.
struct RedisReplyReader: ~Copyable {
    enum Next {
        case reply(RedisValue)
        case needMoreData
        case protocolError
    }

    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let r = redisReaderCreate() else { fatalError("redisReaderCreate: out of memory") }
        reader = r
    }

    deinit { redisReaderFree(reader) }

    /// Hands `bytes` to the parser (it copies them into its own buffer).
    func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
        return redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) == REDIS_OK
    }

    /// The next complete reply, if the fed bytes hold one.
    func next() -> Next {
        var raw: UnsafeMutableRawPointer?
        if redisReaderGetReply(reader, &raw) != REDIS_OK { return .protocolError }
        guard let raw else { return .needMoreData }
        defer { freeReplyObject(raw) }
        return .reply(Self.convert(raw.assumingMemoryBound(to: redisReply.self)))
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulk(Array(UnsafeRawBufferPointer(start: reply.str, count: reply.len)))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(reply.elements)
            for i in 0..<reply.elements {
                if let e = reply.element[i] { items.append(convert(e)) } else { items.append(.bulk(nil)) }
            }
            return .array(items)
        default:  // REDIS_REPLY_NIL
            return .bulk(nil)
        }
    }
}
