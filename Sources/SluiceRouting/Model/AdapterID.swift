/// A LoRA adapter interned to a small per-pool number.
///
/// The gateway interns each adapter name of a pool once (config load, `/v1/models` discovery) to an
/// id in `0..<AdapterSet.capacity`; routing then works on bits, never on names. Ids are only
/// meaningful within one pool's snapshot. Config validation must reject pools that name more than
/// `AdapterSet.capacity` adapters.
public struct AdapterID: Hashable, Sendable, Comparable {
    public let rawValue: UInt8

    /// - Precondition: `rawValue < AdapterSet.capacity`.
    @inlinable
    public init(_ rawValue: Int) {
        precondition(rawValue >= 0 && rawValue < AdapterSet.capacity, "adapter id out of range")
        self.rawValue = UInt8(truncatingIfNeeded: rawValue)
    }

    @inlinable
    public static func < (a: AdapterID, b: AdapterID) -> Bool { a.rawValue < b.rawValue }
}
