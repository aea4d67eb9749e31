import SluiceIO

/// Part of the record phase (issue 26): the request into its model-and-arm series (status
/// class, duration, TTFT, tokens; inter-token gaps are recorded as they are observed) and its
/// tokens into its tenant's. Slots were resolved when the model table was built; recording is
/// adds into the worker's shard, no lock, no allocation.
enum RolloutRecord {
    static func run(_ x: Exchange, status: Int, now: Instant) {
        let w = x.worker
        let m = w.metrics
        if let a = x.ctx.target.armSlots {
            // A request its arm failed counts as the arm's 5xx even when a fallback served it
            // (the client's status is in the pool's series and sluice_fallbacks_total).
            m.add(a.requests[x.ctx.target.armFailed && status != 0 ? 3 : GatewayMetrics.classIndex(status)])
            m.observe(a.duration, GatewayMetrics.latencyBuckets, now.seconds(since: x.ctx.startedAt))
            if x.ctx.response.observer != nil {
                if let t = x.ctx.response.observer!.firstTokenAt {
                    m.observe(a.ttft, GatewayMetrics.latencyBuckets, t.seconds(since: x.ctx.startedAt))
                }
                if let u = x.ctx.response.observer!.usage {
                    m.add(a.inputTokens, Double(u.promptTokens))
                    m.add(a.outputTokens, Double(u.completionTokens))
                }
            }
        }
        if x.ctx.response.observer != nil, let u = x.ctx.response.observer!.usage,
           let t = w.modelTable.tenantSlots[x.ctx.tenant] {
            m.add(t.input, Double(u.promptTokens))
            m.add(t.output, Double(u.completionTokens))
        }
    }
}
