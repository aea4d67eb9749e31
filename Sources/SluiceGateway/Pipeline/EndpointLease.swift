import SluiceIO
import SluiceRouting

/// An endpoint chosen for a request, counted in its in-flight load (shared by all workers and
/// read by routing) from the pick until the lease ends. Noncopyable, so it has one owner — the
/// request's context — and released in `deinit`: whichever way the attempt ends (response,
/// failure, abort, retry, a timeout, the exchange dropped) the count goes back exactly once.
/// (Pingora's `inflight::Guard`.)
struct EndpointLease: ~Copyable {
    let endpoint: UpstreamPool.Endpoint
    /// The tenant whose share of a saturated pool this lease counts in (flow control), if any.
    let flowTenant: String?
    /// The request's priority band (a slot is held only for the bands above sheddable while
    /// sheddable requests are being refused).
    let flowBand: PriorityBand

    init(_ endpoint: UpstreamPool.Endpoint, flowTenant: String? = nil, band: PriorityBand = .standard) {
        self.endpoint = endpoint
        self.flowTenant = flowTenant
        self.flowBand = band
        endpoint.runtime.inflight.add(1, ordering: .relaxed)
        if let t = flowTenant { endpoint.pool?.shared.flow.leaseBegan(tenant: t) }
    }

    deinit {
        endpoint.runtime.inflight.add(-1, ordering: .relaxed)
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
