public import SluiceIO
import Glibc

/// One worker's side of tracing: head sampling when a request starts, and the spans of
/// finished requests, encoded here and handed to the ``TraceExporter`` in batches (32 KiB, or
/// what 20 ms gathered: one short lock per batch). Confined to its worker's loop.
///
/// The request path's use, in order:
///
///     let trace = spans.begin(traceparent: clientValue)     // inspect: continue or start
///     // forward: send trace.traceparent(spanID: attemptSpan) upstream (flags say sampled)
///     if spans.shouldRecord(trace, error: failed) {         // record phase
///         spans.record(.server(trace, name: "chat tiny", start: t0, end: t1, attributes: [...]))
///         spans.record(.child(of: trace, spanID: spans.newSpanID(), name: "route", ...))
///     }
///
/// With tracing off ``isOn`` is false: `begin` still gives trace ids (for the upstream
/// `traceparent`) and `shouldRecord` is always false.
public final class SpanRecorder {
    private let exporter: TraceExporter
    private let loop: EventLoop
    private var random: UInt64
    private var generation = -1
    private var sampler = TraceIDSampler(ratio: 0)
    private var alwaysSampleErrors = false
    private var parentBased = false
    public private(set) var isOn = false
    /// This iteration's spans, encoded; the buffer is kept and reused.
    private var pending = ProtoWriter(capacity: 16 << 10)
    private var pendingSpans = 0
    /// Unix time minus monotonic time, in nanoseconds (span times are wall-clock).
    private var wallOffset: Int64 = 0

    public init(exporter: TraceExporter, loop: EventLoop, seed: UInt64 = UInt64.random(in: .min ... .max)) {
        self.exporter = exporter
        self.loop = loop
        random = seed
        refresh()
    }

    /// Picks up a changed `tracing` section (one relaxed atomic load when nothing changed).
    @inline(__always)
    private func refresh() {
        let g = exporter.generation.load(ordering: .acquiring)
        guard g != generation else { return }
        generation = g
        let c = exporter.configuration.withLock { $0 }
        isOn = c != nil
        sampler = TraceIDSampler(ratio: c?.sampleRatio ?? 0)
        alwaysSampleErrors = c?.alwaysSampleErrors ?? false
        handOverSpans = max(1, c?.maxBatchSize ?? 512)
        parentBased = c?.parentBased ?? false
        let (s, ns) = WallClock.now()
        wallOffset = Int64(s) * 1_000_000_000 + Int64(ns) - Int64(bitPattern: Instant.now().nanoseconds)
    }

    /// Whether tracing is on now (picks up a reload first): the request path asks before it
    /// begins a trace, so with tracing off a request costs one atomic load.
    @inline(__always)
    public var isEnabled: Bool {
        refresh()
        return isOn
    }

    /// A random non-zero 64-bit value (SplitMix64 on this worker's own state).
    private func next() -> UInt64 {
        while true {
            random &+= 0x9E37_79B9_7F4A_7C15
            var z = random
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            if z != 0 { return z }
        }
    }

    /// A fresh span id for a child span.
    public func newSpanID() -> UInt64 { next() }

    /// The request's trace: the client's `traceparent` continued when it is valid (same trace
    /// id, the client's span as parent), else a new trace; the gateway's server span id; and
    /// the head sampling decision (the ratio over the trace id, or the client's sampled flag
    /// with `parent_based`).
    public func begin(traceparent: UnsafeRawBufferPointer?) -> TraceContext {
        refresh()
        if let tp = traceparent, let p = TraceContext.parse(traceparent: tp) {
            let sampled = isOn && (parentBased ? p.sampled : sampler.sampled(p.trace))
            return TraceContext(traceID: p.trace, spanID: next(), parentSpanID: p.parent, sampled: sampled, parentSampled: p.sampled)
        }
        let t = TraceID(hi: next(), lo: next())
        return TraceContext(traceID: t, spanID: next(), sampled: isOn && sampler.sampled(t))
    }

    public func begin(traceparent: String?) -> TraceContext {
        guard var s = traceparent else { return begin(traceparent: nil as UnsafeRawBufferPointer?) }
        return s.withUTF8 { begin(traceparent: UnsafeRawBufferPointer($0)) }
    }

