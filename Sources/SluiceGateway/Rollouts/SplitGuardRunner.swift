import SluiceIO
import SluiceRouting
import SluiceSettings

/// Runs the SLO guards on the control loop, off the request path: every 100 ms it checks which
/// guards are due (each at its own `interval`), takes one metrics snapshot (the per-worker
/// copies a scrape takes) and hands each due guard its arms' cumulative counts from the
/// per-model-and-arm series; what the guard decides is published to the workers through the
/// split's ``SplitControl``. A rollback is logged with its reason and counted
/// (`sluice_split_rollbacks_total`); `sluice_split_arm_state` and `sluice_split_arm_weight`
/// are read from the guards at scrape time. No timer runs without a guarded split.
final class SplitGuardRunner {
    unowned let gateway: Gateway
    let loop: EventLoop
    private var timer: Timer!
    /// Rollbacks so far by "model\0arm\0reason" (kept across reloads: a counter).
    private var rollbacks: [String: Int] = [:]
    /// Evaluations run (tests).
    private(set) var evaluations = 0
    static let tick = Duration.milliseconds(100)

    init(gateway: Gateway, loop: EventLoop) {
        self.gateway = gateway
        self.loop = loop
        timer = Timer { [unowned self] in self.fire() }
    }

    func start() { reschedule() }

    func stop() { loop.cancel(timer) }

    /// After a reload (new controls): keep ticking only if a guard exists.
    func reschedule() {
        if gateway.rollouts.all.isEmpty { loop.cancel(timer) } else if !timer.isArmed { loop.schedule(timer, after: Self.tick) }
    }

    private func fire() {
        let controls = gateway.rollouts.all
        guard !controls.isEmpty else { return }
        let now = UInt64(Instant.now().nanoseconds)
        let due = controls.filter { c in
            c.machine.withLock { g in g.lastEvaluation.map { now &- $0 >= g.config.intervalNanos } ?? true }
        }
        if !due.isEmpty {
            let catalog = gateway.metrics
            let values = PrometheusExposition.merge(gateway.metricSnapshots().values, slots: catalog.schema.slotCount)
            for c in due { evaluate(c, values: values, now: now) }
        }
        loop.schedule(timer, after: Self.tick)
    }

    private func evaluate(_ c: SplitControl, values: [Double], now: UInt64) {
        let counts = c.arms.map { Self.counts(gateway.metrics, values, model: c.model, arm: $0) }
        let events = c.machine.withLock { g -> [SplitGuard.Event] in
            let e = g.evaluate(now: now, counts: counts)
            c.publish(from: g)
            return e
        }
        evaluations += 1
        for e in events {
            switch e {
            case .rolledBack(let arm, let breach):
                rollbacks["\(c.model)\u{0}\(c.arms[arm])\u{0}\(breach.kind.rawValue)", default: 0] += 1
                log("split '\(c.model)': arm '\(c.arms[arm])' rolled back (weight 0, sticky users to '\(c.arms[c.baseline])'): \(breach.description)")
            case .rampAdvanced(let step, let percent):
                log("split '\(c.model)': guard held a window; ramp step \(step + 1): candidates at \(percent)%")
            case .rampCompleted:
                log("split '\(c.model)': guard held the last ramp step; configured weights apply")
            }
        }
    }

    /// One arm's cumulative counts from summed metric values.
    static func counts(_ m: GatewayMetrics, _ v: [Double], model: String, arm: String) -> ArmCounts {
        let s = m.schema
        let f = m.models
        func at(_ i: Int) -> Double { i < v.count ? v[i] : 0 }
        var c = ArmCounts()
        for cls in GatewayMetrics.classes where cls != "aborted" {
            let n = at(s.series(f.responses, [model, arm, cls]))
            c.requests += n
            if cls == "5xx" { c.errors += n }
        }
        let t = s.series(f.ttft, [model, arm])
        c.ttft = (0...GatewayMetrics.latencyBuckets.count).map { at(t + $0) }
        let g = s.series(f.interToken, [model, arm])
        c.interToken = (0...GatewayMetrics.tokenGapBuckets.count).map { at(g + $0) }
        return c
    }

    // MARK: what it shows

