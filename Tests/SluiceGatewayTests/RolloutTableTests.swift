import SluiceSettings
@testable import SluiceGateway
import SluiceRouting
import Testing

/// The model table with an SLO guard's weights (issue 26): a rolled-back arm gets no new
/// requests, its sticky users go to the baseline (the others keep theirs) and come back after
/// a reset; a ramp's weights are drawn by; fallback chains and shadow plans are resolved.
@Suite struct RolloutTableTests {
    static func settings(arms: Int = 2) -> GatewaySettings {
        var s = GatewaySettings(listen: [], workers: 1, pools: [.init(name: "p", endpoints: []), .init(name: "q", endpoints: [])])
        var chat = GatewaySettings.Model(name: "chat")
        chat.split = (1...arms).map { ("v\($0)", 1.0) }
        chat.sticky = .user
        var g = SplitGuardConfig()
        g.windowNanos = 10_000_000_000
        g.minRequests = 1
        chat.sloGuard = g
        var v1 = GatewaySettings.Model(name: "v1", pool: "p")
        v1.fallback = ["backup"]
        chat.shadow = GatewaySettings.Shadow(model: "backup", fraction: 0.5)
        s.models = [v1] + (2...max(2, arms)).map { GatewaySettings.Model(name: "v\($0)", pool: "p") }
            + [GatewaySettings.Model(name: "backup", pool: "q", upstreamModel: "small"), chat]
        return s
    }

    func arm(_ t: ModelTable, _ user: Int?, _ rng: inout SplitMix64) -> String {
        Array("chat".utf8).withUnsafeBytes { n in
            t.resolve(n, stickyKey: { _ in user.map { ModelTable.hash(Array("user-\($0)".utf8)) } }, random: { rng.nextUnit() })!.arm!
        }
    }

    /// Counts of every arm, with per-arm error counts as given.
    func counts(_ errors: [Double]) -> [ArmCounts] {
        errors.map { ArmCounts(requests: 100, errors: $0, ttft: Array(repeating: 0, count: 16), interToken: Array(repeating: 0, count: 11)) }
    }

    @Test func rolledBackArmLosesItsTrafficAndStickyUsersGoToBaseline() {
        let s = Self.settings(arms: 3)
        let rollouts = Rollouts()
        rollouts.configure(s, now: 0, fresh: true)
        let table = ModelTable(s, metrics: GatewayMetrics(), rollouts: rollouts)
        var rng = SplitMix64(seed: 7)
        let before = (0..<3000).map { arm(table, $0, &rng) }
        #expect(Set(before) == ["v1", "v2", "v3"])
        // v2 fails.
        let c = rollouts.control(for: "chat")!
        c.machine.withLock { g in
            _ = g.evaluate(now: 1_000_000_000, counts: counts([0, 50, 0]))
            c.publish(from: g)
        }
        #expect(c.machine.withLock { $0.isRolledBack(1) })
        let after = (0..<3000).map { arm(table, $0, &rng) }
        for i in 0..<3000 {
            if before[i] == "v2" { #expect(after[i] == "v1", "a v2 user goes to the baseline") } else { #expect(after[i] == before[i], "others stay") }
        }
        for _ in 0..<2000 { #expect(arm(table, nil, &rng) != "v2") }
        // A reset brings them back.
        c.reset(now: 2_000_000_000, base: counts([0, 50, 0]))
        let reset = (0..<3000).map { arm(table, $0, &rng) }
        #expect(reset == before)
    }

    @Test func rampWeightsAreDrawnBy() {
        var s = Self.settings()
        s.models[s.models.count - 1].sloGuard!.ramp = [10]
        let rollouts = Rollouts()
        rollouts.configure(s, now: 0, fresh: true)
        let table = ModelTable(s, metrics: GatewayMetrics(), rollouts: rollouts)
        var rng = SplitMix64(seed: 1)
        var v2 = 0
        for _ in 0..<10_000 where arm(table, nil, &rng) == "v2" { v2 += 1 }
        #expect(abs(Double(v2) / 10_000 - 0.1) < 0.015, "\(v2)")
        var sticky = 0
        for u in 0..<10_000 where arm(table, u, &rng) == "v2" { sticky += 1 }
        #expect(abs(Double(sticky) / 10_000 - 0.1) < 0.015, "\(sticky)")
    }

    @Test func withoutRolloutsTheConfiguredWeightsApply() {
        let table = ModelTable(Self.settings())
        var rng = SplitMix64(seed: 3)
        var v2 = 0
        for _ in 0..<10_000 where arm(table, nil, &rng) == "v2" { v2 += 1 }
        #expect(abs(Double(v2) / 10_000 - 0.5) < 0.02)
    }

    @Test func fallbackChainsAndShadowPlansResolve() throws {
        let s = Self.settings()
        let table = ModelTable(s, metrics: GatewayMetrics(), rollouts: nil)
        var rng = SplitMix64(seed: 1)
        // The resolved arm's chain (v1 has one); v2 has none and the split none either.
        var seen: [String: Int?] = [:]
        for u in 0..<50 {
            let t = Array("chat".utf8).withUnsafeBytes { n in
                table.resolve(n, stickyKey: { _ in UInt64(u) }, random: { rng.nextUnit() })!
            }
            seen.updateValue(t.fallback?.steps.first?.entry, forKey: t.arm!)
        }
        let backup = try #require(table.entries.firstIndex { $0.model.name == "backup" })
        #expect(seen["v1"] == .some(backup) && seen["v2"] == .some(nil))
        let target = try #require(table.target(of: backup, clientModel: nil))
        #expect(target.upstreamModel == Array("small".utf8) && target.pool == 1)
        let plan = try #require(table.entries.last!.shadow)
        #expect(plan.shadowModel == "backup" && plan.pool == 1 && plan.upstream == Array("small".utf8) && plan.fraction == 0.5)
        #expect(plan.budget.max == 32)
    }

    @Test func shadowBudgetIsBounded() {
        let b = ShadowBudget(max: 2)
        #expect(b.take() && b.take() && !b.take())
        b.give()
        #expect(b.take() && !b.take())
    }
}
