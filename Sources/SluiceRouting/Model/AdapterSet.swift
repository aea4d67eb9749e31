/// A set of `AdapterID`s as a 128-bit mask, stored inline (no allocation).
///
/// Membership is one shift and mask; `count` is two popcounts. The capacity bounds how many distinct
/// adapters one pool can name; vLLM servers hold far fewer at a time (`max_loras` slots).
public struct AdapterSet: Hashable, Sendable, ExpressibleByArrayLiteral {
    /// The number of distinct adapter ids a pool may intern.
    public static let capacity = 128

    @usableFromInline var low: UInt64
    @usableFromInline var high: UInt64

    @inlinable
    public init() {
        low = 0
        high = 0
    }

    @inlinable
    public init(arrayLiteral elements: AdapterID...) {
        self.init()
        for e in elements { insert(e) }
    }

    @inlinable
    public init<S: Sequence>(_ ids: S) where S.Element == AdapterID {
        self.init()
        for e in ids { insert(e) }
    }

    @inlinable
    public static var empty: AdapterSet { AdapterSet() }

    @inlinable
    public var isEmpty: Bool { (low | high) == 0 }

    @inlinable
    public var count: Int { low.nonzeroBitCount + high.nonzeroBitCount }

    @inlinable
    public func contains(_ id: AdapterID) -> Bool {
        let bit = UInt64(id.rawValue & 63)
        let word = id.rawValue < 64 ? low : high
        return (word &>> bit) & 1 == 1
    }

    @inlinable
    public mutating func insert(_ id: AdapterID) {
        let mask: UInt64 = 1 &<< UInt64(id.rawValue & 63)
        if id.rawValue < 64 { low |= mask } else { high |= mask }
    }

    @inlinable
    public mutating func remove(_ id: AdapterID) {
        let mask: UInt64 = ~(1 &<< UInt64(id.rawValue & 63))
        if id.rawValue < 64 { low &= mask } else { high &= mask }
    }

    @inlinable
    public func union(_ other: AdapterSet) -> AdapterSet {
        var r = self
        r.low |= other.low
        r.high |= other.high
        return r
    }
}
