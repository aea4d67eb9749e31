import CSluiceSIMD
import Testing

@testable import SluiceLLM

/// SWAR.firstStringSpecial (how far a JSON string scan skips) and the word and vector tests it is
/// built from, against the byte-by-byte definition `isStringSpecial`.
@Suite struct StringRunTests {
    /// The plain bytes nearest the special ones, and a few others.
    static let plain: [UInt8] = [0x20, 0x21, 0x23, 0x41, 0x5B, 0x5D, 0x61, 0x7E, 0x7F]

    static func reference(_ bytes: [UInt8], from: Int, end: Int) -> Int {
        var i = from
        while i < end && !SWAR.isStringSpecial(bytes[i]) { i += 1 }
        return i
    }

    static func run(_ bytes: [UInt8], from: Int, end: Int) -> Int {
        bytes.withUnsafeBufferPointer { SWAR.firstStringSpecial($0.baseAddress!, from: from, end: end) }
    }

    @Test func definition() {
        for v in 0...255 {
            let c = UInt8(v)
            let expected = c == 0x22 || c == 0x5C || c < 0x20 || c >= 0x80
            #expect(SWAR.isStringSpecial(c) == expected, "byte \(v)")
        }
    }

    /// The word test's lowest flag, for every byte value at every position of a word whose other
    /// bytes are plain (the bytes below it) or anything (the bytes above it may only add flags).
    @Test func wordMaskLowestFlagIsExact() {
        var rng = TestRNG(seed: 7)
        for v in 0...255 {
            for k in 0..<8 {
                for _ in 0..<8 {
                    var bytes = (0..<8).map { _ in Self.plain[Int(rng.next() % UInt64(Self.plain.count))] }
                    bytes[k] = UInt8(v)
                    for j in (k + 1)..<8 { bytes[j] = UInt8(truncatingIfNeeded: rng.next()) }
                    let w = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                    let m = SWAR.stringSpecialMask(w)
                    let expected = Self.reference(bytes, from: 0, end: 8)
                    let got = m == 0 ? 8 : m.trailingZeroBitCount >> 3
                    #expect(got == expected, "byte \(v) at \(k): \(bytes)")
                }
            }
        }
    }

    /// The vector tests, for every byte value in every lane, the rest plain.
    @Test func vectorTestsEveryByteEveryLane() {
        for v in 0...255 {
            for lane in 0..<64 {
                var bytes = (0..<64).map { Self.plain[($0 * 5) % Self.plain.count] }
                bytes[lane] = UInt8(v)
                let (one, any) = bytes.withUnsafeBytes { r in
                    let vs = (0..<4).map { r.loadUnaligned(fromByteOffset: 16 * $0, as: SIMD16<UInt8>.self) }
                    let m = SWAR.special(vs[lane / 16])
                    return ((0..<16).map { m[$0] }, SWAR.anySpecial(vs[0], vs[1], vs[2], vs[3]))
                }
                #expect(one == (0..<16).map { $0 == lane % 16 && SWAR.isStringSpecial(UInt8(v)) }, "byte \(v) in lane \(lane)")
                #expect(any == SWAR.isStringSpecial(UInt8(v)), "byte \(v) in lane \(lane)")
            }
        }
    }

    /// The vector loops alone, 16-byte and (where the CPU has it) 32-byte: whole plain 64-byte
    /// blocks skipped, a block with a special byte (anywhere in it) or an incomplete one never.
    @Test(arguments: [false, true])
    func plainBlocks(wide: Bool) {
        if wide && !SWAR.hasAVX2 { return }
        var rng = TestRNG(seed: 5)
        for n in [0, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 257, 320] {
            for from in [0, 1, 7] where from <= n {
                for k in (from..<n).map({ Optional($0) }) + [nil] {
                    var bytes = (0..<n).map { _ in Self.plain[Int(rng.next() % UInt64(Self.plain.count))] }
                    if let k { bytes[k] = [0x22, 0x5C, 0x1F, 0x80, 0xFF, 0x00][Int(rng.next() % 6)] }
                    let first = Self.reference(bytes, from: from, end: n)
                    let expected = from + min((first - from) / 64, (n - from) / 64) * 64
                    let got = bytes.withUnsafeBufferPointer {
                        wide ? csluice_skip_plain_blocks_avx2($0.baseAddress!, from, n) : SWAR.skipPlainBlocks16($0.baseAddress!, from: from, end: n)
                    }
                    #expect(got == expected, "n \(n), from \(from), special at \(String(describing: k))")
                }
            }
        }
    }

    /// One byte of every value at every position of plain runs up to 153 bytes, from several start
    /// offsets in a word; the run ends at its last byte or is cut short before it.
    @Test func everyByteAtEveryPosition() {
        var rng = TestRNG(seed: 11)
        for n in [1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 39, 40, 47, 56, 63, 64, 72, 87, 88, 89, 95, 100, 130, 153] {
            for k in 0..<n {
                for v in 0...255 {
                    var bytes = (0..<n).map { _ in Self.plain[Int(rng.next() % UInt64(Self.plain.count))] }
                    bytes[k] = UInt8(v)
                    for from in [0, 1, 5, 8] where from <= k {
                        for end in [n, max(from, k)] {
                            let got = Self.run(bytes, from: from, end: end)
                            let expected = Self.reference(bytes, from: from, end: end)
                            #expect(got == expected, "n \(n), byte \(v) at \(k), from \(from), end \(end)")
                            if got != expected { return }
                        }
                    }
                }
            }
        }
    }

    /// Special bytes at or after `end` are not looked at; plain runs of every length are skipped whole.
    @Test func stopsAtEnd() {
        for n in 0...100 {
            for from in 0...min(n, 9) {
                var bytes = (0..<n).map { Self.plain[$0 % Self.plain.count] }
                bytes += [0x22, 0x5C, 0x00, 0x80]
                #expect(Self.run(bytes, from: from, end: n) == n, "n \(n), from \(from)")
                #expect(Self.run(bytes, from: from, end: n + 1) == n, "n \(n), from \(from), the quote inside")
            }
        }
    }

    /// Random buffers: mostly plain with sparse special bytes (and some dense), random ranges.
    @Test func randomBuffers() {
        var rng = TestRNG(seed: 3)
        for round in 0..<20_000 {
            let n = Int(rng.next() % 300)
            let density = round % 4 == 0 ? 2 : 60
            var bytes = (0..<n).map { _ -> UInt8 in
                rng.next() % UInt64(density) == 0 ? UInt8(truncatingIfNeeded: rng.next()) : Self.plain[Int(rng.next() % UInt64(Self.plain.count))]
            }
            if n == 0 { bytes = [0x22] }
            let from = n == 0 ? 0 : Int(rng.next() % UInt64(n + 1))
            let end = from + Int(rng.next() % UInt64(n - from + 1))
            let got = Self.run(bytes, from: from, end: end)
            let expected = Self.reference(bytes, from: from, end: end)
            #expect(got == expected, "round \(round): n \(n), from \(from), end \(end)")
            if got != expected { return }
        }
    }
}
