import SluiceHTTP
import SluiceIO
import SluiceLLM

/// A model's fallback chain (`models[].fallback`), resolved when the model table is built: the
/// entries to try in order and the `sluice_fallbacks_total` slots of each hop.
final class FallbackChain: Sendable {
    struct Step: Sendable {
        var entry: Int
        var name: String
        /// By `ModelFamilies.FallbackReason.allCases` order, labelled (previous model, this one).
        var slots: [Int]
    }
    let steps: [Step]
    init(steps: [Step]) { self.steps = steps }
}

/// Fallback (issue 26): when the model's pool cannot serve — no admitted endpoint (queue and
/// route), a 5xx or 429 as the response head (before anything went to the client), or a
/// connection failure with no retry left — the request moves to the next model of its chain:
/// that model's pool, adapter and upstream name, its own attempts. Not a phase of its own in
/// ``Pipeline/Phase``: the queue and route phases and the exchange's upstream events call it
/// where they would otherwise fail. Bounded by the chain (at most 4 models).
///
/// The chain is the resolved model's, or if it has none the named model's (a split's arms can
/// share one). A request whose worker switched settings since it resolved does not fall back
/// (its table positions refer to the old settings).
enum FallbackPhase {
    /// Moves the request to the next model of its chain; false when none is left.
    static func advance(_ x: Exchange, _ reason: ModelFamilies.FallbackReason) -> Bool {
        guard let chain = x.ctx.target.fallbackChain, x.ctx.target.fallbackNext < chain.steps.count,
              x.worker.generation === x.ctx.generation else { return false }
        let w = x.worker
        let step = chain.steps[x.ctx.target.fallbackNext]
        guard let t = w.modelTable.target(of: step.entry, clientModel: nil), t.pool < w.pools.count else { return false }
        x.ctx.target.fallbackNext += 1
        if reason != .status429 { x.ctx.target.armFailed = true }
        if let i = ModelFamilies.FallbackReason.allCases.firstIndex(of: reason), i < step.slots.count { w.metrics.add(step.slots[i]) }
        x.ctx.target.pool = w.pools[t.pool]
        x.ctx.target.adapter = t.adapter
        x.ctx.target.upstreamModel = t.upstreamModel
        x.ctx.target.resolvedModel = t.upstreamModel
        x.ctx.target.servedByFallback = step.name
        x.ctx.response.headers.removeAll { $0.name == "x-sluice-fallback" }
        x.ctx.response.headers.append(.init("x-sluice-fallback", step.name))
        x.ctx.response.upstreamStatus = 0
        x.ctx.attempt.number = 0
        x.ctx.attempt.excluded = nil
        x.ctx.attempt.loadedAdapter = false
        x.ctx.queue.counted = false
        // The next model's body is rewritten from the client's (the forward phase rewrites on
        // an attempt numbered 1).
        if x.ctx.features != nil { x.ctx.features!.injectedUsage = false }
        x.client.setUpstreamBody(ByteBuffer(emptyIn: x.loop.bufferPool))
        return true
    }

    /// Whether ``advance(_:_:)`` would move the request on.
    static func canAdvance(_ x: Exchange) -> Bool {
        guard let chain = x.ctx.target.fallbackChain else { return false }
        return x.ctx.target.fallbackNext < chain.steps.count && x.worker.generation === x.ctx.generation
    }

    /// The pool has no admitted endpoint at all (ejected, scaled to zero).
    static func poolIsDown(_ x: Exchange) -> Bool {
        guard let pool = x.pool else { return false }
        let now = x.loop.now
        for e in pool.endpoints where e.runtime.isAdmitted(at: now) { return false }
        return true
    }

    static func reason(forStatus s: Int) -> ModelFamilies.FallbackReason? {
        if s == 429 { return .status429 }
        if s >= 500 && s < 600 { return .status5xx }
        return nil
    }
}
