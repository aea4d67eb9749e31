import CNghttp2

/// A response's header fields for nghttp2, built in storage that one connection reuses for every
/// response (nghttp2 copies the fields when they are submitted): after the first few responses
/// submitting one allocates nothing. Names are lowercased on the way in (RFC 9113 §8.2.1).
public final class HeaderBlock {
    private var bytes = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 8)
    private var capacity = 2048
    private var used = 0
    /// (name offset, name length, value offset, value length) per field.
    private var spans: [(Int, Int, Int, Int)] = []
    private var nvs = UnsafeMutableBufferPointer<nghttp2_nv>.allocate(capacity: 32)

    public init() { spans.reserveCapacity(32) }

    deinit {
        bytes.deallocate()
        nvs.deallocate()
    }

    public func reset() {
        used = 0
        spans.removeAll(keepingCapacity: true)
    }

    private func reserve(_ n: Int) {
        guard used + n > capacity else { return }
        let bigger = max(capacity * 2, used + n)
        let p = UnsafeMutableRawPointer.allocate(byteCount: bigger, alignment: 8)
        p.copyMemory(from: bytes, byteCount: used)
        bytes.deallocate()
        bytes = p
        capacity = bigger
    }

    private func put(_ b: UnsafeRawBufferPointer, lowercase: Bool) -> (Int, Int) {
        reserve(b.count)
        let start = used
        if lowercase {
            for (i, c) in b.enumerated() { bytes.storeBytes(of: c >= 65 && c <= 90 ? c | 0x20 : c, toByteOffset: start + i, as: UInt8.self) }
        } else if let base = b.baseAddress {
            (bytes + start).copyMemory(from: base, byteCount: b.count)
        }
        used += b.count
        return (start, b.count)
    }

    public func add(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        let n = put(name, lowercase: true)
        let v = put(value, lowercase: false)
        spans.append((n.0, n.1, v.0, v.1))
    }

    public func add(_ name: StaticString, _ value: UnsafeRawBufferPointer) {
        add(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), value)
    }

    public func add(_ name: String, _ value: String) {
        var n = name, v = value
        n.withUTF8 { nb in v.withUTF8 { vb in add(UnsafeRawBufferPointer(nb), UnsafeRawBufferPointer(vb)) } }
    }

    public func add(_ name: StaticString, _ value: StaticString) {
        add(name, UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
    }

    /// A decimal value (status, content-length) without a String.
    public func add(_ name: StaticString, decimal value: Int) {
        withUnsafeTemporaryAllocation(byteCount: 20, alignment: 1) { buf in
            var v = value.magnitude, i = 20
            repeat {
                i -= 1
                buf[i] = UInt8(truncatingIfNeeded: v % 10) + 48
                v /= 10
            } while v > 0
            if value < 0 { i -= 1; buf[i] = UInt8(ascii: "-") }
            add(name, UnsafeRawBufferPointer(rebasing: buf[i..<20]))
        }
    }

    /// A 64-bit value as 16 lowercase hex digits (request ids).
    public func add(_ name: StaticString, hex16 value: UInt64) {
        withUnsafeTemporaryAllocation(byteCount: 16, alignment: 1) { buf in
            HeaderBlock.writeHex16(value, into: buf.baseAddress!)
            add(name, UnsafeRawBufferPointer(buf))
        }
    }

    public static func writeHex16(_ value: UInt64, into p: UnsafeMutableRawPointer) {
        let digits: StaticString = "0123456789abcdef"
        for k in 0..<16 {
            let nibble = Int((value >> UInt64(60 - 4 * k)) & 15)
            p.storeBytes(of: digits.utf8Start[nibble], toByteOffset: k, as: UInt8.self)
        }
    }

    public var count: Int { spans.count }

    /// The fields as nghttp2 name/value pairs (valid until the next change to this block).
    func withNVs<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        if nvs.count < spans.count {
            nvs.deallocate()
            nvs = .allocate(capacity: spans.count * 2)
        }
        let base = bytes.assumingMemoryBound(to: UInt8.self)
        for (i, s) in spans.enumerated() {
            nvs[i] = nghttp2_nv(name: base + s.0, value: base + s.2, namelen: s.1, valuelen: s.3,
                                flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
        }
        return body(UnsafePointer(nvs.baseAddress!), spans.count)
    }
}
