/// Everything `sluice sim` can be told. Defaults mirror vLLM 0.32 serving a tiny Llama on the
/// reference CPU machine (../shared/vllm-cpu/README.md), except the KV block size, which is
/// the simulator's `--block-tokens` (vLLM's CPU backend uses 128).
public struct SimOptions: Sendable {
    /// Numeric listen address (`127.0.0.1`, `::1`, `0.0.0.0`).
    public var host = "127.0.0.1"
    /// 0 picks a free port (see ``SimServer/port``).
    public var port: UInt16 = 8000
    /// The served (base) model name.
    public var model = "tiny-llama"
    /// `root` of the base model in `/v1/models`; nil gives `/models/<model>`.
    public var modelRoot: String?
    /// Adapters registered at start: `NAME` or `NAME=PATH` (`--lora`, repeatable).
    public var loras: [String] = []
    /// Adapters that may run at once (`--max-loras`); vLLM's default is 1.
    public var maxLoras = 1
    /// KV-cache capacity in tokens (`--kv-tokens`).
    public var kvTokens = 16384
    /// Tokens per KV block and prefix-cache unit (`--block-tokens`).
    public var blockTokens = 16
    /// Seeds ids, text and step jitter (`--seed`).
    public var seed: UInt64 = 0
    /// `--max-num-seqs`: sequences in a batch.
    public var maxNumSeqs = 256
    /// `--max-num-batched-tokens`: tokens computed per step.
    public var maxNumBatchedTokens = 2048
    /// `--max-model-len`: prompt plus completion tokens a request may have.
    public var maxModelLen = 2048
    /// Completion length when a request gives no `max_tokens`.
    public var defaultMaxTokens = 16
    /// `--max-num-queued-reqs`: waiting requests beyond which new ones get 503; nil = unlimited.
    public var maxQueuedRequests: Int?
    /// Length of an embedding vector.
    public var embeddingDimensions = 64
    /// Responses API: responses kept for `previous_response_id`, retrieve and cancel (vLLM with
    /// `VLLM_ENABLE_RESPONSES_API_STORE=1` keeps all of them; the simulator drops the oldest).
    public var maxStoredResponses = 4096
    /// What `/v1/audio/transcriptions` and `/translations` answer, whatever the audio.
    public var transcriptionText = "The quick brown fox jumps over the lazy dog."

    // The time model (see ``SimEngineConfig``); microseconds.
    public var stepBaseMicroseconds = 2000.0
    public var decodeMicrosecondsPerSequence = 150.0
    public var prefillMicrosecondsPerToken = 20.0
    public var loraLoadMicroseconds = 5000.0
    /// Multiplies every duration (`--time-scale 0.1` runs ten times faster).
    public var timeScale = 1.0
    /// Relative random variation of step lengths.
    public var jitter = 0.0
    /// Bind with SO_REUSEPORT.
    public var reusePort = false
    /// Injected faults (tests): the share of generation requests answered at once with
    /// `failStatus` (`--fail-rate`, `--fail-status`), and a delay before each generation
    /// request reaches the engine (`--delay`, milliseconds).
    public var failRate = 0.0
    public var failStatus = 500
    public var delayMilliseconds = 0

    public init() {}

    /// The engine configuration these options describe.
    public var engineConfig: SimEngineConfig {
        var c = SimEngineConfig()
        c.maxNumSeqs = maxNumSeqs
        c.maxNumBatchedTokens = maxNumBatchedTokens
        c.kvTokens = kvTokens
        c.blockTokens = blockTokens
        c.maxLoras = maxLoras
        c.seed = seed
        c.stepBaseNanoseconds = Int64(stepBaseMicroseconds * 1000)
        c.decodeNanosecondsPerSequence = Int64(decodeMicrosecondsPerSequence * 1000)
        c.prefillNanosecondsPerToken = Int64(prefillMicrosecondsPerToken * 1000)
        c.loraLoadNanoseconds = Int64(loraLoadMicroseconds * 1000)
        c.timeScale = timeScale
        c.jitter = jitter
        return c
    }

    /// `NAME` or `NAME=PATH` split; the default path is `/models/lora-NAME`.
    public static func parseLoRA(_ spec: String) -> (name: String, path: String) {
        if let eq = spec.firstIndex(of: "=") {
            return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
        }
        return (spec, "/models/lora-\(spec)")
    }
}

/// Why a simulated server could not start.
public struct SimServerError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
