import Synchronization

/// The families and series of Sluice's metrics, shared by all workers so that a series has the
/// same slot everywhere. Resolving a series (family + label values → slot) takes a short lock and
/// happens when a pool, endpoint or model is configured — never per request: the request path
/// records by slot into its own worker's ``MetricsShard``.
///
/// Cardinality is bounded: a family holds at most `maxSeries` label sets; further ones share an
/// `other` series.
public final class MetricsSchema: Sendable {
    public enum Kind: Sendable { case counter, histogram }

    public struct Family: Sendable {
        public let name: String
        public let help: String
        public let kind: Kind
        public let labels: [String]
        /// Histogram upper bounds (seconds or counts); empty for counters.
        public let buckets: [Double]
        public let maxSeries: Int
    }

    struct Series: Sendable {
        var family: Int
        var values: [String]
        var slot: Int
    }

    struct State: Sendable {
        var families: [Family] = []
        var series: [Series] = []
        var index: [String: Int] = [:]   // "family\u{0}v1\u{0}v2" → series
        var slots = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Declares a family (idempotent by name); returns its id.
    @discardableResult
    public func family(_ name: String, help: String, kind: Kind, labels: [String] = [], buckets: [Double] = [],
                       maxSeries: Int = 1000) -> Int {
        state.withLock { s in
            if let i = s.families.firstIndex(where: { $0.name == name }) { return i }
            s.families.append(Family(name: name, help: help, kind: kind, labels: labels, buckets: buckets, maxSeries: maxSeries))
            return s.families.count - 1
        }
    }

    /// The slot of a series; a histogram uses `buckets.count + 2` slots (buckets, +Inf/count, sum).
    public func series(_ family: Int, _ values: [String]) -> Int {
        state.withLock { s in
            let f = s.families[family]
            precondition(values.count == f.labels.count, "\(f.name): wrong label count")
            let key = ([String(family)] + values).joined(separator: "\u{0}")
            if let i = s.index[key] { return s.series[i].slot }
            let count = s.series.reduce(0) { $0 + ($1.family == family ? 1 : 0) }
            var vals = values
            if count >= f.maxSeries {
                vals = Array(repeating: "other", count: values.count)
                let otherKey = ([String(family)] + vals).joined(separator: "\u{0}")
                if let i = s.index[otherKey] { return s.series[i].slot }
            }
            let width = f.kind == .histogram ? f.buckets.count + 2 : 1
            let slot = s.slots
            s.slots += width
            s.series.append(Series(family: family, values: vals, slot: slot))
            s.index[([String(family)] + vals).joined(separator: "\u{0}")] = s.series.count - 1
            return slot
        }
    }

    var snapshot: State { state.withLock { $0 } }
    public var slotCount: Int { state.withLock { $0.slots } }
}

/// One worker's metric values: plain numbers written only by that worker's thread, so recording
/// costs an add, no atomic and no lock. A scrape copies them on the worker's own loop.
public final class MetricsShard {
    public private(set) var values: [Double]
    /// Off (`admin.metrics: false`): recording is skipped; what was recorded stays.
    public var enabled = true

    public init(capacity: Int = 1024) {
        values = Array(repeating: 0, count: capacity)
    }

    @inline(__always)
    private func ensure(_ n: Int) {
        if n > values.count { values += Array(repeating: 0, count: max(n - values.count, values.count)) }
    }

    @inline(__always)
    public func add(_ slot: Int, _ v: Double = 1) {
        guard enabled else { return }
        ensure(slot + 1)
        values[slot] += v
    }

    /// Records `v` into the histogram at `slot` with `buckets` (non-cumulative counts per bucket;
    /// the exposition makes them cumulative).
    @inline(__always)
    public func observe(_ slot: Int, _ buckets: [Double], _ v: Double) {
        guard enabled else { return }
        ensure(slot + buckets.count + 2)
        var i = 0
        while i < buckets.count && v > buckets[i] { i += 1 }
        values[slot + i] += 1          // bucket i, or the +Inf bucket at index buckets.count
        values[slot + buckets.count + 1] += v
    }
}
