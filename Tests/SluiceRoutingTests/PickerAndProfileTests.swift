@testable import SluiceRouting
import Testing

@Suite struct PickerAndProfileTests {
    func pick(_ scores: [Double], seed: UInt64) -> Int {
        var rng = SplitMix64(seed: seed)
        let cs = candidates(scores.count) { c, k in c.score = scores[k] }
        return withBuffer(cs) { b in
            BestScorePicker().pick(b, count: cs.count, context: DecisionContext(request: RoutingRequest(), b, count: cs.count), random: &rng)
        }.0
    }

    @Test func bestScoreWins() {
        #expect(pick([1, 3, 2], seed: 1) == 1)
        #expect(pick([5], seed: 1) == 0)
        #expect(pick([-1, -0.5, -2], seed: 9) == 1)
    }

    @Test func tiesAreBrokenUniformlyAndReproducibly() {
        // Same seed, same pick.
        for seed in UInt64(0)..<20 { #expect(pick([2, 1, 2, 2], seed: seed) == pick([2, 1, 2, 2], seed: seed)) }
        // Over many seeds each tied candidate wins about a third of the time; the lower score never.
        var wins = [0, 0, 0, 0]
        for seed in UInt64(0)..<3000 { wins[pick([2, 1, 2, 2], seed: seed)] += 1 }
        #expect(wins[1] == 0)
        for k in [0, 2, 3] { #expect(abs(wins[k] - 1000) < 120, "\(wins)") }
    }

    @Test func theDefaultProfileDecidesWithReasons() throws {
        let profile = RoutingProfile.weighted()
        var rng = SplitMix64(seed: 3)
        // A prefix held by endpoint 2 wins over an idle endpoint 0.
        var cs = candidates(4) { c, k in
            c.inflight = [0, 1, 1, 1][k]
            c.prefixBlocks = k == 2 ? 10 : 0
        }
        let request = RoutingRequest(promptBlocks: 10, firstBlock: 42)
        var d = try #require(withBuffer(cs) { profile.decide($0, count: 4, request: request, random: &rng) }.0)
        #expect(cs[d.position].index == 2 && d.reason == .prefixHit)
        // The holder is far busier (bound max(0 × 2, 0 + 8) = 8): the guard removes it.
        cs[2].inflight = 9
        let (r, after) = withBuffer(cs) { profile.decide($0, count: 4, request: request, random: &rng) }
        d = try #require(r)
        #expect(after[d.position].index != 2)
        // Without blocks: the least loaded, least KV-used endpoint.
        cs = candidates(3) { c, k in
            c.waiting = [2, 0, 0][k]
            c.kvUse = [0, 0.5, 0.1][k]
        }
        d = try #require(withBuffer(cs) { profile.decide($0, count: 3, request: RoutingRequest(), random: &rng) }.0)
        #expect(d.position == 2 && d.reason == .leastLoaded)
        // One candidate left after the filters.
        cs = candidates(3) { c, k in c.admitted = k == 1 }
        let (only, left) = withBuffer(cs) { profile.decide($0, count: 3, request: request, random: &rng) }
        #expect(only?.reason == .onlyCandidate && left[only!.position].index == 1)
        // None left.
        cs = candidates(3) { c, _ in c.adapter = .absent }
        #expect(withBuffer(cs) { profile.decide($0, count: 3, request: RoutingRequest(adapterRequested: true), random: &rng) }.0 == nil)
    }

    @Test func weightsComposeTheProfile() throws {
        // KV use alone decides when every other weight is 0.
        let kvOnly = RoutingProfile.weighted(weights: ["prefix_affinity": 0, "prefix_home": 0, "queue_depth": 0, "lora_affinity": 0])
        #expect(!kvOnly.usesPrefix)
        #expect(RoutingProfile.weighted().usesPrefix)
        var rng = SplitMix64(seed: 1)
        let cs = candidates(3) { c, k in
            c.kvUse = [0.5, 0.2, 0.9][k]
            c.prefixBlocks = k == 0 ? 4 : 0
            c.inflight = [0, 5, 0][k]
        }
        let d = try #require(withBuffer(cs) { kvOnly.decide($0, count: 3, request: RoutingRequest(promptBlocks: 4, firstBlock: 5), random: &rng) }.0)
        #expect(d.position == 1)
        // Saturation limits join the filters only when set.
        #expect(RoutingProfile.weighted().filters.map(\.name) == ["health", "adapter", "load_guard"])
        #expect(RoutingProfile.weighted(saturation: SaturationFilter(maxWaiting: 3)).filters.map(\.name)
                == ["health", "adapter", "saturation", "load_guard"])
        #expect(RoutingProfile.leastLoaded.scorers.map(\.scorer.name) == ["queue_depth"])
    }

    @Test func leastLoadedSpreadsTiesAtRandom() throws {
        var rng = SplitMix64(seed: 11)
        let cs = candidates(4) { c, k in c.inflight = [3, 1, 1, 2][k] }
        var seen = Set<Int>()
        for _ in 0..<64 {
            let d = try #require(withBuffer(cs) { RoutingProfile.leastLoaded.decide($0, count: 4, request: RoutingRequest(), random: &rng) }.0)
            #expect([1, 2].contains(d.position) && d.reason == .leastLoaded)
            seen.insert(d.position)
        }
        #expect(seen == [1, 2])
    }

    @Test func routeReasonOrdinalsArePositions() {
        for (i, r) in RouteReason.allCases.enumerated() { #expect(r.ordinal == i, "\(r)") }
    }
}

@Suite struct SplitMix64Tests {
    @Test func unitDrawsAreInRangeUniformAndSeeded() {
        var a = SplitMix64(seed: 5), b = SplitMix64(seed: 5)
        var sum = 0.0
        var below = 0
        for _ in 0..<10_000 {
            let x = a.nextUnit()
            #expect(x >= 0 && x < 1)
            #expect(x == b.nextUnit())
            sum += x
            if x < 0.1 { below += 1 }
        }
        #expect(abs(sum / 10_000 - 0.5) < 0.02)
        #expect(abs(below - 1000) < 120)
    }
}
