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

    /// Gives up what was written — the caller owns it now and deallocates it — and starts over
    /// in a new buffer of the same capacity (a worker's batch goes to the exporter uncopied).
    mutating func detach() -> UnsafeMutableRawBufferPointer {
        let written = UnsafeMutableRawBufferPointer(start: base, count: count)
        base = .allocate(byteCount: capacity, alignment: 8)
        count = 0
        return written
    }

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

    mutating func append(contentsOf a: [UInt8]) { a.withUnsafeBytes { append($0) } }

    mutating func append(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        reserve(b.count)
        (base + count).copyMemory(from: b.baseAddress!, byteCount: b.count)
        count += b.count
    }

    @inline(__always)
    mutating func varint(_ v: UInt64) {
        reserve(10)
        var p = base + count
        Self.put(v, &p)
        count = base.distance(to: p)
    }

    @inline(__always)
    mutating func tag(_ field: Int, _ wire: Wire) { varint(UInt64(field) << 3 | wire.rawValue) }

    mutating func uint(_ field: Int, _ v: UInt64) {
        tag(field, .varint)
        varint(v)
    }

    /// int64 (not sint64): negative numbers take ten bytes, two's complement.
    mutating func int64(_ field: Int, _ v: Int) { uint(field, UInt64(bitPattern: Int64(v))) }

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
            raw(field, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: u[0..<Self.cut(u, limit: limit)])))
        }
    }

    mutating func string(_ field: Int, _ s: StaticString) {
        s.withUTF8Buffer { raw(field, UnsafeRawBufferPointer($0)) }
    }

    /// One length-delimited field of `a`, `separator` and `b` (a span name of two parts).
    mutating func raw(_ field: Int, _ a: UnsafeRawBufferPointer, _ separator: UInt8, _ b: UnsafeRawBufferPointer) {
        tag(field, .length)
        varint(UInt64(a.count + 1 + b.count))
        append(a)
        reserve(1)
        (base + count).storeBytes(of: separator, as: UInt8.self)
        count += 1
        append(b)
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

    /// The bytes `v` takes as a varint.
    @inline(__always)
    static func varintSize(_ v: UInt64) -> Int {
        (64 - (v | 1).leadingZeroBitCount + 6) / 7
    }

    /// Writes the length of a message whose body starts two bytes after `at` (two bytes were
    /// reserved there: a span is mostly 128 bytes to 16 KiB), moving the body when the length
    /// takes other than two.
    mutating func close(_ at: Int) {
        let length = count - at - 2
        let size = Self.varintSize(UInt64(length))
        if size != 2 {
            if size > 2 { reserve(size - 2) }
            (base + at + size).copyMemory(from: base + at + 2, byteCount: length)
            count += size - 2
        }
        var p = base + at
        Self.put(UInt64(length), &p)
    }

    // Attributes and span headers are the bulk of what a worker writes per traced request, so
    // they are written with one capacity check each and unchecked stores after it (lengths
    // computed up front: nothing patched or moved). Every field number here is below 16, so
    // every tag is one byte.

    /// Reserves `n` bytes and hands `body` a cursor at the end; what it advanced is kept.
    @inline(__always)
    mutating func unchecked(_ n: Int, _ body: (inout UnsafeMutableRawPointer) -> Void) {
        reserve(n)
        var p = base + count
        body(&p)
        count = base.distance(to: p)
    }

    /// A `KeyValue` field whose `AnyValue` holds a varint (`anyField`: int or bool).
    @inline(__always)
    mutating func keyValue(_ field: Int, _ key: StaticString, _ anyField: Int, varint v: UInt64) {
        let any = 1 + Self.varintSize(v)
        unchecked(Self.keyValueSize(key, any)) { p in
            Self.keyValueHead(field, key, any, &p)
            Self.put(byte: UInt8(anyField << 3), &p)
            Self.put(v, &p)
        }
    }

    /// A `KeyValue` field whose `AnyValue` holds a fixed64 (`anyField`: double).
    @inline(__always)
    mutating func keyValue(_ field: Int, _ key: StaticString, _ anyField: Int, fixed64 v: UInt64) {
        unchecked(Self.keyValueSize(key, 9)) { p in
            Self.keyValueHead(field, key, 9, &p)
            Self.put(byte: UInt8(anyField << 3 | 1), &p)
            Self.put(fixed64: v, &p)
        }
    }

    /// A `KeyValue` field whose `AnyValue` is a string of `count` bytes, written by `write`
    /// (exactly that many: the caller has cut it to the limit).
    @inline(__always)
    mutating func keyValue(_ field: Int, _ key: StaticString, _ anyField: Int, stringOf count: Int,
                           _ write: (UnsafeMutableRawPointer) -> Void) {
        let any = 1 + Self.varintSize(UInt64(count)) + count
        unchecked(Self.keyValueSize(key, any)) { p in
            Self.keyValueHead(field, key, any, &p)
            Self.put(byte: UInt8(anyField << 3 | 2), &p)
            Self.put(UInt64(count), &p)
            write(p)
            p += count
        }
    }

    /// The bytes of a `KeyValue` field with an `AnyValue` of `any` bytes.
    @inline(__always)
    static func keyValueSize(_ key: StaticString, _ any: Int) -> Int {
        let kv = keyValueLength(key, any)
        return 1 + varintSize(UInt64(kv)) + kv
    }

    @inline(__always)
    private static func keyValueLength(_ key: StaticString, _ any: Int) -> Int {
        let k = key.utf8CodeUnitCount
        return 1 + varintSize(UInt64(k)) + k + 1 + varintSize(UInt64(any)) + any
    }

    /// The `KeyValue` up to its `AnyValue`'s contents.
    @inline(__always)
    private static func keyValueHead(_ field: Int, _ key: StaticString, _ any: Int, _ p: inout UnsafeMutableRawPointer) {
        let k = key.utf8CodeUnitCount
        put(byte: UInt8(field << 3 | 2), &p)
        put(UInt64(keyValueLength(key, any)), &p)
        put(byte: 0x0A, &p)  // KeyValue.key, length-delimited
        put(UInt64(k), &p)
        p.copyMemory(from: key.utf8Start, byteCount: k)
        p += k
        put(byte: 0x12, &p)  // KeyValue.value, length-delimited
        put(UInt64(any), &p)
    }

    /// A varint at `p`, which moves past it (the caller reserved the room).
    @inline(__always)
    static func put(_ v: UInt64, _ p: inout UnsafeMutableRawPointer) {
        var v = v
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, as: UInt8.self)
            p += 1
            v >>= 7
        }
        p.storeBytes(of: UInt8(v), as: UInt8.self)
        p += 1
    }

    @inline(__always)
    static func put(byte b: UInt8, _ p: inout UnsafeMutableRawPointer) {
        p.storeBytes(of: b, as: UInt8.self)
        p += 1
    }

    /// Little-endian, as protobuf's fixed64.
    @inline(__always)
    static func put(fixed64 v: UInt64, _ p: inout UnsafeMutableRawPointer) {
        p.storeBytes(of: v.littleEndian, toByteOffset: 0, as: UInt64.self)
        p += 8
    }

    /// Big-endian, as an id's bytes are spelled in `traceparent`.
    @inline(__always)
    static func put(id v: UInt64, _ p: inout UnsafeMutableRawPointer) {
        p.storeBytes(of: v.bigEndian, toByteOffset: 0, as: UInt64.self)
        p += 8
    }

    /// How many of `u`'s bytes to keep under `limit` without cutting a character.
    @inline(__always)
    static func cut(_ u: UnsafeBufferPointer<UInt8>, limit: Int) -> Int {
        var n = min(u.count, limit)
        while n < u.count && n > 0 && u[n] & 0xC0 == 0x80 { n -= 1 }
        return n
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
            Self.put(UInt64(length), &p)
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
    static func flags(remoteParent: Bool) -> UInt32 { 0x01 | 0x100 | (remoteParent ? 0x200 : 0) }

    /// Appends `span` as one `ScopeSpans.spans` field.
    public static func appendSpan(_ s: FinishedSpan, to out: inout [UInt8]) {
        var w = ProtoWriter()
        appendSpan(s, to: &w)
        out += w.bytes
    }

    static func appendSpan(_ s: FinishedSpan, to w: inout ProtoWriter) {
        let at = beginSpan(&w, trace: s.traceID, spanID: s.spanID, parent: s.parentSpanID, remoteParent: s.parentIsRemote,
                           kind: s.kind, start: s.startUnixNanos, end: s.endUnixNanos)
        w.string(F.spanName, s.name, limit: maxStringBytes)
        for a in s.attributes { attribute(F.spanAttributes, a, &w) }
        for e in s.events {
            w.message(F.spanEvents) { w in
                w.fixed64(F.eventTime, e.unixNanos)
                w.string(F.eventName, e.name)
                for a in e.attributes { attribute(F.eventAttributes, a, &w) }
            }
        }
        endSpan(&w, at, status: s.status)
    }

    // The span encoding, in pieces: ``SpanRecorder``'s direct recording writes a span from the
    // request's own state with these (no attribute array, no strings made for it), and a
    // ``FinishedSpan`` goes through the same ones. A span's fields may come in any order, so
    // the name and attributes follow the fixed-size fields and the status ends it.

    /// Opens a `ScopeSpans.spans` field with the span's ids, kind, times and flags; returns
    /// where its length goes (for ``endSpan(_:_:status:)``).
    static func beginSpan(_ w: inout ProtoWriter, trace: TraceID, spanID: UInt64, parent: UInt64, remoteParent: Bool,
                          kind: SpanKind, start: UInt64, end: UInt64) -> Int {
        let at = w.count + 1  // after the tag
        // Tag and reserved length 3, trace id 18, span id 10, parent 10, kind 2, times 18, flags 6.
        w.unchecked(67) { p in
            ProtoWriter.put(byte: UInt8(F.scopeSpansSpans << 3 | 2), &p)
            p += 2  // the length, two bytes reserved: written by endSpan (ProtoWriter.close)
            ProtoWriter.put(byte: UInt8(F.spanTraceID << 3 | 2), &p)
            ProtoWriter.put(byte: 16, &p)
            ProtoWriter.put(id: trace.hi, &p)
            ProtoWriter.put(id: trace.lo, &p)
            ProtoWriter.put(byte: UInt8(F.spanSpanID << 3 | 2), &p)
            ProtoWriter.put(byte: 8, &p)
            ProtoWriter.put(id: spanID, &p)
            if parent != 0 {
                ProtoWriter.put(byte: UInt8(F.spanParentSpanID << 3 | 2), &p)
                ProtoWriter.put(byte: 8, &p)
                ProtoWriter.put(id: parent, &p)
            }
            ProtoWriter.put(byte: UInt8(F.spanKind << 3), &p)
            ProtoWriter.put(byte: UInt8(kind.rawValue), &p)
            ProtoWriter.put(byte: UInt8(F.spanStart << 3 | 1), &p)
            ProtoWriter.put(fixed64: start, &p)
            ProtoWriter.put(byte: UInt8(F.spanEnd << 3 | 1), &p)
            ProtoWriter.put(fixed64: max(end, start), &p)
            // Field 16: a two-byte tag.
            ProtoWriter.put(UInt64(F.spanFlags << 3 | 5), &p)
            p.storeBytes(of: flags(remoteParent: remoteParent).littleEndian, toByteOffset: 0, as: UInt32.self)
            p += 4
        }
        return at
    }

    static func endSpan(_ w: inout ProtoWriter, _ at: Int, status: SpanStatus) {
        switch status {
        case .unset: break
        case .ok: w.message(F.spanStatus) { $0.uint(F.statusCode, 1) }
        case .error(let message):
            w.message(F.spanStatus) { w in
                if !message.isEmpty { w.string(F.statusMessage, message, limit: maxStringBytes) }
                w.uint(F.statusCode, 2)
            }
        }
        w.close(at)
    }

    /// The longest span name or string attribute value exported (bytes).
    public static let maxStringBytes = 1024

    static func attribute(_ field: Int, _ a: SpanAttribute, _ w: inout ProtoWriter) {
        switch a.value {
        case .string(let v): attribute(field, a.key, v, &w)
        case .int(let v): attribute(field, a.key, v, &w)
        case .double(let v): attribute(field, a.key, v, &w)
        case .bool(let v): w.keyValue(field, a.key, F.anyBool, varint: v ? 1 : 0)
        case .strings(let list):
            w.message(field) { w in
                w.string(F.keyValueKey, a.key)
                w.message(F.keyValueValue) { w in
                    w.message(F.anyArray) { w in
                        for s in list { w.message(F.arrayValues) { $0.string(F.anyString, s, limit: maxStringBytes) } }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func attribute(_ field: Int, _ key: StaticString, _ v: Int, _ w: inout ProtoWriter) {
        // int64 (not sint64): a negative number takes ten bytes, two's complement.
        w.keyValue(field, key, F.anyInt, varint: UInt64(bitPattern: Int64(v)))
    }

    @inline(__always)
    static func attribute(_ field: Int, _ key: StaticString, _ v: Double, _ w: inout ProtoWriter) {
        w.keyValue(field, key, F.anyDouble, fixed64: v.bitPattern)
    }

    @inline(__always)
    static func attribute(_ field: Int, _ key: StaticString, _ v: String, _ w: inout ProtoWriter) {
        var v = v
        v.withUTF8 { attribute(field, key, bytes: UnsafeRawBufferPointer($0), &w) }
    }

    /// A string attribute of UTF-8 bytes, cut to ``maxStringBytes`` at a character boundary.
    @inline(__always)
    static func attribute(_ field: Int, _ key: StaticString, bytes v: UnsafeRawBufferPointer, _ w: inout ProtoWriter) {
        let n = ProtoWriter.cut(v.assumingMemoryBound(to: UInt8.self), limit: maxStringBytes)
        w.keyValue(field, key, F.anyString, stringOf: n) { to in
            if n > 0 { to.copyMemory(from: v.baseAddress!, byteCount: n) }
        }
    }

    /// A string attribute of 16 lowercase hex digits (an id).
    @inline(__always)
    static func attribute(_ field: Int, _ key: StaticString, hex v: UInt64, _ w: inout ProtoWriter) {
        w.keyValue(field, key, F.anyString, stringOf: 16) { to in
            Hex.write(v, into: UnsafeMutableRawBufferPointer(start: to, count: 16), at: 0)
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
        let scope = self.scope(version: scopeVersion)
        let all = spans.flatMap { $0 }
        return all.withUnsafeBytes { b in
            var out: [UInt8] = []
            out.reserveCapacity(requestLength(resource: resource, scope: scope, spans: [b]))
            appendRequest(resource: resource, scope: scope, spans: [b], to: &out)
            return out
        }
    }

    /// The `InstrumentationScope` message's fields (Sluice and its version).
    public static func scope(version: String) -> [UInt8] {
        var w = ProtoWriter()
        w.string(F.scopeName, "sluice")
        w.string(F.scopeVersion, version)
        return w.bytes
    }

    // The request's lengths are known from its parts, so it is written front to back into the
    // caller's buffer (the exporter reuses one: no large buffer allocated, faulted in and
    // copied per export).

    /// The bytes of the export request ``appendRequest(resource:scope:spans:to:)`` writes.
    public static func requestLength(resource: [UInt8], scope: [UInt8], spans: [UnsafeRawBufferPointer]) -> Int {
        let l = lengths(resource: resource, scope: scope, spans: spans)
        return field(l.resourceSpans)
    }

    /// Appends the export request (`ExportTraceServiceRequest`) to `out`.
    public static func appendRequest(resource: [UInt8], scope: [UInt8], spans: [UnsafeRawBufferPointer], to out: inout [UInt8]) {
        let l = lengths(resource: resource, scope: scope, spans: spans)
        head(F.requestResourceSpans, l.resourceSpans, &out)
        head(F.resourceSpansResource, resource.count, &out)
        out += resource
        head(F.resourceSpansScopeSpans, l.scopeSpans, &out)
        head(F.scopeSpansScope, scope.count, &out)
        out += scope
        for s in spans { out.append(contentsOf: s) }
    }

    private static func lengths(resource: [UInt8], scope: [UInt8], spans: [UnsafeRawBufferPointer]) -> (resourceSpans: Int, scopeSpans: Int) {
        let scopeSpans = field(scope.count) + spans.reduce(0) { $0 + $1.count }
        return (field(resource.count) + field(scopeSpans), scopeSpans)
    }

    /// A length-delimited field's size with a one-byte tag (every field number here is < 16).
    private static func field(_ length: Int) -> Int { 1 + ProtoWriter.varintSize(UInt64(length)) + length }

    private static func head(_ field: Int, _ length: Int, _ out: inout [UInt8]) {
        out.append(UInt8(field << 3 | 2))
        var v = UInt64(length)
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