    /// Whether the request's spans are to be recorded: head-sampled, or it failed and
    /// `always_sample_errors` is on. Ask once per request, then record all its spans or none,
    /// so a trace is never half there.
    @inline(__always)
    public func shouldRecord(_ t: TraceContext, error: Bool) -> Bool {
        isOn && (t.sampled || (error && alwaysSampleErrors))
    }

    /// Span times are unix nanoseconds; the request path measures with the monotonic clock.
    @inline(__always)
    public func unixNanos(_ i: Instant) -> UInt64 { UInt64(clamping: Int64(bitPattern: i.nanoseconds) &+ wallOffset) }

    /// Records a finished span (call only for requests ``shouldRecord(_:error:)`` accepted).
    /// Encoded now into this worker's batch; the batch goes to the exporter at the end of this
    /// loop iteration.
    public func record(_ span: FinishedSpan) {
        guard isOn else { return }
        OTLPEncoder.appendSpan(span, to: &pending)
        appended()
    }

    /// A span was appended to `pending`: hand the batch over at the end of this loop iteration
    /// once it holds `handOverBytes` or `handOverSpans`, else within `handOverDelay` (one timer,
    /// armed once): a hand-off per iteration cost a quiet worker a closure, a copy and the
    /// exporter's lock per request.
    private func appended() {
        pendingSpans += 1
        if pending.count >= Self.handOverBytes || pendingSpans >= handOverSpans {
            guard !handOverQueued else { return }
            handOverQueued = true
            // Holds the recorder until the hand-off ran (a recorder dropped in this iteration
            // still delivers what it recorded).
            loop.deferUntilEndOfIteration { [self] in handOver() }
        } else if !handOverArmed {
            handOverArmed = true
            // A timer of its own each time (every 20 ms at most): it holds the recorder until it
            // fired, as the end-of-iteration hand-off does. A timer kept in a property would need
            // a weak capture, and a weak reference gives the recorder a side table: every retain
            // of it (one per request) then takes the runtime's slow path.
            loop.schedule(Timer { [self] in
                handOverArmed = false
                handOver()
            }, after: Self.handOverDelay)
        }
    }

    static let handOverBytes = 32 << 10
    static let handOverDelay: Duration = .milliseconds(20)
    private var handOverQueued = false
    /// A hand-off holds at most a batch of spans: the exporter's queue takes a hand-off whole
    /// or drops it, and `max_queue_size` is at least `max_batch_size` — a larger one would be
    /// dropped whole with a small queue, however empty.
    private var handOverSpans = 512
    private var handOverArmed = false

    /// What was recorded and not handed over yet still goes (from any thread: the exporter's
    /// queue has its own lock).
    deinit { handOver() }

    // MARK: direct recording

    // The request path writes its spans straight from its own state into this worker's batch:
    // `beginSpan`, its attributes, `endSpan` — no ``FinishedSpan``, no attribute array, no
    // string made for a value (a span from `FinishedSpan` costs several allocations; three of
    // them per request were most of what tracing at ratio 1 cost a worker). Call only for
    // requests ``shouldRecord(_:error:)`` accepted; one span open at a time.

    /// Where the open span's length goes in `pending` (-1: none open).
    private var openSpan = -1

