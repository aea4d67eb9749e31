import SluiceIO
@testable import SluiceSim
import Testing

/// Engine behaviour, driven with a fake clock (instants passed in).
@Suite struct EngineTests {
    static let t0 = Instant(nanoseconds: 1_000_000_000)

    static func config(_ change: (inout SimEngineConfig) -> Void = { _ in }) -> SimEngineConfig {
        var c = SimEngineConfig()
        c.blockTokens = 16
        c.kvTokens = 16384
        change(&c)
        return c
    }

    /// Prompt bytes of exactly `tokens` tokens whose first `shared` tokens come from `seed` "a"
    /// and the rest from `tail`.
    static func prompt(tokens: Int, shared: Int = 0, head: UInt8 = 0x41, tail: UInt8 = 0x5A) -> [UInt8] {
        var p: [UInt8] = []
        for i in 0..<(tokens * 4) { p.append(i < shared * 4 ? head &+ UInt8(i % 23) : tail &+ UInt8(i % 3)) }
        return p
    }

    static func run(_ e: SimEngine, from t: Instant = t0) -> [SimEvent] {
        var ev: [SimEvent] = []
        e.runUntilIdle(limit: t + .seconds(3600), into: &ev)
        return ev
    }

    @Test func idleEngineHasNoDeadline() {
        let e = SimEngine(config: Self.config(), now: Self.t0)
        #expect(e.nextDeadline == nil)
        e.submit(SimRequest(prompt: Self.prompt(tokens: 10), maxTokens: 3), now: Self.t0)
        #expect(e.nextDeadline == Self.t0)
        let ev = Self.run(e)
        #expect(e.nextDeadline == nil)
        #expect(!e.hasWork)
        #expect(ev.filter { if case .token = $0.kind { true } else { false } }.count == 3)
        #expect(ev.last?.kind == .finished(.length))
        #expect(e.stats.generationTokens == 3)
        #expect(e.stats.promptTokens == 10)
        #expect(e.stats.finished(.length) == 1)
        #expect(e.kvUsage == 0)
    }

    /// A second prompt sharing `shared` tokens with the first hits every whole shared block.
    @Test(arguments: [0, 15, 16, 17, 31, 32, 100, 160, 199])
    func sharedPrefixHitsWholeBlocks(shared: Int) {
        let e = SimEngine(config: Self.config(), now: Self.t0)
        e.submit(SimRequest(prompt: Self.prompt(tokens: 200, shared: 200), maxTokens: 1), now: Self.t0)
        _ = Self.run(e)
        #expect(e.stats.prefixCacheHits == 0)
        #expect(e.stats.prefixCacheQueries == 200)
        e.submit(SimRequest(prompt: Self.prompt(tokens: 200, shared: shared), maxTokens: 1), now: Self.t0 + .seconds(10))
        _ = Self.run(e, from: Self.t0 + .seconds(10))
        #expect(e.stats.prefixCacheHits == UInt64(shared / 16 * 16))
        #expect(e.stats.prefixCacheQueries == 400)
    }

    @Test func identicalPromptNeverHitsItsLastToken() {
        // 320 tokens = 20 whole blocks; at least one token must be computed, so 19 blocks hit.
        let e = SimEngine(config: Self.config(), now: Self.t0)
        let p = Self.prompt(tokens: 320, shared: 320)
        e.submit(SimRequest(prompt: p, maxTokens: 1), now: Self.t0)
        _ = Self.run(e)
        e.submit(SimRequest(prompt: p, maxTokens: 1), now: Self.t0 + .seconds(1))
        _ = Self.run(e, from: Self.t0 + .seconds(1))
        #expect(e.stats.prefixCacheHits == 19 * 16)
    }

