/// How a pool picks an endpoint (`pools[].routing.policy`).
public enum RoutingPolicy: String, Sendable {
    /// The cost model (``RoutingProfile/costModel(model:absoluteBand:relativeBand:saturation:)``):
    /// the least predicted time to first token.
    case `default`
    /// The hand-weighted profile that was the default before the cost model
    /// (``RoutingProfile/weighted(weights:guard:saturation:)``): prefix affinity 10, home 1,
    /// queue 1, KV 1, LoRA 1, behind the load guard.
    case weighted
    case roundRobin = "round_robin"
    case leastLoaded = "least_loaded"
}
