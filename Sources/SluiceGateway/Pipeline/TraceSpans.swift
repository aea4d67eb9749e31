import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceTracing

/// A request's trace while tracing is on (`RequestContext.trace`; nil when off, so a request
/// without tracing carries one nil pointer and records nothing — a class so that the context
/// stays small and "is it traced" is a pointer test). Pooled per worker (``Worker/spareTraces``):
/// its buffers keep their capacity, so a traced request allocates nothing for them.
///
/// What its spans need is stamped as the request goes: when admission (with the queue) ended,
/// when the route phase picked, and each upstream attempt's client span — its id goes upstream
/// in `traceparent`, so the model server's own spans hang under the attempt that reached it.
final class TraceState {
    var context: TraceContext
    /// The request's path (no query) and id as the client knows it, copied when a sampled
    /// trace began (the request's bytes may be gone by the end); empty for one not sampled
    /// (then a failed request's spans go without them).
    var path: [UInt8] = []
    var requestID: [UInt8] = []
    /// When admission ended (limits and cache answered), and when the queue let it go.
    var admittedAt: Instant?
    var dequeuedAt: Instant?
    /// When the last route decision was made.
    var routedAt: Instant?
    /// The attempt in flight: its client span's id and start (id 0: none open).
    var attemptSpanID: UInt64 = 0
    var attemptStart = Instant(nanoseconds: 0)
    var attemptEndpoint: String?
    /// Attempts already ended, in order.
    var attempts: [AttemptSpan] = []

    init(context: TraceContext) { self.context = context }

    /// Ready for another request (from the worker's spares): everything but the buffers'
    /// capacity forgotten.
    func reset(_ context: TraceContext) {
        self.context = context
        // Most requests are not sampled and leave these empty: nothing to forget.
        if !path.isEmpty { path.removeAll(keepingCapacity: true) }
        if !requestID.isEmpty { requestID.removeAll(keepingCapacity: true) }
        admittedAt = nil
        dequeuedAt = nil
        routedAt = nil
        attemptSpanID = 0
        attemptEndpoint = nil
        if !attempts.isEmpty { attempts.removeAll(keepingCapacity: true) }
    }

    /// Copies request bytes for a span attribute: ASCII kept, anything else `?` (a path or a
    /// request id is ASCII; an OTLP string must be valid UTF-8, or the collector refuses the
    /// whole batch).
    static func copyASCII(_ b: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        let from = out.count
        out.append(contentsOf: b)
        for i in from..<out.count where out[i] >= 0x80 { out[i] = UInt8(ascii: "?") }
    }

    struct AttemptSpan {
        var spanID: UInt64
        var start: Instant
        var end: Instant
        var endpoint: String?
        var number: Int
        /// The upstream's status (0: none came back).
        var status: Int
        /// Why it failed, in Sluice's words (never an upstream's body); nil when it did not.
        var error: String?
    }

    /// A phase finished with `.next`.
    func passed(_ p: Pipeline.Phase, at now: Instant) {
        switch p {
        case .admit: admittedAt = now
        case .queue: dequeuedAt = now
        case .route: routedAt = now
        default: break
        }
    }

    /// The attempt's span ends (at most once per attempt). Kept when the trace is sampled, or
    /// when the attempt failed (a request that fails is recorded with `always_sample_errors`;
    /// one not sampled that succeeds records nothing, so its attempts need not be kept).
    func endAttempt(at now: Instant, number: Int, status: Int, error: String?) {
        guard attemptSpanID != 0 else { return }
        guard context.sampled || error != nil else {
            attemptSpanID = 0
            return
        }
        attempts.append(AttemptSpan(spanID: attemptSpanID, start: attemptStart, end: now, endpoint: attemptEndpoint,
                                    number: number, status: status, error: error))
        attemptSpanID = 0
    }
}

