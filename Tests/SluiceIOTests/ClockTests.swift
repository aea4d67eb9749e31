import Testing
@testable import SluiceIO

@Suite struct ClockTests {
    /// The reference: whole nanoseconds from `components`, saturating (the slow, obvious way).
    func reference(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (sum, o2) = ns.addingReportingOverflow(atto / 1_000_000_000)
        return o2 ? (s < 0 ? .min : .max) : sum
    }

    @Test(arguments: [
        Duration.zero, .nanoseconds(1), .nanoseconds(999), .microseconds(1), .milliseconds(1500),
        .seconds(1), .seconds(18), .seconds(19), .seconds(300), .seconds(1800), .seconds(86_400 * 365),
        .seconds(Int64.max / 1_000_000_000), .seconds(Int64.max / 1_000_000_000 + 1), .seconds(Int64.max),
        .nanoseconds(Int64.max), .nanoseconds(-1), .milliseconds(-2500), .seconds(Int64.min),
        Duration(secondsComponent: 7, attosecondsComponent: 123_456_789_987_654_321),
        Duration(secondsComponent: 20, attosecondsComponent: 999_999_999_999_999_999),
    ])
    func nanosecondsMatchTheComponents(_ d: Duration) {
        #expect(d.nanoseconds == reference(d), "\(d)")
        #expect(d.isPositive == (d > .zero), "\(d)")
        let negated = Duration.zero - d
        #expect(negated.isPositive == (negated > .zero), "\(negated)")
    }

    @Test func nanosecondsMatchOnAnySeededSample() {
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        for _ in 0..<20_000 {
            let secs = Int64(bitPattern: next()) >> Int64(next() % 63)
            let atto = Int64(next() % 1_000_000_000_000_000_000)
            let d = Duration(secondsComponent: secs, attosecondsComponent: atto)
            #expect(d.nanoseconds == reference(d), "\(secs) s \(atto) as")
            #expect(d.isPositive == (d > .zero), "\(secs) s \(atto) as")
        }
    }

    @Test func secondsSinceIsZeroForLaterStarts() {
        let a = Instant(nanoseconds: 5_000_000_000), b = Instant(nanoseconds: 3_500_000_000)
        #expect(a.seconds(since: b) == 1.5)
        #expect(b.seconds(since: a) == 0)
        #expect(a.seconds(since: b) == a.since(b).seconds)
    }
}