    @Test func adaptersHaveTheirOwnCacheNamespace() {
        let e = SimEngine(config: Self.config { $0.maxLoras = 2 }, now: Self.t0)
        let p = Self.prompt(tokens: 100, shared: 100)
        e.submit(SimRequest(prompt: p, maxTokens: 1), now: Self.t0)
        _ = Self.run(e)
        e.submit(SimRequest(adapter: "a1", prompt: p, maxTokens: 1), now: Self.t0 + .seconds(1))
        _ = Self.run(e, from: Self.t0 + .seconds(1))
        #expect(e.stats.prefixCacheHits == 0)
        e.submit(SimRequest(adapter: "a1", prompt: p, maxTokens: 1), now: Self.t0 + .seconds(2))
        _ = Self.run(e, from: Self.t0 + .seconds(2))
        #expect(e.stats.prefixCacheHits == 96)
        e.submit(SimRequest(adapter: "a2", prompt: p, maxTokens: 1), now: Self.t0 + .seconds(3))
        _ = Self.run(e, from: Self.t0 + .seconds(3))
        #expect(e.stats.prefixCacheHits == 96)
    }

    @Test func leastRecentlyReleasedBlocksAreEvictedFirst() {
        // 64 blocks; four prompts of 20 blocks each (maxTokens 1: no decode blocks).
        let e = SimEngine(config: Self.config { $0.kvTokens = 64 * 16 }, now: Self.t0)
        #expect(e.numBlocks == 64)
        var t = Self.t0
        let prompts = [UInt8(0x41), 0x61, 0x30, 0x21].map { Self.prompt(tokens: 320, shared: 320, head: $0) }
        for p in prompts {
            e.submit(SimRequest(prompt: p, maxTokens: 1), now: t)
            _ = Self.run(e, from: t)
            t = t + .seconds(1)
            #expect(e.kvUsage == 0)
        }
        #expect(e.stats.prefixCacheHits == 0)
        // The fourth took the 4 never-used blocks and the first prompt's last 16 blocks (its
        // tail was released first), so only the first prompt's first 4 blocks remain.
        #expect(e.evictedBlocks == 16)
        #expect(e.cachedBlocks == 64)
        e.submit(SimRequest(prompt: prompts[0], maxTokens: 1), now: t)
        _ = Self.run(e, from: t)
        #expect(e.stats.prefixCacheHits == 4 * 16)
        t = t + .seconds(1)
        // The third prompt is still fully cached (19 blocks hit).
        e.submit(SimRequest(prompt: prompts[2], maxTokens: 1), now: t)
        _ = Self.run(e, from: t)
        #expect(e.stats.prefixCacheHits == 4 * 16 + 19 * 16)
    }

    @Test func kvUsageCountsBlocksOfLiveSequences() {
        let e = SimEngine(config: Self.config { $0.kvTokens = 100 * 16 }, now: Self.t0)
        e.submit(SimRequest(prompt: Self.prompt(tokens: 160), maxTokens: 100), now: Self.t0)
        var ev: [SimEvent] = []
        e.advance(to: Self.t0, into: &ev)  // first step begins: blocks for the prompt allocated
        #expect(e.usedBlocks == 10)
        #expect(e.kvUsage == 0.1)
        e.advance(to: e.nextDeadline!, into: &ev)
        #expect(e.usedBlocks == 11)  // the first decode token needs a new block
        _ = Self.run(e)
        #expect(e.kvUsage == 0)
    }

    @Test func loraRequestsBeyondTheSlotsAreDeferred() {
        let e = SimEngine(config: Self.config { $0.maxLoras = 1 }, now: Self.t0)
        let a1 = e.submit(SimRequest(adapter: "a1", prompt: Self.prompt(tokens: 10), maxTokens: 20), now: Self.t0)
        let a2 = e.submit(SimRequest(adapter: "a2", prompt: Self.prompt(tokens: 10), maxTokens: 5), now: Self.t0)
        let base = e.submit(SimRequest(prompt: Self.prompt(tokens: 10), maxTokens: 5), now: Self.t0)
        var ev: [SimEvent] = []
        e.advance(to: Self.t0, into: &ev)
        #expect(e.runningCount == 2)  // a1 and the base model
        #expect(e.waitingCount == 1)
        #expect(e.deferredCount == 1)
        #expect(e.residentAdapters == ["a1"])
        #expect(e.activeAdapters == ["a1", "a2"])
        ev = Self.run(e)
        let a1Done = ev.firstIndex { $0.id == a1 && $0.kind == .finished(.length) }!
        let a2First = ev.firstIndex { $0.id == a2 && $0.kind == .token(index: 0) }!
        let baseDone = ev.firstIndex { $0.id == base && $0.kind == .finished(.length) }!
        #expect(a1Done < a2First)
        #expect(baseDone < a1Done)
        #expect(e.residentAdapters == ["a2"])  // a1 was idle, so its slot went to a2
        #expect(e.stats.loraLoads == 2)
        // lora_requests_info series in order of appearance; the last recorded state is empty.
        #expect(e.loraInfo.map(\.adapters) == ["", "a1,a2", "a2"])
        #expect(e.loraInfo.max { $0.updated < $1.updated }?.adapters == "")
    }

