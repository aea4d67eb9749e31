@testable import SluiceGateway
import SluiceTestSupport
import SluiceIO
import SluiceLLM
import SluiceRouting
import SluiceSettings
import Testing

/// The cost model (the default policy) through the gateway's router, decision by decision on
/// fake endpoints: what it reads (lease counters, telemetry, the prefix index, learned
/// coefficients) and the picks it makes; the lease counters and the learner's feeds.
@Suite struct CostModelRouterTests {
    /// A chat request whose system prompt (`system` × 40, ~2.4 KB: ~600 tokens) is shared.
    func body(_ system: String, model: String = "tiny", question: String = "What now?") -> [UInt8] {
        Array("{\"model\":\"\(model)\",\"messages\":[{\"role\":\"system\",\"content\":\"\(String(repeating: system + " ", count: 40))\"},{\"role\":\"user\",\"content\":\"\(question)\"}]}".utf8)
    }

    func harness(_ n: Int = 4, adapter: String? = nil) throws -> RoutingHarness {
        let h = try RoutingHarness(endpoints: n, adapterModel: adapter)
        for i in 0..<n { h.setTelemetry(i) }
        return h
    }

    @Test func aNewPrefixGoesToItsHomeThenFollowsItsHit() throws {
        let h = try harness()
        #expect(h.prepare(body("alpha")))
        let first = try #require(h.decideWithPrediction(commit: true))
        #expect(first.reason == "new_prefix" && first.predictedTTFT != nil)
        h.prepare(body("alpha", question: "And then?"))
        let second = try #require(h.decideWithPrediction())
        #expect(second.endpoint == first.endpoint && second.reason == "prefix_hit")
        // The hit is worth its prefill: predicted faster, fewer uncached tokens.
        #expect(second.uncachedTokens < first.uncachedTokens / 2)
        #expect(second.predictedTTFT! < first.predictedTTFT!)
    }

    @Test func replicasThatShareNothingAgreeOnNewPrefixes() throws {
        let a = try harness(8), b = try harness(8)
        var spread = Set<Int>()
        for k in 0..<100 {
            a.prepare(body("group \(k)"))
            b.prepare(body("group \(k)"))
            let pa = try #require(a.decide()), pb = try #require(b.decide())
            #expect(pa.endpoint == pb.endpoint)
            spread.insert(pa.endpoint)
        }
        #expect(spread.count == 8)
    }

    /// The holder loses the request while the prefill queued there costs more than the hit
    /// saves, and gets it back when the queue drains; the scrape's waiting queue counts too.
    @Test func aBusyHolderLosesUntilItsQueueDrains() throws {
        let h = try harness()
        h.prepare(body("beta"))
        let owner = try #require(h.decide(commit: true)).endpoint
        h.prepare(body("beta", question: "again"))
        #expect(h.decide()! == (owner, "prefix_hit"))
        h.setLease(owner, pendingRequests: 3, pendingTokens: 6000)
        let away = try #require(h.decide())
        #expect(away.endpoint != owner && away.reason == "lowest_ttft")
        h.setLease(owner, pendingRequests: 0, pendingTokens: 0, decoding: 2)
        #expect(h.decide()! == (owner, "prefix_hit"))
        // A long waiting queue at the server (other gateways' requests), fresh: away again.
        h.setTelemetry(owner, waiting: 20)
        #expect(h.decide()?.endpoint != owner)
        // The same queue in a stale scrape is not trusted.
        h.setTelemetry(owner, waiting: 20, age: .seconds(10))
        #expect(h.decide()! == (owner, "prefix_hit"))
    }

    /// A cold burst of N requests over N idle endpoints lands one per endpoint: with the
    /// request path reporting each send (`prefillStarted`), and before it does, from the
    /// in-flight count (the fallback).
    @Test(arguments: [(true, true), (true, false), (false, true), (false, false)])
    func aColdBurstLandsOnePerEndpoint(_ reported: Bool, _ samePrefix: Bool) throws {
        let h = try harness(8)
        var landed = [Int](repeating: 0, count: 8)
        for r in 0..<8 {
            h.prepare(body(samePrefix ? "burst" : "burst \(r)", question: "question \(r)"))
            let d = try #require(h.decideWithPrediction(commit: true, send: reported))
            landed[d.endpoint] += 1
            if !reported { h.setInflight(d.endpoint, landed[d.endpoint]) }
        }
        #expect(landed == [Int](repeating: 1, count: 8), "\(landed)")
    }

