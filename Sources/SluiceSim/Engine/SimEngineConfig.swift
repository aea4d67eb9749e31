/// The engine's shape and its time model. Defaults approximate vLLM 0.32 on the reference CPU
/// machine (../shared/vllm-cpu/README.md: ≈3 ms per token alone, ≈5,000 tok/s at 64 streams,
/// TTFT ≈9 ms for a short prompt).
///
/// One engine step lasts
/// `timeScale × (stepBase + decodeSequences × decodePerSequence + prefillTokens × prefillPerToken
///  + adapterLoads × loraLoad)`, times `1 ± jitter` drawn from the seeded generator.
public struct SimEngineConfig: Sendable {
    /// Sequences running at once (vLLM `--max-num-seqs`).
    public var maxNumSeqs = 256
    /// Tokens computed per step, prefill chunks and decodes together (`--max-num-batched-tokens`).
    public var maxNumBatchedTokens = 2048
    /// KV capacity in tokens; the cache has `kvTokens / blockTokens` blocks.
    public var kvTokens = 16384
    /// Tokens per KV block (vLLM `--block-size`); prefix hits are whole blocks.
    public var blockTokens = 16
    /// Adapters that may run at once (`--max-loras`); a request for another one is deferred.
    public var maxLoras = 1
    /// Seeds step jitter; the text model takes its own seed from the server.
    public var seed: UInt64 = 0

    public var stepBaseNanoseconds: Int64 = 2_000_000
    public var decodeNanosecondsPerSequence: Int64 = 150_000
    public var prefillNanosecondsPerToken: Int64 = 20_000
    /// Cost of bringing an adapter into a slot (an LRU idle adapter is evicted for it).
    public var loraLoadNanoseconds: Int64 = 5_000_000
    /// Multiplies every duration: 0.1 runs ten times faster than the defaults.
    public var timeScale: Double = 1.0
    /// Relative random variation of a step's length, 0 for none.
    public var jitter: Double = 0.0

    public init() {}

    public var numBlocks: Int { max(1, kvTokens / max(1, blockTokens)) }
}