/// The record phase's spans: the request's server span, `sluice.admit`, `sluice.route` and a
/// client span per upstream attempt, with the GenAI semantic conventions' attributes and
/// Sluice's own. Values are model, pool, endpoint and tenant names, counts and outcomes: never
/// prompt text, headers or keys.
enum TraceSpans {
    /// The request's trace, when tracing is on: the client's `traceparent` continued or a new
    /// trace, and the head sampling decision (at the exchange's start, before any phase).
    static func begin(_ x: Exchange) {
        let spans = x.worker.spans
        guard spans.isEnabled else { return }
        x.client.withRequest { r in
            let context = spans.begin(traceparent: r.head.first(.traceparent).map { r.bytes.slice($0.value) })
            let t: TraceState
            if let spare = x.worker.spareTraces.popLast() {
                spare.reset(context)
                t = spare
            } else {
                t = TraceState(context: context)
            }
            if context.sampled {
                let path = Bytes.prefix(r.target, before: UInt8(ascii: "?"))
                TraceState.copyASCII(UnsafeRawBufferPointer(rebasing: path.prefix(200)), into: &t.path)
                if let id = UpstreamRequestEncoder.clientRequestID(r.head, r.bytes) { TraceState.copyASCII(r.bytes.slice(id), into: &t.requestID) }
            }
            x.ctx.trace = t
        }
    }

    /// The exchange is done with its trace: back to the worker's spares.
    static func end(_ x: Exchange) {
        guard let t = x.ctx.trace else { return }
        x.ctx.trace = nil
        if x.worker.spareTraces.count < 1024 { x.worker.spareTraces.append(t) }
    }

