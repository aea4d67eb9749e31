import SluiceIO

/// `/metrics` in vLLM 0.32's Prometheus text: the same `vllm:` families, help texts, types,
/// label sets and bucket bounds as ../shared/vllm-reference/metrics-after-load.txt (each
/// counter and histogram with its `_created` gauge, as prometheus_client writes them). Every
/// series is labelled with the base model, LoRA requests included; families the simulator does
/// not model (FLOPs, multi-modal and external caches) are present and zero.
extension SimServer {
    func metricsText() -> String {
        var m = Exposition(created: startedWall)
        let base = [("engine", "0"), ("model_name", options.model)]
        let e = engine
        let s = e.stats

        for (name, help) in [("vllm:estimated_flops_per_gpu", "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations)."),
                             ("vllm:estimated_read_bytes_per_gpu", "Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations)."),
                             ("vllm:estimated_write_bytes_per_gpu", "Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).")] {
            m.counter(name, help, [(base, 0)])
        }
        m.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", [(base, Double(e.runningCount))])
        m.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", [(base, Double(e.waitingCount))])
        let deferred = e.deferredCount
        m.gauge("vllm:num_requests_waiting_by_reason",
                "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
                [(base + [("reason", "capacity")], Double(e.waitingCount - deferred)), (base + [("reason", "deferred")], Double(deferred))])
        m.gauge("vllm:engine_sleep_state",
                "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
                [(base + [("sleep_state", "awake")], 1), (base + [("sleep_state", "weights_offloaded")], 0), (base + [("sleep_state", "discard_all")], 0)])
        m.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", [(base, e.kvUsage)])
        m.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", [(base, Double(s.prefixCacheQueries))])
        m.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", [(base, Double(s.prefixCacheHits))])
        m.counter("vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", [(base, 0)])
        m.counter("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", [(base, 0)])
        m.counter("vllm:mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items.", [(base, 0)])
        m.counter("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.", [(base, 0)])
        m.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", [(base, Double(s.preemptions))])
        m.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [(base, Double(s.promptTokens))])
        m.counter("vllm:prompt_tokens_by_source", "Number of prompt tokens by source.",
                  [(base + [("source", "local_compute")], Double(s.promptTokens - s.prefixCacheHits)),
                   (base + [("source", "local_cache_hit")], Double(s.prefixCacheHits)),
                   (base + [("source", "external_kv_transfer")], 0)])
        m.counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).", [(base, Double(s.prefixCacheHits))])
        m.counter("vllm:prompt_tokens_cached_by_source",
                  "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
                  ["device", "host", "p2p", "disk", "external_unspecified"].map { (base + [("source", $0)], $0 == "device" ? Double(s.prefixCacheHits) : 0) })
        m.counter("vllm:generation_tokens", "Number of generation tokens processed.", [(base, Double(s.generationTokens))])
        m.counter("vllm:request_success", "Count of successfully processed requests.",
                  SimFinishReason.allCases.map { ([("engine", "0"), ("finished_reason", $0.rawValue), ("model_name", options.model)], Double(s.finished($0))) })
        m.counter("vllm:admission_rejections", "Number of admission attempts rejected by a queue limit, by reason.",
                  [([("model_name", options.model), ("reason", "max_num_queued_reqs")], Double(admissionRejections)),
                   ([("model_name", options.model), ("reason", "max_num_queued_tokens")], 0)])

        m.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", base, s.requestPromptTokens)
        m.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", base, s.requestGenerationTokens)
        m.histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", base, s.iterationTokens)
        m.histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", base, s.maxGenerationTokens)
        m.histogram("vllm:request_params_n", "Histogram of the n request parameter.", base, s.paramsN)
        m.histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", base, s.paramsMaxTokens)
        m.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", base, s.timeToFirstToken)
        m.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", base, s.interTokenLatency)
        m.histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", base, s.timePerOutputToken)
        m.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", base, s.e2eLatency)
        m.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", base, s.queueTime)
        m.histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", base, s.inferenceTime)
        m.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", base, s.prefillTime)
        m.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", base, s.decodeTime)
        m.histogram("vllm:request_num_preemptions", "Histogram of the number of times a request was preempted.", base, s.requestPreemptions)
        m.histogram("vllm:request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill (excluding cached tokens).", base, s.prefillComputedTokens)

        // The odd one: the value is when that state was last seen (Unix seconds), and every
        // state ever seen stays exposed; the current state is the series with the largest value.
        let maxLora = String(e.config.maxLoras)
        m.gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                e.loraInfo.map { ([("max_lora", maxLora), ("running_lora_adapters", $0.adapters), ("waiting_lora_adapters", $0.adapters)], wallSeconds(of: $0.updated)) })
        m.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", [(cacheConfigLabels(), 1)])
        return m.text
    }

    /// The reference's 37 labels, with the simulator's geometry where it has one.
    private func cacheConfigLabels() -> [(String, String)] {
        let c = engine.config
        let blocks = engine.numBlocks
        let tokens = blocks * c.blockTokens
        return [
            ("_block_size_resolved", "True"), ("block_size", String(c.blockTokens)), ("cache_dtype", "auto"),
            ("cache_hit_alignment_tokens", "None"), ("effective_attention_block_size", String(c.blockTokens)),
            ("enable_mamba_shared_prefix_checkpoint", "False"), ("enable_prefix_caching", "True"), ("engine", "0"),
            ("gpu_memory_utilization", "0.92"), ("hash_block_size", "None"), ("is_attention_free", "False"),
            ("kv_cache_dtype_skip_layers", "[]"), ("kv_cache_layout", "None"),
            ("kv_cache_max_concurrency", Exposition.number(Double(tokens) / Double(max(1, options.maxModelLen)))),
            ("kv_cache_memory_bytes", String(tokens * 2048)), ("kv_cache_size_tokens", String(tokens)),
            ("kv_offloading_backend", "native"), ("kv_offloading_size", "None"), ("kv_sharing_fast_prefill", "False"),
            ("mamba_block_size", "None"), ("mamba_cache_dtype", "auto"), ("mamba_cache_mode", "none"),
            ("mamba_page_size_padded", "None"), ("mamba_ssm_cache_dtype", "auto"), ("num_cpu_blocks", "None"),
            ("num_gpu_blocks", String(blocks)), ("num_gpu_blocks_override", "None"), ("prefix_cache_retention_interval", "0"),
            ("prefix_caching_hash_algo", "sha256"), ("prefix_match_unit", "None"), ("replayssm_buffer_len", "16"),
            ("skip_page_size_padded", "None"), ("sliding_window", "None"), ("swa_bounded_replay", "True"),
            ("use_kda_recoverssm", "False"), ("use_replayssm", "False"), ("user_specified_block_size", "True"),
        ]
    }
}

