/// A half-open range of byte offsets `start..<end` into a buffer the caller owns.
///
/// Parsers and scanners return these instead of `String`s or slices: the bytes stay where they
/// were read, and the caller decides whether (and when) to copy or decode them. A range is only
/// meaningful together with the buffer it was produced from.
///
/// One type for every layer (the HTTP head parser, the JSON, SSE and Prometheus scanners).
/// Offsets are stored in 32 bits: a parsed head keeps a table of these per field (10,000 open
/// streams pay for every byte), and nothing Sluice scans is 2 GiB or more (bodies are held to
/// `limits.max_body_bytes` ≤ 1 GiB, responses read whole far less). Read and written as `Int`.
public struct ByteRange: Sendable, Hashable, CustomStringConvertible {
    @usableFromInline var _start: Int32
    @usableFromInline var _end: Int32

    @inlinable
    public init(start: Int, end: Int) {
        _start = Int32(truncatingIfNeeded: start)
        _end = Int32(truncatingIfNeeded: end)
    }

    @inlinable
    public init(_ start: Int, _ end: Int) { self.init(start: start, end: end) }

    @inlinable public var start: Int {
        get { Int(_start) }
        set { _start = Int32(truncatingIfNeeded: newValue) }
    }

    @inlinable public var end: Int {
        get { Int(_end) }
        set { _end = Int32(truncatingIfNeeded: newValue) }
    }

    @inlinable public var count: Int { Int(_end &- _start) }
    @inlinable public var isEmpty: Bool { _end == _start }
    public static let empty = ByteRange(start: 0, end: 0)

    /// The same range shifted by `delta` bytes (to map between a slice and its parent buffer).
    @inlinable
    public func shifted(by delta: Int) -> ByteRange { ByteRange(start: start + delta, end: end + delta) }

    /// A view of these bytes in `buffer` (no copy). Precondition: the range lies within `buffer`.
    @inlinable
    public func bytes(in buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        precondition(start >= 0 && start <= end && end <= buffer.count, "ByteRange out of bounds")
        return UnsafeRawBufferPointer(rebasing: buffer[start..<end])
    }

    public var description: String { "\(start)..<\(end)" }
}
