/// Chained 64-bit hashes of a prompt in fixed-size byte blocks, for prefix-cache affinity.
///
/// Contract:
/// - The prompt is the concatenation of its segments as one byte stream; a chat `.role` segment is
///   framed as `0x1E role 0x1F`. Those two bytes cannot occur raw inside a JSON string (control
///   characters must be escaped), so "user: hi" and "system: hi" differ and text can never imitate
///   a role boundary. How the text is split into segments does not matter, only the stream.
/// - Only full blocks are hashed: a prompt of `n` bytes gives `n / blockSize` hashes (capped by the
///   output buffer). Hash `i` covers blocks `0...i`: `h[i] = F(h[i-1], block i)`, `h[-1] = seed`.
///   The caller mixes the model and adapter into the seed (``mixSeed(_:_:)``).
/// - Text is hashed as it appears in the body, escapes included: the same client encoding gives
///   the same hashes, which is what affinity needs (`"\u00e9"` and `"é"` hash differently).
/// - Stable across processes, platforms and versions (words are read little-endian); changing the
///   function reshuffles prefix placement on upgrade, so it is frozen.
///
/// The function (wyhash/xxh3 style, not cryptographic): a block is read as 16-byte pairs of
/// little-endian words `(a, b)`; pair `j` adds `mum(a ^ (S0 &+ j·G), b ^ (S1 ^ j·G))` to an accumulator, where
/// `mum(x, y)` folds the 128-bit product `x * y` to `hi ^ lo`; the keys depend on the position `j`
/// (so reordering pairs changes the hash; G is the golden-ratio constant `step`). The block then chains:
/// `h = mum(acc ^ S3, prev ^ S4 ^ blockSize) ^ acc ^ rotl(prev, 29)` (one multiply, like wyhash's
/// finalizer; the xor terms keep `h` dependent on both inputs even if the product vanishes). Pairs
/// are independent, so the loop runs at the multiplier's throughput; the only serial dependency is
/// that one multiply per block. A collision only costs a suboptimal routing choice; the model server
/// computes its own cryptographic block hashes.
///
/// Streaming: segments are absorbed without copying; only a pair (at most 15 bytes) that straddles
/// two segments is carried in the hasher itself, so there is no block-sized buffer.
public struct PrefixHasher: Sendable {
    public static let defaultBlockSize = 64

    /// Block size in bytes (a positive multiple of 16).
    public let blockSize: Int
    @usableFromInline let pairsPerBlock: Int
    /// The previous block's hash (the seed before the first block).
    @usableFromInline var chain: UInt64
    @usableFromInline var acc: UInt64 = 0
    /// Pairs absorbed in the current block.
    @usableFromInline var pair = 0
    /// Bytes of a pair not yet complete (little-endian in two words), and how many.
    @usableFromInline var carry: (UInt64, UInt64) = (0, 0)
    @usableFromInline var carryCount = 0
    /// Blocks hashed so far (= hashes written).
    public private(set) var blockCount = 0

    public init(seed: UInt64, blockSize: Int = PrefixHasher.defaultBlockSize) {
        precondition(blockSize >= 16 && blockSize % 16 == 0, "blockSize must be a positive multiple of 16")
        self.blockSize = blockSize
        pairsPerBlock = blockSize / 16
        chain = seed
    }

    // Secrets: odd 64-bit constants with balanced bits (from wyhash's default secret and the
    // golden ratio).
    @usableFromInline static let s0: UInt64 = 0xA076_1D64_78BD_642F
    @usableFromInline static let s1: UInt64 = 0xE703_7ED1_A0B4_28DB
    @usableFromInline static let s3: UInt64 = 0x8EBC_6AF0_9C88_C6E3
    @usableFromInline static let s4: UInt64 = 0x5899_65CC_7537_4CC3
    @usableFromInline static let step: UInt64 = 0x9E37_79B9_7F4A_7C15

