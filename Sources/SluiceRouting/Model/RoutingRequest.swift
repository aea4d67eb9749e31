/// What a decision knows of the request: its prompt's prefix blocks and size, and whether it
/// names an adapter. The hashes themselves stay with the caller (the prefix index reads them).
public struct RoutingRequest: Sendable, Equatable {
    /// Prefix blocks of the prompt (0: too short, or not a generation request).
    public var promptBlocks: Int
    /// The hash of the first block (the prefix's rendezvous key), 0 when there is none.
    public var firstBlock: UInt64
    public var adapterRequested: Bool
    /// The prompt's tokens as estimated from the request (text bytes / 4; at least what its
    /// prefix blocks cover).
    public var promptTokens: Int
    /// Prompt tokens one prefix block stands for (64-byte blocks at ~4 bytes a token: 16), to
    /// turn a prefix match into the tokens it saves.
    public var blockTokens: Int

    public init(promptBlocks: Int = 0, firstBlock: UInt64 = 0, adapterRequested: Bool = false, promptTokens: Int = 0,
                blockTokens: Int = 16) {
        self.promptBlocks = promptBlocks
        self.firstBlock = firstBlock
        self.adapterRequested = adapterRequested
        self.promptTokens = max(promptTokens, promptBlocks * blockTokens)
        self.blockTokens = blockTokens
    }
}
