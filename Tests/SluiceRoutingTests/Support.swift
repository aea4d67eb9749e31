@testable import SluiceRouting

/// Candidates for table-driven cases: endpoint k has id 100 + k and home hash `k × golden`.
func candidates(_ n: Int, _ edit: (inout Candidate, Int) -> Void = { _, _ in }) -> [Candidate] {
    (0..<n).map { k in
        var c = Candidate(index: k, id: 100 + k, homeHash: UInt64(k + 1) &* 0x9E37_79B9_7F4A_7C15)
        edit(&c, k)
        return c
    }
}

/// Runs `body` over a mutable buffer holding `cs`, returning what it returns and the buffer after.
func withBuffer<R>(_ cs: [Candidate], _ body: (UnsafeMutableBufferPointer<Candidate>) -> R) -> (R, [Candidate]) {
    var copy = cs
    let r = copy.withUnsafeMutableBufferPointer { body($0) }
    return (r, copy)
}

/// The pool positions (`index`) a filter keeps, in order.
func kept(_ f: some RoutingFilter, _ cs: [Candidate], _ request: RoutingRequest = RoutingRequest()) -> [Int] {
    let (n, after) = withBuffer(cs) { f.apply($0, count: cs.count, request: request) }
    return after[0..<n].map(\.index)
}

/// Each candidate's score from one scorer with weight `weight`.
func scores(_ s: some RoutingScorer, _ cs: [Candidate], _ request: RoutingRequest = RoutingRequest(), weight: Double = 1) -> [Double] {
    let (_, after) = withBuffer(cs) { b in
        let ctx = DecisionContext(request: request, b, count: cs.count)
        s.score(b, count: cs.count, context: ctx, weight: weight)
    }
    return after.map(\.score)
}
