/// Removes candidates that must not get the request. A filter sees the whole candidate list at
/// once (one dynamic call per decision, not per endpoint) and compacts the survivors to the
/// front, keeping their order.
public protocol RoutingFilter: Sendable {
    /// The config name (`pools[].routing.filters`).
    var name: String { get }
    /// Keeps the candidates among `c[0..<count]` that pass; returns how many (at the front).
    func apply(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest) -> Int
}

extension RoutingFilter {
    /// Keeps the candidates for which `keep` holds, in order; returns how many.
    @inline(__always)
    static func compact(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, _ keep: (Candidate) -> Bool) -> Int {
        var n = 0
        for k in 0..<count where keep(c[k]) {
            if n != k { c[n] = c[k] }
            n += 1
        }
        return n
    }
}
