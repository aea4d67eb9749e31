@testable import SluiceRouting
import Testing

@Suite struct FilterTests {
    @Test func healthKeepsAdmittedInOrder() {
        let cs = candidates(5) { c, k in c.admitted = k != 1 && k != 3 }
        #expect(kept(HealthFilter(), cs) == [0, 2, 4])
        #expect(kept(HealthFilter(), candidates(3) { c, _ in c.admitted = false }) == [])
    }

    @Test(arguments: [
        (AdapterState.running, true), (.registeredSlotFree, true), (.waiting, true), (.registeredSlotsFull, true),
        (.unknown, true), (.absent, false),
    ])
    func adapterKeepsEndpointsThatCanServeIt(_ state: AdapterState, _ keeps: Bool) {
        let cs = candidates(2) { c, k in c.adapter = k == 0 ? state : .running }
        #expect(kept(AdapterFilter(), cs, RoutingRequest(adapterRequested: true)) == (keeps ? [0, 1] : [1]))
        // Without an adapter in the request, the filter passes everything.
        #expect(kept(AdapterFilter(), cs, RoutingRequest(adapterRequested: false)) == [0, 1])
    }

    @Test(arguments: [
        // (max waiting, max KV use, waiting per endpoint, KV use per endpoint) → kept
        (0, 1.0, [0, 50, 100], [0.1, 0.99, 1.0], [0, 1, 2]),        // both limits off
        (10, 1.0, [9, 10, 11], [0.0, 0.0, 0.0], [0]),                // waiting < 10
        (0, 0.9, [0, 0, 0], [0.89, 0.9, 0.95], [0]),                 // KV < 0.9
        (10, 0.9, [0, 12, 3], [0.95, 0.1, 0.5], [2]),                // both
        (5, 0.9, [7, 9, 5], [0.1, 0.1, 0.1], [0, 1, 2]),             // all saturated: all kept
    ])
    func saturationHardLimits(_ maxWaiting: Int, _ maxKV: Double, _ waiting: [Int], _ kv: [Double], _ expected: [Int]) {
        let cs = candidates(3) { c, k in
            c.waiting = waiting[k]
            c.kvUse = kv[k]
        }
        #expect(kept(SaturationFilter(maxWaiting: maxWaiting, maxKVUse: maxKV), cs) == expected)
    }

    @Test(arguments: [
        // (factor, slack, loads) → kept; bound = max(⌊min × factor⌋, min + slack)
        (2.0, 8, [0, 8, 9], [0, 1]),
        (2.0, 8, [10, 20, 21], [0, 1]),
        (2.0, 2, [1, 3, 4], [0, 1]),
        (1.5, 0, [4, 6, 7], [0, 1]),
        (1.0, 0, [3, 3, 4], [0, 1]),
        (1.0, 0, [5, 5, 5], [0, 1, 2]),
    ])
    func loadGuardBoundsLoadRelativeToTheLeastLoaded(_ factor: Double, _ slack: Int, _ loads: [Int], _ expected: [Int]) {
        // Load is in flight + waiting: split each load between the two.
        let cs = candidates(3) { c, k in
            c.inflight = loads[k] / 2
            c.waiting = loads[k] - loads[k] / 2
        }
        let g = LoadGuardFilter(factor: factor, slack: slack)
        #expect(kept(g, cs) == expected)
        #expect(g.bound(minLoad: loads.min()!) >= loads.min()!)
    }

    @Test func theLoadGuardNeverEmptiesTheList() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let n = Int(rng.next() % 8) + 1
            let cs = candidates(n) { c, _ in c.inflight = Int(rng.next() % 100) }
            let keep = kept(LoadGuardFilter(factor: 1, slack: 0), cs)
            let least = cs.map(\.load).min()!
            #expect(!keep.isEmpty)
            #expect(keep == cs.filter { $0.load == least }.map(\.index))
        }
    }
}
