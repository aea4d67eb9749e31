import Testing

import SluiceLLM

@Suite struct PrefixHasherTests {
    /// An independent, non-streaming implementation of the documented function over the whole
    /// concatenated stream: the streaming hasher must match it bit for bit (this also freezes the
    /// function, which the contract requires to be stable).
    static func reference(_ stream: [UInt8], seed: UInt64, blockSize: Int) -> [UInt64] {
        func mum(_ a: UInt64, _ b: UInt64) -> UInt64 { let r = a.multipliedFullWidth(by: b); return r.high ^ r.low }
        func word(_ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(stream[i + $1]) << (8 * UInt64($1)) } }
        var prev = seed
        var out: [UInt64] = []
        for b in 0..<(stream.count / blockSize) {
            var acc: UInt64 = 0
            for j in 0..<(blockSize / 16) {
                let k = UInt64(j) &* 0x9E37_79B9_7F4A_7C15
                let at = b * blockSize + j * 16
                acc &+= mum(word(at) ^ (0xA076_1D64_78BD_642F &+ k), word(at + 8) ^ (0xE703_7ED1_A0B4_28DB ^ k))
            }
            let rot = (prev << 29) | (prev >> 35)
            prev = mum(acc ^ 0x8EBC_6AF0_9C88_C6E3, prev ^ 0x5899_65CC_7537_4CC3 ^ UInt64(blockSize)) ^ acc ^ rot
            out.append(prev)
        }
        return out
    }

    /// Hashes `buffer` cut into the given segment ranges (all `.text`).
    static func hash(_ buffer: [UInt8], cuts: [Int], seed: UInt64 = 1, blockSize: Int = 64, max: Int = 10_000) -> [UInt64] {
        var bounds = [0] + cuts.sorted() + [buffer.count]
        bounds = bounds.map { Swift.min($0, buffer.count) }
        let segs = (0..<bounds.count - 1).map { PromptSegment(range: ByteRange(start: bounds[$0], end: bounds[$0 + 1]), kind: .text) }
        var out = [UInt64](repeating: 0, count: max)
        let n = buffer.withUnsafeBytes { b in
            segs.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { PrefixHasher.hashPrompt(body: b, segments: s, seed: seed, blockSize: blockSize, into: $0) }
            }
        }
        return Array(out[0..<n])
    }

    static func text(_ n: Int, seed: UInt64 = 3) -> [UInt8] {
        var rng = TestRNG(seed: seed)
        return (0..<n).map { _ in UInt8.random(in: 0x20...0x7E, using: &rng) }
    }

    @Test(arguments: [16, 32, 64, 128, 256])
    func matchesReference(_ blockSize: Int) {
        let t = Self.text(5000)
        #expect(Self.hash(t, cuts: [], blockSize: blockSize) == Self.reference(t, seed: 1, blockSize: blockSize))
        #expect(Self.hash(t, cuts: [1, 17, 100, 101, 102, 999], blockSize: blockSize) == Self.reference(t, seed: 1, blockSize: blockSize))
    }

    /// Any bytes (not just text), cut anywhere, under every cap: the default block size has a
    /// loop of its own (whole blocks, entered after a block begun by an earlier segment is
    /// finished), which must agree with the reference wherever it starts and stops.
    @Test(arguments: [16, 64, 128])
    func anyBytesAnyCutsAnyCap(_ blockSize: Int) {
        var rng = TestRNG(seed: 21)
        let t = (0..<3000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let whole = Self.reference(t, seed: 9, blockSize: blockSize)
        for round in 0..<200 {
            let cuts = (0..<Int.random(in: 0...12, using: &rng)).map { _ in Int.random(in: 0...t.count, using: &rng) }
            let cap = round < 50 ? round : Int.random(in: 0...whole.count + 2, using: &rng)
            #expect(Self.hash(t, cuts: cuts, seed: 9, blockSize: blockSize, max: cap) == Array(whole.prefix(cap)),
                    "cuts \(cuts.sorted()), cap \(cap)")
        }
    }

    @Test(arguments: [0, 1, 15, 16, 63, 64, 65, 127, 128, 1000])
    func onlyFullBlocks(_ n: Int) {
        #expect(Self.hash(Self.text(n), cuts: []).count == n / 64)
    }

    @Test func capIsRespected() {
        let t = Self.text(64 * 10)
        let all = Self.hash(t, cuts: [])
        #expect(all.count == 10)
        for cap in 0...10 { #expect(Self.hash(t, cuts: [100, 200], max: cap) == Array(all.prefix(cap))) }
    }

    @Test func samePrefixSameLeadingHashes() {
        let shared = Self.text(64 * 5 + 10, seed: 1)
        let a = Self.hash(shared + Self.text(300, seed: 2), cuts: [])
        let b = Self.hash(shared + Self.text(300, seed: 3), cuts: [])
        #expect(Array(a.prefix(5)) == Array(b.prefix(5)))
        for i in 5..<Swift.min(a.count, b.count) { #expect(a[i] != b[i]) }
    }

    /// One changed byte changes its block's hash and every later one, and no earlier one.
    @Test(arguments: [0, 1, 7, 8, 15, 16, 63, 64, 200, 511, 639])
    func oneByteChange(_ at: Int) {
        let t = Self.text(640)
        var u = t
        u[at] ^= 0x01
        let a = Self.hash(t, cuts: [])
        let b = Self.hash(u, cuts: [])
        let block = at / 64
        for i in 0..<a.count {
            if i < block { #expect(a[i] == b[i]) } else { #expect(a[i] != b[i], "block \(i) after change at \(at)") }
        }
    }

    /// The same stream cut into segments anywhere gives the same hashes.
    @Test func segmentationIndependence() {
        let t = Self.text(3000)
        let whole = Self.hash(t, cuts: [])
        var rng = TestRNG(seed: 11)
        for _ in 0..<300 {
            let cuts = (0..<Int.random(in: 1...40, using: &rng)).map { _ in Int.random(in: 0...t.count, using: &rng) }
            #expect(Self.hash(t, cuts: cuts) == whole)
        }
        // Every single cut position, including one-byte segments.
        for c in 0...200 { #expect(Self.hash(t, cuts: [c, c + 1, c + 2]) == whole) }
        #expect(Self.hash(t, cuts: Array(0..<t.count)) == whole)
    }

    @Test func rolesAreFramed() {
        func chat(_ parts: [(String, PromptSegment.Kind)]) -> [UInt64] {
            let buffer = Array(parts.map(\.0).joined().utf8)
            var segs: [PromptSegment] = []
            var at = 0
            for (s, k) in parts { segs.append(PromptSegment(range: ByteRange(start: at, end: at + s.utf8.count), kind: k)); at += s.utf8.count }
            var out = [UInt64](repeating: 0, count: 100)
            let n = buffer.withUnsafeBytes { b in segs.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer {
                PrefixHasher.hashPrompt(body: b, segments: s, seed: 0, blockSize: 16, into: $0) } } }
            return Array(out[0..<n])
        }
        let hi = String(repeating: "hi there ", count: 8)
        let user = chat([("user", .role), (hi, .text)])
        let system = chat([("system", .role), (hi, .text)])
        let asText = chat([("user", .text), (hi, .text)])
        #expect(!user.isEmpty && user[0] != system[0] && user[0] != asText[0])
        // The framing bytes are the documented ones.
        let framed = "\u{1E}user\u{1F}" + hi
        #expect(user == Self.reference(Array(framed.utf8), seed: 0, blockSize: 16))
    }

    @Test func seedSeparatesModels() {
        let t = Self.text(256)
        func seed(_ s: String) -> UInt64 { Array(s.utf8).withUnsafeBytes { PrefixHasher.mixSeed(0, $0) } }
        #expect(seed("llama") != seed("llama2"))
        #expect(seed("a") != seed("a\u{0}"))
        #expect(seed("") != 0)
        let a = Self.hash(t, cuts: [], seed: seed("llama"))
        let b = Self.hash(t, cuts: [], seed: seed("mistral"))
        for i in 0..<a.count { #expect(a[i] != b[i]) }
        // Adapter mixed after the model: order matters.
        let ma = Array("a".utf8).withUnsafeBytes { PrefixHasher.mixSeed(seed("m"), $0) }
        let am = Array("m".utf8).withUnsafeBytes { PrefixHasher.mixSeed(seed("a"), $0) }
        #expect(ma != am)
    }

    /// Works on what RequestScanner produces, including escaped text hashed raw.
    @Test func fromScannedRequest() throws {
        let long = String(repeating: "abcdefgh", count: 40)
        let s = try scan("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\(long)\"}]}")
        var out = [UInt64](repeating: 0, count: 64)
        let n = s.body.withUnsafeBytes { b in s.segments.withUnsafeBufferPointer { seg in out.withUnsafeMutableBufferPointer {
            PrefixHasher.hashPrompt(body: b, segments: seg, seed: 9, into: $0) } } }
        #expect(Array(out[0..<n]) == Self.reference(Array(("\u{1E}user\u{1F}" + long).utf8), seed: 9, blockSize: 64))
    }
}
