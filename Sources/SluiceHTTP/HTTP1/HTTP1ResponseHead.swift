public import SluiceIO

/// Where an HTTP/1.1 head is written: a pool buffer (the proxy) or an array (the small server).
public protocol HeadSink: ~Copyable {
    mutating func append(_ s: StaticString)
    mutating func append(_ bytes: UnsafeRawBufferPointer)
    mutating func appendDecimal(_ n: Int)
}

extension ByteBuffer: HeadSink {}

extension Array: HeadSink where Element == UInt8 {
    public mutating func append(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }

    public mutating func appendDecimal(_ n: Int) { append(contentsOf: String(n).utf8) }
}

/// The one writer of HTTP/1.1 response heads (the proxy's relayed, local and error answers, the
/// overload answer, the admin listener and the simulator): the status line with its reason from
/// ``HTTPStatus``, the fields, the framing, and `Connection: close` when the connection ends.
public enum HTTP1ResponseHead {
    /// How the body that follows is delimited.
    public enum Framing: Equatable, Sendable {
        /// `Content-Length: n` (also for HEAD and 304, where no body follows).
        case length(Int)
        /// `Transfer-Encoding: chunked`.
        case chunked
        /// Until the connection closes (HTTP/1.0 clients of a streamed body).
        case untilClose
        /// No body and no length field (1xx, 204, 304 without a length).
        case none
    }

    /// The status line.
    @inlinable
    public static func start<S: HeadSink & ~Copyable>(_ status: Int, reason: UnsafeRawBufferPointer? = nil, into h: inout S) {
        h.append("HTTP/1.1 ")
        h.appendDecimal(status)
        h.append(" ")
        if let reason, reason.count > 0 { h.append(reason) } else { h.append(HTTPStatus.reason(status)) }
        h.append("\r\n")
    }

    /// One field line.
    @inlinable
    public static func field<S: HeadSink & ~Copyable>(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, into h: inout S) {
        h.append(name)
        h.append(": ")
        h.append(value)
        h.append("\r\n")
    }

    public static func field<S: HeadSink & ~Copyable>(_ name: String, _ value: String, into h: inout S) {
        var n = name, v = value
        n.withUTF8 { nb in v.withUTF8 { vb in field(UnsafeRawBufferPointer(nb), UnsafeRawBufferPointer(vb), into: &h) } }
    }

    /// The framing field, `Connection: close` when `close`, and the empty line ending the head.
    @inlinable
    public static func end<S: HeadSink & ~Copyable>(_ framing: Framing, close: Bool, into h: inout S) {
        switch framing {
        case .length(let n):
            h.append("Content-Length: ")
            h.appendDecimal(n)
            h.append("\r\n")
        case .chunked:
            h.append("Transfer-Encoding: chunked\r\n")
        case .untilClose, .none:
            break
        }
        h.append(close ? "Connection: close\r\n\r\n" : "\r\n")
    }

    /// A whole head of `fields` (name, value) in one call.
    public static func write<S: HeadSink & ~Copyable>(_ status: Int, fields: [(String, String)], framing: Framing, close: Bool, into h: inout S) {
        start(status, into: &h)
        for (k, v) in fields { field(k, v, into: &h) }
        end(framing, close: close, into: &h)
    }
}
