import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceTracing

/// A request's trace while tracing is on (`RequestContext.trace`; nil when off, so a request
/// without tracing carries nothing and records nothing).
///
/// What its spans need is stamped as the request goes: when admission (with the queue) ended,
/// when the route phase picked, and each upstream attempt's client span — its id goes upstream
/// in `traceparent`, so the model server's own spans hang under the attempt that reached it.
struct TraceState {
    var context: TraceContext
    /// The request's path (no query) and id as the client knows it, read when a sampled trace
    /// began (the request's bytes may be gone by the end); nil for one not sampled, which
    /// allocates nothing unless it fails (then the spans go without the path).
    var path: String?
    var requestID: String?
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
    mutating func passed(_ p: Pipeline.Phase, at now: Instant) {
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
    mutating func endAttempt(at now: Instant, number: Int, status: Int, error: String?) {
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
            var t = TraceState(context: context)
            if context.sampled {
                t.path = ResolvePhase.logPath(r.target)
                t.requestID = UpstreamRequestEncoder.clientRequestID(r.head, r.bytes).map { String(decoding: r.bytes.slice($0), as: UTF8.self) }
            }
            x.ctx.trace = t
        }
    }

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

        var a: [SpanAttribute] = []
        a.reserveCapacity(24)
        let operation = operationName(x.ctx.features?.endpoint)
        if let operation { a.append(SpanAttribute(SpanKey.operationName, operation)) }
        if let model { a.append(SpanAttribute(SpanKey.requestModel, model)) }
        if let f = x.ctx.features {
            a.append(SpanAttribute(SpanKey.requestStream, f.stream))
            if let m = f.scanned.maxTokens { a.append(SpanAttribute(SpanKey.requestMaxTokens, m)) }
        }
        if x.ctx.attempt.sentAt != nil, let m = x.ctx.target.resolvedModel ?? x.ctx.target.upstreamModel {
            a.append(SpanAttribute(SpanKey.responseModel, String(decoding: m, as: UTF8.self)))
        } else if x.ctx.attempt.sentAt != nil, let model {
            a.append(SpanAttribute(SpanKey.responseModel, model))
        }
        if x.ctx.response.observer != nil {
            if let u = x.ctx.response.observer!.usage {
                a.append(SpanAttribute(SpanKey.inputTokens, u.promptTokens))
                a.append(SpanAttribute(SpanKey.outputTokens, u.completionTokens))
            }
            if let ft = x.ctx.response.observer!.firstTokenAt {
                a.append(SpanAttribute(SpanKey.timeToFirstToken, ft.seconds(since: x.ctx.startedAt)))
            }
        }
        a.append(SpanAttribute(SpanKey.httpMethod, x.ctx.method.name))
        if status > 0 { a.append(SpanAttribute(SpanKey.httpStatus, status)) }
        if let path = t.path { a.append(SpanAttribute(SpanKey.urlPath, path)) }
        a.append(SpanAttribute(SpanKey.requestID, t.requestID ?? x.logRequestID ?? hex16(x.ctx.requestID)))
        if let pool { a.append(SpanAttribute(SpanKey.pool, pool)) }
        if let e = x.ctx.attempt.endpointName { a.append(SpanAttribute(SpanKey.endpoint, e)) }
        if let arm = x.ctx.target.arm { a.append(SpanAttribute(SpanKey.splitArm, arm)) }
        if let ad = x.ctx.target.adapter { a.append(SpanAttribute(SpanKey.adapter, ad.name)) }
        if x.ctx.attempt.number > 0 { a.append(SpanAttribute(SpanKey.attempts, x.ctx.attempt.number)) }
        if failed { a.append(SpanAttribute(SpanKey.errorType, status == 0 ? "client_closed" : String(status))) }
        let statusText: SpanStatus = failed ? .error(status == 0 ? "the client went away" : "HTTP \(status)") : .unset
        let name = [operation ?? x.ctx.method.name, model].compactMap { $0 }.joined(separator: " ")
        spans.record(.server(ctx, name: name, start: start, end: end, status: statusText, attributes: a))

        // Admission: limits and the cache, then the queue while the pool was full (no span
        // when there was neither: nothing was decided there).
        if let admitted = t.dequeuedAt ?? t.admittedAt, x.ctx.admission.ticket != nil || x.ctx.queue.waited != nil {
            var b: [SpanAttribute] = [SpanAttribute(SpanKey.tenant, x.ctx.tenant)]
            if let c = x.ctx.admission.cacheOutcome { b.append(SpanAttribute(SpanKey.cacheResult, c.rawValue)) }
            if let l = x.ctx.admission.limitOutcome { b.append(SpanAttribute(SpanKey.rateLimitResult, l.rawValue)) }
            if let w = x.ctx.queue.waited { b.append(SpanAttribute(SpanKey.queueWait, Double(w.nanoseconds) / 1e9)) }
            spans.record(.child(of: ctx, spanID: spans.newSpanID(), name: "sluice.admit", start: start, end: spans.unixNanos(admitted),
                                attributes: b))
        }
        // The routing decision (the last one, after any retry).
        if let routed = t.routedAt {
            var b: [SpanAttribute] = [SpanAttribute(SpanKey.routeReason, x.ctx.attempt.routeReason.rawValue)]
            if let pool { b.append(SpanAttribute(SpanKey.pool, pool)) }
            if let e = x.ctx.attempt.endpointName { b.append(SpanAttribute(SpanKey.endpoint, e)) }
            if let p = x.pool { b.append(SpanAttribute(SpanKey.routeCandidates, p.endpoints.count)) }
            let from = t.dequeuedAt ?? t.admittedAt ?? x.ctx.startedAt
            spans.record(.child(of: ctx, spanID: spans.newSpanID(), name: "sluice.route", start: spans.unixNanos(from),
                                end: spans.unixNanos(max(routed, from)), attributes: b))
        }
        // Each upstream attempt: a client span, its id the parent the model server saw.
        for at in t.attempts {
            var b: [SpanAttribute] = [SpanAttribute(SpanKey.attempt, at.number)]
            if let e = at.endpoint {
                b.append(SpanAttribute(SpanKey.endpoint, e))
                let (host, port) = hostPort(e)
                b.append(SpanAttribute(SpanKey.serverAddress, host))
                if let port { b.append(SpanAttribute(SpanKey.serverPort, port)) }
            }
            if at.status > 0 { b.append(SpanAttribute(SpanKey.httpStatus, at.status)) }
            b.append(SpanAttribute(SpanKey.httpMethod, x.ctx.method.name))
            let st: SpanStatus
            if let e = at.error {
                st = .error(e)
                b.append(SpanAttribute(SpanKey.errorType, at.status > 0 ? String(at.status) : "upstream_error"))
            } else {
                st = .unset
            }
            spans.record(.child(of: ctx, spanID: at.spanID, name: x.ctx.method.name, kind: .client,
                                start: spans.unixNanos(at.start), end: spans.unixNanos(at.end), status: st, attributes: b))
        }
    }

    /// GenAI's `gen_ai.operation.name` for an endpoint.
    static func operationName(_ e: OpenAIEndpoint?) -> String? {
        switch e {
        case .chatCompletions: "chat"
        case .completions: "text_completion"
        case .embeddings: "embeddings"
        case nil: nil
        }
    }

    /// `host:port` split at its last colon (a bracketed IPv6 host keeps its colons).
    static func hostPort(_ authority: String) -> (String, Int?) {
        guard let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") else { return (authority, nil) }
        return (String(authority[..<colon]), Int(authority[authority.index(after: colon)...]))
    }
}
