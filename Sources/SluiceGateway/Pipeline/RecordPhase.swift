import SluiceHTTP
import SluiceIO
import SluiceLLM

/// Record: the request's metrics into the worker's shard (no lock), one access-log line and,
/// when tracing samples it, its spans (``TraceSpans``) — once, when the exchange ends — forwarded, answered by Sluice, failed or abandoned alike.
enum RecordPhase {
    static func run(_ x: Exchange) {
        let w = x.worker
        let m = w.metrics
        let now = x.loop.now
        let status = x.ctx.response.finalStatus
        m.add(w.endpointSlot(x.ctx.endpoint, status: status))
        if x.ctx.trace != nil { TraceSpans.record(x, status: status, at: now) }
        guard let pool = x.pool else {
            // Answered before a pool was chosen (a bad request, a local endpoint).
            m.add(w.localSlots.requests[GatewayMetrics.classIndex(status)])
            if w.accessLog != nil {
                let (sec, ns) = WallClock.now()
                var line = AccessLogLine(unixNanos: sec * 1_000_000_000 + ns)
                line.field("request_id", x.logRequestID)
                line.field("method", String(describing: x.ctx.method))
                var path: String?
                x.client.withRequest { r in path = ResolvePhase.logPath(r.target) }
                line.field("path", path)
                line.field("status", status)
                line.field("duration_ms", now.seconds(since: x.ctx.startedAt) * 1000)
                line.field("route_reason", "answered_by_gateway")
                w.log(line.finish())
            }
            return
        }
        let slots = pool.slots
        RolloutRecord.run(x, status: status, now: now)
        m.add(slots.requests[GatewayMetrics.classIndex(status)])
        m.add(slots.routes[x.ctx.attempt.routeReason.ordinal])
        m.observe(slots.duration, GatewayMetrics.latencyBuckets, now.seconds(since: x.ctx.startedAt))
        if let u = x.ctx.attempt.sentAt { m.observe(slots.upstreamDuration, GatewayMetrics.latencyBuckets, now.seconds(since: u)) }
        if x.ctx.response.observer != nil {
            // Read through the optional, not a copy of the observer (its buffers would be
            // retained and released).
            if let t = x.ctx.response.observer!.firstTokenAt {
                m.observe(slots.ttft, GatewayMetrics.latencyBuckets, t.seconds(since: x.ctx.startedAt))
            }
            if let u = x.ctx.response.observer!.usage {
                m.add(slots.inputTokens, Double(u.promptTokens))
                m.add(slots.outputTokens, Double(u.completionTokens))
            }
        }
        guard w.accessLog != nil else { return }
        let f = x.ctx.features
        let (sec, ns) = WallClock.now()
        var line = AccessLogLine(unixNanos: sec * 1_000_000_000 + ns)
        line.field("request_id", x.logRequestID)
        line.field("method", String(describing: x.ctx.method))
        line.field("endpoint_type", f.map { String(describing: $0.endpoint) })
        line.field("model", x.ctx.target.clientModel)
        line.field("arm", x.ctx.target.arm)
        line.field("fallback", x.ctx.target.servedByFallback)
        line.field("pool", pool.name)
        line.field("endpoint", x.ctx.attempt.endpointName)
        line.field("status", status)
        line.field("bytes", x.ctx.response.bodyBytes)
        line.field("stream", f.map { $0.stream ? 1 : 0 })
        line.field("prompt_tokens", x.ctx.response.observer?.usage?.promptTokens)
        line.field("completion_tokens", x.ctx.response.observer?.usage?.completionTokens)
        line.field("ttft_ms", x.ctx.response.observer?.firstTokenAt.map { $0.seconds(since: x.ctx.startedAt) * 1000 })
        // The cost model's prediction, measured like `ttft_ms` (from the request's arrival):
        // the time until the last attempt was sent plus what was predicted from there, so that
        // |ttft_predicted_ms − ttft_ms| is the model's error alone.
        var predictedMs: Double? = nil
        if let p = x.ctx.attempt.predictedTTFT, let sent = x.ctx.attempt.sentAt {
            predictedMs = (sent.seconds(since: x.ctx.startedAt) + p) * 1000
        }
        line.field("ttft_predicted_ms", predictedMs)
        line.field("duration_ms", now.seconds(since: x.ctx.startedAt) * 1000)
        line.field("route_reason", x.ctx.attempt.routeReason.rawValue)
        line.field("attempts", x.ctx.attempt.number)
        line.field("queue_ms", x.ctx.queue.waited.map { Double($0.nanoseconds) / 1e6 })
        if x.settings.flow.enabled { line.field("priority", x.ctx.queue.band.description) }
        if let t = x.ctx.admission.ticket {
            line.field("tenant", t.tenant)
            line.field("cache", x.ctx.admission.cacheOutcome?.rawValue)
            line.field("rate_limit", x.ctx.admission.limitOutcome?.rawValue)
        } else if x.settings.auth != nil {
            // A configured tenant's name (never the key; without auth, tenants are keys' digests
            // and stay out of the log).
            line.field("tenant", x.ctx.tenant)
        }
        w.log(line.finish())
    }
}
