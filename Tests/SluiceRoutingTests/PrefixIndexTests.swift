@testable import SluiceRouting
import Testing

@Suite struct PrefixIndexTests {
    func match(_ index: PrefixIndex, _ hashes: [UInt64], _ cs: [Candidate]) -> [Int] {
        var copy = cs
        hashes.withUnsafeBufferPointer { h in copy.withUnsafeMutableBufferPointer { index.match(h, into: $0, count: cs.count) } }
        return copy.map(\.prefixBlocks)
    }

    func record(_ index: PrefixIndex, _ hashes: [UInt64], _ endpoint: Int) {
        hashes.withUnsafeBufferPointer { index.record($0, endpoint: endpoint) }
    }

    @Test func eachEndpointGetsItsOwnRunOfLeadingBlocks() {
        let index = PrefixIndex()
        let cs = candidates(4)  // ids 100...103
        record(index, [1, 2, 3, 4], 100)
        record(index, [1, 2, 9], 101)
        record(index, [7, 2, 3], 102)  // does not start with block 1: never matches it
        #expect(match(index, [1, 2, 3, 4, 5], cs) == [4, 2, 0, 0])
        #expect(match(index, [1, 2, 9, 4], cs) == [2, 3, 0, 0])
        #expect(match(index, [7, 2, 3, 4], cs) == [0, 0, 3, 0])
        #expect(match(index, [8], cs) == [0, 0, 0, 0])
        #expect(match(index, [], cs) == [0, 0, 0, 0])
        // An owner that is not a candidate (filtered, or another pool) is ignored.
        #expect(match(index, [1, 2, 3], Array(cs[1...])) == [2, 0, 0])
    }

    /// A long prompt: the first 16 blocks are kept, then every 4th; a match is known to the last
    /// kept block before the prompts part (the hashes chain, so a kept block stands for all before it).
    @Test func longPromptsKeepEveryFourthBlockPastTheFirstSixteen() {
        let index = PrefixIndex()
        let prompt = (UInt64(0)..<256).map { $0 &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
        record(index, prompt, 100)
        #expect(index.count == 16 + 60)
        let cs = candidates(2)
        for parting in [0, 1, 5, 15, 16, 17, 18, 19, 20, 21, 99, 100, 101, 102, 103, 254, 255, 256] {
            // The same first `parting` blocks, then different ones (as chained hashes are).
            let other = Array(prompt[0..<parting]) + (UInt64(parting)..<256).map { $0 &+ 0xDEAD_0000 }
            let expected = parting <= 16 ? parting : 16 + (parting - 16) / 4 * 4
            #expect(match(index, other, cs) == [expected, 0], "parting at block \(parting)")
        }
        // A shorter prompt that is a prefix of the recorded one matches to its last kept block.
        #expect(match(index, Array(prompt[0..<18]), cs) == [16, 0])
        #expect(match(index, Array(prompt[0..<20]), cs) == [20, 0])
    }

    @Test func aBlockKeepsItsFourMostRecentOwners() {
        let index = PrefixIndex()
        let cs = candidates(6)
        for e in 100...104 { record(index, [5, 6], e) }  // 100 is the least recent and drops out
        #expect(match(index, [5, 6], cs) == [0, 2, 2, 2, 2, 0])
        record(index, [5, 6], 101)  // refreshing an owner keeps the others
        record(index, [5, 6], 105)  // replaces 102, now the least recent
        #expect(match(index, [5, 6], cs) == [0, 2, 0, 2, 2, 2])
    }

    @Test func theIndexIsBounded() {
        let index = PrefixIndex(capacityBlocks: 16 * 64)
        for i in UInt64(0)..<20_000 { record(index, [i &* 0x9E37_79B9_7F4A_7C15], 100) }
        #expect(index.count <= 16 * 64)
        // The most recent blocks survive eviction.
        let recent = UInt64(19_999) &* 0x9E37_79B9_7F4A_7C15
        #expect(match(index, [recent], candidates(1)) == [1])
    }

    @Test func sharedByThreadsWithoutLosingRecords() async {
        let index = PrefixIndex()
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<4 {
                g.addTask {
                    for i in 0..<500 { [UInt64(t * 1000 + i), 1].withUnsafeBufferPointer { index.record($0, endpoint: 100 + t) } }
                }
            }
        }
        for t in 0..<4 { #expect(match(index, [UInt64(t * 1000 + 499)], candidates(4)) == (0..<4).map { $0 == t ? 1 : 0 }) }
    }
}

@Suite struct BlockKeyTests {
    /// Keys that differ only in their high bits (or only in their low bits) still spread over
    /// buckets, and the spread depends on the table's seed.
    @Test func keysDifferingInOneRegionSpreadOverBuckets() {
        for shift in [0, 20, 40, 52] {
            var buckets = Set<Int>()
            for i in UInt64(0)..<4096 { buckets.insert(PrefixIndex.BlockKey(i << shift)._rawHashValue(seed: 12345) & 4095) }
            #expect(buckets.count > 2000, "shift \(shift): \(buckets.count) of 4096 buckets")
        }
        // A different seed, a different spread; equal keys hash alike.
        let a = PrefixIndex.BlockKey(77)
        #expect(a._rawHashValue(seed: 1) == PrefixIndex.BlockKey(77)._rawHashValue(seed: 1))
        #expect(a._rawHashValue(seed: 1) != a._rawHashValue(seed: 2))
    }
}
