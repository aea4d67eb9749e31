import SluiceRouting
import Testing

/// The fair queue of a saturated pool: exact dispatch orders for each policy and band, the
/// bounds, removal.
@Suite struct FairQueueTests {
    static let roomy = FairQueue<String>.Limits(maxRequests: 1000, maxBytes: 1 << 30, maxRequestsPerTenant: 1000, maxBytesPerTenant: 1 << 30)

    func drain(_ q: inout FairQueue<String>) -> [String] {
        var out: [String] = []
        while let e = q.dequeue() { out.append(e.item) }
        return out
    }

    @Test func tokensAreSharedFairlyNotRequests() {
        // A sends long prompts (1000 tokens), B short ones (100): fair in tokens, B gets ten
        // requests for each of A's.
        var q = FairQueue<String>(policy: .tokens, limits: Self.roomy)
        for i in 0..<3 { _ = q.enqueue("A\(i)", tenant: "A", band: .standard, cost: 1000, bytes: 1, now: 0) }
        for i in 0..<12 { _ = q.enqueue("B\(i)", tenant: "B", band: .standard, cost: 100, bytes: 1, now: 0) }
        let order = drain(&q)
        #expect(order == ["A0", "B0", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "A1", "B10", "B11", "A2"])
    }

    @Test func roundRobinTakesTurns() {
        var q = FairQueue<String>(policy: .roundRobin, limits: Self.roomy)
        for i in 0..<3 { _ = q.enqueue("A\(i)", tenant: "A", band: .standard, cost: 1000, bytes: 1, now: 0) }
        for i in 0..<2 { _ = q.enqueue("B\(i)", tenant: "B", band: .standard, cost: 1, bytes: 1, now: 0) }
        _ = q.enqueue("C0", tenant: "C", band: .standard, cost: 1, bytes: 1, now: 0)
        #expect(drain(&q) == ["A0", "B0", "C0", "A1", "B1", "A2"])
    }

    @Test func higherBandsGoFirst() {
        var q = FairQueue<String>(policy: .tokens, limits: Self.roomy)
        _ = q.enqueue("s1", tenant: "A", band: .sheddable, cost: 1, bytes: 1, now: 0)
        _ = q.enqueue("n1", tenant: "A", band: .standard, cost: 1, bytes: 1, now: 0)
        _ = q.enqueue("c1", tenant: "B", band: .critical, cost: 1, bytes: 1, now: 0)
        _ = q.enqueue("n2", tenant: "B", band: .standard, cost: 1, bytes: 1, now: 0)
        _ = q.enqueue("c2", tenant: "A", band: .critical, cost: 1, bytes: 1, now: 0)
        #expect(q.count(.critical) == 2 && q.count(.standard) == 2 && q.count(.sheddable) == 1)
        #expect(drain(&q) == ["c1", "c2", "n1", "n2", "s1"])
    }

    @Test func aTenantCannotBankCreditWhileIdle() {
        var q = FairQueue<String>(policy: .tokens, limits: Self.roomy)
        // A is served alone for a while (charged 5,000); then B arrives and gets no catch-up:
        // its charge is lifted to A's, so they alternate from then on.
        for i in 0..<5 { _ = q.enqueue("A\(i)", tenant: "A", band: .standard, cost: 1000, bytes: 1, now: 0) }
        #expect(drain(&q).count == 5 && q.charge(of: "A") == 5000)
        for i in 5..<8 { _ = q.enqueue("A\(i)", tenant: "A", band: .standard, cost: 1000, bytes: 1, now: 0) }
        for i in 0..<3 { _ = q.enqueue("B\(i)", tenant: "B", band: .standard, cost: 1000, bytes: 1, now: 0) }
        #expect(q.charge(of: "B") == 5000)
        #expect(drain(&q) == ["A5", "B0", "A6", "B1", "A7", "B2"])
    }

    @Test func boundsSayWhoseQueueIsFull() {
        var q = FairQueue<String>(policy: .tokens, limits: .init(maxRequests: 3, maxBytes: 100, maxRequestsPerTenant: 2, maxBytesPerTenant: 60))
        #expect(q.enqueue("a", tenant: "A", band: .standard, cost: 1, bytes: 10, now: 0).isSuccess)
        #expect(q.enqueue("b", tenant: "A", band: .standard, cost: 1, bytes: 10, now: 0).isSuccess)
        #expect(q.enqueue("c", tenant: "A", band: .standard, cost: 1, bytes: 10, now: 0) == .failure(.tenantFull))
        #expect(q.enqueue("d", tenant: "B", band: .standard, cost: 1, bytes: 70, now: 0) == .failure(.tenantFull))
        #expect(q.enqueue("e", tenant: "B", band: .standard, cost: 1, bytes: 50, now: 0).isSuccess)
        #expect(q.enqueue("f", tenant: "C", band: .standard, cost: 1, bytes: 1, now: 0) == .failure(.poolFull))
        #expect(q.count == 3 && q.bytes == 70 && q.totals("A").count == 2 && q.totals("B").bytes == 50)
        _ = q.dequeue()
        #expect(q.enqueue("g", tenant: "C", band: .standard, cost: 1, bytes: 1, now: 0).isSuccess)
    }

    @Test func removalKeepsTheRestInOrder() {
        var q = FairQueue<String>(policy: .roundRobin, limits: Self.roomy)
        var ids: [String: UInt64] = [:]
        for (item, tenant) in [("A0", "A"), ("A1", "A"), ("B0", "B"), ("C0", "C"), ("C1", "C")] {
            if case .success(let id) = q.enqueue(item, tenant: tenant, band: .standard, cost: 1, bytes: 5, now: 0) { ids[item] = id }
        }
        #expect(q.remove(ids["B0"]!) == "B0")
        #expect(q.remove(ids["B0"]!) == nil)  // once
        #expect(q.remove(ids["A1"]!) == "A1")
        #expect(q.count == 3 && q.bytes == 15 && q.totals("B").count == 0)
        #expect(drain(&q) == ["A0", "C0", "C1"])
        #expect(q.isEmpty && q.bytes == 0)
    }

    @Test func aLongFIFOStaysCompactAndOrdered() {
        var q = FairQueue<Int>(policy: .tokens, limits: .init(maxRequests: 10_000, maxBytes: 1 << 30, maxRequestsPerTenant: 10_000, maxBytesPerTenant: 1 << 30))
        for i in 0..<1000 { _ = q.enqueue(i, tenant: "A", band: .standard, cost: 1, bytes: 1, now: UInt64(i)) }
        var out: [Int] = []
        while let e = q.dequeue() { out.append(e.item) }
        #expect(out == Array(0..<1000))
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
