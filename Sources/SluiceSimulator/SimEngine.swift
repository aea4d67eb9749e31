import SluiceHTTP
import SluiceIO

/// One request being served by the simulated engine.
final class SimSequence {
    let id: String
    let chat: Bool
    let model: String
    let adapter: String?
    let promptTokens: Int
    let maxTokens: Int
    let stream: Bool
    let includeUsage: Bool
    let blocks: [UInt64]
    let responder: HTTPResponder
    var generated = 0
    var text = ""
    /// Steps left before the first token (prefill of the uncached prompt).
    var prefillSteps = 0
    var cachedTokens = 0

    init(id: String, chat: Bool, model: String, adapter: String?, promptTokens: Int, maxTokens: Int, stream: Bool,
         includeUsage: Bool, blocks: [UInt64], responder: HTTPResponder) {
        self.id = id; self.chat = chat; self.model = model; self.adapter = adapter
        self.promptTokens = promptTokens; self.maxTokens = max(1, maxTokens); self.stream = stream
        self.includeUsage = includeUsage; self.blocks = blocks; self.responder = responder
    }
}

/// The simulated engine: a waiting queue, up to `maxRunning` sequences decoded together one
/// token per step, prefill that costs time per uncached prompt token, a prefix cache of blocks
/// with LRU eviction (hits and queries counted in tokens, like vLLM), and LoRA slots.
final class SimEngine {
    let options: SimOptions
    unowned(unsafe) var loop: EventLoop!
    private(set) var adapters: [String]
    private var waiting: [SimSequence] = []
    private var running: [SimSequence] = []
    private var timer: Timer?
    private var rng: UInt64
    private var counter = 0
    // Prefix cache: block hash → last use (LRU by a use counter).
    private var cache: [UInt64: Int] = [:]
    private var useClock = 0
    private var capacityBlocks: Int { max(1, options.kvTokens / options.blockTokens) }
    // Counters, named as vLLM's metrics.
    private var promptTokensTotal = 0
    private var generationTokensTotal = 0
    private var prefixQueries = 0
    private var prefixHits = 0
    private var successTotal = 0
    private var loraSeries: [(running: String, waiting: String, at: Double)] = []
    private let created = WallClock.now().seconds

    init(options: SimOptions) {
        self.options = options
        adapters = options.loras
        rng = options.seed | 1
    }

    func random() -> UInt64 {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        return rng
    }

    func nextID() -> String {
        counter += 1
        let s = String(random() & 0xffff_ffff_ffff, radix: 16)
        return String(repeating: "0", count: max(0, 16 - s.count)) + s
    }

    func submit(_ s: SimSequence) {
        waiting.append(s)
        schedule()
    }

    private func schedule() {
        if timer == nil { timer = Timer { [unowned self] in self.step() } }
        if !timer!.isArmed { loop.schedule(timer!, after: .nanoseconds(Int64(options.stepMillis * 1_000_000))) }
    }

    /// Adapters of the running sequences (at most `maxLoras` distinct ones).
    private var runningAdapters: Set<String> { Set(running.compactMap(\.adapter)) }

    private func admit() {
        var i = 0
        while i < waiting.count && running.count < options.maxRunning {
            let s = waiting[i]
            if let a = s.adapter, !runningAdapters.contains(a), runningAdapters.count >= options.maxLoras {
                i += 1  // deferred: no LoRA slot
                continue
            }
            waiting.remove(at: i)
            // Prefix cache lookup: leading blocks already cached are hits.
            var hit = 0
            for b in s.blocks {
                guard cache[b] != nil else { break }
                hit += 1
            }
            for b in s.blocks {
                useClock += 1
                cache[b] = useClock
            }
            evict()
            s.cachedTokens = min(s.promptTokens, hit * options.blockTokens)
            prefixQueries += s.promptTokens
            prefixHits += s.cachedTokens
            promptTokensTotal += s.promptTokens
            let uncached = s.promptTokens - s.cachedTokens
            s.prefillSteps = Int((Double(uncached) * options.prefillMicrosPerToken / 1000 / options.stepMillis).rounded(.up))
            running.append(s)
        }
        recordLoRA()
    }

