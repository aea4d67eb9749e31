/// The load signals the gateway reads from a vLLM `/metrics` scrape.
///
/// Contract: fields are nil when the scrape has no such series. Gauges and counters that vLLM
/// exports per engine (`engine="0"`, `"1"`, …) are summed over their series, except
/// `kvCacheUsage`, a fraction, which is the mean over engines (a sum of fractions is not a usage).
/// `kv_cache_usage_perc` falls back to the older `gpu_cache_usage_perc`. Ranges index the body.
public struct VLLMMetrics: Sendable, Equatable {
    public var requestsWaiting: Double?
    public var requestsRunning: Double?
    /// KV-cache usage in 0...1.
    public var kvCacheUsage: Double?
    /// The newest `vllm:lora_requests_info` series.
    public var lora: LoRAInfo?
    /// `cache_config_info` `block_size` (tokens per KV block).
    public var blockSize: Int?
    /// `cache_config_info` `num_gpu_blocks`, summed over engines.
    public var numGPUBlocks: Int?
    public var prefixCacheHits: Double?
    public var prefixCacheQueries: Double?
    /// Histogram sums and counts the gateway's latency learner reads (summed over engines):
    /// `request_prefill_time_seconds` (scheduled to first token, the queue excluded),
    /// `request_prefill_kv_computed_tokens` (prompt tokens computed, cached ones excluded),
    /// `inter_token_latency_seconds`.
    public var prefillTime: HistogramTotals?
    public var prefillComputedTokens: HistogramTotals?
    public var interTokenLatency: HistogramTotals?

    /// A histogram's `_sum` and `_count`.
    public struct HistogramTotals: Sendable, Equatable {
        public var sum = 0.0
        public var count = 0.0
        public init(sum: Double = 0, count: Double = 0) {
            self.sum = sum
            self.count = count
        }
    }

    /// vLLM keeps one `lora_requests_info` series per distinct (running, waiting) combination it has
    /// ever seen, valued with the time it was last current; the one with the largest value is now.
    public struct LoRAInfo: Sendable, Equatable {
        public var maxLoras: Int?
        /// Comma-separated adapter names (raw label value); iterate with ``VLLMMetrics/adapterNames(_:in:)``.
        public var running: ByteRange
        public var waiting: ByteRange
        /// The series' value: a Unix time in seconds.
        public var updatedAt: Double
    }

    public init() {}

    /// Extracts the gateway's signals from a scrape body (one pass).
    public static func extract(_ bytes: UnsafeRawBufferPointer) throws(PrometheusParseError) -> VLLMMetrics {
        var m = VLLMMetrics()
        var parser = PrometheusText(bytes)
        var kvSum = 0.0, kvCount = 0
        var gpuSum = 0.0, gpuCount = 0
        while let s = try parser.next() {
            // Cheap prefilter: everything we want starts with "vllm:".
            guard s.name.count > 5, bytes[s.name.start + 4] == UInt8(ascii: ":") else { continue }
            func named(_ n: StaticString) -> Bool { PrometheusText.nameIs(s, n, in: bytes) }
            if named("vllm:num_requests_waiting") {
                m.requestsWaiting = (m.requestsWaiting ?? 0) + s.value
            } else if named("vllm:num_requests_running") {
                m.requestsRunning = (m.requestsRunning ?? 0) + s.value
            } else if named("vllm:kv_cache_usage_perc") {
                kvSum += s.value; kvCount += 1
            } else if named("vllm:gpu_cache_usage_perc") {
                gpuSum += s.value; gpuCount += 1
            } else if named("vllm:prefix_cache_hits_total") {
                m.prefixCacheHits = (m.prefixCacheHits ?? 0) + s.value
            } else if named("vllm:prefix_cache_queries_total") {
                m.prefixCacheQueries = (m.prefixCacheQueries ?? 0) + s.value
            } else if named("vllm:request_prefill_time_seconds_sum") {
                m.prefillTime = Self.adding(m.prefillTime, sum: s.value)
            } else if named("vllm:request_prefill_time_seconds_count") {
                m.prefillTime = Self.adding(m.prefillTime, count: s.value)
            } else if named("vllm:request_prefill_kv_computed_tokens_sum") {
                m.prefillComputedTokens = Self.adding(m.prefillComputedTokens, sum: s.value)
            } else if named("vllm:request_prefill_kv_computed_tokens_count") {
                m.prefillComputedTokens = Self.adding(m.prefillComputedTokens, count: s.value)
            } else if named("vllm:inter_token_latency_seconds_sum") {
                m.interTokenLatency = Self.adding(m.interTokenLatency, sum: s.value)
            } else if named("vllm:inter_token_latency_seconds_count") {
                m.interTokenLatency = Self.adding(m.interTokenLatency, count: s.value)
            } else if named("vllm:lora_requests_info") {
                // Ties go to the later line.
                if let cur = m.lora, cur.updatedAt > s.value { continue }
                guard let running = PrometheusText.label("running_lora_adapters", of: s, in: bytes),
                      let waiting = PrometheusText.label("waiting_lora_adapters", of: s, in: bytes) else { continue }
                let maxLora = PrometheusText.label("max_lora", of: s, in: bytes).flatMap { intValue(bytes, $0.value) }
                m.lora = LoRAInfo(maxLoras: maxLora, running: running.value, waiting: waiting.value, updatedAt: s.value)
            } else if named("vllm:cache_config_info") {
                if m.blockSize == nil, let b = PrometheusText.label("block_size", of: s, in: bytes) {
                    m.blockSize = intValue(bytes, b.value)
                }
                if let g = PrometheusText.label("num_gpu_blocks", of: s, in: bytes), let v = intValue(bytes, g.value) {
                    m.numGPUBlocks = (m.numGPUBlocks ?? 0) + v
                }
            }
        }
        if kvCount > 0 { m.kvCacheUsage = kvSum / Double(kvCount) }
        else if gpuCount > 0 { m.kvCacheUsage = gpuSum / Double(gpuCount) }
        return m
    }

    static func adding(_ h: HistogramTotals?, sum: Double = 0, count: Double = 0) -> HistogramTotals {
        var t = h ?? HistogramTotals()
        t.sum += sum
        t.count += count
        return t
    }

    /// A label value holding a decimal integer (`"128"`); nil for `"None"` and anything else.
    static func intValue(_ bytes: UnsafeRawBufferPointer, _ r: ByteRange) -> Int? {
        guard r.count > 0 && r.count < 19 else { return nil }
        var v = 0
        for i in r.start..<r.end {
            guard SWAR.isDigit(bytes[i]) else { return nil }
            v = v * 10 + Int(bytes[i] &- 48)
        }
        return v
    }

    /// The adapter names in a comma-separated label value, as ranges (spaces trimmed, empty skipped).
    public static func adapterNames(_ list: ByteRange, in bytes: UnsafeRawBufferPointer) -> AdapterNames {
        AdapterNames(bytes: bytes, pos: list.start, end: list.end)
    }

    public struct AdapterNames: Sequence, IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var pos: Int
        let end: Int

        public mutating func next() -> ByteRange? {
            while pos < end {
                var s = pos
                var e = pos
                while e < end && bytes[e] != UInt8(ascii: ",") { e += 1 }
                pos = e + 1
                var t = e
                while s < t && bytes[s] == 0x20 { s += 1 }
                while t > s && bytes[t - 1] == 0x20 { t -= 1 }
                if t > s { return ByteRange(start: s, end: t) }
            }
            return nil
        }
    }
}
