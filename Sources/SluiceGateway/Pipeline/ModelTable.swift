import SluiceSettings
import Glibc
import SluiceLLM
import SluiceRouting

/// Where a model name leads: the pool, the `model` to send upstream, the adapter, and the split
/// arm that was chosen (if the name was a split).
struct ResolvedTarget {
    var pool: Int
    var upstreamModel: [UInt8]
    var adapter: LoRATarget?
    var arm: String?
    /// The client's model name differs from what the upstream must see: the body is rewritten.
    var rewriteModel: Bool
    /// The `sluice_model_requests_total` slot (model asked for, arm chosen).
    var metricSlot: Int
    /// The flow-control band of the model asked for (or, if it sets none, of the one resolved).
    var priority: PriorityBand?
    /// The entry the client named and the one resolved (``ModelTable/entries``).
    var entry: Int
    var resolvedEntry: Int
    /// Per model-and-arm metric slots (issue 26).
    var armSlots: ArmSlots?
    /// The fallback chain (the resolved model's, or the named one's).
    var fallback: FallbackChain?
}

/// The LoRA adapter a resolved model is served by, and where it lives on the model servers
/// (for on-demand loading).
struct LoRATarget {
    var name: String
    var path: String?
}

/// The `models:` section compiled for lookups without allocation: names as bytes, splits as
/// arm lists. Built once per settings, read by one worker.
///
/// Splits use weighted rendezvous hashing when sticky (each arm scores `-ln(h)/w` for a hash
/// `h` of the key and the arm; the lowest wins), so a user keeps their arm, and a weight change
/// moves only the share of users it has to; unsticky requests draw from the cumulative weights.
struct ModelTable {
    struct Entry {
        var name: [UInt8]
        var model: GatewaySettings.Model
        var pool: Int?
        var upstream: [UInt8]
        var arms: [(entry: Int, weight: Double)]
        /// Metric slots for requests naming this model, by the arm chosen ("" for none).
        var requestSlots: [String: Int] = [:]
        /// Per model-and-arm metric slots by arm index (one, arm "", for a model that is no split).
        var armSlots: [ArmSlots] = []
        /// Shadow copies of requests naming this model.
        var shadow: ShadowPlan?
        /// The fallback chain's entries, in order, and the chain with its metric slots.
        var fallbackEntries: [Int] = []
        var fallbackChain: FallbackChain?
        /// The SLO guard's live weights (guarded splits) and this worker's copy of them.
        var control: SplitControl?
        var cachedWeights: ArmWeights?
    }

    let entries: [Entry]
    let isEmpty: Bool
    /// `sluice_tenant_tokens_total` slots by tenant (configured tenants and `anonymous`).
    let tenantSlots: [String: (input: Int, output: Int)]

    init(_ settings: GatewaySettings, metrics: GatewayMetrics? = nil, rollouts: Rollouts? = nil) {
        var out: [Entry] = []
        for m in settings.models {
            let pool = m.pool.flatMap { p in settings.pools.firstIndex { $0.name == p } }
            out.append(Entry(name: Array(m.name.utf8), model: m, pool: pool,
                             upstream: Array((m.upstreamModel ?? m.adapter ?? m.name).utf8), arms: []))
        }
        for i in out.indices {
            out[i].arms = out[i].model.split.compactMap { arm in
                out.firstIndex { $0.model.name == arm.model }.map { ($0, arm.weight) }
            }
        }
        for i in out.indices {
            let m = out[i].model
            out[i].fallbackEntries = m.fallback.compactMap { f in out.firstIndex { $0.model.name == f } }
            if m.sloGuard != nil, let c = rollouts?.control(for: m.name), c.arms.count == out[i].arms.count {
                out[i].control = c
                out[i].cachedWeights = ArmWeights(count: c.arms.count, weights: out[i].arms.map(\.weight))
            }
        }
        var tenants: [String: (input: Int, output: Int)] = [:]
        if let m = metrics {
            for i in out.indices {
                var arms = Set(out[i].arms.map { out[$0.entry].model.name })
                if arms.isEmpty { arms = [""] }
                for a in arms { out[i].requestSlots[a] = m.schema.series(m.modelRequests, [out[i].model.name, a]) }
                let name = out[i].model.name
                out[i].armSlots = out[i].arms.isEmpty
                    ? [m.models.armSlots(m.schema, model: name, arm: ModelFamilies.noArm)]
                    : out[i].arms.map { m.models.armSlots(m.schema, model: name, arm: out[$0.entry].model.name) }
                if let sh = out[i].model.shadow, let se = out.firstIndex(where: { $0.model.name == sh.model }), let pool = out[se].pool {
                    out[i].shadow = ShadowPlan(model: name, shadowModel: sh.model, pool: pool, upstream: out[se].upstream, fraction: sh.fraction,
                                               budget: rollouts?.shadowBudget(for: name) ?? ShadowBudget(max: sh.maxInFlight),
                                               slots: m.models.armSlots(m.schema, model: name, arm: ModelFamilies.shadowArm),
                                               sentSlot: m.schema.series(m.models.shadow, [name, sh.model, "sent"]),
                                               skippedSlot: m.schema.series(m.models.shadow, [name, sh.model, "skipped"]))
                }
            }
            for i in out.indices where !out[i].fallbackEntries.isEmpty {
                var from = out[i].model.name
                out[i].fallbackChain = FallbackChain(steps: out[i].fallbackEntries.map { e in
                    let to = out[e].model.name
                    defer { from = to }
                    return FallbackChain.Step(entry: e, name: to, slots: ModelFamilies.FallbackReason.allCases.map {
                        m.schema.series(m.models.fallbacks, [from, to, $0.rawValue])
                    })
                })
            }
            var names = Set(settings.auth.map { Array($0.keys.values) } ?? [])
            names.insert("anonymous")
            for t in names { tenants[t] = m.models.tenantSlots(m.schema, tenant: t) }
        }
        tenantSlots = tenants
        entries = out
        isEmpty = out.isEmpty
    }

