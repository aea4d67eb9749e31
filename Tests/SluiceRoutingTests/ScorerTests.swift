@testable import SluiceRouting
import Testing

@Suite struct ScorerTests {
    @Test func prefixAffinityIsTheShareOfLeadingBlocksHeld() {
        let cs = candidates(4) { c, k in c.prefixBlocks = [0, 2, 8, 12][k] }
        #expect(scores(PrefixAffinityScorer(), cs, RoutingRequest(promptBlocks: 8, firstBlock: 1)) == [0, 0.25, 1, 1])
        #expect(scores(PrefixAffinityScorer(), cs, RoutingRequest(promptBlocks: 8, firstBlock: 1), weight: 3) == [0, 0.75, 3, 3])
        // No prompt blocks: nothing to score.
        #expect(scores(PrefixAffinityScorer(), cs, RoutingRequest()) == [0, 0, 0, 0])
    }

    @Test func theHomeIsTheRendezvousMaximumOverTheCandidates() {
        let request = RoutingRequest(promptBlocks: 4, firstBlock: 0xABCD)
        let cs = candidates(6)
        let weights = cs.map { SplitMix64.mix($0.homeHash ^ 0xABCD) }
        let home = weights.firstIndex(of: weights.max()!)!
        var expected = [Double](repeating: 0, count: 6)
        expected[home] = 2
        #expect(scores(PrefixHomeScorer(), cs, request, weight: 2) == expected)
        // Order does not matter: the same endpoint wins from a reversed list.
        let reversed = Array(cs.reversed())
        let r = scores(PrefixHomeScorer(), reversed, request, weight: 2)
        #expect(reversed[r.firstIndex(of: 2)!].index == home)
        // New prefixes only: once any candidate holds blocks, no home bonus.
        let held = candidates(6) { c, k in c.prefixBlocks = k == 0 ? 1 : 0 }
        #expect(scores(PrefixHomeScorer(newPrefixesOnly: true), held, request).allSatisfy { $0 == 0 })
        #expect(scores(PrefixHomeScorer(newPrefixesOnly: false), held, request).reduce(0, +) == 1)
        // Without blocks there is no home.
        #expect(scores(PrefixHomeScorer(), cs).allSatisfy { $0 == 0 })
    }

    @Test(arguments: [
        ([3, 5, 7, 3], [1.0, 0.5, 0.0, 1.0]),
        ([4, 4, 4, 4], [1.0, 1.0, 1.0, 1.0]),
        ([0, 10, 5, 1], [1.0, 0.0, 0.5, 0.9]),
    ])
    func queueDepthScalesLoadOverTheRange(_ loads: [Int], _ expected: [Double]) {
        let cs = candidates(4) { c, k in
            c.waiting = loads[k] / 3
            c.inflight = loads[k] - loads[k] / 3
        }
        let s = scores(QueueDepthScorer(), cs)
        for k in 0..<4 { #expect(abs(s[k] - expected[k]) < 1e-12, "\(loads) \(k)") }
    }

    @Test(arguments: [
        ([2, 6, 4], [1.0, 0.0, 0.5]),
        ([1, 1, 1], [1.0, 1.0, 1.0]),
    ])
    func inflightScalesTheGatewaysOwnCount(_ inflight: [Int], _ expected: [Double]) {
        // Waiting counts for queue depth, not here.
        let cs = candidates(3) { c, k in
            c.inflight = inflight[k]
            c.waiting = 10 * k
        }
        #expect(scores(InflightLoadScorer(), cs) == expected)
    }

    @Test func kvUseScoresHeadroomClamped() {
        let cs = candidates(5) { c, k in c.kvUse = [0, 0.25, 1, 1.5, -0.5][k] }
        #expect(scores(KVUseScorer(), cs, weight: 2) == [2, 1.5, 0, 0, 2])
    }

    @Test(arguments: [
        (AdapterState.notRequested, 1.0), (.running, 1.0), (.registeredSlotFree, 0.8), (.waiting, 0.6), (.unknown, 0.5),
        (.registeredSlotsFull, 0.0), (.absent, 0.0),
    ])
    func loraAffinityValues(_ state: AdapterState, _ value: Double) {
        #expect(LoRAAffinityScorer.value(state) == value)
        #expect(scores(LoRAAffinityScorer(), candidates(1) { c, _ in c.adapter = state }) == [value])
    }
}
