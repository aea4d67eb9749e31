/// Protocol Buffers wire format, just what OTLP needs: varints, fixed 32/64-bit fields and
/// length-delimited fields (strings, bytes, nested messages). Written by hand so Sluice needs no
/// protobuf library; tested by decoding its output with the `opentelemetry-proto` package.
///
/// Its own growable byte buffer rather than `[UInt8]`: a span is ~100 small writes, and an
/// array append checks uniqueness and capacity per byte (half of recording a span went there).
/// A worker's recorder keeps one writer for good and reuses it every loop iteration.
struct ProtoWriter: ~Copyable {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        base = .allocate(byteCount: self.capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    enum Wire: UInt64 { case varint = 0, fixed64 = 1, length = 2, fixed32 = 5 }

    /// The bytes written so far, copied out.
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: base, count: count)) }

    var isEmpty: Bool { count == 0 }

    /// Forgets what was written, keeping the memory.
    mutating func removeAll() { count = 0 }

    @inline(__always)
    private mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let new = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        new.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = new
        capacity = newCapacity
    }

    mutating func append(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        reserve(b.count)
        (base + count).copyMemory(from: b.baseAddress!, byteCount: b.count)
        count += b.count
    }

    mutating func append(contentsOf a: [UInt8]) { a.withUnsafeBytes { append($0) } }

    @inline(__always)
    mutating func varint(_ v: UInt64) {
        reserve(10)
        var v = v
        var p = base + count
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, as: UInt8.self)
            p += 1
            v >>= 7
        }
        p.storeBytes(of: UInt8(v), as: UInt8.self)
        count = base.distance(to: p) + 1
    }

    @inline(__always)
    mutating func tag(_ field: Int, _ wire: Wire) { varint(UInt64(field) << 3 | wire.rawValue) }

    mutating func uint(_ field: Int, _ v: UInt64) {
        tag(field, .varint)
        varint(v)
    }

    /// int64 (not sint64): negative numbers take ten bytes, two's complement.
    mutating func int64(_ field: Int, _ v: Int) { uint(field, UInt64(bitPattern: Int64(v))) }

    mutating func bool(_ field: Int, _ v: Bool) { uint(field, v ? 1 : 0) }

    mutating func fixed64(_ field: Int, _ v: UInt64) {
        tag(field, .fixed64)
        reserve(8)
        (base + count).storeBytes(of: v.littleEndian, as: UInt64.self)
        count += 8
    }

    mutating func fixed32(_ field: Int, _ v: UInt32) {
        tag(field, .fixed32)
        reserve(4)
        (base + count).storeBytes(of: v.littleEndian, as: UInt32.self)
        count += 4
    }

    mutating func double(_ field: Int, _ v: Double) { fixed64(field, v.bitPattern) }

    mutating func string(_ field: Int, _ s: String) {
        var s = s
        s.withUTF8 { raw(field, UnsafeRawBufferPointer($0)) }
    }

    /// A string from a request (a model name, a span name made from one) cut to `limit` bytes at
    /// a character boundary: OpenTelemetry's attribute value length limit. The exporter's queue
    /// is bounded in spans, so without it a client's megabyte model name would make every
    /// queued span a megabyte.
    mutating func string(_ field: Int, _ s: String, limit: Int) {
        var s = s
        s.withUTF8 { u in
            var n = min(u.count, limit)
            while n < u.count && n > 0 && u[n] & 0xC0 == 0x80 { n -= 1 }  // not inside a character
            raw(field, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: u[0..<n])))
        }
    }

    mutating func string(_ field: Int, _ s: StaticString) {
        s.withUTF8Buffer { raw(field, UnsafeRawBufferPointer($0)) }
    }

    mutating func raw(_ field: Int, _ b: UnsafeRawBufferPointer) {
        tag(field, .length)
        varint(UInt64(b.count))
        append(b)
    }

    /// A big-endian 8-byte id (`span_id`: the bytes as `traceparent` spells them in hex).
    mutating func id(_ field: Int, _ v: UInt64) {
        tag(field, .length)
        reserve(9)
        (base + count).storeBytes(of: 8, as: UInt8.self)
        (base + count + 1).storeBytes(of: v.bigEndian, as: UInt64.self)
        count += 9
    }

    /// A 16-byte trace id, big-endian halves.
    mutating func id(_ field: Int, _ t: TraceID) {
        tag(field, .length)
        reserve(17)
        (base + count).storeBytes(of: 16, as: UInt8.self)
        (base + count + 1).storeBytes(of: t.hi.bigEndian, as: UInt64.self)
        (base + count + 9).storeBytes(of: t.lo.bigEndian, as: UInt64.self)
        count += 17
    }

    /// A nested message: its length is known only after `body`, so one byte is reserved for it
    /// (enough below 128 bytes, the common case for attributes) and the body moved along when
    /// it needs more.
    @inline(__always)
    mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        tag(field, .length)
        reserve(1)
        let at = count
        count += 1
        body(&self)
        let length = count - at - 1
        if length < 0x80 {
            (base + at).storeBytes(of: UInt8(length), as: UInt8.self)
        } else {
            var extra = 0
            var rest = length >> 7
            while rest > 0 { extra += 1; rest >>= 7 }
            reserve(extra)
            (base + at + 1 + extra).copyMemory(from: base + at + 1, byteCount: length)
            var p = base + at
            var v = length
            while v >= 0x80 {
                p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, as: UInt8.self)
                p += 1
                v >>= 7
            }
            p.storeBytes(of: UInt8(v), as: UInt8.self)
            count += extra
        }
    }
}

