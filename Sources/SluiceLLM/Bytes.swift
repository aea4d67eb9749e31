#if canImport(Glibc)
import Glibc
#endif

/// Byte-run helpers for the scanners' hot paths: the generic `Sequence` algorithms
/// (`elementsEqual`, `firstIndex(of:)`) cost a hundred or more instructions on a 20-byte path.
public enum Bytes {
    /// Equality of two n-byte runs: words of eight (the last one overlapping the one before
    /// it) or four, then single bytes.
    @inline(__always)
    public static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
        if n >= 8 {
            var i = 0
            while true {
                if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                if i + 8 == n { return true }
                i = min(i + 8, n - 8)
            }
        }
        if n >= 4 {
            return a.loadUnaligned(as: UInt32.self) == b.loadUnaligned(as: UInt32.self)
                && a.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) == b.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
        }
        var i = 0
        while i < n {
            if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
            i += 1
        }
        return true
    }

    /// Whether `bytes` are exactly the literal's bytes.
    @inline(__always)
    public static func equal(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        bytes.count == literal.utf8CodeUnitCount && (bytes.count == 0 || equal(bytes.baseAddress!, literal.utf8Start, bytes.count))
    }

    /// The offset of the first `byte` in `bytes`, if any.
    @inline(__always)
    public static func firstIndex(of byte: UInt8, in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, bytes.count > 0, let p = memchr(base, Int32(byte), bytes.count) else { return nil }
        return UnsafeRawPointer(p) - base
    }

    /// `bytes` up to the first `byte` (all of them when there is none): a path without its query.
    @inline(__always)
    public static func prefix(_ bytes: UnsafeRawBufferPointer, before byte: UInt8) -> UnsafeRawBufferPointer {
        guard let i = firstIndex(of: byte, in: bytes) else { return bytes }
        return UnsafeRawBufferPointer(rebasing: bytes[..<i])
    }
}
