/// A half-open range of byte offsets `start..<end` into a buffer the caller owns.
///
/// Scanners return these instead of `String`s or slices: the bytes stay where they were read, and
/// the caller decides whether (and when) to copy or decode them. A range is only meaningful
/// together with the buffer it was produced from.
public struct ByteRange: Sendable, Hashable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    @inlinable
    public init(start: Int, end: Int) {
        self.start = start
        self.end = end
    }

    @inlinable public var count: Int { end - start }
    @inlinable public var isEmpty: Bool { end == start }

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