    private func evict() {
        let over = cache.count - capacityBlocks
        if over <= 0 { return }
        for (k, _) in cache.sorted(by: { $0.value < $1.value }).prefix(over) { cache.removeValue(forKey: k) }
    }

    private func recordLoRA() {
        let r = runningAdapters.sorted().joined(separator: ",")
        let w = Set(waiting.compactMap(\.adapter)).sorted().joined(separator: ",")
        let (sec, ns) = WallClock.now()
        let now = Double(sec) + Double(ns) / 1e9
        if let i = loraSeries.firstIndex(where: { $0.running == r && $0.waiting == w }) { loraSeries[i].at = now } else {
            loraSeries.append((r, w, now))
        }
    }

    private static let words = [" the", " model", " is", " fast", " and", " simulated", ",", " tokens", " flow", " here", "."]

    private func step() {
        admit()
        var finished: [Int] = []
        for (i, s) in running.enumerated() {
            guard s.responder.isOpen else { finished.append(i); continue }  // client gone: abort
            if s.prefillSteps > 0 { s.prefillSteps -= 1; continue }
            let word = Self.words[Int(random() % UInt64(Self.words.count))]
            if s.generated == 0 && s.stream { start(s) }
            s.generated += 1
            generationTokensTotal += 1
            s.text += word
            if s.stream { s.responder.writeChunk(Array(chunk(s, content: word, finish: nil).utf8)) }
            if s.generated >= s.maxTokens {
                finish(s)
                finished.append(i)
            }
        }
        for i in finished.reversed() { running.remove(at: i) }
        if !finished.isEmpty { recordLoRA() }
        if !running.isEmpty || !waiting.isEmpty { schedule() }
    }

    private func start(_ s: SimSequence) {
        s.responder.startStream(headers: [("Content-Type", "text/event-stream; charset=utf-8")])
        if s.chat {
            s.responder.writeChunk(Array("data: {\"id\":\"chatcmpl-\(s.id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"prompt_token_ids\":null,\"prompt_text\":null}\n\n".utf8))
        }
    }

    private func chunk(_ s: SimSequence, content: String, finish: String?) -> String {
        let fr = finish.map { "\"\($0)\"" } ?? "null"
        if s.chat {
            let delta = finish == nil ? "{\"content\":\"\(content)\"}" : "{}"
            return "data: {\"id\":\"chatcmpl-\(s.id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[{\"index\":0,\"delta\":\(delta),\"logprobs\":null,\"finish_reason\":\(fr),\"token_ids\":null}]}\n\n"
        }
        return "data: {\"id\":\"cmpl-\(s.id)\",\"object\":\"text_completion\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[{\"index\":0,\"text\":\"\(content)\",\"logprobs\":null,\"finish_reason\":\(fr),\"stop_reason\":null,\"prompt_token_ids\":null,\"token_ids\":null}]}\n\n"
    }

    private func usage(_ s: SimSequence) -> String {
        "{\"prompt_tokens\":\(s.promptTokens),\"total_tokens\":\(s.promptTokens + s.generated),\"completion_tokens\":\(s.generated),\"prompt_tokens_details\":null}"
    }

    private func finish(_ s: SimSequence) {
        successTotal += 1
        if s.stream {
            s.responder.writeChunk(Array(chunk(s, content: "", finish: "length").utf8))
            if s.includeUsage {
                let obj = s.chat ? "chat.completion.chunk" : "text_completion"
                let id = s.chat ? "chatcmpl-\(s.id)" : "cmpl-\(s.id)"
                s.responder.writeChunk(Array("data: {\"id\":\"\(id)\",\"object\":\"\(obj)\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[],\"usage\":\(usage(s))}\n\n".utf8))
            }
            s.responder.writeChunk(Array("data: [DONE]\n\n".utf8))
            s.responder.endStream()
            return
        }
        let body: String
        if s.chat {
            body = "{\"id\":\"chatcmpl-\(s.id)\",\"object\":\"chat.completion\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\(s.text)\",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,\"reasoning\":null},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null,\"token_ids\":null}],\"service_tier\":null,\"system_fingerprint\":\"sluice-sim\",\"usage\":\(usage(s)),\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"kv_transfer_params\":null}"
        } else {
            body = "{\"id\":\"cmpl-\(s.id)\",\"object\":\"text_completion\",\"created\":\(created),\"model\":\"\(s.model)\",\"choices\":[{\"index\":0,\"text\":\"\(s.text)\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null,\"prompt_logprobs\":null}],\"service_tier\":null,\"system_fingerprint\":\"sluice-sim\",\"usage\":\(usage(s)),\"kv_transfer_params\":null}"
        }
        s.responder.respond(status: 200, body)
    }

