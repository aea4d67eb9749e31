public import SluiceIO
import Glibc

/// One worker's side of tracing: head sampling when a request starts, and the spans of
/// finished requests, encoded here and handed to the ``TraceExporter`` once per loop iteration
/// (one short lock per batch, as the access log does). Confined to its worker's loop.
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
        if pendingSpans == 0 {
            // Holds the recorder until the hand-off ran (a recorder dropped in this iteration
            // still delivers what it recorded).
            loop.deferUntilEndOfIteration { [self] in handOver() }
        }
        OTLPEncoder.appendSpan(span, to: &pending)
        pendingSpans += 1
    }

    private func handOver() {
        guard pendingSpans > 0 else { return }
        exporter.enqueue(pending.bytes, spans: pendingSpans)
        pending.removeAll()
        pendingSpans = 0
    }
}