    /// Under flow control, a holder without room (its learned concurrency in flight) stays a
    /// candidate for its prefix under the cost model, which weighs its queue against the hit:
    /// kept while merely full, passed over once the prefill queued there costs more than the
    /// hit saves, and passed over when an open endpoint holds as much of the prompt. Requests
    /// it holds nothing of go to the endpoints with room. The weighted profile still passes
    /// every full endpoint over (`costModel` false).
    @Test(arguments: [true, false])
    func aFullHolderKeepsItsPrefixUnderTheCostModel(_ costModel: Bool) throws {
        let h = try RoutingHarness(endpoints: 4, policy: costModel ? .default : .weighted)
        for i in 0..<4 { h.setTelemetry(i) }
        // ~1,200 prompt tokens: a hit saves ~24 ms of prefill at the seeds.
        let gamma = String(repeating: "gamma delta epsilon zeta ", count: 5)
        h.prepare(body(gamma))
        let owner = try #require(h.decide(commit: true)).endpoint
        h.flowControl = true
        h.setCapacity(owner, 2)
        h.setInflight(owner, 2)
        h.setLease(owner, decoding: 2)
        h.prepare(body(gamma, question: "again"))
        let d = try #require(h.decide())
        if costModel {
            #expect(d == (owner, "prefix_hit"))
        } else {
            #expect(d.endpoint != owner)
        }
        // Nothing of the prompt there: the full endpoint is passed over.
        for k in 0..<12 {
            h.prepare(body("new \(k) " + gamma))
            #expect(h.decide()?.endpoint != owner)
        }
        guard costModel else { return }
        // A long prefill queue there: the model sends the request away (and it now holds it too).
        h.setLease(owner, pendingRequests: 3, pendingTokens: 6000, decoding: 2)
        h.prepare(body(gamma, question: "third"))
        let other = try #require(h.decide(commit: true))
        #expect(other.endpoint != owner && other.reason == "lowest_ttft")
        // Queue drained but still full: an open endpoint holds as much, so that one.
        h.setLease(owner, decoding: 2)
        h.prepare(body(gamma, question: "fourth"))
        #expect(h.decide()! == (other.endpoint, "prefix_hit"))
    }

    /// An adapter request goes where the adapter runs rather than where a load is needed.
    @Test func adaptersCostTheirLoad() throws {
        let h = try harness(4, adapter: "sql")
        h.setTelemetry(0, adapters: ["sql"])
        h.setTelemetry(1, adapters: ["sql"], adaptersRunning: ["sql"])
        h.setTelemetry(2, adapters: ["other"])
        h.setTelemetry(3, adapters: ["sql", "other"], adaptersRunning: ["other"], maxLoras: 1)
        h.prepare(body("gamma", model: "sql"))
        #expect(h.decide()?.endpoint == 1)
        h.eject(1)
        #expect(h.decide()?.endpoint == 0)  // a free slot beats a full one
    }

