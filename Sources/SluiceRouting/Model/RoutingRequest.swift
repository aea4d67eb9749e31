/// What a decision knows of the request: its prompt's prefix blocks and whether it names an
/// adapter. The hashes themselves stay with the caller (the prefix index reads them).
public struct RoutingRequest: Sendable, Equatable {
    /// Prefix blocks of the prompt (0: too short, or not a generation request).
    public var promptBlocks: Int
    /// The hash of the first block (the prefix's rendezvous key), 0 when there is none.
    public var firstBlock: UInt64
    public var adapterRequested: Bool

    public init(promptBlocks: Int = 0, firstBlock: UInt64 = 0, adapterRequested: Bool = false) {
        self.promptBlocks = promptBlocks
        self.firstBlock = firstBlock
        self.adapterRequested = adapterRequested
    }
}
