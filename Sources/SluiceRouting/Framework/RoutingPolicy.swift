/// How a pool picks an endpoint (`pools[].routing.policy`).
public enum RoutingPolicy: String, Sendable {
    /// The pool's ``RoutingProfile`` (`GatewaySettings.Pool.profile`): filters, weighted
    /// scorers, best score; ``RoutingProfile/standard(weights:guard:saturation:)`` unless the
    /// config changes it.
    case `default`
    case roundRobin = "round_robin"
    case leastLoaded = "least_loaded"
}
