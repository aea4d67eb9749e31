/// One endpoint as a routing decision sees it: a snapshot the gateway fills from what it knows
/// (health, its own in-flight count, scraped telemetry, the prefix index) before each decision.
/// Filters drop candidates, scorers add to ``score``, the picker takes one.
public struct Candidate: Sendable, Equatable {
    /// Position in the pool: what the decision returns.
    public var index: Int
    /// The endpoint's process-unique id: the prefix index's key.
    public var id: Int
    /// Requests the gateway itself has in flight there (exact, real time).
    public var inflight: Int
    /// vLLM's `num_requests_waiting` from the latest scrape (0 when the scrape is stale).
    public var waiting: Int
    /// vLLM's KV-cache use in [0, 1] from the latest scrape (0 when stale).
    public var kvUse: Double
    /// A hash of the endpoint's address, the same on every replica (rendezvous hashing).
    public var homeHash: UInt64
    /// Leading prompt blocks the prefix index says were sent there (filled by ``PrefixIndex/match(_:into:count:)``).
    public var prefixBlocks: Int
    /// The weighted sum of the scorers' scores (the profile resets it per decision).
    public var score: Double

    // What the cost model reads (``CostModel``); the weighted profile ignores it. Stored in 32
    // bits: a decision writes 256 of these, and at 170 bytes each they no longer fit in L1
    // (the read loop took twice as long as at 120).

    /// vLLM's `num_requests_running` from the latest scrape (0 when stale).
    public var running: Int { get { Int(running32) } set { running32 = Self.clamp32(newValue) } }
    /// Requests the gateway sent there that have not produced a first token yet, and their
    /// uncached prompt tokens (exact, real time: the endpoint's lease counters). Tokens nil:
    /// not reported (the request path does not report its requests): the cost model then
    /// takes each pending request at the mean uncached prompt.
    public var pendingRequests: Int { get { Int(pendingRequests32) } set { pendingRequests32 = Self.clamp32(newValue) } }
    public var pendingTokens: Int? {
        get { pendingTokens32 < 0 ? nil : Int(pendingTokens32) }
        set { pendingTokens32 = newValue.map { Self.clamp32($0) } ?? -1 }
    }
    /// Sequences of this gateway's decoding there (first token seen, not finished).
    public var decoding: Int { get { Int(decoding32) } set { decoding32 = Self.clamp32(newValue) } }
    /// The mean uncached prompt tokens of the requests recently routed there: what one request
    /// in the server's waiting queue is taken to cost.
    public var meanUncachedTokens: Double { get { Double(meanUncached32) } set { meanUncached32 = Float(newValue) } }
    /// The endpoint's learned latency coefficients (stored as `Float`: 7 digits are plenty).
    public var coefficients: LatencyCoefficients {
        get {
            LatencyCoefficients(overhead: Double(coefficients32.x), prefillPerToken: Double(coefficients32.y),
                                stepBase: Double(coefficients32.z), stepPerSequence: Double(coefficients32.w))
        }
        set {
            coefficients32 = SIMD4(Float(newValue.overhead), Float(newValue.prefillPerToken), Float(newValue.stepBase),
                                   Float(newValue.stepPerSequence))
        }
    }
    /// This request's predicted time to first token there (seconds), and the cost the cost
    /// model minimises (TTFT + the delay its prefill imposes on others), set by ``PredictedTTFTScorer``.
    public var predictedTTFT: Double
    public var cost: Double

    public var coefficients32: SIMD4<Float>
    public var running32: Int32
    public var pendingRequests32: Int32
    /// -1: not reported.
    public var pendingTokens32: Int32
    public var decoding32: Int32
    public var meanUncached32: Float
    /// Not ejected by health checks or passive failures.
    public var admitted: Bool
    /// Whether and how the endpoint can serve the requested LoRA adapter.
    public var adapter: AdapterState

    @inlinable @inline(__always)
    static func clamp32(_ v: Int) -> Int32 { Int32(clamping: v) }

    @inlinable
    public init(index: Int, id: Int, admitted: Bool = true, inflight: Int = 0, waiting: Int = 0, kvUse: Double = 0,
                adapter: AdapterState = .notRequested, homeHash: UInt64, prefixBlocks: Int = 0, running: Int = 0,
                pendingRequests: Int = 0, pendingTokens: Int? = 0, decoding: Int = 0, meanUncachedTokens: Double = 0,
                coefficients: LatencyCoefficients = .defaults) {
        self.index = index
        self.id = id
        self.admitted = admitted
        self.inflight = inflight
        self.waiting = waiting
        self.kvUse = kvUse
        self.adapter = adapter
        self.homeHash = homeHash
        self.prefixBlocks = prefixBlocks
        score = 0
        running32 = Int32(clamping: running)
        pendingRequests32 = Int32(clamping: pendingRequests)
        pendingTokens32 = pendingTokens.map { Int32(clamping: max(0, $0)) } ?? -1
        decoding32 = Int32(clamping: decoding)
        meanUncached32 = Float(meanUncachedTokens)
        coefficients32 = SIMD4(Float(coefficients.overhead), Float(coefficients.prefillPerToken), Float(coefficients.stepBase),
                               Float(coefficients.stepPerSequence))
        predictedTTFT = 0
        cost = 0
    }

    /// Queue depth as the gateway sees it: its own requests in flight there plus the server's
    /// waiting queue (the scrape lags by up to an interval; the in-flight count does not).
    @inline(__always) public var load: Int { inflight + waiting }
}

/// What an endpoint can do for the requested LoRA adapter, from its scraped
/// `vllm:lora_requests_info` (running, waiting, `max_lora`) and `/v1/models` (registered).
public enum AdapterState: Sendable, Equatable {
    /// The request names no adapter.
    case notRequested
    /// The adapter is in a slot now (requests for it are running).
    case running
    /// Registered and not running, with a free slot to run it in.
    case registeredSlotFree
    /// Requests for it are waiting (for a slot).
    case waiting
    /// Registered, but every slot holds another adapter.
    case registeredSlotsFull
    /// The endpoint has not been scraped yet: it may have the adapter.
    case unknown
    /// Not registered there: the endpoint cannot serve the request.
    case absent
}
