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
    }

    let entries: [Entry]
    let isEmpty: Bool

    init(_ settings: GatewaySettings, metrics: GatewayMetrics? = nil) {
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
        if let m = metrics {
            for i in out.indices {
                var arms = Set(out[i].arms.map { out[$0.entry].model.name })
                if arms.isEmpty { arms = [""] }
                for a in arms { out[i].requestSlots[a] = m.schema.series(m.modelRequests, [out[i].model.name, a]) }
            }
        }
        entries = out
        isEmpty = out.isEmpty
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
        var i = first
        var arm: String? = nil
        var depth = 0
        while !entries[i].arms.isEmpty && depth < 8 {
            let e = entries[i]
            let next: Int
            if let key = stickyKey(e.model.sticky) {
                var best = Double.infinity
                var chosen = e.arms[0].entry
                for a in e.arms where a.weight > 0 {
                    let h = SplitMix64.mix(key ^ Self.hash(entries[a.entry].name))
                    let u = (Double(h >> 11) + 0.5) / Double(1 << 53)
                    let score = -Self.ln(u) / a.weight
                    if score < best { best = score; chosen = a.entry }
                }
                next = chosen
            } else {
                let total = e.arms.reduce(0) { $0 + max($1.weight, 0) }
                var r = random() * total
                var chosen = e.arms[e.arms.count - 1].entry
                for a in e.arms where a.weight > 0 {
                    if r < a.weight { chosen = a.entry; break }
                    r -= a.weight
                }
                next = chosen
            }
            if arm == nil { arm = entries[next].model.name }
            i = next
            depth += 1
        }
        let e = entries[i]
        guard let pool = e.pool else { return nil }
        return ResolvedTarget(pool: pool, upstreamModel: e.upstream, adapter: e.model.adapter.map { LoRATarget(name: $0, path: e.model.adapterPath) }, arm: arm,
                              rewriteModel: !e.upstream.withUnsafeBytes { $0.elementsEqual(name) },
                              metricSlot: entries[first].requestSlots[arm ?? ""] ?? -1,
                              priority: entries[first].model.priority ?? e.model.priority)
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
