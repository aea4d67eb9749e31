/// A Redis command being built: RESP bulk-string arguments appended in order, without going
/// through `String` for binary data. Encoding is RESP2's array of bulk strings
/// (`*<n>\r\n` then `$<len>\r\n<bytes>\r\n` per argument), which Redis accepts for every command.
///
/// ```swift
/// var cmd = RedisCommand("SET")
/// cmd.append(key); cmd.append(value); cmd.append("PX"); cmd.append(60_000)
/// ```
public struct RedisCommand: Sendable, Equatable {
    /// The arguments, already framed as bulk strings.
    @usableFromInline var arguments: [UInt8]
    @usableFromInline var _argumentCount: Int
    /// Arguments so far, the command name included.
    @inlinable public var argumentCount: Int { _argumentCount }

    /// A command named `name` (its first argument); `capacity` is a hint for the encoded size.
    @inlinable
    public init(_ name: StaticString, capacity: Int = 64) {
        arguments = []
        arguments.reserveCapacity(capacity)
        _argumentCount = 0
        append(name)
    }

    /// A command from raw arguments (the first is the name).
    public init(_ args: [[UInt8]]) {
        arguments = []
        _argumentCount = 0
        for a in args { append(a) }
    }

    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        appendHeader(bytes.count)
        arguments.append(contentsOf: bytes)
        arguments.append(13)
        arguments.append(10)
    }

    @inlinable
    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    @inlinable
    public mutating func append(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { append($0) }
    }

    @inlinable
    public mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// UTF-8 text (tenant names, script bodies; not for request data).
    public mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// A decimal integer argument.
    @inlinable
    public mutating func append(_ value: Int) {
        withUnsafeTemporaryAllocation(byteCount: 20, alignment: 1) { buf in
            let n = RESP.writeDecimal(value, to: buf.baseAddress!)
            append(UnsafeRawBufferPointer(start: buf.baseAddress!, count: n))
        }
    }

    @usableFromInline
    mutating func appendHeader(_ length: Int) {
        _argumentCount += 1
        arguments.append(UInt8(ascii: "$"))
        RESP.appendDecimal(length, to: &arguments)
        arguments.append(13)
        arguments.append(10)
    }

    /// Appends the complete RESP encoding to `out`.
    @inlinable
    public func encode(into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        RESP.appendDecimal(argumentCount, to: &out)
        out.append(13)
        out.append(10)
        out.append(contentsOf: arguments)
    }

    /// The complete RESP encoding.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(arguments.count + 16)
        encode(into: &out)
        return out
    }

    /// Number of bytes ``encode(into:)`` appends.
    public var encodedCount: Int { arguments.count + 3 + RESP.decimalLength(argumentCount) }
}

/// RESP number formatting.
@usableFromInline
enum RESP {
    /// Writes `value` in decimal to `p` (at least 20 bytes); returns the length.
    @inlinable
    static func writeDecimal(_ value: Int, to p: UnsafeMutableRawPointer) -> Int {
        if value == 0 {
            p.storeBytes(of: UInt8(ascii: "0"), as: UInt8.self)
            return 1
        }
        var v = value.magnitude
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch
        return withUnsafeMutableBytes(of: &tmp) { t in
            var i = 24
            while v > 0 {
                i -= 1
                t[i] = UInt8(truncatingIfNeeded: v % 10) + 48
                v /= 10
            }
            if value < 0 {
                i -= 1
                t[i] = UInt8(ascii: "-")
            }
            let n = 24 - i
            p.copyMemory(from: t.baseAddress! + i, byteCount: n)
            return n
        }
    }

    @inlinable
    static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value >= 0 && value < 10 {
            out.append(UInt8(truncatingIfNeeded: value) + 48)
            return
        }
        withUnsafeTemporaryAllocation(byteCount: 24, alignment: 1) { buf in
            let n = writeDecimal(value, to: buf.baseAddress!)
            out.append(contentsOf: UnsafeRawBufferPointer(start: buf.baseAddress!, count: n))
        }
    }

    static func decimalLength(_ value: Int) -> Int {
        var n = value < 0 ? 2 : 1
        var v = value.magnitude
        while v >= 10 {
            v /= 10
            n += 1
        }
        return n
    }
}
