/// Keeps a cache hit from piling onto a busy endpoint (SGLang's known failure: after a miss,
/// new traffic follows the cache onto an overloaded worker). With `min` the least load among
/// the candidates: keep ⇔ load ≤ max(min × `factor`, min + `slack`). The least loaded endpoint
/// always passes, so the guard never empties the list, and since it bounds load relative to the
/// least loaded, a burst of misses spreads instead of landing on one endpoint.
public struct LoadGuardFilter: RoutingFilter {
    public var name: String { "load_guard" }
    public var factor: Double
    public var slack: Int

    public init(factor: Double = 2, slack: Int = 8) {
        self.factor = factor
        self.slack = slack
    }

    /// The highest load that passes when the least loaded candidate has `minLoad`.
    public func bound(minLoad: Int) -> Int {
        max(Int((Double(minLoad) * factor).rounded(.down)), minLoad + slack)
    }

    public func apply(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest) -> Int {
        var least = Int.max
        for k in 0..<count { least = min(least, c[k].load) }
        let limit = bound(minLoad: least)
        return Self.compact(c, count: count) { $0.load <= limit }
    }
}
