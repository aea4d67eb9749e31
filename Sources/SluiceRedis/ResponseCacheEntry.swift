/// A cached response as stored in Redis: status, content type, whether it was a stream, when it
/// was stored, and the body bytes (for a stream, the SSE event sequence exactly as relayed, so a
/// replay is byte-faithful).
///
/// Encoding (all integers big-endian):
/// ```
/// 0  "SLC"  magic                      3 bytes
/// 3  version (1)                       1
/// 4  flags (bit 0: stream)             1
/// 5  status                            2
/// 7  content-type length n             2
/// 9  content-type                      n
/// 9+n stored-at, Unix seconds          8
/// 17+n body                            to the end
/// ```
/// The body runs to the end of the value, so the gateway can write the header when the response
/// head arrives and append body bytes as they are relayed, without knowing the length up front
/// (``appendHeader(status:contentType:isStream:storedAt:to:)``). Redis stores values exactly, so
/// the missing length costs no safety.
///
/// Pure: no I/O.
public struct ResponseCacheEntry: Equatable, Sendable {
    public var status: Int
    public var contentType: [UInt8]
    public var isStream: Bool
    /// Unix seconds when stored (for an `age` header); 0 if unknown.
    public var storedAt: Int64
    public var body: [UInt8]

    public static let magic: [UInt8] = Array("SLC".utf8)
    public static let version: UInt8 = 1

    public init(status: Int, contentType: [UInt8], isStream: Bool, storedAt: Int64 = 0, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.isStream = isStream
        self.storedAt = storedAt
        self.body = body
    }

    /// Bytes before the body for a content type of `contentTypeCount` bytes.
    public static func headerCount(contentTypeCount: Int) -> Int { 17 + contentTypeCount }

    /// Appends the header; append the body after it. `status` must be 100...999 and the content
    /// type shorter than 64 KiB (both hold for anything we would cache).
    public static func appendHeader(status: Int, contentType: UnsafeRawBufferPointer, isStream: Bool,
                                    storedAt: Int64, to out: inout [UInt8])
    {
        precondition((100...999).contains(status) && contentType.count <= Int(UInt16.max))
        out.append(contentsOf: magic)
        out.append(version)
        out.append(isStream ? 1 : 0)
        out.append(UInt8(truncatingIfNeeded: status >> 8))
        out.append(UInt8(truncatingIfNeeded: status))
        out.append(UInt8(truncatingIfNeeded: contentType.count >> 8))
        out.append(UInt8(truncatingIfNeeded: contentType.count))
        out.append(contentsOf: contentType)
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: UInt64(bitPattern: storedAt) >> UInt64(shift)))
        }
    }

    public static func appendHeader(status: Int, contentType: [UInt8], isStream: Bool, storedAt: Int64,
                                    to out: inout [UInt8])
    {
        contentType.withUnsafeBytes {
            appendHeader(status: status, contentType: $0, isStream: isStream, storedAt: storedAt, to: &out)
        }
    }

    /// The encoded value.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerCount(contentTypeCount: contentType.count) + body.count)
        Self.appendHeader(status: status, contentType: contentType, isStream: isStream, storedAt: storedAt, to: &out)
        out.append(contentsOf: body)
        return out
    }

    /// Where the parts of an encoded entry are (offsets into the value), for serving a hit
    /// straight from the reply bytes.
    public struct Layout: Equatable, Sendable {
        public var status: Int
        public var contentType: Range<Int>
        public var isStream: Bool
        public var storedAt: Int64
        public var body: Range<Int>
    }

    /// Reads the header of an encoded entry; nil if it is not one we wrote (wrong magic or
    /// version, unknown flags, bad status, truncated header).
    public static func layout(of bytes: UnsafeRawBufferPointer) -> Layout? {
        guard bytes.count >= 17,
              bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2],
              bytes[3] == version, bytes[4] & ~1 == 0 else { return nil }
        let status = Int(bytes[5]) << 8 | Int(bytes[6])
        let ctCount = Int(bytes[7]) << 8 | Int(bytes[8])
        guard (100...999).contains(status), bytes.count >= 17 + ctCount else { return nil }
        var storedAt: UInt64 = 0
        for i in 0..<8 { storedAt = storedAt << 8 | UInt64(bytes[9 + ctCount + i]) }
        return Layout(status: status, contentType: 9..<(9 + ctCount), isStream: bytes[4] & 1 == 1,
                      storedAt: Int64(bitPattern: storedAt), body: (17 + ctCount)..<bytes.count)
    }

    /// Decodes an encoded entry (copying the parts); nil if it is not one.
    public init?(decoding bytes: [UInt8]) {
        guard let l = bytes.withUnsafeBytes({ Self.layout(of: $0) }) else { return nil }
        self.init(status: l.status, contentType: Array(bytes[l.contentType]), isStream: l.isStream,
                  storedAt: l.storedAt, body: Array(bytes[l.body]))
    }
}