    /// `sluice_split_arm_state` (1 for the arm's state), `sluice_split_arm_weight`,
    /// `sluice_split_rollbacks_total`.
    func gauges() -> [PrometheusExposition.Gauge] {
        var state: [(labels: [(String, String)], value: Double)] = []
        var weight: [(labels: [(String, String)], value: Double)] = []
        for c in gateway.rollouts.all {
            c.machine.withLock { g in
                let w = g.weights
                for (i, arm) in c.arms.enumerated() {
                    for s in ["baseline", "active", "rolled_back"] {
                        state.append(([("model", c.model), ("arm", arm), ("state", s)], g.states[i].name == s ? 1 : 0))
                    }
                    weight.append(([("model", c.model), ("arm", arm)], w[i]))
                }
            }
        }
        // Every guarded arm and reason from 0 (rate() works from the first scrape); counts of
        // splits a reload removed stay exported.
        var counts = rollbacks
        for c in gateway.rollouts.all {
            for (i, arm) in c.arms.enumerated() where i != c.baseline {
                for r in Breach.Kind.allCases { counts["\(c.model)\u{0}\(arm)\u{0}\(r.rawValue)", default: 0] += 0 }
            }
        }
        let rb = counts.sorted { $0.key < $1.key }.map { k, n -> (labels: [(String, String)], value: Double) in
            let p = k.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            return ([("model", p[0]), ("arm", p[1]), ("reason", p[2])], Double(n))
        }
        return [
            PrometheusExposition.Gauge(name: "sluice_split_arm_state",
                                       help: "1 for a guarded split arm's state: baseline, active (taking its weight) or rolled_back (the SLO guard took its traffic; see the log and sluice_split_rollbacks_total for why).",
                                       samples: state),
            PrometheusExposition.Gauge(name: "sluice_split_arm_weight", help: "The weight a guarded split routes each arm by now (ramp and rollbacks applied).",
                                       samples: weight),
            PrometheusExposition.Gauge(name: "sluice_split_rollbacks_total",
                                       help: "Split arms rolled back by their SLO guard, by why (error_rate, ttft_p90, inter_token_p90).",
                                       samples: rb, counter: true),
        ]
    }

    /// The guard of `model`'s split for `/admin/splits` and `/admin/stats` (null: unguarded).
    static func writeGuard(_ w: inout JSONWriter, _ c: SplitControl?) {
        guard let c else {
            w.field("guard", nil as String?)
            return
        }
        c.machine.withLock { g in
            w.beginObject("guard")
            w.field("baseline", c.arms[c.baseline])
            w.field("window_seconds", Double(g.config.windowNanos) / 1e9)
            w.field("interval_seconds", Double(g.config.intervalNanos) / 1e9)
            w.field("min_requests", g.config.minRequests)
            w.field("error_rate_margin", g.config.errorRateMargin)
            w.number("ttft_p90_ratio", g.config.ttftP90Ratio)
            w.number("inter_token_p90_ratio", g.config.interTokenP90Ratio)
            w.field("ramp", g.config.ramp.map { Optional($0) })
            w.number("ramp_step", g.rampStep.map(Double.init))
            w.number("ramp_percent", g.rampStep.map { g.config.ramp[$0] })
            let rolledBack = g.states.contains { $0.name == "rolled_back" }
            w.field("state", rolledBack ? "rolled_back" : (g.rampStep != nil ? "ramping" : "holding"))
            let weights = g.weights
            w.beginArray("arms")
            for (i, arm) in c.arms.enumerated() {
                w.beginObject()
                w.field("model", arm)
                w.field("state", g.states[i].name)
                w.field("weight", weights[i])
                if case .rolledBack(let b, _) = g.states[i] {
                    w.field("reason", b.kind.rawValue)
                    w.field("why", b.description)
                } else {
                    w.field("reason", nil as String?)
                }
                let f = g.windows[i]
                w.field("window_requests", f.requests)
                w.field("window_errors", f.errors)
                w.field("error_rate", f.errorRate)
                w.number("ttft_p90", f.ttftP90)
                w.number("inter_token_p90", f.interTokenP90)
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
    }

    /// `GET /admin/splits`: every split, its arms and weights (configured and in force), its
    /// guard's state and window figures.
    func splitsJSON() -> [UInt8] {
        let s = gateway.currentSettings
        var w = JSONWriter()
        w.beginObject()
        w.beginArray("splits")
        for model in s.models where !model.split.isEmpty {
            let c = gateway.rollouts.control(for: model.name)
            let live = c.map { c in c.machine.withLock { $0.weights } }
            w.beginObject()
            w.field("model", model.name)
            switch model.sticky {
            case .none: w.field("sticky", "none")
            case .user: w.field("sticky", "user")
            case .header(let h): w.field("sticky", "header:\(h)")
            }
            w.beginArray("arms")
            for (i, arm) in model.split.enumerated() {
                w.beginObject()
                w.field("model", arm.model)
                w.field("configured_weight", arm.weight)
                w.field("weight", live.map { $0[i] } ?? arm.weight)
                w.endObject()
            }
            w.endArray()
            Self.writeGuard(&w, c)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    /// `POST /admin/splits/{model}/reset`: false when the model has no guarded split.
    func reset(model: String) -> Bool {
        guard let c = gateway.rollouts.control(for: model) else { return false }
        // The window starts now: what came before the reset is not held against any arm.
        let values = PrometheusExposition.merge(gateway.metricSnapshots().values, slots: gateway.metrics.schema.slotCount)
        c.reset(now: UInt64(Instant.now().nanoseconds), base: c.arms.map { Self.counts(gateway.metrics, values, model: c.model, arm: $0) })
        log("split '\(model)': guard reset by the admin API (every arm back at its configured weight)")
        return true
    }
}

extension JSONWriter {
    /// A number or null.
    mutating func number(_ k: String, _ v: Double?) {
        if let v { field(k, v) } else { field(k, nil as String?) }
    }
}
