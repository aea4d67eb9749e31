@testable import SluiceRouting
import Testing

/// The cost model (``CostModel``), its scorer and picker, and the profile composed of them:
/// exact predictions from injected state, exact picks, the cold burst.
@Suite struct CostModelTests {
    /// Round coefficients so expected values are exact: 1 ms overhead, 10 µs a token, a 2 ms
    /// step + 0.5 ms a decoding sequence.
    static let k = LatencyCoefficients(overhead: 0.001, prefillPerToken: 0.00001, stepBase: 0.002, stepPerSequence: 0.0005)
    static let model = CostModel(chunkTokens: 1000, adapterLoad: 0.01, adapterWait: 0.2)

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var candidate: Candidate
        var request: RoutingRequest
        /// Expected (hit, uncached P, queued Q, decoding D, ttft seconds).
        var hit: Int, p: Int, q: Int, d: Int, ttft: Double
        var testDescription: String { name }
    }

    static func cand(prefix: Int = 0, waiting: Int = 0, running: Int = 0, pendingRequests: Int = 0, pendingTokens: Int? = 0,
                     decoding: Int = 0, meanUncached: Double = 0, adapter: AdapterState = .notRequested) -> Candidate {
        Candidate(index: 0, id: 1, waiting: waiting, adapter: adapter, homeHash: 7, prefixBlocks: prefix, running: running,
                  pendingRequests: pendingRequests, pendingTokens: pendingTokens, decoding: decoding,
                  meanUncachedTokens: meanUncached, coefficients: k)
    }

    // steps = ½ + max(1, ⌈T / 1000⌉); ttft = 0.001 + 0.00001 T + steps × (0.002 + 0.0005 D) (+ adapter)
    static let cases: [Case] = [
        Case(name: "idle, 500-token prompt: one step", candidate: cand(), request: RoutingRequest(promptTokens: 500),
             hit: 0, p: 500, q: 0, d: 0, ttft: 0.001 + 0.005 + 1.5 * 0.002),
        Case(name: "empty prompt still waits a step", candidate: cand(), request: RoutingRequest(),
             hit: 0, p: 0, q: 0, d: 0, ttft: 0.001 + 1.5 * 0.002),
        Case(name: "a hit of 20 blocks (320 tokens) saves their prefill", candidate: cand(prefix: 20),
             request: RoutingRequest(promptBlocks: 30, promptTokens: 500), hit: 320, p: 180, q: 0, d: 0,
             ttft: 0.001 + 0.0018 + 1.5 * 0.002),
        Case(name: "a hit never exceeds the prompt", candidate: cand(prefix: 64),
             request: RoutingRequest(promptBlocks: 62, promptTokens: 1000), hit: 1000, p: 0, q: 0, d: 0,
             ttft: 0.001 + 1.5 * 0.002),
        Case(name: "a prompt is at least what its blocks cover", candidate: cand(prefix: 10),
             request: RoutingRequest(promptBlocks: 62, promptTokens: 100), hit: 160, p: 832, q: 0, d: 0,
             ttft: 0.001 + 0.00832 + 1.5 * 0.002),
        Case(name: "queued prefill ahead: 1,800 pending tokens, two steps", candidate: cand(pendingRequests: 2, pendingTokens: 1800),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 1800, d: 0, ttft: 0.001 + 0.023 + 3.5 * 0.002),
        Case(name: "the scrape's waiting beyond the gateway's own, at the mean uncached prompt",
             candidate: cand(waiting: 5, pendingRequests: 2, pendingTokens: 1800, meanUncached: 400),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 3000, d: 0, ttft: 0.001 + 0.035 + 4.5 * 0.002),
        Case(name: "waiting the gateway already counts adds nothing", candidate: cand(waiting: 2, pendingRequests: 2, pendingTokens: 100, meanUncached: 400),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 100, d: 0, ttft: 0.001 + 0.006 + 1.5 * 0.002),
        Case(name: "pending tokens unreported: each pending request at the mean",
             candidate: cand(pendingRequests: 3, pendingTokens: nil, meanUncached: 300),
             request: RoutingRequest(promptTokens: 100), hit: 0, p: 100, q: 900, d: 0, ttft: 0.001 + 0.01 + 1.5 * 0.002),
        Case(name: "nothing routed there yet: a waiting request costs this prompt", candidate: cand(waiting: 2),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 1000, d: 0, ttft: 0.001 + 0.015 + 2.5 * 0.002),
        Case(name: "decode interference: 8 decoding", candidate: cand(decoding: 8),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 0, d: 8, ttft: 0.001 + 0.005 + 1.5 * 0.006),
        Case(name: "the scrape's running beyond the gateway's pending counts as decoding",
             candidate: cand(running: 12, pendingRequests: 2, pendingTokens: 0, decoding: 4),
             request: RoutingRequest(promptTokens: 500), hit: 0, p: 500, q: 0, d: 10, ttft: 0.001 + 0.005 + 1.5 * 0.007),
        Case(name: "adapter registered with a free slot: a load", candidate: cand(adapter: .registeredSlotFree),
             request: RoutingRequest(adapterRequested: true, promptTokens: 500), hit: 0, p: 500, q: 0, d: 0, ttft: 0.001 + 0.005 + 0.003 + 0.01),
        Case(name: "adapter slots full: a wait", candidate: cand(adapter: .registeredSlotsFull),
             request: RoutingRequest(adapterRequested: true, promptTokens: 500), hit: 0, p: 500, q: 0, d: 0, ttft: 0.001 + 0.005 + 0.003 + 0.2),
        Case(name: "adapter running: nothing extra", candidate: cand(adapter: .running),
             request: RoutingRequest(adapterRequested: true, promptTokens: 500), hit: 0, p: 500, q: 0, d: 0, ttft: 0.001 + 0.005 + 0.003),
    ]

    @Test(arguments: cases)
    func predictions(_ c: Case) {
        let e = Self.model.predict(c.candidate, c.request)
        #expect(e.hitTokens == c.hit && e.uncachedTokens == c.p && e.queuedTokens == c.q && e.decoding == c.d)
        // Candidates keep coefficients as Float: equal to 7 digits.
        #expect(abs(e.ttft - c.ttft) < 1e-7 * c.ttft, "\(e.ttft) vs \(c.ttft)")
        // cost = ttft + interference × D × P × prefillPerToken
        let cost = c.ttft + Double(c.d * c.p) * Self.k.prefillPerToken
        #expect(abs(e.cost - cost) < 1e-7 * cost)
        var pure = Self.model
        pure.interference = 0
        #expect(pure.predict(c.candidate, c.request).cost == e.ttft)
    }

    /// The interference term: a holder with 6 sequences decoding and a queue that makes its
    /// TTFT a little worse than an idle endpoint's keeps the request when the idle endpoint
    /// also decodes (recomputing the prompt there would delay its sequences); with
    /// interference 0 the TTFT alone decides and the request leaves.
    @Test(arguments: [(1.0, 1), (0.0, 0)])
    func interferenceKeepsAPrefixOnABusyHolder(_ weight: Double, _ expected: Int) throws {
        let cs = candidates(2) { c, k in
            c.coefficients = Self.k
            c.decoding = k == 1 ? 6 : 4
            c.prefixBlocks = k == 1 ? 125 : 0
            c.pendingRequests = k == 1 ? 1 : 0
            c.pendingTokens = k == 1 ? 2400 : 0
        }
        var rng = SplitMix64(seed: 1)
        let profile = RoutingProfile.costModel(model: CostModel(chunkTokens: 8192, interference: weight), absoluteBand: 0, relativeBand: 0)
        let request = RoutingRequest(promptBlocks: 125, firstBlock: 5, promptTokens: 2000)
        let (d, after) = withBuffer(cs) { profile.decide($0, count: 2, request: request, random: &rng) }
        #expect(after[try #require(d).position].index == expected)
    }

    /// A prefix hit is worth exactly the prefill it saves: the holder wins while its queue costs
    /// less than the hit saves, and loses once it costs more.
    @Test(arguments: [(0, 1), (1000, 1), (1900, 1), (2100, 0), (5000, 0)])
    func aHitIsWorthThePrefillItSaves(_ queued: Int, _ expected: Int) throws {
        // 2,000-token prompt; endpoint 1 holds all of it (125 blocks = 2,000 tokens), endpoint 0 is idle.
        let cs = candidates(2) { c, k in
            c.coefficients = Self.k
            c.prefixBlocks = k == 1 ? 125 : 0
            c.pendingRequests = k == 1 && queued > 0 ? 1 : 0
            c.pendingTokens = k == 1 ? queued : 0
        }
        var rng = SplitMix64(seed: 1)
        let profile = RoutingProfile.costModel(model: CostModel(chunkTokens: 8192), absoluteBand: 0, relativeBand: 0)
        let request = RoutingRequest(promptBlocks: 125, firstBlock: 99, promptTokens: 2000)
        let (d, after) = withBuffer(cs) { profile.decide($0, count: 2, request: request, random: &rng) }
        let decision = try #require(d)
        #expect(after[decision.position].index == expected)
        #expect(decision.reason == (expected == 1 ? .prefixHit : .lowestTTFT))
        #expect(decision.uncachedTokens == (expected == 1 ? 0 : 2000))
        #expect(decision.queuedTokens == (expected == 1 ? queued : 0))
        #expect(decision.predictedTTFT == after[decision.position].predictedTTFT)
    }

    /// The scorer's values: least / ttft.
    @Test func scorerScoresRelativeToTheFastest() {
        let cs = candidates(3) { c, k in
            c.coefficients = Self.k
            c.pendingTokens = [0, 1000, 3000][k]
            c.pendingRequests = k == 0 ? 0 : 1
        }
        let request = RoutingRequest(promptTokens: 500)
        let s = scores(PredictedTTFTScorer(model: CostModel(chunkTokens: 100_000)), cs, request)
        let t = [0.001 + 0.005 + 0.003, 0.001 + 0.015 + 0.003, 0.001 + 0.035 + 0.003]
        for k in 0..<3 { #expect(abs(s[k] - t[0] / t[k]) < 1e-6) }
    }

    /// A cold burst: N requests over N idle endpoints with empty caches land one per endpoint,
    /// whether they share a prefix or not, as each sent request is reported to its endpoint.
    @Test(arguments: [(8, true), (8, false), (5, true), (16, false)])
    func aColdBurstLandsOnePerEndpoint(_ n: Int, _ samePrefix: Bool) throws {
        var cs = candidates(n) { c, _ in c.coefficients = .defaults }
        let profile = RoutingProfile.costModel()
        var rng = SplitMix64(seed: 42)
        var landed = [Int](repeating: 0, count: n)
        for r in 0..<n {
            let first: UInt64 = samePrefix ? 777 : UInt64(r) &* 0x1234_5678_9ABC_DEF1 &+ 3
            // ~2,000-token system prompt: 125 blocks. With one prefix, endpoints already sent it
            // hold it (the index records a prompt at commit), but its prefill is still pending there.
            let request = RoutingRequest(promptBlocks: 125, firstBlock: first, promptTokens: 2050)
            for k in 0..<n { cs[k].prefixBlocks = samePrefix && landed[cs[k].index] > 0 ? 125 : 0 }
            let (d, after) = withBuffer(cs) { profile.decide($0, count: n, request: request, random: &rng) }
            let decision = try #require(d)
            let chosen = after[decision.position].index
            landed[chosen] += 1
            // The request path's prefillStarted(tokens:) at send.
            cs[chosen].pendingRequests += 1
            cs[chosen].pendingTokens = (cs[chosen].pendingTokens ?? 0) + decision.uncachedTokens
        }
        #expect(landed == [Int](repeating: 1, count: n), "\(landed)")
    }

    /// Later turns follow their prefix once the burst's prefills are done.
    @Test func laterTurnsFollowTheirPrefix() throws {
        let cs = candidates(8) { c, k in
            c.coefficients = .defaults
            c.decoding = 1
            c.prefixBlocks = k == 5 ? 130 : 0
        }
        var rng = SplitMix64(seed: 1)
        let request = RoutingRequest(promptBlocks: 140, firstBlock: 12, promptTokens: 2300)
        let (d, after) = withBuffer(cs) { RoutingProfile.costModel().decide($0, count: 8, request: request, random: &rng) }
        let decision = try #require(d)
        #expect(after[decision.position].index == 5 && decision.reason == .prefixHit && decision.hitTokens == 2080)
    }

    /// Alike candidates (within the band, same hit) tie; the tie goes to the prefix's
    /// rendezvous home, so replicas whose coefficients differ slightly still agree.
    @Test func alikeCandidatesGoToTheRendezvousHome() throws {
        let request = RoutingRequest(promptBlocks: 10, firstBlock: 0xABCDEF, promptTokens: 160)
        var home = 0, top: UInt64 = 0
        let base = candidates(6)
        for (k, c) in base.enumerated() where SplitMix64.mix(c.homeHash ^ request.firstBlock) > top {
            top = SplitMix64.mix(c.homeHash ^ request.firstBlock)
            home = k
        }
        // Replica A sees endpoint costs as they are; replica B's learned prefill cost is 2 %
        // higher at the home and 2 % lower elsewhere: both pick the home.
        for skew in [0.0, 0.02, -0.02] {
            let cs = candidates(6) { c, k in
                c.coefficients = .defaults
                c.coefficients.prefillPerToken *= k == home ? 1 + skew : 1 - skew
            }
            var rng = SplitMix64(seed: 9)
            let (d, after) = withBuffer(cs) { RoutingProfile.costModel().decide($0, count: 6, request: request, random: &rng) }
            let decision = try #require(d)
            #expect(after[decision.position].index == home && decision.reason == .rendezvous)
        }
        // Outside the band (the home has a long queue), the cheapest wins.
        let cs = candidates(6) { c, k in
            c.coefficients = .defaults
            c.pendingRequests = k == home ? 1 : 0
            c.pendingTokens = k == home ? 4000 : 0
        }
        var rng = SplitMix64(seed: 9)
        let (d, after) = withBuffer(cs) { RoutingProfile.costModel().decide($0, count: 6, request: request, random: &rng) }
        #expect(after[try #require(d).position].index != home)
    }

    /// A new prefix goes to its home while the home costs no more than `homeBand` of the
    /// prompt's prefill over the cheapest (replicas seeing different loads still agree); a
    /// whole prefill queued there is beyond it.
    @Test(arguments: [(200, 0.25, true), (450, 0.25, true), (600, 0.25, false), (2000, 0.25, false), (200, 0.0, false)])
    func aNewPrefixGoesHomeWithinTheHomeBand(_ queued: Int, _ homeBand: Double, _ home: Bool) throws {
        let request = RoutingRequest(promptBlocks: 125, firstBlock: 0x5EED, promptTokens: 2000)
        let base = candidates(6)
        let h = (0..<6).max { SplitMix64.mix(base[$0].homeHash ^ request.firstBlock) < SplitMix64.mix(base[$1].homeHash ^ request.firstBlock) }!
        let cs = candidates(6) { c, k in
            c.coefficients = Self.k
            c.pendingRequests = k == h ? 1 : 0
            c.pendingTokens = k == h ? queued : 0
        }
        var rng = SplitMix64(seed: 2)
        // 2,000 tokens at 10 µs: a 20 ms prefill, a 5 ms band at 0.25 (500 queued tokens).
        let profile = RoutingProfile.costModel(model: CostModel(chunkTokens: 8192), absoluteBand: 0, relativeBand: 0, homeBand: homeBand)
        let (d, after) = withBuffer(cs) { profile.decide($0, count: 6, request: request, random: &rng) }
        #expect((after[try #require(d).position].index == h) == home)
    }

    /// Without prompt blocks, alike candidates are chosen uniformly at random from the seeded
    /// generator (reproducibly); the slower ones never.
    @Test func tiesWithoutAPrefixAreRandomAndSeeded() {
        let cs = candidates(4) { c, k in
            c.coefficients = .defaults
            c.pendingRequests = k == 1 ? 1 : 0
            c.pendingTokens = k == 1 ? 3000 : 0
        }
        func pick(_ seed: UInt64) -> Int {
            var rng = SplitMix64(seed: seed)
            let (d, after) = withBuffer(cs) { RoutingProfile.costModel().decide($0, count: 4, request: RoutingRequest(promptTokens: 50), random: &rng) }
            return after[d!.position].index
        }
        var wins = [0, 0, 0, 0]
        for seed in UInt64(0)..<3000 {
            let p = pick(seed)
            #expect(p == pick(seed))
            wins[p] += 1
        }
        #expect(wins[1] == 0)
        for k in [0, 2, 3] { #expect(abs(wins[k] - 1000) < 120, "\(wins)") }
    }

    /// Filters still apply (health, adapter), and one survivor is the only candidate.
    @Test func filtersComeFirst() throws {
        var rng = SplitMix64(seed: 1)
        var cs = candidates(3) { c, k in c.admitted = k != 0 }
        cs[1].adapter = .absent
        cs[2].adapter = .registeredSlotFree
        let (d, after) = withBuffer(cs) {
            RoutingProfile.costModel().decide($0, count: 3, request: RoutingRequest(adapterRequested: true, promptTokens: 10), random: &rng)
        }
        let decision = try #require(d)
        #expect(after[decision.position].index == 2 && decision.reason == .onlyCandidate)
        #expect(decision.predictedTTFT != nil)
        let none = candidates(2) { c, _ in c.admitted = false }
        #expect(withBuffer(none) { RoutingProfile.costModel().decide($0, count: 2, request: RoutingRequest(), random: &rng) }.0 == nil)
        #expect(RoutingProfile.costModel().usesPrefix && RoutingProfile.costModel().costModel == CostModel())
        #expect(RoutingProfile.weighted().costModel == nil)
    }
}
