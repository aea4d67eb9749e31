@testable import SluiceGateway
import SluiceTestSupport
import SluiceSettings
import SluiceRouting
import Testing

/// The router decision by decision, on fake endpoints whose telemetry each case sets: exact
/// picks and reasons for every filter and score of the weighted profile (`routing: weighted`,
/// the default before the cost model; the cost model's are in CostModelRouterTests).
@Suite struct RouterTableTests {
    /// A chat request whose prompt is long enough for several prefix blocks.
    func body(_ system: String, model: String = "tiny", question: String = "What now?") -> [UInt8] {
        Array("{\"model\":\"\(model)\",\"messages\":[{\"role\":\"system\",\"content\":\"\(String(repeating: system + " ", count: 40))\"},{\"role\":\"user\",\"content\":\"\(question)\"}]}".utf8)
    }
    let short = Array("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}".utf8)

    func harness(_ n: Int = 4, _ policy: RoutingPolicy = .weighted, adapter: String? = nil) throws -> RoutingHarness {
        let h = try RoutingHarness(endpoints: n, policy: policy, adapterModel: adapter)
        for i in 0..<n { h.setTelemetry(i) }
        return h
    }

    @Test func aNewPrefixGoesWhereRendezvousHashingSaysThenSticks() throws {
        let h = try harness()
        #expect(h.prepare(body("alpha")))
        let first = try #require(h.decide(commit: true))
        #expect(first.reason == "new_prefix")
        // Same prefix, another question: the endpoint that holds the blocks.
        h.prepare(body("alpha", question: "And then?"))
        #expect(h.decide()! == (first.endpoint, "prefix_hit"))
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
        #expect(spread.count == 8)  // and new prefixes spread over the pool
    }

    @Test func theLoadGuardOverridesAPrefixHitOnABusyEndpoint() throws {
        let h = try harness()
        h.prepare(body("beta"))
        let owner = try #require(h.decide(commit: true)).endpoint
        h.setInflight(owner, 20)  // bound: max(0 × 2, 0 + 8) = 8
        h.prepare(body("beta", question: "again"))
        let next = try #require(h.decide())
        #expect(next.endpoint != owner)
        // Placed by rendezvous hashing among the eligible endpoints: where another replica whose
        // guard also excludes the owner sends it too.
        #expect(next.reason == "new_prefix")
        h.setInflight(owner, 8)  // at the bound: eligible again, and the hit wins
        #expect(h.decide()! == (owner, "prefix_hit"))
    }

    @Test(arguments: [
        // (waiting, kv use, in flight) per endpoint → expected pick
        ([5, 0, 3, 9], [0.0, 0.0, 0.0, 0.0], [0, 0, 0, 0], 1),
        ([2, 2, 2, 2], [0.9, 0.1, 0.5, 0.95], [0, 0, 0, 0], 1),
        ([0, 0, 0, 0], [0.0, 0.0, 0.0, 0.0], [4, 3, 0, 2], 2),
        // Scores: 2 × queue (normalized over the candidates' range) + 2 × (1 − KV use) + 1 ×
        // adapter: endpoint 0 gets 2 × 0.5 + 2 × 1 = 3; the near-full endpoint 1 gets 2 × 1 + 2 × 0.01.
        ([1, 0, 2, 2], [0.0, 0.99, 0.0, 0.0], [0, 0, 0, 0], 0),
    ])
    func queueKVAndInflightScores(_ waiting: [Int], _ kv: [Double], _ inflight: [Int], _ expected: Int) throws {
        let h = try harness()
        for i in 0..<4 {
            h.setTelemetry(i, waiting: waiting[i], kvUse: kv[i])
            h.setInflight(i, inflight[i])
        }
        #expect(h.prepare(short))
        let d = try #require(h.decide())
        #expect(d.endpoint == expected)
        #expect(d.reason == "least_loaded")
    }

    @Test func staleTelemetryIsNotTrusted() throws {
        let h = try harness()
        for i in 0..<4 { h.setTelemetry(i, waiting: 9) }
        h.setTelemetry(2, waiting: 50, kvUse: 0.99, age: .seconds(10))  // older than the 500 ms bound
        h.prepare(short)
        #expect(h.decide()?.endpoint == 2)
    }

    @Test func ejectedEndpointsAreNeverPicked() throws {
        let h = try harness()
        h.setTelemetry(1, waiting: 0)
        for i in [0, 2, 3] { h.setTelemetry(i, waiting: 5) }
        h.eject(1)
        h.prepare(short)
        for _ in 0..<10 { #expect(h.decide()?.endpoint != 1) }
        for i in [0, 2, 3] { h.eject(i) }
        // All ejected: a request still goes somewhere (panic), rather than failing.
        #expect(h.decide()?.reason == "no_healthy_endpoint")
    }

    @Test func adapterRequestsGoOnlyWhereTheAdapterIs() throws {
        let h = try harness(4, adapter: "sql")
        h.setTelemetry(0, waiting: 0)
        h.setTelemetry(1, waiting: 7, adapters: ["sql"])
        h.setTelemetry(2, waiting: 0, adapters: ["other"])
        h.setTelemetry(3, waiting: 3, adapters: ["sql", "other"])
        h.prepare(body("gamma", model: "sql"))
        for _ in 0..<5 {
            let d = try #require(h.decide())
            #expect(d.endpoint == 3)  // of the two holders, the less loaded
        }
        h.eject(3)
        #expect(h.decide()! == (1, "only_candidate"))
        h.eject(1)
        #expect(h.decide() == nil)  // nobody can serve it: no panic pick for adapters
    }

    @Test func leastLoadedAndRoundRobinPolicies() throws {
        let ll = try harness(4, .leastLoaded)
        for (i, n) in [3, 1, 1, 2].enumerated() { ll.setInflight(i, n) }
        ll.prepare(body("delta"))
        // Ties are broken at random from the worker's seeded generator: both least loaded
        // endpoints get picks, no other does.
        let spread = Set((0..<32).map { _ in ll.decide()!.endpoint })
        #expect(spread == [1, 2])
        #expect(ll.decide()?.reason == "least_loaded")
        let rr = try harness(4, .roundRobin)
        rr.prepare(body("delta"))
        let picks = (0..<8).map { _ in rr.decide()!.endpoint }
        #expect(picks == [0, 1, 2, 3, 0, 1, 2, 3])
        #expect(rr.decide()?.reason == "round_robin")
    }
}