    @Test func twoSlotsRunTwoAdaptersTogether() {
        let e = SimEngine(config: Self.config { $0.maxLoras = 2 }, now: Self.t0)
        e.submit(SimRequest(adapter: "a3", prompt: Self.prompt(tokens: 10), maxTokens: 20), now: Self.t0)
        e.submit(SimRequest(adapter: "a1", prompt: Self.prompt(tokens: 10), maxTokens: 5), now: Self.t0)
        var ev: [SimEvent] = []
        e.advance(to: Self.t0, into: &ev)
        #expect(e.runningCount == 2)
        #expect(e.deferredCount == 0)
        _ = Self.run(e)
        #expect(e.loraInfo.map(\.adapters) == ["", "a3,a1", "a3"])
    }

    static func meanTTFT(concurrency: Int, promptTokens: Int = 200) -> Double {
        let e = SimEngine(config: Self.config { $0.maxNumSeqs = 256 }, now: Self.t0)
        for i in 0..<concurrency {
            e.submit(SimRequest(prompt: Self.prompt(tokens: promptTokens, head: UInt8(i % 200)), maxTokens: 8), now: Self.t0)
        }
        _ = Self.run(e)
        let h = e.stats.timeToFirstToken
        return h.sum / Double(h.count)
    }

    @Test func ttftGrowsWithLoad() {
        let one = Self.meanTTFT(concurrency: 1)
        let eight = Self.meanTTFT(concurrency: 8)
        let sixtyFour = Self.meanTTFT(concurrency: 64)
        // One short prompt: base step + 200 prefill tokens.
        #expect(abs(one - 0.006) < 0.0005)
        #expect(eight > one * 2)
        // 64 × 200 tokens exceed the 2048-token step budget: prefill is chunked over ~7 steps.
        #expect(sixtyFour > eight * 1.3)
    }

    @Test func decodeStepsSlowDownWithBatchSize() {
        func itl(_ n: Int) -> Double {
            let e = SimEngine(config: Self.config(), now: Self.t0)
            for _ in 0..<n { e.submit(SimRequest(prompt: Self.prompt(tokens: 4), maxTokens: 20), now: Self.t0) }
            _ = Self.run(e)
            return e.stats.interTokenLatency.sum / Double(e.stats.interTokenLatency.count)
        }
        #expect(abs(itl(1) - 0.00215) < 0.00001)
        #expect(abs(itl(100) - 0.017) < 0.00001)
    }

    @Test func maxNumSeqsQueuesTheRest() {
        let e = SimEngine(config: Self.config { $0.maxNumSeqs = 4 }, now: Self.t0)
        for _ in 0..<16 { e.submit(SimRequest(prompt: Self.prompt(tokens: 8), maxTokens: 4), now: Self.t0) }
        var ev: [SimEvent] = []
        e.advance(to: Self.t0, into: &ev)
        #expect(e.runningCount == 4)
        #expect(e.waitingCount == 12)
        #expect(e.deferredCount == 0)
        _ = Self.run(e)
        #expect(e.stats.finished(.length) == 16)
        #expect(e.stats.queueTime.sum > 0)
    }

    @Test func tokenBudgetChunksLongPrefills() {
        let e = SimEngine(config: Self.config { $0.maxNumBatchedTokens = 512 }, now: Self.t0)
        e.submit(SimRequest(prompt: Self.prompt(tokens: 1500), maxTokens: 1), now: Self.t0)
        let ev = Self.run(e)
        // ceil(1500 / 512) = 3 steps before the first token.
        #expect(e.stats.steps == 3)
        #expect(e.stats.iterationTokens.count == 3)
        #expect(ev.count == 2)
    }

