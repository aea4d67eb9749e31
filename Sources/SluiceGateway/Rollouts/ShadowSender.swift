import SluiceHTTP
import SluiceIO
import SluiceLLM
import Synchronization

/// The shadows in flight towards one shadow model, across workers (`models[].shadow.max_in_flight`).
final class ShadowBudget: Sendable {
    let inFlight = Atomic<Int>(0)
    let max: Int
    init(max: Int) { self.max = max }

    /// Takes a place, or false when all are taken.
    func take() -> Bool {
        if inFlight.add(1, ordering: .relaxed).newValue > max {
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func give() { inFlight.subtract(1, ordering: .relaxed) }
}

/// Where a model's shadow copies go: resolved when the model table is built, held by a sampled
/// request (one retain) until its forward phase sends the copy.
final class ShadowPlan: Sendable {
    /// The model the client asked for, and the shadow model.
    let model: String
    let shadowModel: String
    /// The shadow model's pool (index into the worker's pools of the same settings) and the
    /// `model` it is sent with.
    let pool: Int
    let upstream: [UInt8]
    let fraction: Double
    let budget: ShadowBudget
    /// `sluice_model_*{model, arm="shadow"}`, `sluice_shadow_requests_total{result}`.
    let slots: ArmSlots
    let sentSlot: Int
    let skippedSlot: Int

    init(model: String, shadowModel: String, pool: Int, upstream: [UInt8], fraction: Double, budget: ShadowBudget,
         slots: ArmSlots, sentSlot: Int, skippedSlot: Int) {
        self.model = model
        self.shadowModel = shadowModel
        self.pool = pool
        self.upstream = upstream
        self.fraction = fraction
        self.budget = budget
        self.slots = slots
        self.sentSlot = sentSlot
        self.skippedSlot = skippedSlot
    }
}

/// Sends shadow copies from one worker (confined to its loop): a copy of the request with the
/// shadow model's name goes to an admitted endpoint of the shadow's pool (round robin) on a
/// plain keep-alive control-plane client; what comes back is read, measured and dropped. The
/// copy never touches the primary's exchange: no rate limit, no cache, no prefix index, no
/// lease in the router's load, and the client's response does not wait for it. What it may
/// cost the primary is bounded: `max_in_flight` copies at once towards a shadow model, beyond
/// which sampled requests are not copied (`result="skipped"`).
///
/// Only `http://` endpoints are shadowed (the control-plane client speaks no TLS).
final class ShadowSender {
    unowned let worker: Worker
    /// Idle clients by endpoint authority, at most `upstream.keepalive_per_endpoint` each
    /// (the bound of the proxy's own idle connections).
    private var idle: [String: [HTTPClient]] = [:]
    private var next = 0

    init(worker: Worker) { self.worker = worker }

    /// Sends a copy of `x`'s request (call before the forward phase rewrites the body).
    func copy(_ x: Exchange, plan: ShadowPlan, pool: UpstreamPool) {
        let w = worker
        guard let f = x.ctx.features else { return }
        let now = x.loop.now
        let eps = pool.endpoints
        var chosen: UpstreamPool.Endpoint?
        for k in 0..<eps.count {
            let ep = eps[(next + k) % eps.count]
            if ep.config.tls == nil && ep.runtime.isAdmitted(at: now) { chosen = ep; next = (next + k + 1) % eps.count; break }
        }
        guard let ep = chosen, plan.budget.take() else {
            w.metrics.add(plan.skippedSlot)
            return
        }
        w.metrics.add(plan.sentSlot)
        var body: [UInt8] = []
        var path = "/v1/chat/completions"
        x.client.withRequest { r in
            let b = r.body
            let m = f.scanned.model
            body.reserveCapacity(b.count + plan.upstream.count)
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[..<m.start]))
            body.append(contentsOf: plan.upstream)
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[m.end...]))
            path = String(decoding: r.target, as: UTF8.self)
        }
        let authority = ep.config.authority
        let client = idle[authority]?.popLast() ?? HTTPClient(address: ep.config.address, host: authority, loop: x.loop)
        let started = now
        let requestID = x.logRequestID ?? hex16(x.ctx.requestID)
        let t = x.settings.timeouts.request
        let timeout = t.isPositive ? t : .seconds(300)
        client.send(method: "POST", path: path, headers: [("Content-Type", "application/json"), ("X-Request-Id", requestID), ("X-Sluice-Shadow", "1")],
                    body: body, timeout: timeout) { [weak self] result in
            plan.budget.give()
            self?.finished(result, client: client, authority: authority, plan: plan, started: started, requestID: requestID)
        }
    }

    private func finished(_ result: Result<HTTPClientResponse, HTTPClientError>, client: HTTPClient, authority: String,
                          plan: ShadowPlan, started: Instant, requestID: String) {
        let w = worker
        let m = w.metrics
        let elapsed = w.loop.now.seconds(since: started)
        var status = 502
        var usage: Usage?
        switch result {
        case .success(let r):
            status = r.status
            if (200..<300).contains(r.status) {
                usage = r.body.withUnsafeBytes { ResponseScanner.scan($0)?.usage }
            }
            if (idle[authority]?.count ?? 0) < w.settings.upstream.keepalivePerEndpoint { idle[authority, default: []].append(client) } else { client.close() }
        case .failure:
            client.close()
        }
        m.add(plan.slots.requests[GatewayMetrics.classIndex(status)])
        m.observe(plan.slots.duration, GatewayMetrics.latencyBuckets, elapsed)
        if let u = usage {
            m.add(plan.slots.inputTokens, Double(u.promptTokens))
            m.add(plan.slots.outputTokens, Double(u.completionTokens))
        }
        guard w.accessLog != nil else { return }
        let (sec, ns) = WallClock.now()
        var line = AccessLogLine(unixNanos: sec * 1_000_000_000 + ns)
        line.field("request_id", requestID)
        line.field("shadow", 1)
        line.field("model", plan.model)
        line.field("shadow_model", plan.shadowModel)
        line.field("endpoint", authority)
        line.field("status", result.isSuccess ? status : 0)
        line.field("prompt_tokens", usage?.promptTokens)
        line.field("completion_tokens", usage?.completionTokens)
        line.field("duration_ms", elapsed * 1000)
        w.log(line.finish())
    }

    /// Closes the idle clients (a worker that stops).
    func closeAll() {
        for c in idle.values.joined() { c.close() }
        idle.removeAll()
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
