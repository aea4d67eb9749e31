/// Keeps admitted endpoints: those not ejected by active health checks or passive failures
/// (connect errors, resets, 5xx). Formula: keep ⇔ `admitted`.
public struct HealthFilter: RoutingFilter {
    public var name: String { "health" }
    public init() {}
    public func apply(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest) -> Int {
        Self.compact(c, count: count) { $0.admitted }
    }
}
