/// The outcome of one routing decision.
///
/// Contract: `endpointIndex` indexes the endpoint buffer passed to `decide`, or is nil when nothing
/// can serve (`reason` is then `noHealthyEndpoint` or `noAdapterCapacity`). The gateway commits a
/// choice by taking a lease on the endpoint (in-flight +1), recording the prefix in `PrefixIndex`,
/// and reporting `reason`. `matchedBlocks` / `totalBlocks` feed the prefix-hit metrics
/// (`matched * block_bytes` of `total * block_bytes` prompt bytes were predicted to be cached).
/// `loadsAdapter` is true when the chosen endpoint does not have the request's adapter loaded and
/// must load it first (on-demand loading).
public struct Decision: Sendable, Equatable {
    public var endpointIndex: Int?
    public var reason: RouteReason
    public var matchedBlocks: Int
    public var totalBlocks: Int
    public var loadsAdapter: Bool

    @inlinable
    public init(endpointIndex: Int?, reason: RouteReason, matchedBlocks: Int = 0, totalBlocks: Int = 0, loadsAdapter: Bool = false) {
        self.endpointIndex = endpointIndex
        self.reason = reason
        self.matchedBlocks = matchedBlocks
        self.totalBlocks = totalBlocks
        self.loadsAdapter = loadsAdapter
    }
}