/// Prometheus text exposition in prometheus_client's style (floats always with a fraction,
/// `_created` gauges after counters and histograms).
struct Exposition {
    var text = ""
    let created: Double

    init(created: Double) {
        self.created = created
        text.reserveCapacity(48 << 10)
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return "\(Int64(v)).0" }
        return "\(v)"
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    private mutating func sample(_ name: String, _ labels: [(String, String)], _ v: Double) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " " + Self.number(v) + "\n"
    }

    private mutating func header(_ name: String, _ help: String, _ type: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func gauge(_ name: String, _ help: String, _ series: [([(String, String)], Double)]) {
        header(name, help, "gauge")
        for (l, v) in series { sample(name, l, v) }
    }

    /// `name` without `_total`.
    mutating func counter(_ name: String, _ help: String, _ series: [([(String, String)], Double)]) {
        header(name + "_total", help, "counter")
        for (l, v) in series { sample(name + "_total", l, v) }
        header(name + "_created", help, "gauge")
        for (l, _) in series { sample(name + "_created", l, created) }
    }

    mutating func histogram(_ name: String, _ help: String, _ labels: [(String, String)], _ h: SimHistogram) {
        header(name, help, "histogram")
        var cumulative: UInt64 = 0
        for (i, c) in h.counts.enumerated() {
            cumulative += c
            let le = i < h.bounds.count ? Self.number(h.bounds[i]) : "+Inf"
            // prometheus_client sorts label names: engine < le < model_name.
            let l = (labels + [("le", le)]).sorted { $0.0 < $1.0 }
            sample(name + "_bucket", l, Double(cumulative))
        }
        sample(name + "_count", labels, Double(h.count))
        sample(name + "_sum", labels, h.sum)
        header(name + "_created", help, "gauge")
        sample(name + "_created", labels, created)
    }
}
