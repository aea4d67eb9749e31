/// Why a decision chose what it chose — one small value per decision, rendered as a stable short
/// label for the `reason` metrics label and the optional `x-sluice-route` response header.
///
/// The labels are part of the public contract (dashboards match on them): extend, never rename.
public enum RouteReason: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The chosen endpoint already holds leading blocks of the prompt prefix.
    case prefix
    /// A new prefix placed by rendezvous hashing of its first block.
    case rendezvous
    /// Load decided (no affinity applied, or the imbalance guard switched affinity off).
    case leastLoaded
    /// The request's LoRA adapter is loaded on the chosen endpoint and load/prefix did not decide.
    case loraLoaded
    /// The adapter is not loaded anywhere suitable; the chosen endpoint has a free slot and must
    /// load it first (on-demand loading).
    case loraFreeSlot
    case roundRobin
    case random
    /// Filters left exactly one endpoint.
    case onlyCandidate
    /// No endpoint is healthy: nothing chosen.
    case noHealthyEndpoint
    /// No healthy endpoint can serve the adapter: nothing chosen.
    case noAdapterCapacity
    /// Every candidate was over a saturation limit; the least saturated was chosen.
    case saturated

    /// The stable label (`prefix`, `least-loaded`, ...).
    @inlinable
    public var label: StaticString {
        switch self {
        case .prefix: "prefix"
        case .rendezvous: "rendezvous"
        case .leastLoaded: "least-loaded"
        case .loraLoaded: "lora-loaded"
        case .loraFreeSlot: "lora-free-slot"
        case .roundRobin: "round-robin"
        case .random: "random"
        case .onlyCandidate: "only-candidate"
        case .noHealthyEndpoint: "no-healthy-endpoint"
        case .noAdapterCapacity: "no-adapter-capacity"
        case .saturated: "saturated"
        }
    }

    public var description: String { label.description }
}