    /// The lease counters return to zero whatever path a request takes.
    @Test func leaseCountersBalance() throws {
        let rt = EndpointRuntime(authority: "x:1", address: SocketAddress("127.0.0.1:1")!)
        rt.prefillStarted(tokens: 500)
        rt.prefillStarted(tokens: 300)
        #expect(rt.pendingRequests.load(ordering: .relaxed) == 2 && rt.pendingTokens.load(ordering: .relaxed) == 800)
        rt.firstToken(tokens: 500)
        #expect(rt.pendingTokens.load(ordering: .relaxed) == 300 && rt.decodingNow.load(ordering: .relaxed) == 1)
        rt.finished(tokens: 500, sawFirstToken: true)
        rt.finished(tokens: 300, sawFirstToken: false)  // aborted before its first token
        #expect(rt.pendingRequests.load(ordering: .relaxed) == 0 && rt.pendingTokens.load(ordering: .relaxed) == 0
                && rt.decodingNow.load(ordering: .relaxed) == 0 && rt.leaseReported.load(ordering: .relaxed))
    }

    /// Observed TTFTs and decodes reach the learner, and its coefficients the decisions.
    @Test func observationsTeachTheEndpoint() throws {
        let rt = EndpointRuntime(authority: "x:2", address: SocketAddress("127.0.0.1:2")!)
        #expect(abs(rt.coefficients.prefillPerToken - LatencyCoefficients.defaults.prefillPerToken) < 1e-9)  // published as Float
        // A server 3x slower to prefill than the seeds assume, 6 ms steps.
        for i in 0..<400 {
            let tokens = 200 + (i * 37) % 4000, decoding = i % 16
            let step = 0.006 + 0.0003 * Double(decoding)
            let ttft = 0.002 + 60e-6 * Double(tokens) + (0.5 + Double((tokens + 2047) / 2048)) * step
            let at = Instant(nanoseconds: UInt64(i) * 20_000_000)
            rt.observe(ttft: .nanoseconds(Int64(ttft * 1e9)), promptTokens: tokens, uncachedTokens: tokens, queuedAhead: 0,
                       decoding: decoding, at: at)
            rt.observeDecode(decodeTime: .nanoseconds(Int64(step * 31 * 1e9)), outputTokens: 32, decoding: decoding, at: at)
        }
        let c = rt.coefficients
        #expect(abs(c.prefillPerToken - 60e-6) < 6e-6 && abs(c.stepBase - 0.006) < 0.0006, "\(c)")
    }

    /// What the scraper hands the learner: differences of the server's histograms.
    @Test(arguments: [
        // (previous prefill sum/count, tokens sum, ITL sum/count) → (requests, mean prefill s, mean tokens, gaps, mean gap)
        ((1.0, 10.0, 5000.0, 2.0, 100.0), (1.5, 12.0, 7000.0, 2.3, 150.0), (2.0, 0.25, 1000.0, 50.0, 0.006)),
        ((1.0, 10.0, 5000.0, 2.0, 100.0), (1.0, 10.0, 5000.0, 2.06, 110.0), (0.0, 0.0, 0.0, 10.0, 0.006)),
        ((1.0, 10.0, 5000.0, 2.0, 100.0), (0.1, 1.0, 100.0, 0.1, 10.0), nil),   // the server restarted
        ((1.0, 10.0, 5000.0, 2.0, 100.0), (1.0, 10.0, 5000.0, 2.0, 100.0), nil), // nothing new
    ] as [((Double, Double, Double, Double, Double), (Double, Double, Double, Double, Double), (Double, Double, Double, Double, Double)?)])
    func histogramDeltas(_ before: (Double, Double, Double, Double, Double), _ after: (Double, Double, Double, Double, Double),
                         _ expected: (Double, Double, Double, Double, Double)?) {
        func metrics(_ v: (Double, Double, Double, Double, Double)) -> VLLMMetrics {
            var m = VLLMMetrics()
            m.prefillTime = .init(sum: v.0, count: v.1)
            m.prefillComputedTokens = .init(sum: v.2, count: v.1)
            m.interTokenLatency = .init(sum: v.3, count: v.4)
            return m
        }
        var t = EndpointTelemetry()
        #expect(TelemetryScraper.histogramDeltas(metrics(before), previous: &t) == nil)  // the first scrape: nothing to compare
        let d = TelemetryScraper.histogramDeltas(metrics(after), previous: &t)
        if let e = expected {
            #expect(d != nil)
            #expect(d?.requests == e.0 && abs((d?.prefill ?? 0) - e.1) < 1e-9 && d?.tokens == e.2)
            #expect(d?.gaps == e.3 && abs((d?.gap ?? 0) - e.4) < 1e-9)
        } else {
            #expect(d == nil)
        }
        #expect(t.prefillTimeTotals == metrics(after).prefillTime)
    }
}
