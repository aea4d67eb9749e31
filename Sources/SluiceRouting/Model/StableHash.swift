/// Stable 64-bit hashing for routing keys.
///
/// Contract: the output depends only on the input bytes, never on the process, platform or Swift
/// version (unlike `Hasher`, which is seeded per process). Several Sluice replicas that share no
/// state must compute the same endpoint keys, rendezvous weights and sticky split arms, so these
/// functions are frozen: changing them reshuffles prefix placement and A/B arms on upgrade.
public enum StableHash {
    /// The SplitMix64 finalizer: a bijective avalanche mix of 64 bits.
    @inlinable
    public static func mix64(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }

    /// Combines two 64-bit values order-dependently (used for rendezvous weights and salts).
    @inlinable
    public static func combine(_ a: UInt64, _ b: UInt64) -> UInt64 {
        mix64(a ^ (mix64(b) &+ 0x9E37_79B9_7F4A_7C15))
    }

    /// FNV-1a over `bytes`, then `mix64` so that short inputs still spread over all 64 bits.
    @inlinable
    public static func hash(bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3
        }
        return mix64(h)
    }

    /// `hash(bytes:)` of the UTF-8 encoding of `text`. For configuration time and tests; the hot
    /// path hashes byte views in place.
    public static func hash(_ text: String) -> UInt64 {
        var copy = text
        return copy.withUTF8 { hash(bytes: UnsafeRawBufferPointer($0)) }
    }
}
