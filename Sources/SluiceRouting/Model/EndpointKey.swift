/// The stable identity of a model server endpoint: a 64-bit hash of its URL.
///
/// Contract: identical across Sluice replicas and restarts for the same URL (see `StableHash`), so
/// replicas that share nothing still agree on rendezvous placement. The raw value is never 0 (0
/// marks an empty slot inside `PrefixIndex`); `init(rawValue:)` maps 0 to 1.
public struct EndpointKey: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) {
        self.rawValue = rawValue == 0 ? 1 : rawValue
    }

    /// The key of an endpoint URL given as bytes (e.g. `http://10.0.0.7:8000`). The caller should
    /// normalise the URL (scheme, host, port, no trailing slash) so every replica hashes the same text.
    @inlinable
    public init(url bytes: UnsafeRawBufferPointer) {
        self.init(rawValue: StableHash.hash(bytes: bytes))
    }

    /// The key of an endpoint URL; for configuration time.
    public init(url: String) {
        self.init(rawValue: StableHash.hash(url))
    }

    public var description: String {
        let hex = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
