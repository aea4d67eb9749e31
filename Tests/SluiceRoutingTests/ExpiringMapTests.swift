import Testing
@testable import SluiceRouting

@Suite struct ExpiringMapTests {
    @Test func entriesExpireAfterTheirTTL() {
        var m = ExpiringMap<String, Int>(capacity: 10, ttlNanos: 100)
        m.insert("a", 1, now: 0)
        #expect(m.value("a", now: 99) == 1)
        #expect(m.value("a", now: 100) == nil)
        #expect(m.count == 0)
        // Re-inserting restarts the time to live.
        m.insert("b", 2, now: 0)
        m.insert("b", 3, now: 50)
        #expect(m.value("b", now: 120) == 3)
        #expect(m.value("b", now: 150) == nil)
    }

    @Test func theOldestGoFirstWhenFull() {
        var m = ExpiringMap<Int, Int>(capacity: 3, ttlNanos: .max)
        for i in 0..<5 { m.insert(i, i * 10, now: UInt64(i)) }
        #expect(m.count == 3)
        #expect(m.value(0, now: 10) == nil && m.value(1, now: 10) == nil)
        #expect(m.value(2, now: 10) == 20 && m.value(4, now: 10) == 40)
        // A replaced key is not evicted by its stale first insertion.
        m.insert(2, 21, now: 11)
        m.insert(5, 50, now: 12)
        #expect(m.value(2, now: 13) == 21)
        #expect(m.value(3, now: 13) == nil)
    }

    @Test func staysBoundedUnderChurn() {
        var m = ExpiringMap<Int, Int>(capacity: 100, ttlNanos: 1_000)
        var rng = SplitMix64(seed: 7)
        var now: UInt64 = 0
        for _ in 0..<100_000 {
            now += 1
            let k = Int(rng.next() % 500)
            if rng.next() % 3 == 0 { m.remove(k) } else { m.insert(k, k, now: now) }
            #expect(m.count <= 101)
        }
        // Whatever is found is what was last put there and not yet expired.
        for k in 0..<500 { if let v = m.value(k, now: now) { #expect(v == k) } }
    }
}
