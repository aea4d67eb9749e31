/// The request features routing needs, borrowed from the inspected request for one decision.
///
/// Contract: `prefixHashes` are the chained block hashes of the prompt prefix (block `i`'s hash
/// covers blocks `0...i`), already namespaced by the caller (model and adapter mixed into the chain
/// seed) and already capped at the configured `max_blocks`. The buffer must stay valid for the
/// duration of `PrefixIndex.match`, `RoutingProfile.decide` and `PrefixIndex.record`.
/// `estimatedPromptTokens` / `maxTokens` are carried for plugins and the gateway's in-flight token
/// accounting; the built-in scorers do not read them.
public struct RequestView {
    /// The LoRA adapter the request targets, or nil for the base model.
    public var adapter: AdapterID?
    public var estimatedPromptTokens: Int
    public var maxTokens: Int
    public var prefixHashes: UnsafeBufferPointer<UInt64>
    /// A stable hash of the stickiness key (the `user` field or a header), if any.
    public var stickyKey: UInt64?

    public init(
        adapter: AdapterID? = nil,
        estimatedPromptTokens: Int = 0,
        maxTokens: Int = 0,
        prefixHashes: UnsafeBufferPointer<UInt64> = UnsafeBufferPointer(start: nil, count: 0),
        stickyKey: UInt64? = nil
    ) {
        self.adapter = adapter
        self.estimatedPromptTokens = estimatedPromptTokens
        self.maxTokens = maxTokens
        self.prefixHashes = prefixHashes
        self.stickyKey = stickyKey
    }
}