    /// The request's spans, written straight into the worker's batch (``SpanRecorder``'s
    /// direct recording: no attribute arrays, no strings made for values).
    static func record(_ x: Exchange, status: Int, at now: Instant) {
        guard let t = x.ctx.trace else { return }
        let spans = x.worker.spans
        let failed = status == 0 || status >= 500
        guard spans.shouldRecord(t.context, error: failed) else { return }
        let ctx = t.context
        let start = spans.unixNanos(x.ctx.startedAt)
        let end = spans.unixNanos(now)
        let model = x.ctx.target.clientModel
        let pool = x.pool?.name
        let method = x.ctx.method.name

        let operation = operationName(x.ctx.features?.endpoint)
        spans.beginServerSpan(ctx, start: start, end: end, name: operation ?? method, suffix: model)
        if let operation { spans.attribute(SpanKey.operationName, operation) }
        if let model { spans.attribute(SpanKey.requestModel, model) }
        if let f = x.ctx.features {
            spans.attribute(SpanKey.requestStream, f.stream)
            if let m = f.scanned.maxTokens { spans.attribute(SpanKey.requestMaxTokens, m) }
        }
        if x.ctx.attempt.sentAt != nil {
            if let m = x.ctx.target.resolvedModel ?? x.ctx.target.upstreamModel {
                spans.attribute(SpanKey.responseModel, utf8: m)
            } else if let model {
                spans.attribute(SpanKey.responseModel, model)
            }
        }
        if x.ctx.response.observer != nil {
            if let u = x.ctx.response.observer!.usage {
                spans.attribute(SpanKey.inputTokens, u.promptTokens)
                spans.attribute(SpanKey.outputTokens, u.completionTokens)
            }
            if let ft = x.ctx.response.observer!.firstTokenAt {
                spans.attribute(SpanKey.timeToFirstToken, ft.seconds(since: x.ctx.startedAt))
            }
        }
        spans.attribute(SpanKey.httpMethod, method)
        if status > 0 { spans.attribute(SpanKey.httpStatus, status) }
        if !t.path.isEmpty { spans.attribute(SpanKey.urlPath, utf8: t.path) }
        if !t.requestID.isEmpty {
            spans.attribute(SpanKey.requestID, utf8: t.requestID)
        } else if let id = x.logRequestID {
            spans.attribute(SpanKey.requestID, id)
        } else {
            spans.attribute(SpanKey.requestID, hex: x.ctx.requestID)
        }
        if let pool { spans.attribute(SpanKey.pool, pool) }
        if let e = x.ctx.attempt.endpointName { spans.attribute(SpanKey.endpoint, e) }
        if let arm = x.ctx.target.arm { spans.attribute(SpanKey.splitArm, arm) }
        if let ad = x.ctx.target.adapter { spans.attribute(SpanKey.adapter, ad.name) }
        // Only when it retried (each attempt's own span numbers it).
        if x.ctx.attempt.number > 1 { spans.attribute(SpanKey.attempts, x.ctx.attempt.number) }
        if failed {
            if status == 0 { spans.attribute(SpanKey.errorType, "client_closed") } else { spans.attribute(SpanKey.errorType, String(status)) }
        }
        spans.endSpan(failed ? .error(status == 0 ? "the client went away" : "HTTP \(status)") : .unset)

        // Admission: limits and the cache, then the queue while the pool was full (no span
        // when there was neither: nothing was decided there).
        if let admitted = t.dequeuedAt ?? t.admittedAt, x.ctx.admission.ticket != nil || x.ctx.queue.waited != nil {
            spans.beginChildSpan(of: ctx, spanID: spans.newSpanID(), name: "sluice.admit", start: start, end: spans.unixNanos(admitted))
            spans.attribute(SpanKey.tenant, x.ctx.tenant)
            if let c = x.ctx.admission.cacheOutcome { spans.attribute(SpanKey.cacheResult, c.rawValue) }
            if let l = x.ctx.admission.limitOutcome { spans.attribute(SpanKey.rateLimitResult, l.rawValue) }
            if let w = x.ctx.queue.waited { spans.attribute(SpanKey.queueWait, Double(w.nanoseconds) / 1e9) }
            spans.endSpan()
        }
        // The routing decision (the last one, after any retry).
        if let routed = t.routedAt {
            let from = t.dequeuedAt ?? t.admittedAt ?? x.ctx.startedAt
            spans.beginChildSpan(of: ctx, spanID: spans.newSpanID(), name: "sluice.route", start: spans.unixNanos(from),
                                 end: spans.unixNanos(max(routed, from)))
            // The pool is the server span's; the endpoint repeats here as what was decided.
            spans.attribute(SpanKey.routeReason, x.ctx.attempt.routeReason.rawValue)
            if let e = x.ctx.attempt.endpointName { spans.attribute(SpanKey.endpoint, e) }
            if let p = x.pool { spans.attribute(SpanKey.routeCandidates, p.endpoints.count) }
            // The cost model's prediction (seconds from the request's arrival, as the server
            // span's time to first token is) beside what was observed.
            if let p = x.ctx.attempt.predictedTTFT, let sent = x.ctx.attempt.sentAt {
                spans.attribute(SpanKey.predictedTTFT, sent.seconds(since: x.ctx.startedAt) + p)
            }
            spans.endSpan()
        }
        // Each upstream attempt: a client span, its id the parent the model server saw.
        for at in t.attempts {
            spans.beginChildSpan(of: ctx, spanID: at.spanID, name: method, kind: .client, start: spans.unixNanos(at.start),
                                 end: spans.unixNanos(at.end))
            spans.attribute(SpanKey.attempt, at.number)
            if var e = at.endpoint {
                e.withUTF8 { u in
                    let (host, port) = hostPort(UnsafeRawBufferPointer(u))
                    spans.attribute(SpanKey.serverAddress, utf8: host)
                    if let port { spans.attribute(SpanKey.serverPort, port) }
                }
            }
            if at.status > 0 { spans.attribute(SpanKey.httpStatus, at.status) }
            spans.attribute(SpanKey.httpMethod, method)
            if let e = at.error {
                spans.attribute(SpanKey.errorType, at.status > 0 ? String(at.status) : "upstream_error")
                spans.endSpan(.error(e))
            } else {
                spans.endSpan()
            }
        }
    }

    /// GenAI's `gen_ai.operation.name` for an endpoint.
    static func operationName(_ e: LLMEndpoint?) -> String? {
        switch e {
        case .chatCompletions, .messages, .responses: "chat"
        case .completions: "text_completion"
        case .embeddings: "embeddings"
        default: nil
        }
    }

    /// `host:port` split at its last colon (a bracketed IPv6 host keeps its colons); the port
    /// nil when there is none or it is not a number up to 65535.
    static func hostPort(_ authority: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, Int?) {
        guard let colon = authority.lastIndex(of: UInt8(ascii: ":")), authority.last != UInt8(ascii: "]") else { return (authority, nil) }
        var port = 0
        for c in authority[(colon + 1)...] {
            guard c >= 0x30 && c <= 0x39, port <= 6553 else { return (UnsafeRawBufferPointer(rebasing: authority[..<colon]), nil) }
            port = port * 10 + Int(c - 0x30)
        }
        let host = UnsafeRawBufferPointer(rebasing: authority[..<colon])
        return (host, colon + 1 < authority.count && port <= 65535 ? port : nil)
    }
}