    @Test func abortReleasesEverything() {
        let e = SimEngine(config: Self.config { $0.maxLoras = 1 }, now: Self.t0)
        let id = e.submit(SimRequest(adapter: "a1", prompt: Self.prompt(tokens: 64), maxTokens: 1000), now: Self.t0)
        var ev: [SimEvent] = []
        e.advance(to: Self.t0 + .milliseconds(50), into: &ev)
        #expect(e.runningCount == 1)
        #expect(e.kvUsage > 0)
        e.abort(id, now: Self.t0 + .milliseconds(50))
        #expect(e.runningCount == 0)
        #expect(e.kvUsage == 0)
        #expect(e.activeAdapters.isEmpty)
        #expect(e.stats.finished(.abort) == 1)
        ev.removeAll()
        _ = Self.run(e)
        #expect(e.nextDeadline == nil)
    }

    @Test func kvPressurePreemptsAndStillFinishes() {
        // 20 blocks, 6 sequences that each grow to 4–5 blocks.
        let e = SimEngine(config: Self.config { $0.kvTokens = 20 * 16 }, now: Self.t0)
        for i in 0..<6 { e.submit(SimRequest(prompt: Self.prompt(tokens: 20, head: UInt8(i)), maxTokens: 50), now: Self.t0) }
        _ = Self.run(e)
        #expect(e.stats.preemptions > 0)
        #expect(e.stats.finished(.length) == 6)
        #expect(e.stats.generationTokens == 300)
        #expect(e.kvUsage == 0)
    }

    @Test func requestLargerThanTheCacheFails() {
        let e = SimEngine(config: Self.config { $0.kvTokens = 4 * 16 }, now: Self.t0)
        let id = e.submit(SimRequest(prompt: Self.prompt(tokens: 100), maxTokens: 1), now: Self.t0)
        let ev = Self.run(e)
        #expect(ev == [SimEvent(id: id, kind: .finished(.error), time: Self.t0)])
        #expect(!e.hasWork)
    }

    static func timeline(seed: UInt64) -> [SimEvent] {
        let e = SimEngine(config: Self.config { $0.seed = seed; $0.jitter = 0.3; $0.maxLoras = 1 }, now: Self.t0)
        var rng = SimRandom(seed: 99)
        var ev: [SimEvent] = []
        var t = Self.t0
        for i in 0..<40 {
            let adapter: String? = i % 3 == 0 ? "a\(i % 2)" : nil
            e.submit(SimRequest(adapter: adapter, prompt: Self.prompt(tokens: 10 + Int(rng.next() % 300), head: UInt8(i % 4)),
                                maxTokens: 1 + Int(rng.next() % 40)), now: t)
            t = t + .microseconds(Int64(rng.next() % 3000))
            e.advance(to: t, into: &ev)
        }
        e.runUntilIdle(limit: t + .seconds(600), into: &ev)
        return ev
    }

    @Test func sameSeedSameTimeline() {
        let a = Self.timeline(seed: 7)
        #expect(a.count > 40)
        #expect(a == Self.timeline(seed: 7))
        #expect(a.map(\.time) != Self.timeline(seed: 8).map(\.time))
    }

    @Test func textIsAFunctionOfSeedKeyAndIndex() {
        let x = SimText.completion(seed: 1, key: 42, count: 16)
        #expect(x == SimText.completion(seed: 1, key: 42, count: 16))
        #expect(x != SimText.completion(seed: 2, key: 42, count: 16))
        #expect(x != SimText.completion(seed: 1, key: 43, count: 16))
        #expect(SimText.completion(seed: 1, key: 42, count: 4) == (0..<4).map { SimText.token(seed: 1, key: 42, index: $0) }.joined())
    }

    @Test func blockHashesChainOverThePrefix() {
        let a = Self.prompt(tokens: 64, shared: 64)
        var b = a
        b[100] ^= 1  // token 25: block 1
        let ha = SimEngine.blockHashes(prompt: a, adapter: nil, blockTokens: 16)
        let hb = SimEngine.blockHashes(prompt: b, adapter: nil, blockTokens: 16)
        #expect(ha.count == 4)
        #expect(ha[0] == hb[0])
        for k in 1..<4 { #expect(ha[k] != hb[k]) }
        #expect(SimEngine.blockHashes(prompt: a, adapter: "x", blockTokens: 16)[0] != ha[0])
    }
}
