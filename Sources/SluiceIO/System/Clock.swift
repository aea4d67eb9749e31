public import Glibc

/// A point on the monotonic clock, in nanoseconds. Event loops read it once per iteration
/// (`EventLoop.now`), so everything handled in one iteration sees the same time.
@frozen
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    @inlinable
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    @inlinable
    public static func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }

    @inlinable
    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    /// Saturating: a configured timeout of decades is "never" (`.max`), not a wrap into the past.
    @inlinable
    public static func + (a: Instant, d: Duration) -> Instant {
        let (v, overflow) = a.nanoseconds.addingReportingOverflow(UInt64(clamping: d.nanoseconds))
        return Instant(nanoseconds: overflow ? .max : v)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    @inlinable
    public func since(_ earlier: Instant) -> Duration {
        nanoseconds >= earlier.nanoseconds
            ? .nanoseconds(Int64(nanoseconds - earlier.nanoseconds)) : .zero
    }

    /// Seconds from `earlier` to `self` (zero if `earlier` is later): `since(_:).seconds`
    /// without building a Duration, for metrics recorded per request.
    @inlinable
    public func seconds(since earlier: Instant) -> Double {
        nanoseconds >= earlier.nanoseconds ? Double(nanoseconds - earlier.nanoseconds) / 1e9 : 0
    }

    public var description: String { "Instant(\(nanoseconds)ns)" }
}

extension Duration {
    /// Greater than zero. The standard library's `>` is not inlinable (a call and the zero
    /// constant's getter, twice per request for each timeout armed).
    @inlinable
    public var isPositive: Bool { _high > 0 || (_high == 0 && _low != 0) }

    /// Whole nanoseconds, saturating.
    ///
    /// Timeouts are added to the clock several times per request; `components` divides a
    /// 128-bit attosecond count in software, so non-negative values are divided here with two
    /// hardware 128/64-bit divisions instead (the high word first, its remainder then carried
    /// into the low word's division, which therefore cannot overflow).
    @inlinable
    public var nanoseconds: Int64 {
        if _high >= 0 {
            let (q1, r1) = UInt64(_high).quotientAndRemainder(dividingBy: 1_000_000_000)
            if q1 != 0 { return .max }  // ≥ 2^64 ns
            let q0 = UInt64(1_000_000_000).dividingFullWidth((high: r1, low: _low)).quotient
            return q0 > UInt64(Int64.max) ? .max : Int64(q0)
        }
        let (s, atto) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return ns &+ atto / 1_000_000_000
    }

    @inlinable
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

/// Wall-clock time, for logs and HTTP dates only (never for timeouts).
public enum WallClock {
    /// Seconds and nanoseconds since the Unix epoch.
    public static func now() -> (seconds: Int, nanoseconds: Int) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return (ts.tv_sec, ts.tv_nsec)
    }
}
