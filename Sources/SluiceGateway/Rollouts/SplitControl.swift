import SluiceIO
import SluiceRouting
import SluiceSettings
import Synchronization

/// One guarded split's live state, shared by the workers (who route by its weights) and the
/// control loop (whose ``SplitGuardRunner`` evaluates the guard and publishes them).
///
/// Workers read ``version`` (one relaxed atomic load per request for the split) and take the
/// lock only when it moved, to copy the new weights into their own ``ArmWeights``: the lock is
/// held for an array copy, once per change (seconds apart), never per request.
final class SplitControl: Sendable {
    let model: String
    let arms: [String]
    let baseline: Int
    let version = Atomic<UInt64>(1)
    private let published: Mutex<(weights: [Double], rolledBack: [Bool])>
    /// The guard's state machine; used on the control loop (the lock makes the admin's reads
    /// and a reload from another thread safe).
    let machine: Mutex<SplitGuard>

    /// `fresh`: nothing was recorded yet (the gateway starts), so the window starts at zero
    /// counts; after a reload the first evaluation takes the base.
    init(model: GatewaySettings.Model, config: SplitGuardConfig, now: UInt64, fresh: Bool) {
        self.model = model.name
        arms = model.split.map(\.model)
        baseline = config.baseline
        let zero = ArmCounts(ttft: Array(repeating: 0, count: GatewayMetrics.latencyBuckets.count + 1),
                             interToken: Array(repeating: 0, count: GatewayMetrics.tokenGapBuckets.count + 1))
        let g = SplitGuard(config: config, weights: model.split.map(\.weight), ttftBounds: GatewayMetrics.latencyBuckets,
                           interTokenBounds: GatewayMetrics.tokenGapBuckets, now: now,
                           base: fresh ? Array(repeating: zero, count: model.split.count) : nil)
        machine = Mutex(g)
        published = Mutex((g.weights, g.configuredWeights.indices.map { g.isRolledBack($0) }))
    }

    /// Publishes the machine's weights (control loop, after an evaluation or a reset).
    func publish(from g: borrowing SplitGuard) {
        let w = g.weights
        let rb = g.configuredWeights.indices.map { g.isRolledBack($0) }
        let changed = published.withLock { p -> Bool in
            if p.weights == w && p.rolledBack == rb { return false }
            p = (w, rb)
            return true
        }
        if changed { version.add(1, ordering: .releasing) }
    }

    /// Copies the published weights into a worker's cache (no allocation when the arm count is
    /// unchanged: element-wise assignment into the cache's own arrays).
    func copy(into cache: ArmWeights) {
        let v = version.load(ordering: .acquiring)
        published.withLock { p in
            for i in cache.weights.indices where i < p.weights.count {
                cache.weights[i] = p.weights[i]
                cache.rolledBack[i] = p.rolledBack[i]
            }
        }
        cache.version = v
    }

    /// Back to the configured start (`POST /admin/splits/{model}/reset`).
    func reset(now: UInt64, base: [ArmCounts]) {
        machine.withLock { g in
            g.reset(now: now, base: base)
            publish(from: g)
        }
    }
}

/// A worker's copy of a guarded split's weights (confined to the worker's thread).
final class ArmWeights {
    var version: UInt64 = 0
    var weights: [Double]
    var rolledBack: [Bool]

    init(count: Int, weights: [Double]) {
        self.weights = weights
        rolledBack = Array(repeating: false, count: count)
    }
}

/// The guarded splits of the gateway, by model name: made anew by a config reload (which
/// resets every guard), kept across the republishing that DNS discovery does.
final class Rollouts: Sendable {
    private let controls = Mutex<[String: SplitControl]>([:])
    /// Shadow copies in flight by the model asked for (`models[].shadow.max_in_flight`).
    private let budgets = Mutex<[String: ShadowBudget]>([:])

    /// Fresh controls for the guarded splits of `s` (a load or reload: every guard resets),
    /// and shadow budgets (copies in flight under the old ones give their places back there).
    func configure(_ s: GatewaySettings, now: UInt64, fresh: Bool = false) {
        var m: [String: SplitControl] = [:]
        var b: [String: ShadowBudget] = [:]
        for model in s.models {
            if !model.split.isEmpty, let g = model.sloGuard { m[model.name] = SplitControl(model: model, config: g, now: now, fresh: fresh) }
            if let sh = model.shadow { b[model.name] = ShadowBudget(max: sh.maxInFlight) }
        }
        controls.withLock { $0 = m }
        budgets.withLock { $0 = b }
    }

    func shadowBudget(for model: String) -> ShadowBudget? { budgets.withLock { $0[model] } }

    func control(for model: String) -> SplitControl? { controls.withLock { $0[model] } }

    var all: [SplitControl] { controls.withLock { Array($0.values) }.sorted { $0.model < $1.model } }
}