/// OTLP/HTTP protobuf (`opentelemetry/proto/collector/trace/v1/trace_service.proto`): one
/// `ExportTraceServiceRequest` → `ResourceSpans` (the process) → `ScopeSpans` (Sluice) → spans.
///
/// Workers encode each span as it is recorded, as a `ScopeSpans.spans` field, so what they hand
/// the exporter is bytes; the exporter wraps a batch of them in the outer messages.
public enum OTLPEncoder {
    /// Field numbers (trace.proto, common.proto, resource.proto).
    enum F {
        static let requestResourceSpans = 1
        static let resourceSpansResource = 1, resourceSpansScopeSpans = 2
        static let resourceAttributes = 1
        static let scopeSpansScope = 1, scopeSpansSpans = 2
        static let scopeName = 1, scopeVersion = 2
        static let spanTraceID = 1, spanSpanID = 2, spanParentSpanID = 4, spanName = 5, spanKind = 6, spanStart = 7,
                   spanEnd = 8, spanAttributes = 9, spanEvents = 11, spanStatus = 15, spanFlags = 16
        static let eventTime = 1, eventName = 2, eventAttributes = 3
        static let statusMessage = 2, statusCode = 3
        static let keyValueKey = 1, keyValueValue = 2
        static let anyString = 1, anyBool = 2, anyInt = 3, anyDouble = 4, anyArray = 5
        static let arrayValues = 1
    }

    /// `SpanFlags`: the W3C trace flags (sampled) in the low byte, and whether the parent is
    /// remote (bit 9) with bit 8 saying that bit is known.
    static func flags(_ s: FinishedSpan) -> UInt32 { 0x01 | 0x100 | (s.parentIsRemote ? 0x200 : 0) }

    /// Appends `span` as one `ScopeSpans.spans` field.
    public static func appendSpan(_ s: FinishedSpan, to out: inout [UInt8]) {
        var w = ProtoWriter()
        appendSpan(s, to: &w)
        out += w.bytes
    }

    static func appendSpan(_ s: FinishedSpan, to w: inout ProtoWriter) {
        w.message(F.scopeSpansSpans) { w in
            w.id(F.spanTraceID, s.traceID)
            w.id(F.spanSpanID, s.spanID)
            if s.parentSpanID != 0 { w.id(F.spanParentSpanID, s.parentSpanID) }
            w.string(F.spanName, s.name, limit: OTLPEncoder.maxStringBytes)
            w.uint(F.spanKind, UInt64(s.kind.rawValue))
            w.fixed64(F.spanStart, s.startUnixNanos)
            w.fixed64(F.spanEnd, max(s.endUnixNanos, s.startUnixNanos))
            for a in s.attributes { attribute(F.spanAttributes, a, &w) }
            for e in s.events {
                w.message(F.spanEvents) { w in
                    w.fixed64(F.eventTime, e.unixNanos)
                    w.string(F.eventName, e.name)
                    for a in e.attributes { attribute(F.eventAttributes, a, &w) }
                }
            }
            switch s.status {
            case .unset: break
            case .ok: w.message(F.spanStatus) { $0.uint(F.statusCode, 1) }
            case .error(let message):
                w.message(F.spanStatus) { w in
                    if !message.isEmpty { w.string(F.statusMessage, message) }
                    w.uint(F.statusCode, 2)
                }
            }
            w.fixed32(F.spanFlags, flags(s))
        }
    }

    /// The longest span name or string attribute value exported (bytes).
    public static let maxStringBytes = 1024

    static func attribute(_ field: Int, _ a: SpanAttribute, _ w: inout ProtoWriter) {
        w.message(field) { w in
            w.string(F.keyValueKey, a.key)
            w.message(F.keyValueValue) { w in value(a.value, &w) }
        }
    }

    static func value(_ v: SpanAttribute.Value, _ w: inout ProtoWriter) {
        switch v {
        case .string(let s): w.string(F.anyString, s, limit: maxStringBytes)
        case .bool(let b): w.bool(F.anyBool, b)
        case .int(let i): w.int64(F.anyInt, i)
        case .double(let d): w.double(F.anyDouble, d)
        case .strings(let list):
            w.message(F.anyArray) { w in
                for s in list { w.message(F.arrayValues) { $0.string(F.anyString, s, limit: maxStringBytes) } }
            }
        }
    }

    /// The `Resource` message's fields for the process (`service.name` and friends).
    public static func resource(_ attributes: [(String, String)]) -> [UInt8] {
        var w = ProtoWriter()
        for (k, v) in attributes {
            w.message(F.resourceAttributes) { w in
                w.string(F.keyValueKey, k)
                w.message(F.keyValueValue) { $0.string(F.anyString, v) }
            }
        }
        return w.bytes
    }

    /// One export request: `resource` (from ``resource(_:)``) and the spans, as workers encoded
    /// them with ``appendSpan(_:to:)``, concatenated.
    public static func request(resource: [UInt8], scopeVersion: String, spans: [[UInt8]]) -> [UInt8] {
        var w = ProtoWriter(capacity: spans.reduce(256 + resource.count) { $0 + $1.count })
        w.message(F.requestResourceSpans) { w in
            w.message(F.resourceSpansResource) { w in w.append(contentsOf: resource) }
            w.message(F.resourceSpansScopeSpans) { w in
                w.message(F.scopeSpansScope) { w in
                    w.string(F.scopeName, "sluice")
                    w.string(F.scopeVersion, scopeVersion)
                }
                for s in spans { w.append(contentsOf: s) }
            }
        }
        return w.bytes
    }
}
