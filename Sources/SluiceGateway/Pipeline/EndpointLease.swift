import SluiceIO

/// An endpoint chosen for a request, counted in its in-flight load (shared by all workers and
/// read by routing) from the pick until the lease ends. Noncopyable, so it has one owner — the
/// request's context — and released in `deinit`: whichever way the attempt ends (response,
/// failure, abort, retry, a timeout, the exchange dropped) the count goes back exactly once.
/// (Pingora's `inflight::Guard`.)
struct EndpointLease: ~Copyable {
    let endpoint: UpstreamPool.Endpoint

    init(_ endpoint: UpstreamPool.Endpoint) {
        self.endpoint = endpoint
        endpoint.runtime.inflight.add(1, ordering: .relaxed)
    }

    deinit {
        endpoint.runtime.inflight.add(-1, ordering: .relaxed)
    }
}
