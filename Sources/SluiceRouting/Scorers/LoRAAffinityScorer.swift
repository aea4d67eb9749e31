/// LoRA affinity (the Gateway API Inference Extension's values): prefer endpoints where the
/// requested adapter is already running, then those with a free slot to run it.
/// Formula: s = 1 running, 0.8 registered with a free slot, 0.6 waiting for a slot, 0.5 not
/// scraped yet, 0 registered with every slot taken (or absent); 1 everywhere without an adapter.
public struct LoRAAffinityScorer: RoutingScorer {
    public var name: String { "lora_affinity" }
    public init() {}

    public static func value(_ a: AdapterState) -> Double {
        switch a {
        case .notRequested, .running: 1
        case .registeredSlotFree: 0.8
        case .waiting: 0.6
        case .unknown: 0.5
        case .registeredSlotsFull, .absent: 0
        }
    }

    public func score(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, context: DecisionContext, weight: Double) {
        for k in 0..<count { c[k].score += weight * Self.value(c[k].adapter) }
    }
}
