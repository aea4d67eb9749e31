import SluiceIO

/// A W3C trace id: 16 bytes, as two big-endian halves (`hi` is the first 8 bytes on the wire).
public struct TraceID: Hashable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64
    public init(hi: UInt64, lo: UInt64) {
        self.hi = hi
        self.lo = lo
    }
    public var isValid: Bool { hi != 0 || lo != 0 }
    /// 32 lowercase hex digits, as in `traceparent`.
    public var description: String { Hex.string(hi) + Hex.string(lo) }
}

/// Where a request's trace stands when it reaches the gateway, and the gateway's own span in it.
///
/// The server span continues the client's `traceparent` (same trace id, the client's span as
/// parent) or starts a trace. `sampled` is the head decision (``SpanRecorder/begin(traceparent:)``):
/// the upstream request's `traceparent` carries it in its flags so the model server's own spans
/// (vLLM exports OTLP too) follow the same decision and join the same trace.
public struct TraceContext: Hashable, Sendable {
    public var traceID: TraceID
    /// The gateway's server span.
    public var spanID: UInt64
    /// The client's span (0: the gateway started the trace).
    public var parentSpanID: UInt64
    /// Head sampling chose to record this trace.
    public var sampled: Bool
    /// The client's `traceparent` flags said sampled.
    public var parentSampled: Bool

    public init(traceID: TraceID, spanID: UInt64, parentSpanID: UInt64 = 0, sampled: Bool, parentSampled: Bool = false) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.sampled = sampled
        self.parentSampled = parentSampled
    }

    /// The parent came from the client (not started here).
    public var hasRemoteParent: Bool { parentSpanID != 0 }

    /// Parses a `traceparent` value (W3C Trace Context §3.2): `00-<32 hex>-<16 hex>-<2 hex>`,
    /// lowercase, version not `ff`, neither id zero. A later version is read by its first 55
    /// bytes when the next byte is `-` (§4.3). Nil when malformed: the trace restarts.
    public static func parse(traceparent v: UnsafeRawBufferPointer) -> (trace: TraceID, parent: UInt64, sampled: Bool)? {
        guard v.count >= 55, v[2] == 0x2D, v[35] == 0x2D, v[52] == 0x2D else { return nil }
        guard let version = Hex.byte(v[0], v[1]), version != 0xFF else { return nil }
        if version == 0 && v.count != 55 { return nil }
        if version != 0 && v.count > 55 && v[55] != 0x2D { return nil }
        guard let hi = Hex.u64(v, 3), let lo = Hex.u64(v, 19), let parent = Hex.u64(v, 36),
              let flags = Hex.byte(v[53], v[54]) else { return nil }
        guard hi != 0 || lo != 0, parent != 0 else { return nil }
        return (TraceID(hi: hi, lo: lo), parent, flags & 1 == 1)
    }

    public static func parse(traceparent s: String) -> (trace: TraceID, parent: UInt64, sampled: Bool)? {
        var s = s
        return s.withUTF8 { parse(traceparent: UnsafeRawBufferPointer($0)) }
    }

    /// The 55-byte `traceparent` to send upstream: this trace, `spanID` as the parent (the
    /// gateway's server span, or the attempt's client span), the sampling decision as flags.
    public func writeTraceparent(spanID: UInt64? = nil, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 55)
        out[0] = 0x30; out[1] = 0x30; out[2] = 0x2D
        Hex.write(traceID.hi, into: out, at: 3)
        Hex.write(traceID.lo, into: out, at: 19)
        out[35] = 0x2D
        Hex.write(spanID ?? self.spanID, into: out, at: 36)
        out[52] = 0x2D
        out[53] = 0x30
        out[54] = sampled ? 0x31 : 0x30
    }

    public func traceparent(spanID: UInt64? = nil) -> String {
        String(unsafeUninitializedCapacity: 55) { buf in
            writeTraceparent(spanID: spanID, into: UnsafeMutableRawBufferPointer(buf))
            return 55
        }
    }
}

/// Lowercase hex, as trace context writes it.
enum Hex {
    static func digit(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    static func byte(_ a: UInt8, _ b: UInt8) -> UInt8? {
        guard let h = digit(a), let l = digit(b) else { return nil }
        return h << 4 | l
    }

    static func u64(_ v: UnsafeRawBufferPointer, _ at: Int) -> UInt64? {
        var x: UInt64 = 0
        for i in at..<(at + 16) {
            guard let d = digit(v[i]) else { return nil }
            x = x << 4 | UInt64(d)
        }
        return x
    }

    static func write(_ x: UInt64, into out: UnsafeMutableRawBufferPointer, at: Int) {
        precondition(at >= 0 && at + 16 <= out.count)
        ASCII.writeHex64(x, to: out.baseAddress! + at)
    }

    static func string(_ x: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buf in
            write(x, into: UnsafeMutableRawBufferPointer(buf), at: 0)
            return 16
        }
    }
}
