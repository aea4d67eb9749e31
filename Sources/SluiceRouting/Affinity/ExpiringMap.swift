/// A bounded map whose entries expire: what the gateway remembers about state a model server
/// keeps (a Responses API response id → the endpoint holding it). Pure: the time (in
/// nanoseconds of any monotonic clock) comes in as an argument.
///
/// Contract:
/// - at most `capacity` entries: inserting into a full map drops the oldest insertion first
///   (FIFO, which for write-once ids is also least recently created);
/// - an entry is found until `ttl` after its last insertion, never after;
/// - inserting an existing key replaces its value and restarts its time to live;
/// - every operation is O(1) amortised (a ring of insertions beside the dictionary; stale ring
///   slots of replaced keys are skipped when they come up).
public struct ExpiringMap<Key: Hashable, Value> {
    public let capacity: Int
    public let ttlNanos: UInt64
    private var entries: [Key: (value: Value, expires: UInt64, serial: UInt64)] = [:]
    /// Insertion order: (key, serial of that insertion).
    private var ring: [(key: Key, serial: UInt64)?]
    private var head = 0
    private var ringCount = 0
    private var serial: UInt64 = 0

    public init(capacity: Int, ttlNanos: UInt64) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.ttlNanos = ttlNanos
        ring = []
    }

    public var count: Int { entries.count }

    /// The value of `key` at `now`, nil when absent or expired (an expired entry is dropped).
    public mutating func value(_ key: Key, now: UInt64) -> Value? {
        guard let e = entries[key] else { return nil }
        if now >= e.expires {
            entries[key] = nil
            return nil
        }
        return e.value
    }

    /// Remembers `value` for `key` from `now` for the time to live.
    public mutating func insert(_ key: Key, _ value: Value, now: UInt64) {
        serial &+= 1
        let (expires, overflow) = now.addingReportingOverflow(ttlNanos)
        entries[key] = (value, overflow ? .max : expires, serial)
        push((key, serial))
        // Expired entries at the front go first, then the oldest while over capacity.
        while ringCount > 0 {
            guard let front = ring[head] else { pop(); continue }
            guard let e = entries[front.key], e.serial == front.serial else { pop(); continue }  // replaced or dropped
            if entries.count > capacity || now >= e.expires {
                entries[front.key] = nil
                pop()
                continue
            }
            break
        }
    }

    /// Forgets `key`.
    public mutating func remove(_ key: Key) { entries[key] = nil }

    private mutating func push(_ item: (key: Key, serial: UInt64)) {
        // The ring holds at most one slot per insertion still live or not yet skipped; it grows
        // to twice the capacity at most before stale slots are compacted away.
        if ringCount == ring.count {
            if ring.count >= 2 * capacity + 16 { compact() }
            if ringCount == ring.count {
                var grown: [(key: Key, serial: UInt64)?] = []
                grown.reserveCapacity(max(16, ring.count * 2))
                for i in 0..<ringCount { grown.append(ring[(head + i) % ring.count]) }
                grown.append(contentsOf: repeatElement(nil, count: max(16, ring.count * 2) - ringCount))
                ring = grown
                head = 0
            }
        }
        ring[(head + ringCount) % ring.count] = item
        ringCount += 1
    }

    private mutating func pop() {
        ring[head] = nil
        head = (head + 1) % ring.count
        ringCount -= 1
    }

    /// Drops the ring slots of replaced or removed entries, keeping order.
    private mutating func compact() {
        var kept: [(key: Key, serial: UInt64)?] = []
        kept.reserveCapacity(ring.count)
        for i in 0..<ringCount {
            if let item = ring[(head + i) % ring.count], let e = entries[item.key], e.serial == item.serial { kept.append(item) }
        }
        let n = kept.count
        kept.append(contentsOf: repeatElement(nil, count: ring.count - n))
        ring = kept
        head = 0
        ringCount = n
    }
}
