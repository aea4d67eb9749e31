/// A request's priority band (`critical`, `standard`, `sheddable`): a higher band is always
/// served first; `sheddable` is refused at once while its pool is saturated.
public enum PriorityBand: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case critical = 0, standard = 1, sheddable = 2

    public static func < (a: PriorityBand, b: PriorityBand) -> Bool { a.rawValue < b.rawValue }

    public init?(name: String) {
        switch name {
        case "critical": self = .critical
        case "standard": self = .standard
        case "sheddable": self = .sheddable
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .critical: "critical"
        case .standard: "standard"
        case .sheddable: "sheddable"
        }
    }
}

/// How tenants of one band share the pool while it is saturated.
public enum FairnessPolicy: String, Sendable {
    /// Virtual token counter (VTC, Sheng et al., "Fairness in Serving Large Language Models",
    /// OSDI 2024): each tenant is charged the tokens of the requests it was given; the
    /// backlogged tenant charged least goes next, so a tenant of long prompts cannot starve one
    /// of short ones. A tenant that becomes backlogged starts at the least charge among the
    /// backlogged (it cannot bank credit while idle).
    case tokens
    /// Backlogged tenants take turns, one request each.
    case roundRobin = "round_robin"
}

/// The requests waiting for a saturated pool: per band, per tenant FIFO queues served by a
/// fairness policy. Pure (time is an argument), confined to its owner's lock.
///
/// Bounds: requests and bytes per tenant and in all; `enqueue` refuses past them (which bound,
/// so the caller answers 429 for a tenant's own bound and 503 for the pool's).
public struct FairQueue<Item> {
    public struct Limits: Sendable, Equatable {
        public var maxRequests: Int
        public var maxBytes: Int
        public var maxRequestsPerTenant: Int
        public var maxBytesPerTenant: Int
        public init(maxRequests: Int, maxBytes: Int, maxRequestsPerTenant: Int, maxBytesPerTenant: Int) {
            self.maxRequests = maxRequests
            self.maxBytes = maxBytes
            self.maxRequestsPerTenant = maxRequestsPerTenant
            self.maxBytesPerTenant = maxBytesPerTenant
        }
    }

    public enum Refusal: Error, Equatable, Sendable {
        /// The pool's queue is full (requests or bytes).
        case poolFull
        /// This tenant's share of the queue is full.
        case tenantFull
    }

    struct Entry {
        var id: UInt64
        var cost: Int
        var bytes: Int
        var enqueuedAt: UInt64
        var item: Item
    }

    struct TenantQueue {
        var entries: [Entry] = []
        var head = 0
        var bytes = 0
        var isEmpty: Bool { head == entries.count }
        var count: Int { entries.count - head }
    }

    struct BandQueue {
        var tenants: [String: TenantQueue] = [:]
        /// Backlogged tenants in the order they became so (round robin's turn order).
        var order: [String] = []
        var turn = 0
        var count = 0
    }

    public let policy: FairnessPolicy
    public var limits: Limits
    private var bands: [BandQueue] = Array(repeating: BandQueue(), count: PriorityBand.allCases.count)
    /// Tokens each tenant was charged (VTC), shared across bands.
    private var charged: [String: Int] = [:]
    /// Where each queued id is: band and tenant (for removal).
    private var index: [UInt64: (band: Int, tenant: String)] = [:]
    private var nextID: UInt64 = 0
    public private(set) var count = 0
    public private(set) var bytes = 0
    private var tenantTotals: [String: (count: Int, bytes: Int)] = [:]

    public init(policy: FairnessPolicy, limits: Limits) {
        self.policy = policy
        self.limits = limits
    }

    public var isEmpty: Bool { count == 0 }

    /// Requests queued in `band`.
    public func count(_ band: PriorityBand) -> Int { bands[band.rawValue].count }
    /// Requests and bytes queued for `tenant`.
    public func totals(_ tenant: String) -> (count: Int, bytes: Int) { tenantTotals[tenant] ?? (0, 0) }
    /// The tenants with requests queued.
    public var queuedTenants: Dictionary<String, (count: Int, bytes: Int)>.Keys { tenantTotals.keys }