    // MARK: control endpoints

    func load(_ name: String) -> (Int, String) {
        if name.isEmpty { return (400, #"{"error":{"message":"lora_name is required","type":"BadRequestError","param":null,"code":400}}"#) }
        if adapters.contains(name) {
            return (400, #"{"error":{"message":"The lora adapter '\#(name)' has already been loaded.","type":"BadRequestError","param":null,"code":400}}"#)
        }
        adapters.append(name)
        return (200, "Success: LoRA adapter '\(name)' added successfully.")
    }

    func unload(_ name: String) -> (Int, String) {
        guard let i = adapters.firstIndex(of: name) else {
            return (404, #"{"error":{"message":"The lora adapter '\#(name)' cannot be found.","type":"NotFoundError","param":null,"code":404}}"#)
        }
        adapters.remove(at: i)
        return (200, "Success: LoRA adapter '\(name)' removed successfully.")
    }

    func modelsJSON() -> String {
        var items = ["{\"id\":\"\(options.model)\",\"object\":\"model\",\"created\":\(created),\"owned_by\":\"vllm\",\"root\":\"\(options.model)\",\"parent\":null,\"max_model_len\":2048,\"permission\":[]}"]
        for a in adapters {
            items.append("{\"id\":\"\(a)\",\"object\":\"model\",\"created\":\(created),\"owned_by\":\"vllm\",\"root\":\"/adapters/\(a)\",\"parent\":\"\(options.model)\",\"max_model_len\":null,\"permission\":[]}")
        }
        return "{\"object\":\"list\",\"data\":[" + items.joined(separator: ",") + "]}"
    }

    func metricsText(now: (seconds: Int, nanoseconds: Int)) -> String {
        let m = "engine=\"0\",model_name=\"\(options.model)\""
        let kv = Double(min(cache.count, capacityBlocks)) / Double(capacityBlocks)
        var t = """
            # HELP vllm:num_requests_running Number of requests in model execution batches.
            # TYPE vllm:num_requests_running gauge
            vllm:num_requests_running{\(m)} \(Double(running.count))
            # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
            # TYPE vllm:num_requests_waiting gauge
            vllm:num_requests_waiting{\(m)} \(Double(waiting.count))
            # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
            # TYPE vllm:kv_cache_usage_perc gauge
            vllm:kv_cache_usage_perc{\(m)} \(kv)
            # HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
            # TYPE vllm:prefix_cache_queries_total counter
            vllm:prefix_cache_queries_total{\(m)} \(Double(prefixQueries))
            # HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
            # TYPE vllm:prefix_cache_hits_total counter
            vllm:prefix_cache_hits_total{\(m)} \(Double(prefixHits))
            # HELP vllm:prompt_tokens_total Number of prefill tokens processed.
            # TYPE vllm:prompt_tokens_total counter
            vllm:prompt_tokens_total{\(m)} \(Double(promptTokensTotal))
            # HELP vllm:generation_tokens_total Number of generation tokens processed.
            # TYPE vllm:generation_tokens_total counter
            vllm:generation_tokens_total{\(m)} \(Double(generationTokensTotal))
            # HELP vllm:request_success_total Count of successfully processed requests.
            # TYPE vllm:request_success_total counter
            vllm:request_success_total{\(m),finished_reason="length"} \(Double(successTotal))
            # HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
            # TYPE vllm:cache_config_info gauge
            vllm:cache_config_info{block_size="\(options.blockTokens)",engine="0",num_gpu_blocks="\(capacityBlocks)"} 1.0
            # HELP vllm:lora_requests_info Running stats on lora requests.
            # TYPE vllm:lora_requests_info gauge

            """
        for s in loraSeries {
            t += "vllm:lora_requests_info{max_lora=\"\(options.maxLoras)\",running_lora_adapters=\"\(s.running)\",waiting_lora_adapters=\"\(s.waiting)\"} \(s.at)\n"
        }
        return t
    }
}