    /// The weights to draw `entry`'s arms by: the guard's (refreshed when it published new
    /// ones: one atomic load per request) or the configured ones.
    @inline(__always)
    private func weight(_ e: Int, _ a: Int) -> Double {
        if let c = entries[e].cachedWeights { return c.weights[a] }
        return entries[e].arms[a].weight
    }

    func index(of name: UnsafeRawBufferPointer) -> Int? {
        for (i, e) in entries.enumerated() where e.name.count == name.count {
            if e.name.withUnsafeBytes({ $0.elementsEqual(name) }) { return i }
        }
        return nil
    }

    /// Resolves `name` (following splits, at most 8 deep); `stickyKey` is a hash of the
    /// stickiness key when the model is sticky and the request has one; `random` draws in [0, 1).
    func resolve(_ name: UnsafeRawBufferPointer, stickyKey: (GatewaySettings.Model.Sticky) -> UInt64?,
                 random: () -> Double) -> ResolvedTarget? {
        guard let first = index(of: name) else { return nil }
        if let c = entries[first].control, let cache = entries[first].cachedWeights,
           c.version.load(ordering: .relaxed) != cache.version {
            c.copy(into: cache)
        }
        var i = first
        var arm: String? = nil
        var armIndex = 0
        var depth = 0
        while !entries[i].arms.isEmpty && depth < 8 {
            let arms = entries[i].arms
            var chosen = arms.count - 1
            if let key = stickyKey(entries[i].model.sticky) {
                // Rendezvous over the arms that take traffic, and over rolled-back ones at
                // their configured weight: a rolled-back arm's users go to the baseline (not
                // spread over the other arms), and come back to it after a reset.
                var best = Double.infinity
                chosen = 0
                let cache = entries[i].cachedWeights
                for a in arms.indices {
                    let rolledBack = cache?.rolledBack[a] ?? false
                    let w = rolledBack ? arms[a].weight : weight(i, a)
                    guard w > 0 else { continue }
                    let h = SplitMix64.mix(key ^ Self.hash(entries[arms[a].entry].name))
                    let u = (Double(h >> 11) + 0.5) / Double(1 << 53)
                    let score = -Self.ln(u) / w
                    if score < best { best = score; chosen = a }
                }
                if cache?.rolledBack[chosen] == true, let b = entries[i].control?.baseline { chosen = b }
            } else {
                var total = 0.0
                for a in arms.indices { total += max(weight(i, a), 0) }
                var r = random() * total
                for a in arms.indices {
                    let w = weight(i, a)
                    guard w > 0 else { continue }
                    if r < w { chosen = a; break }
                    r -= w
                }
                // Only the last arm with weight may take the rounding remainder.
                if weight(i, chosen) <= 0, let last = arms.indices.last(where: { weight(i, $0) > 0 }) { chosen = last }
            }
            let next = arms[chosen].entry
            if arm == nil {
                arm = entries[next].model.name
                armIndex = chosen
            }
            i = next
            depth += 1
        }
        guard let pool = entries[i].pool else { return nil }
        let slots = entries[first].armSlots
        return ResolvedTarget(pool: pool, upstreamModel: entries[i].upstream,
                              adapter: entries[i].model.adapter.map { LoRATarget(name: $0, path: entries[i].model.adapterPath) }, arm: arm,
                              rewriteModel: !entries[i].upstream.withUnsafeBytes { $0.elementsEqual(name) },
                              metricSlot: entries[first].requestSlots[arm ?? ""] ?? -1,
                              priority: entries[first].model.priority ?? entries[i].model.priority,
                              entry: first, resolvedEntry: i,
                              armSlots: armIndex < slots.count ? slots[armIndex] : nil,
                              fallback: entries[i].fallbackChain ?? entries[first].fallbackChain)
    }

    /// What a fallback to `entry` sends: its pool, upstream name and adapter.
    func target(of entry: Int, clientModel name: UnsafeRawBufferPointer?) -> ResolvedTarget? {
        guard let pool = entries[entry].pool else { return nil }
        let e = entries[entry]
        return ResolvedTarget(pool: pool, upstreamModel: e.upstream, adapter: e.model.adapter.map { LoRATarget(name: $0, path: e.model.adapterPath) },
                              arm: nil, rewriteModel: name.map { n in !e.upstream.withUnsafeBytes { $0.elementsEqual(n) } } ?? true,
                              metricSlot: -1, priority: e.model.priority, entry: entry, resolvedEntry: entry, armSlots: nil, fallback: nil)
    }

    static func hash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// FNV-1a then a SplitMix finaliser: stable across processes and replicas.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return SplitMix64.mix(h)
    }

    static func ln(_ x: Double) -> Double { log(x) }

    /// The OpenAI model list Sluice answers `GET /v1/models` with: every configured model;
    /// adapters name their base model (a model of the same pool without an adapter) as `parent`.
    func modelList(created: Int) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("object", "list")
        w.beginArray("data")
        for e in entries {
            w.beginObject()
            w.field("id", e.model.name)
            w.field("object", "model")
            w.field("created", created)
            w.field("owned_by", "sluice")
            var parent: String? = nil
            if e.model.adapter != nil, let p = e.pool {
                parent = entries.first { $0.pool == p && $0.model.adapter == nil && $0.arms.isEmpty }?.model.name
            }
            w.field("parent", parent)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }
}