    @inline(__always) @usableFromInline
    static func mum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let r = a.multipliedFullWidth(by: b)
        return r.high ^ r.low
    }

    @inline(__always) @usableFromInline
    static func pairTerm(_ a: UInt64, _ b: UInt64, _ j: Int) -> UInt64 {
        let k = UInt64(truncatingIfNeeded: j) &* step
        return mum(a ^ (s0 &+ k), b ^ (s1 ^ k))
    }

    @inline(__always) @usableFromInline
    static func chainBlock(_ acc: UInt64, _ prev: UInt64, _ blockSize: Int) -> UInt64 {
        let rot = (prev &<< 29) | (prev &>> 35)
        return mum(acc ^ s3, prev ^ s4 ^ UInt64(truncatingIfNeeded: blockSize)) ^ acc ^ rot
    }

    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
    }

    /// The pair sum of one 64-byte block (the default size): ``absorb``'s pair loop unrolled, so
    /// the position keys are constants (in the loop, the compiler kept them in vector registers
    /// and moved every product between those and the multiplier).
    @inline(__always)
    static func block64(_ p: UnsafeRawPointer) -> UInt64 {
        pairTerm(load(p), load(p + 8), 0) &+ pairTerm(load(p + 16), load(p + 24), 1)
            &+ pairTerm(load(p + 32), load(p + 40), 2) &+ pairTerm(load(p + 48), load(p + 56), 3)
    }

    /// Adds one complete pair; emits a hash when the block is full. Returns false when `out` is full.
    @inline(__always)
    mutating func absorbPair(_ a: UInt64, _ b: UInt64, _ out: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        acc &+= Self.pairTerm(a, b, pair)
        pair += 1
        if pair == pairsPerBlock {
            chain = Self.chainBlock(acc, chain, blockSize)
            out[blockCount] = chain
            blockCount += 1
            acc = 0
            pair = 0
            return blockCount < out.count
        }
        return true
    }

    /// Absorbs `bytes` as the next part of the prompt stream, writing a hash to `out[blockCount]`
    /// for every block completed. Returns false once `out` is full (further input is ignored).
    @discardableResult
    public mutating func absorb(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        guard blockCount < out.count else { return false }
        guard var p = bytes.baseAddress else { return true }
        var n = bytes.count
        // 1. Complete a pair started by an earlier segment.
        if carryCount > 0 {
            while n > 0 && carryCount < 16 {
                appendCarry(p.load(as: UInt8.self))
                p += 1
                n -= 1
            }
            if carryCount < 16 { return true }
            carryCount = 0
            let (a, b) = (UInt64(littleEndian: carry.0), UInt64(littleEndian: carry.1))
            carry = (0, 0)
            if !absorbPair(a, b, out) { return false }
        }
        // 2. Whole blocks straight from memory (the hot loop), then single pairs. Blocks of the
        //    default size go through a loop of their own, with the chain in a register and the
        //    position keys as constants (``block64``): ~50 instructions a block instead of ~150
        //    (a 220 KB prompt hashes 256 blocks). A block begun by an earlier segment (a chat
        //    role and the text after it) is finished pair by pair first.
        while pair != 0 && n >= 16 {
            if !absorbPair(Self.load(p), Self.load(p + 8), out) { return false }
            p += 16
            n -= 16
        }
        if pair == 0 && pairsPerBlock == 4 && n >= 64 {
            var c = chain
            var k = blockCount
            let limit = min(out.count, k + n / 64)
            while k < limit {
                c = Self.chainBlock(Self.block64(p), c, 64)
                out[k] = c
                k += 1
                p += 64
            }
            n -= (k - blockCount) * 64
            chain = c
            blockCount = k
            if blockCount == out.count { return false }
        }
        while n >= 16 {
            if pair == 0 && n >= blockSize {
                var s: UInt64 = 0
                var j = 0
                while j < pairsPerBlock {
                    s &+= Self.pairTerm(Self.load(p), Self.load(p + 8), j)
                    p += 16
                    j += 1
                }
                n -= blockSize
                chain = Self.chainBlock(s, chain, blockSize)
                out[blockCount] = chain
                blockCount += 1
                if blockCount == out.count { return false }
                continue
            }
            if !absorbPair(Self.load(p), Self.load(p + 8), out) { return false }
            p += 16
            n -= 16
        }
        // 3. Keep the tail for the next segment.
        while n > 0 {
            appendCarry(p.load(as: UInt8.self))
            p += 1
            n -= 1
        }
        return true
    }

    @inline(__always)
    mutating func appendCarry(_ byte: UInt8) {
        withUnsafeMutableBytes(of: &carry) { $0[carryCount] = byte }
        carryCount += 1
    }

    /// Absorbs a chat role framed as `0x1E role 0x1F`.
    @discardableResult
    public mutating func absorbRole(_ role: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt64>) -> Bool {
        var rs: UInt8 = 0x1E
        var us: UInt8 = 0x1F
        guard withUnsafeBytes(of: &rs, { absorb($0, into: out) }) else { return false }
        guard absorb(role, into: out) else { return false }
        return withUnsafeBytes(of: &us) { absorb($0, into: out) }
    }

    /// Hashes the prompt `segments` of `body` (as found by ``RequestScanner``) into `out`; returns
    /// the number of hashes written (at most `out.count`, the `max_blocks` cap).
    public static func hashPrompt(
        body: UnsafeRawBufferPointer,
        segments: UnsafeBufferPointer<PromptSegment>,
        seed: UInt64,
        blockSize: Int = defaultBlockSize,
        into out: UnsafeMutableBufferPointer<UInt64>
    ) -> Int {
        var h = PrefixHasher(seed: seed, blockSize: blockSize)
        for s in segments {
            let bytes = s.range.bytes(in: body)
            let more = s.kind == .role ? h.absorbRole(bytes, into: out) : h.absorb(bytes, into: out)
            if !more { break }
        }
        return h.blockCount
    }

    /// Mixes `bytes` (a model name, an adapter name) into `seed`: a one-shot hash of variable-length
    /// input built from the same primitives. Order-dependent: mix the model, then the adapter.
    public static func mixSeed(_ seed: UInt64, _ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var acc: UInt64 = 0
        var j = 0
        var i = 0
        let n = bytes.count
        if let p = bytes.baseAddress {
            while i + 16 <= n {
                acc &+= pairTerm(load(p + i), load(p + i + 8), j)
                i += 16
                j += 1
            }
            if i < n {
                var tail: (UInt64, UInt64) = (0, 0)
                withUnsafeMutableBytes(of: &tail) { t in
                    for k in 0..<(n - i) { t[k] = p.load(fromByteOffset: i + k, as: UInt8.self) }
                }
                acc &+= pairTerm(UInt64(littleEndian: tail.0), UInt64(littleEndian: tail.1), j)
            }
        }
        // The length is folded in so "a" and "a\0" differ.
        return chainBlock(acc, seed, n &+ 0x5EED)
    }
}
