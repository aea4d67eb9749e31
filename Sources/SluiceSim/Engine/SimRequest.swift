public import SluiceIO

/// What the engine needs to know about a request. Tokens are approximated from bytes
/// (4 bytes per token, rounded up, at least 1), which is also how prefix blocks are cut.
public struct SimRequest: Sendable {
    /// The LoRA adapter, or nil for the base model. Adapters have their own prefix-cache
    /// namespace and need a slot (``SimEngineConfig/maxLoras``).
    public var adapter: String?
    /// The prompt as the model would see it (after the chat template).
    public var prompt: [UInt8]
    /// Tokens to generate; 0 means prefill only (embeddings).
    public var maxTokens: Int
    /// The request's `n` (recorded in `vllm:request_params_n`; one sequence is simulated).
    public var n: Int

    public init(adapter: String? = nil, prompt: [UInt8], maxTokens: Int, n: Int = 1) {
        self.adapter = adapter
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.n = n
    }

    /// Prompt tokens for `byteCount` bytes of prompt text.
    public static func tokens(forBytes byteCount: Int) -> Int { max(1, (byteCount + 3) / 4) }

    public var promptTokens: Int { Self.tokens(forBytes: prompt.count) }
}

/// Something the engine did at the end of a step.
public struct SimEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Output token number `index` (0-based) was sampled.
        case token(index: Int)
        /// The sequence is done (after its last token, in the same step).
        case finished(SimFinishReason)
    }

    public var id: UInt64
    public var kind: Kind
    /// When the step that produced it ended.
    public var time: Instant

    public init(id: UInt64, kind: Kind, time: Instant) {
        self.id = id
        self.kind = kind
        self.time = time
    }
}

/// One `vllm:lora_requests_info` series: the label value (adapters with active requests,
/// comma-separated, in order of arrival) and when the engine last recorded that state.
public struct SimLoRAInfoSeries: Sendable, Equatable {
    public var adapters: String
    public var updated: Instant
}
