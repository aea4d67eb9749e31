/// The cost model: this request's predicted time to first token (TTFT) at one candidate, from
/// the work queued ahead of it there, its own uncached prefill and the decoding that shares
/// every engine step with them. With the endpoint's ``LatencyCoefficients`` `c`:
///
/// ```
/// hit   = min(prefixBlocks × blockTokens, promptTokens)          prompt tokens the prefix index says are cached there
/// P     = promptTokens − hit                                      its own uncached prefill
/// m     = meanUncachedTokens, or promptTokens before anything was routed there
/// Q     = (pendingTokens, or pendingRequests × m when unknown) + max(0, waiting − pendingRequests) × m
///                                                                 prefill queued ahead: what this gateway sent without a
///                                                                 first token yet, plus the server's waiting queue beyond
///                                                                 it (other gateways' requests, from the scrape)
/// D     = max(decoding, running − pendingRequests)                sequences decoding there
/// T     = Q + P
/// steps = ½ + max(1, ⌈T / chunkTokens⌉)                           half a step in progress, then the steps the prefill takes
/// TTFT  = c.overhead + c.prefillPerToken × T + steps × (c.stepBase + c.stepPerSequence × D) + adapter
/// ```
///
/// `adapter` is 0 when no adapter is asked for or it is running there, `adapterLoad` when it
/// is registered with a free slot (or the endpoint is not scraped yet), `adapterWait` when its
/// requests wait for a slot or every slot holds another adapter. A prefix hit is worth exactly
/// the prefill it saves (`hit × prefillPerToken` and the steps it spares), never more: a
/// holder whose queue costs more than that loses to an idle endpoint.
///
/// The pick minimises the request's cost there: its TTFT plus what its prefill costs the
/// others, since every sequence decoding there waits for that prefill before its next token:
///
/// ```
/// cost  = TTFT + interference × D × P × c.prefillPerToken
/// ```
///
/// With `interference` 1 this is the increase of all requests' summed latency (each of the `D`
/// sequences is delayed by this request's own prefill); 0 picks by this request's TTFT alone.
/// It is what keeps a prefix's later turns on its holder while the holder is merely busy
/// (recomputing a 3,000-token prompt elsewhere slows everything decoding there), and it is 0 on
/// idle endpoints, so a cold burst still spreads.
public struct CostModel: Sendable, Equatable {
    /// Prompt tokens one engine step prefills (vLLM's `--max-num-batched-tokens`).
    public var chunkTokens: Int
    /// Bringing a registered adapter into a free slot.
    public var adapterLoad: Double
    /// Waiting for a slot when every one holds another adapter (requests there must finish).
    public var adapterWait: Double
    /// The weight of the delay this request's prefill imposes on the sequences decoding there.
    public var interference: Double

    public init(chunkTokens: Int = 2048, adapterLoad: Double = 0.01, adapterWait: Double = 0.25, interference: Double = 1) {
        self.chunkTokens = max(1, chunkTokens)
        self.adapterLoad = adapterLoad
        self.adapterWait = adapterWait
        self.interference = max(0, interference)
    }

    public struct Prediction: Sendable, Equatable {
        /// Seconds to the first token.
        public var ttft: Double
        /// What the pick minimises: `ttft` + the interference term.
        public var cost: Double
        /// Prompt tokens expected cached there, and the rest (P).
        public var hitTokens: Int
        public var uncachedTokens: Int
        /// Prefill tokens queued ahead (Q) and sequences decoding (D).
        public var queuedTokens: Int
        public var decoding: Int

        @inlinable
        init(ttft: Double, cost: Double, hitTokens: Int, uncachedTokens: Int, queuedTokens: Int, decoding: Int) {
            self.ttft = ttft
            self.cost = cost
            self.hitTokens = hitTokens
            self.uncachedTokens = uncachedTokens
            self.queuedTokens = queuedTokens
            self.decoding = decoding
        }
    }

    /// Q and D of the formula (for tests and the decision's record).
    @inlinable @inline(__always)
    public static func load(_ c: Candidate, promptTokens: Int) -> (queuedTokens: Int, decoding: Int) {
        let (q, d) = loadValues(c, promptTokens: Double(max(0, promptTokens)))
        return (Int(q + 0.5), Int(d))
    }

    /// Q and D as doubles: the per-candidate path (no rounding calls, no integer division).
    @inlinable @inline(__always)
    static func loadValues(_ c: Candidate, promptTokens: Double) -> (Double, Double) {
        let m = c.meanUncached32 > 0 ? Double(c.meanUncached32) : promptTokens
        let pending = Double(max(0, c.pendingRequests32))
        let extra = max(0, Double(c.waiting) - pending)
        let own = c.pendingTokens32 >= 0 ? Double(c.pendingTokens32) : pending * m
        return (own + extra * m, max(Double(c.decoding32), Double(c.running32) - pending, 0))
    }

    @inlinable @inline(__always)
    public func predict(_ c: Candidate, _ r: RoutingRequest) -> Prediction {
        let prompt = max(0, r.promptTokens)
        let hit = min(max(0, c.prefixBlocks) * r.blockTokens, prompt)
        let p = prompt - hit
        let (q, d) = Self.loadValues(c, promptTokens: Double(prompt))
        let t = (q + 0.5).rounded(.down) + Double(p)
        // ⌈T / chunk⌉ without an integer division: T is a whole number of tokens.
        let chunks = max(1, (t / Double(chunkTokens)).rounded(.up))
        let steps = 0.5 + chunks
        let k = c.coefficients32
        let prefill = Double(k.y)
        var ttft = Double(k.x) + prefill * t + steps * (Double(k.z) + Double(k.w) * d)
        switch c.adapter {
        case .notRequested, .running: break
        case .registeredSlotFree, .unknown: ttft += adapterLoad
        case .waiting, .registeredSlotsFull, .absent: ttft += adapterWait
        }
        let cost = ttft + interference * d * Double(p) * prefill
        return Prediction(ttft: ttft, cost: cost, hitTokens: hit, uncachedTokens: p, queuedTokens: Int(q + 0.5), decoding: Int(d))
    }
}
