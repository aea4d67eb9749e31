/// A small, seeded pseudo-random source passed `inout` to every routing decision.
///
/// Routing never reads a global RNG: tests seed it and get exact picks; the gateway keeps one per
/// worker thread, seeded from the OS once at start. SplitMix64 (Steele, Lea, Flood 2014) passes
/// BigCrush, needs 8 bytes of state and a handful of instructions per draw — plenty for tie-breaks,
/// random picks and split arms. Not cryptographic.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    @inlinable
    public init(seed: UInt64) {
        state = seed
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return StableHash.mix64(state)
    }

    /// A uniform integer in `0..<bound` (Lemire's multiply-shift with rejection, unbiased).
    /// - Precondition: `bound > 0`.
    @inlinable
    public mutating func next(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold {
                m = next().multipliedFullWidth(by: b)
            }
        }
        return Int(m.high)
    }

    /// A uniform double in `[0, 1)` with 53 random bits.
    @inlinable
    public mutating func nextUnit() -> Double {
        Double(next() &>> 11) * 0x1.0p-53
    }
}
