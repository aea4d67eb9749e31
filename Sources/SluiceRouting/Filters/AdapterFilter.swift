/// Keeps endpoints that can serve the requested LoRA adapter: it is registered there (running,
/// waiting or idle), or the endpoint has not been scraped yet. Formula: keep ⇔ `adapter ≠ absent`.
/// Requests without an adapter pass everywhere.
public struct AdapterFilter: RoutingFilter {
    public var name: String { "adapter" }
    public init() {}
    public func apply(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest) -> Int {
        guard request.adapterRequested else { return count }
        return Self.compact(c, count: count) { $0.adapter != .absent }
    }
}
