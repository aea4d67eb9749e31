/// What routing knows about one endpoint at decision time: an immutable snapshot the gateway fills
/// from shared telemetry (scraped `/metrics`, health checks, `/v1/models`) and its own counters.
///
/// Contract:
/// - `key` is the endpoint's stable identity (see `EndpointKey`); the prefix index and rendezvous
///   hashing use it, so it must be the same on every replica.
/// - `healthy == false` removes the endpoint (`HealthFilter`). `telemetryFresh == false` means the
///   scraped fields (`waiting`, `running`, `kvUse`, LoRA running/waiting) are older than the
///   staleness bound: the endpoint stays routable but the scrape-based scorers rate it as badly as
///   possible (queue 0, KV 0); gateway-local fields stay trusted.
/// - `inflightRequests` / `inflightTokens` are the gateway's own real-time counts of requests it has
///   sent and not yet finished, incremented at commit — they are what keeps a burst from piling onto
///   one endpoint between scrapes.
/// - LoRA: `maxAdapterSlots` is vLLM's `max_lora` (0 when LoRA is off or unknown);
///   `adaptersRunning` / `adaptersWaiting` are from `vllm:lora_requests_info`; `adaptersLoaded` are
///   the adapters the server has registered (`/v1/models`). Running adapters count as loaded.
public struct EndpointView: Sendable, Equatable {
    public var key: EndpointKey
    public var healthy: Bool
    public var telemetryFresh: Bool
    /// Requests queued on the server (`vllm:num_requests_waiting`).
    public var waiting: Int
    /// Requests being decoded (`vllm:num_requests_running`).
    public var running: Int
    /// KV-cache use in `0...1` (`vllm:kv_cache_usage_perc`).
    public var kvUse: Double
    /// KV-cache capacity in tokens, 0 when unknown (`vllm:cache_config_info`).
    public var kvCapacityTokens: Int
    public var inflightRequests: Int
    public var inflightTokens: Int
    public var maxAdapterSlots: Int
    public var adaptersLoaded: AdapterSet
    public var adaptersRunning: AdapterSet
    public var adaptersWaiting: AdapterSet

    public init(
        key: EndpointKey,
        healthy: Bool = true,
        telemetryFresh: Bool = true,
        waiting: Int = 0,
        running: Int = 0,
        kvUse: Double = 0,
        kvCapacityTokens: Int = 0,
        inflightRequests: Int = 0,
        inflightTokens: Int = 0,
        maxAdapterSlots: Int = 0,
        adaptersLoaded: AdapterSet = [],
        adaptersRunning: AdapterSet = [],
        adaptersWaiting: AdapterSet = []
    ) {
        self.key = key
        self.healthy = healthy
        self.telemetryFresh = telemetryFresh
        self.waiting = waiting
        self.running = running
        self.kvUse = kvUse
        self.kvCapacityTokens = kvCapacityTokens
        self.inflightRequests = inflightRequests
        self.inflightTokens = inflightTokens
        self.maxAdapterSlots = maxAdapterSlots
        self.adaptersLoaded = adaptersLoaded
        self.adaptersRunning = adaptersRunning
        self.adaptersWaiting = adaptersWaiting
    }

    /// The load used for spill-over and the imbalance guard: gateway-local in-flight requests plus
    /// the server's queue (`inflightRequests + waiting`), in requests.
    @inlinable
    public var load: Int { inflightRequests &+ waiting }

    /// Whether `adapter` is loaded (registered) or running here.
    @inlinable
    public func hasAdapterLoaded(_ adapter: AdapterID) -> Bool {
        adaptersLoaded.contains(adapter) || adaptersRunning.contains(adapter)
    }

    /// Whether another adapter could become active: `|running ∪ waiting| < maxAdapterSlots`
    /// (the GIE LoRA-affinity capacity rule).
    @inlinable
    public var hasFreeAdapterSlot: Bool {
        adaptersRunning.union(adaptersWaiting).count < maxAdapterSlots
    }
}