    /// Queues `item` for `tenant` in `band`; `cost` is its token estimate (VTC's charge),
    /// `bytes` what it holds while it waits. Returns its id, or why it was refused.
    public mutating func enqueue(_ item: Item, tenant: String, band: PriorityBand, cost: Int, bytes size: Int,
                                 now: UInt64) -> Result<UInt64, Refusal> {
        let t = tenantTotals[tenant] ?? (0, 0)
        if t.count + 1 > limits.maxRequestsPerTenant || t.bytes + size > limits.maxBytesPerTenant { return .failure(.tenantFull) }
        if count + 1 > limits.maxRequests || bytes + size > limits.maxBytes { return .failure(.poolFull) }
        nextID &+= 1
        let id = nextID
        var b = bands[band.rawValue]
        var q = b.tenants[tenant] ?? TenantQueue()
        if q.isEmpty {
            // Newly backlogged: it joins the turn order, and under VTC its charge is lifted to
            // the least of the tenants already waiting, so idleness earns no credit.
            b.order.append(tenant)
            if policy == .tokens {
                let floor = backloggedMinimum()
                if let f = floor, (charged[tenant] ?? 0) < f { charged[tenant] = f }
            }
        }
        q.entries.append(Entry(id: id, cost: max(0, cost), bytes: size, enqueuedAt: now, item: item))
        q.bytes += size
        b.tenants[tenant] = q
        b.count += 1
        bands[band.rawValue] = b
        index[id] = (band.rawValue, tenant)
        count += 1
        bytes += size
        tenantTotals[tenant] = (t.count + 1, t.bytes + size)
        return .success(id)
    }

    /// The least charge among backlogged tenants of any band (nil: none waits).
    private func backloggedMinimum() -> Int? {
        var m: Int? = nil
        for b in bands {
            for name in b.order where !(b.tenants[name]?.isEmpty ?? true) {
                let c = charged[name] ?? 0
                if m == nil || c < m! { m = c }
            }
        }
        return m
    }

    /// The next request to serve: the highest band with any; within it, the tenant the policy
    /// picks; within the tenant, the oldest. Nil when empty.
    public mutating func dequeue() -> (id: UInt64, tenant: String, band: PriorityBand, cost: Int, enqueuedAt: UInt64, item: Item)? {
        for bi in bands.indices where bands[bi].count > 0 {
            var b = bands[bi]
            let tenant: String
            switch policy {
            case .tokens:
                // Least charged; ties by turn order (earliest backlogged first).
                var best: (name: String, charge: Int)? = nil
                for name in b.order where !(b.tenants[name]?.isEmpty ?? true) {
                    let c = charged[name] ?? 0
                    if best == nil || c < best!.charge { best = (name, c) }
                }
                tenant = best!.name
            case .roundRobin:
                var k = b.turn % max(b.order.count, 1)
                while b.tenants[b.order[k]]?.isEmpty ?? true { k = (k + 1) % b.order.count }
                tenant = b.order[k]
                b.turn = k + 1
            }
            var q = b.tenants[tenant]!
            let e = q.entries[q.head]
            q.head += 1
            q.bytes -= e.bytes
            if q.isEmpty {
                q = TenantQueue()
                b.order.removeAll { $0 == tenant }
                if b.turn > 0 { b.turn -= 1 }
            } else if q.head > 64 && q.head * 2 > q.entries.count {
                q.entries.removeFirst(q.head)
                q.head = 0
            }
            b.tenants[tenant] = q
            b.count -= 1
            bands[bi] = b
            finishRemoval(e.id, tenant: tenant, bytes: e.bytes)
            if policy == .tokens { charged[tenant, default: 0] += e.cost }
            return (e.id, tenant, PriorityBand(rawValue: bi)!, e.cost, e.enqueuedAt, e.item)
        }
        return nil
    }

    /// Takes request `id` out (its client left, or it waited too long); nil if it is not queued.
    public mutating func remove(_ id: UInt64) -> Item? {
        guard let (bi, tenant) = index[id] else { return nil }
        var b = bands[bi]
        guard var q = b.tenants[tenant], let k = q.entries[q.head...].firstIndex(where: { $0.id == id }) else { return nil }
        let e = q.entries.remove(at: k)
        q.bytes -= e.bytes
        if q.isEmpty {
            q = TenantQueue()
            if let pos = b.order.firstIndex(of: tenant) {
                b.order.remove(at: pos)
                if pos < b.turn { b.turn -= 1 }
            }
        }
        b.tenants[tenant] = q
        b.count -= 1
        bands[bi] = b
        finishRemoval(id, tenant: tenant, bytes: e.bytes)
        return e.item
    }

    private mutating func finishRemoval(_ id: UInt64, tenant: String, bytes size: Int) {
        index[id] = nil
        count -= 1
        bytes -= size
        let t = tenantTotals[tenant]!
        tenantTotals[tenant] = t.count == 1 ? nil : (t.count - 1, t.bytes - size)
    }

    /// Tokens `tenant` was charged so far (tests, the admin view).
    public func charge(of tenant: String) -> Int { charged[tenant] ?? 0 }

    /// Forgets charges of tenants with nothing queued once there are many (a long-lived process
    /// meets an unbounded number of tenants): they would be lifted on their next request anyway.
    public mutating func forgetIdleCharges(keeping: Int = 10_000) {
        guard charged.count > keeping else { return }
        charged = charged.filter { tenantTotals[$0.key] != nil }
    }
}
