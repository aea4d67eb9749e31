import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceSettings

/// Resolve: where the request goes. Without `models:` everything goes to the first pool (pass
/// through). With it, the model the client named (compared as bytes) leads to a pool, the
/// upstream model name or adapter, and for splits an arm (weighted rendezvous hashing when
/// sticky); unknown names are a 404 `model_not_found`. Requests that are not inference calls
/// are answered here when Sluice serves them (`GET /v1/models` from the configured list,
/// `GET /health`) and refused otherwise.
enum ResolvePhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        let w = x.worker
        let table = w.modelTable
        let needName = w.accessLog != nil || x.settings.redis != nil || x.ctx.trace?.context.sampled == true
        if table.isEmpty {
            // Pass-through: the first pool; the body is read only for the model's name.
            guard let pool = w.defaultPool else { return .respond(LocalResponse(.unavailable("No pool is configured."))) }
            x.ctx.target.pool = pool
            if needName, let model = x.ctx.features?.scanned.model {
                x.client.withRequest { r in x.ctx.target.clientModel = JSONString.decode(r.body, model) }
            }
            return .next
        }
        var action = PhaseAction.next
        x.client.withRequest { r in
            guard let f = x.ctx.features else {
                action = local(r, table: table, loadedAt: w.loadedAt)
                return
            }
            let body = r.body
            let raw = UnsafeRawBufferPointer(rebasing: body[f.scanned.model.start..<f.scanned.model.end])
            var decoded: [UInt8] = []
            if f.scanned.modelEscaped { decoded = Array(JSONString.decode(body, f.scanned.model).utf8) }
            let user = f.scanned.user
            let resolved = decoded.withUnsafeBytes { d -> ResolvedTarget? in
                table.resolve(f.scanned.modelEscaped ? d : raw, stickyKey: { sticky in
                    switch sticky {
                    case .none: return nil
                    case .user:
                        guard let u = user else { return nil }
                        return ModelTable.hash(UnsafeRawBufferPointer(rebasing: body[u.start..<u.end]))
                    case .header(let name):
                        return r.header(named: name).map { ModelTable.hash($0) }
                    }
                }, random: { w.nextRandom() })
            }
            guard let t = resolved else {
                let name = f.scanned.modelEscaped ? String(decoding: decoded, as: UTF8.self) : String(decoding: raw, as: UTF8.self)
                action = .respond(LocalResponse(.modelNotFound(name)))
                return
            }
            x.ctx.target.pool = w.pools[t.pool]
            x.ctx.target.arm = t.arm
            x.ctx.target.adapter = t.adapter
            x.ctx.target.modelPriority = t.priority
            x.ctx.target.armSlots = t.armSlots
            x.ctx.target.entry = t.entry
            x.ctx.target.resolvedEntry = t.resolvedEntry
            x.ctx.target.fallbackChain = t.fallback
            if let plan = table.entries[t.entry].shadow, plan.pool < w.pools.count, w.nextRandom() < plan.fraction {
                x.ctx.target.shadow = plan
                x.ctx.target.shadowPool = w.pools[plan.pool]
            }
            if t.rewriteModel || f.scanned.modelEscaped { x.ctx.target.upstreamModel = t.upstreamModel }
            x.ctx.target.resolvedModel = t.upstreamModel
            if needName {
                x.ctx.target.clientModel = f.scanned.modelEscaped ? String(decoding: decoded, as: UTF8.self) : String(decoding: raw, as: UTF8.self)
            }
            if t.metricSlot >= 0 { w.metrics.add(t.metricSlot) }
        }
        return action
    }

    /// What Sluice answers itself when `models:` is configured and the request is no
    /// inference call.
    static func local(_ r: DownstreamRequest, table: ModelTable, loadedAt: Int) -> PhaseAction {
        let p = Bytes.prefix(r.target, before: UInt8(ascii: "?"))
        if r.head.method == .get && p.elementsEqual("/v1/models".utf8) {
            return .respond(LocalResponse(status: 200, contentType: "application/json", body: table.modelList(created: loadedAt)))
        }
        if r.head.method == .get && p.elementsEqual("/health".utf8) {
            return .respond(LocalResponse(status: 200, contentType: "text/plain", body: []))
        }
        return .respond(LocalResponse(.client(404, "Unknown request path; this gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.",
                                              code: "not_found")))
    }

    /// The path for the access log: without its query (which may hold secrets), at most 200 bytes.
    static func logPath(_ target: UnsafeRawBufferPointer) -> String {
        String(decoding: Bytes.prefix(target, before: UInt8(ascii: "?")).prefix(200), as: UTF8.self)
    }
}
