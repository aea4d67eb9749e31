/// Why an endpoint was chosen (metrics and the optional `x-sluice-route` header).
public enum RouteReason: String, CaseIterable, Sendable {
    case roundRobin = "round_robin"
    case prefixHit = "prefix_hit"
    case rendezvous = "new_prefix"
    case leastLoaded = "least_loaded"
    case adapter = "adapter_affinity"
    case onlyCandidate = "only_candidate"
    case panic = "no_healthy_endpoint"
    /// Served from the response cache: no endpoint was picked.
    case cache = "cache_hit"
    /// The cost model's pick without a prefix hit or a new prefix: the least predicted TTFT.
    case lowestTTFT = "lowest_ttft"
    /// The endpoint holding the stored response the request continues, retrieves or cancels.
    case storedResponse = "stored_response"

    /// Position in `allCases`: per-reason metric slots are an array indexed by it, so counting a
    /// decision is an index, not a dictionary lookup (tests check the order).
    public var ordinal: Int {
        switch self {
        case .roundRobin: 0
        case .prefixHit: 1
        case .rendezvous: 2
        case .leastLoaded: 3
        case .adapter: 4
        case .onlyCandidate: 5
        case .panic: 6
        case .cache: 7
        case .lowestTTFT: 8
        case .storedResponse: 9
        }
    }
}
