import SluiceIO
import SluiceRouting

/// An endpoint chosen for a request, counted in its in-flight load (shared by all workers and
/// read by routing) from the pick until the lease ends. Noncopyable, so it has one owner — the
/// request's context — and released in `deinit`: whichever way the attempt ends (response,
/// failure, abort, retry, a timeout, the exchange dropped) the count goes back exactly once.
/// (Pingora's `inflight::Guard`.)
///
/// It also reports the attempt's life to the endpoint's cost-model counters
/// (``EndpointRuntime/prefillStarted(tokens:)`` and the rest), since it is the one thing that
/// exists exactly as long as the attempt does:
///
/// ```
/// leased ──sent(at:)──▶ prefilling ──firstToken(at:)──▶ decoding
///    │                      │                              │
///    └──────────────────────┴──────── deinit ──────────────┴──▶ finished (once, if sent)
/// ```
/// A lease that was never sent (the connect failed at once) reports nothing.
struct EndpointLease: ~Copyable {
    let endpoint: UpstreamPool.Endpoint
    /// The tenant whose share of a saturated pool this lease counts in (flow control), if any.
    let flowTenant: String?
    /// The request's priority band (a slot is held only for the bands above sheddable while
    /// sheddable requests are being refused).
    let flowBand: PriorityBand
    /// What the route decision expected there, for the counters and the learner; nil for
    /// requests the gateway does not read (no prompt: they are not reported).
    let prediction: RoutePrediction?
    /// When the request was sent (nil: not yet, or not reported).
    private(set) var sentAt: Instant?
    private(set) var sawFirstToken = false

    init(_ endpoint: UpstreamPool.Endpoint, flowTenant: String? = nil, band: PriorityBand = .standard,
         prediction: RoutePrediction? = nil) {
        self.endpoint = endpoint
        self.flowTenant = flowTenant
        self.flowBand = band
        self.prediction = prediction
        endpoint.runtime.inflight.add(1, ordering: .relaxed)
        if let t = flowTenant { endpoint.pool?.shared.flow.leaseBegan(tenant: t) }
    }

    /// The request went to the endpoint: its uncached prompt now queues for prefill there.
    /// Once per lease (each retry is a new lease).
    mutating func sent(at now: Instant) {
        guard let p = prediction, sentAt == nil else { return }
        sentAt = now
        endpoint.runtime.prefillStarted(tokens: p.uncachedTokens)
    }

    /// The first token arrived: the prefill is done, the request decodes there. `learn`: the
    /// time since ``sent(at:)`` is a time to first token (a stream; a whole JSON answer's first
    /// token comes with its last, which says nothing about prefill) and goes to the learner
    /// with what the decision saw there.
    mutating func firstToken(at now: Instant, learn: Bool) {
        guard let p = prediction, let s = sentAt, !sawFirstToken else { return }
        sawFirstToken = true
        let rt = endpoint.runtime
        rt.firstToken(tokens: p.uncachedTokens)
        if learn && p.predictedTTFT != nil {
            rt.observe(ttft: now.since(s), promptTokens: p.promptTokens, uncachedTokens: p.uncachedTokens,
                       queuedAhead: p.queuedTokens, decoding: p.decoding, at: now)
        }
    }

    /// A stream's decode: `events` token events from its first to its last at `last`, fed to
    /// the learner's step fit with the sequences decoding there now (this one among them).
    func decoded(firstAt first: Instant, lastAt last: Instant, events: Int, at now: Instant) {
        guard let p = prediction, p.predictedTTFT != nil, sawFirstToken, events > 1, last > first else { return }
        let rt = endpoint.runtime
        rt.observeDecode(decodeTime: last.since(first), outputTokens: events,
                         decoding: max(1, rt.decodingNow.load(ordering: .relaxed)), at: now)
    }

    deinit {
        let rt = endpoint.runtime
        if let p = prediction, sentAt != nil { rt.finished(tokens: p.uncachedTokens, sawFirstToken: sawFirstToken) }
        rt.inflight.add(-1, ordering: .relaxed)
        guard let pool = endpoint.pool else { return }
        let w = pool.worker
        if let t = flowTenant {
            // The slot may be kept a moment for the tenant's next request; when the hold
            // ends, this worker dispatches again.
            if let until = pool.shared.flow.leaseEnded(tenant: t, band: flowBand, pool: pool, w.settings, now: w.loop.now) { w.flowTick(at: until) }
        } else if pool.shared.flow.queued.load(ordering: .relaxed) > 0 {
            // A slot freed: a request waiting for this pool may go.
            pool.shared.flow.dispatch(pool, w.settings, now: w.loop.now)
        }
    }
}

/// What the route decision expected at the leased endpoint (``RouteDecision``'s numbers for
/// one attempt): tokens for the lease counters, and the inputs of the prediction for the
/// learner. Plain integers (and one optional double): a lease stays small and allocation-free.
struct RoutePrediction {
    /// Seconds from sending to the first token; nil for round robin and the weighted profile
    /// (the counters still move: a pool may change profile on a reload).
    let predictedTTFT: Double?
    let promptTokens: Int
    let uncachedTokens: Int
    let queuedTokens: Int
    let decoding: Int

    init(_ d: RouteDecision) {
        predictedTTFT = d.predictedTTFT
        promptTokens = d.promptTokens
        uncachedTokens = d.uncachedTokens
        queuedTokens = d.queuedTokens
        decoding = d.decoding
    }
}
