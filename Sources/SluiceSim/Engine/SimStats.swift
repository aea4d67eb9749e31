/// Why a sequence finished, as vLLM's `finished_reason` label spells it.
public enum SimFinishReason: String, Sendable, CaseIterable {
    case stop, length, abort, error, repetition
}

/// The engine's cumulative counters and histograms: what vLLM's `/metrics` exposes, before
/// rendering. Counters are in tokens where vLLM counts tokens.
public struct SimStats: Sendable {
    public var promptTokens: UInt64 = 0
    public var generationTokens: UInt64 = 0
    /// Prefix-cache lookups in queried tokens, and hits in cached tokens (vLLM's definitions).
    public var prefixCacheQueries: UInt64 = 0
    public var prefixCacheHits: UInt64 = 0
    public var preemptions: UInt64 = 0
    public var steps: UInt64 = 0
    public var loraLoads: UInt64 = 0
    public var finished: [SimFinishReason: UInt64] = [:]

    public var requestPromptTokens = SimHistogram(bounds: SimHistogram.tokens)
    public var requestGenerationTokens = SimHistogram(bounds: SimHistogram.tokens)
    public var iterationTokens = SimHistogram(bounds: SimHistogram.iterationTokens)
    public var maxGenerationTokens = SimHistogram(bounds: SimHistogram.tokens)
    public var paramsN = SimHistogram(bounds: SimHistogram.n)
    public var paramsMaxTokens = SimHistogram(bounds: SimHistogram.tokens)
    public var timeToFirstToken = SimHistogram(bounds: SimHistogram.ttft)
    public var interTokenLatency = SimHistogram(bounds: SimHistogram.itl)
    public var timePerOutputToken = SimHistogram(bounds: SimHistogram.itl)
    public var e2eLatency = SimHistogram(bounds: SimHistogram.latency)
    public var queueTime = SimHistogram(bounds: SimHistogram.latency)
    public var inferenceTime = SimHistogram(bounds: SimHistogram.latency)
    public var prefillTime = SimHistogram(bounds: SimHistogram.latency)
    public var decodeTime = SimHistogram(bounds: SimHistogram.latency)
    public var requestPreemptions = SimHistogram(bounds: SimHistogram.preemptions)
    public var prefillComputedTokens = SimHistogram(bounds: SimHistogram.tokens)

    public init() {}

    public func finished(_ r: SimFinishReason) -> UInt64 { finished[r] ?? 0 }
}
