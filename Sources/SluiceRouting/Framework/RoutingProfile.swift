/// A routing policy composed of parts: filters in order, weighted scorers, a picker
/// (`pools[].routing` in the config). ``decide(_:count:request:random:)`` is pure and allocates
/// nothing: the caller fills the candidates (from telemetry and the prefix index) into scratch
/// space and commits the choice.
public struct RoutingProfile: Sendable {
    public struct Weighted: Sendable {
        public var scorer: any RoutingScorer
        public var weight: Double
        public init(_ scorer: any RoutingScorer, _ weight: Double) {
            self.scorer = scorer
            self.weight = weight
        }
    }

    public let filters: [any RoutingFilter]
    public let scorers: [Weighted]
    public let picker: any RoutingPicker
    /// Whether a scorer reads prefix blocks (otherwise the caller need not look them up).
    /// Worked out once here: a type check per scorer per decision is not free.
    public let usesPrefix: Bool
    /// The cost model of the profile's ``PredictedTTFTScorer``, if it has one: the decision
    /// then carries its prediction for the chosen endpoint.
    public let costModel: CostModel?

    public init(filters: [any RoutingFilter], scorers: [Weighted], picker: any RoutingPicker = BestScorePicker()) {
        self.filters = filters
        self.scorers = scorers
        self.picker = picker
        costModel = scorers.lazy.compactMap { $0.weight != 0 ? ($0.scorer as? PredictedTTFTScorer)?.model : nil }.first
        usesPrefix = scorers.contains { $0.weight != 0 && ($0.scorer is PrefixAffinityScorer || $0.scorer is PrefixHomeScorer
                                                           || $0.scorer is PredictedTTFTScorer) }
    }

    /// The chosen candidate (its position in `c`; its `index` is the pool position), why, and
    /// what the cost model predicts there; nil when no candidate passes the filters. Filters
    /// reorder `c` (survivors first).
    public func decide(_ c: UnsafeMutableBufferPointer<Candidate>, count: Int, request: RoutingRequest,
                       random: inout SplitMix64) -> RoutingDecision? {
        var n = count
        for f in filters {
            n = f.apply(c, count: n, request: request)
            if n == 0 { return nil }
        }
        let p: Int
        let reason: RouteReason
        if n == 1 {
            p = 0
            reason = .onlyCandidate
        } else {
            let context = DecisionContext(request: request, c, count: n, loads: costModel == nil)
            for k in 0..<n { c[k].score = 0 }
            for s in scorers where s.weight != 0 { s.scorer.score(c, count: n, context: context, weight: s.weight) }
            p = picker.pick(c, count: n, context: context, random: &random)
            if c[p].prefixBlocks > 0 {
                reason = .prefixHit
            } else if costModel != nil {
                reason = request.promptBlocks > 0 && !context.anyPrefix ? .rendezvous
                    : request.adapterRequested ? .adapter : .lowestTTFT
            } else {
                reason = p == context.home && usesPrefix ? .rendezvous : request.adapterRequested ? .adapter : .leastLoaded
            }
        }
        guard let model = costModel else {
            let hit = min(max(0, c[p].prefixBlocks) * request.blockTokens, request.promptTokens)
            return RoutingDecision(position: p, reason: reason, hitTokens: hit, uncachedTokens: request.promptTokens - hit)
        }
        let e = model.predict(c[p], request)
        return RoutingDecision(position: p, reason: reason, predictedTTFT: e.ttft, hitTokens: e.hitTokens,
                               uncachedTokens: e.uncachedTokens, queuedTokens: e.queuedTokens, decoding: e.decoding)
    }
}

extension RoutingProfile {
    /// `default`: the cost model. Health and adapter filters and the optional hard limits, then
    /// ``PredictedTTFTScorer`` and ``LeastTTFTPicker``: the least predicted time to first token,
    /// alike candidates by rendezvous hashing of the prefix (seeded random without one).
    public static func costModel(model: CostModel = CostModel(), absoluteBand: Double = 0.001, relativeBand: Double = 0.05,
                                 homeBand: Double = 0.25, saturation: SaturationFilter = SaturationFilter()) -> RoutingProfile {
        var filters: [any RoutingFilter] = [HealthFilter(), AdapterFilter()]
        if saturation.maxWaiting > 0 || saturation.maxKVUse < 1 { filters.append(saturation) }
        return RoutingProfile(filters: filters, scorers: [Weighted(PredictedTTFTScorer(model: model), 1)],
                              picker: LeastTTFTPicker(absoluteBand: absoluteBand, relativeBand: relativeBand, homeBand: homeBand))
    }

    /// The weighted profile's scorers and weights (config overrides by scorer name). Prefix affinity dominates: a miss
    /// costs a prefill of the whole uncached prompt (tens of ms for a few thousand tokens) and
    /// slows every request batched with it, while one more request in a queue costs a few ms;
    /// the load guard, not the queue score, is what moves traffic off a busy holder. The home
    /// counts 1: enough to place a new prefix where the other replicas place it when loads are
    /// alike, not enough to pile every chat of a prefix onto it. Measured with
    /// `Benchmarks/routing-quality.py` (32 users, 8 simulated servers, 2026-12-05): GIE's
    /// weights (prefix 3, queue 2, KV 2) with the home at 3 gave TTFT p90 10.9 ms and servers
    /// loaded 2.0-4.3 M prompt tokens each; these give 9.6-9.9 ms with 2.9-3.8 M (direct
    /// routing with every prefix pinned to one server: 8.9 ms), hit rate 0.967.
    public static let defaultScorers: [Weighted] = [
        Weighted(PrefixAffinityScorer(), 10), Weighted(PrefixHomeScorer(), 1), Weighted(QueueDepthScorer(), 1),
        Weighted(KVUseScorer(), 1), Weighted(LoRAAffinityScorer(), 1), Weighted(InflightLoadScorer(), 0),
    ]

    /// `weighted` (the default before the cost model): health and adapter filters, optional hard
    /// limits, the load guard; the weighted scorers above (`weights` overrides them by name);
    /// best score.
    public static func weighted(weights: [String: Double] = [:], guard loadGuard: LoadGuardFilter = LoadGuardFilter(),
                                saturation: SaturationFilter = SaturationFilter()) -> RoutingProfile {
        var filters: [any RoutingFilter] = [HealthFilter(), AdapterFilter()]
        if saturation.maxWaiting > 0 || saturation.maxKVUse < 1 { filters.append(saturation) }
        filters.append(loadGuard)
        let scorers = defaultScorers.map { Weighted($0.scorer, weights[$0.scorer.name] ?? $0.weight) }
        return RoutingProfile(filters: filters, scorers: scorers)
    }

    /// `least_loaded`: health and adapter filters, queue depth alone, ties at random.
    public static let leastLoaded = RoutingProfile(filters: [HealthFilter(), AdapterFilter()],
                                                   scorers: [Weighted(QueueDepthScorer(), 1)])
}