    /// Opens the server span of a request under `context`, named `name` and, when given,
    /// `suffix` after a space (`chat tiny-llama`).
    public func beginServerSpan(_ context: TraceContext, start: UInt64, end: UInt64, name: String, suffix: String?) {
        guard begin(context.traceID, spanID: context.spanID, parent: context.parentSpanID,
                    remoteParent: context.hasRemoteParent, kind: .server, start: start, end: end) else { return }
        var name = name
        name.withUTF8 { n in
            guard var suffix else {
                return pending.raw(OTLPEncoder.F.spanName,
                                   UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: n[0..<ProtoWriter.cut(n, limit: OTLPEncoder.maxStringBytes)])))
            }
            suffix.withUTF8 { s in
                let head = ProtoWriter.cut(n, limit: OTLPEncoder.maxStringBytes - 1)
                let tail = ProtoWriter.cut(s, limit: OTLPEncoder.maxStringBytes - head - 1)
                pending.raw(OTLPEncoder.F.spanName, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: n[0..<head])), UInt8(ascii: " "),
                            UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: s[0..<tail])))
            }
        }
    }

    /// Opens a child of the server span of `context` (admission, routing, an upstream attempt).
    public func beginChildSpan(of context: TraceContext, spanID: UInt64, name: StaticString, kind: SpanKind = .internal,
                               start: UInt64, end: UInt64) {
        guard begin(context.traceID, spanID: spanID, parent: context.spanID, remoteParent: false, kind: kind,
                    start: start, end: end) else { return }
        pending.string(OTLPEncoder.F.spanName, name)
    }

    public func beginChildSpan(of context: TraceContext, spanID: UInt64, name: String, kind: SpanKind = .internal,
                               start: UInt64, end: UInt64) {
        guard begin(context.traceID, spanID: spanID, parent: context.spanID, remoteParent: false, kind: kind,
                    start: start, end: end) else { return }
        pending.string(OTLPEncoder.F.spanName, name, limit: OTLPEncoder.maxStringBytes)
    }

    private func begin(_ trace: TraceID, spanID: UInt64, parent: UInt64, remoteParent: Bool, kind: SpanKind,
                       start: UInt64, end: UInt64) -> Bool {
        guard isOn else { return false }
        if openSpan >= 0 { endSpan() }
        openSpan = OTLPEncoder.beginSpan(&pending, trace: trace, spanID: spanID, parent: parent, remoteParent: remoteParent,
                                         kind: kind, start: start, end: end)
        return true
    }

    /// Ends the open span with its status.
    public func endSpan(_ status: SpanStatus = .unset) {
        guard openSpan >= 0 else { return }
        OTLPEncoder.endSpan(&pending, openSpan, status: status)
        openSpan = -1
        appended()
    }

    /// A string attribute of the open span (cut to ``OTLPEncoder/maxStringBytes``).
    public func attribute(_ key: StaticString, _ v: String) {
        guard openSpan >= 0 else { return }
        OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, v, &pending)
    }

    public func attribute(_ key: StaticString, _ v: Substring) {
        guard openSpan >= 0 else { return }
        var v = v
        v.withUTF8 { OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, bytes: UnsafeRawBufferPointer($0), &pending) }
    }

    public func attribute(_ key: StaticString, _ v: StaticString) {
        guard openSpan >= 0 else { return }
        v.withUTF8Buffer { OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, bytes: UnsafeRawBufferPointer($0), &pending) }
    }

    /// A string attribute of bytes meant as UTF-8: written as they are when ASCII, else
    /// repaired (invalid sequences replaced) — an OTLP string must be valid UTF-8, or the
    /// collector refuses the whole batch.
    public func attribute(_ key: StaticString, utf8 v: UnsafeRawBufferPointer) {
        guard openSpan >= 0 else { return }
        if v.allSatisfy({ $0 < 0x80 }) {
            OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, bytes: v, &pending)
        } else {
            OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, String(decoding: v, as: UTF8.self), &pending)
        }
    }

    public func attribute(_ key: StaticString, utf8 v: [UInt8]) {
        v.withUnsafeBytes { attribute(key, utf8: $0) }
    }

    /// A string attribute of 16 lowercase hex digits (an id).
    public func attribute(_ key: StaticString, hex v: UInt64) {
        guard openSpan >= 0 else { return }
        OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, hex: v, &pending)
    }

    public func attribute(_ key: StaticString, _ v: Int) {
        guard openSpan >= 0 else { return }
        OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, v, &pending)
    }

    public func attribute(_ key: StaticString, _ v: Double) {
        guard openSpan >= 0 else { return }
        OTLPEncoder.attribute(OTLPEncoder.F.spanAttributes, key, v, &pending)
    }

    public func attribute(_ key: StaticString, _ v: Bool) {
        guard openSpan >= 0 else { return }
        pending.keyValue(OTLPEncoder.F.spanAttributes, key, OTLPEncoder.F.anyBool, varint: v ? 1 : 0)
    }

    /// What this iteration recorded so far, encoded (tests).
    var pendingBytes: [UInt8] { pending.bytes }

    private func handOver() {
        handOverQueued = false
        guard pendingSpans > 0 else { return }
        exporter.enqueue(owned: pending.detach(), spans: pendingSpans)
        pendingSpans = 0
    }
}
