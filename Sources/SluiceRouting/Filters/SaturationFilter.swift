/// Hard limits: keeps endpoints whose queue and KV cache are below the limits.
/// Formula: keep ⇔ (`maxWaiting` = 0 ∨ waiting < maxWaiting) ∧ (`maxKVUse` ≥ 1 ∨ kvUse < maxKVUse).
/// When every candidate is over a limit, all are kept: the request then queues at a server
/// (which bounds its own queue) instead of failing at the gateway.
public struct SaturationFilter: RoutingFilter {
    public var name: String { "saturation" }
    /// Waiting requests at which an endpoint is saturated; 0 turns the queue limit off.
    public var maxWaiting: Int
    /// KV-cache use at which an endpoint is saturated; 1 or more turns the KV limit off.
    public var maxKVUse: Double

    public init(maxWaiting: Int = 0, maxKVUse: Double = 1) {
        self.maxWaiting = maxWaiting
        self.maxKVUse = maxKVUse
    }

    @inline(__always) func fits(_ x: Candidate) -> Bool {
        (maxWaiting <= 0 || x.waiting < maxWaiting) && (maxKVUse >= 1 || x.kvUse < maxKVUse)
    }

    public func apply(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest) -> Int {
        if maxWaiting <= 0 && maxKVUse >= 1 { return count }
        var any = false
        for k in 0..<count where fits(c[k]) {
            any = true
            break
        }
        return any ? Self.compact(c, count: count) { fits($0) } : count
    }
}
