import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRedis
import SluiceSettings

/// Resolve: where the request goes.
///
/// - A request that addresses a stored response (Responses API: retrieve, cancel, a follow-up
///   naming `previous_response_id`) is pinned to the endpoint that made it
///   (``ResponseAffinity``; an id this replica does not know is looked up in Redis first, when
///   there is one).
/// - Without `models:` (pass-through) everything goes to the first pool — KServe v2 paths to the
///   first pool with `protocol: kserve_v2` if there is one; the model, if any, is read only for
///   the logs and limits, and may be absent where vLLM allows it (its served model applies).
/// - With `models:`, the model the request names — in its JSON body, a form field (audio), the
///   query (realtime) or the path (KServe v2), compared as bytes — leads to a pool, the
///   upstream model name or adapter, and for splits an arm (weighted rendezvous hashing when
///   sticky); unknown names are a 404 `model_not_found`, a missing one a 400, each in the
///   path's error shape. A model whose pool speaks the other protocol (`pools[].protocol`) is
///   not found on this path.
/// - Paths outside vLLM's table: `GET /v1/models` and `GET /health` answered here (with
///   `models:`), the rest by `passthrough` (``GatewaySettings/Passthrough``).
enum ResolvePhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        let w = x.worker
        if x.ctx.features?.responseIDRange != nil, x.ctx.target.pinned == nil, let id = responseID(x) {
            if let ep = w.responseAffinity.endpoint(of: id, now: x.loop.now) {
                x.ctx.target.pinned = ep
            } else if let redis = w.redis, !x.ctx.target.lookedUpResponse {
                // Another replica may have seen it made: ask Redis, then resolve again.
                x.ctx.target.lookedUpResponse = true
                RoutePhase.savePrefixHashes(x)
                redis.get(ResponseAffinity.redisKey(id)) { result in
                    if case .success(let value?) = result, !value.isEmpty, value.count <= 300 {
                        w.responseAffinity.learn(id, endpoint: String(decoding: value, as: UTF8.self), now: w.loop.now)
                    }
                    x.resume(.again)
                }
                return .wait
            }
        }
        let table = w.modelTable
        if table.isEmpty { return passThrough(x) }
        var action = PhaseAction.next
        x.client.withRequest { r in
            guard let f = x.ctx.features else {
                action = local(r, x, table: table, loadedAt: w.loadedAt)
                return
            }
            guard f.hasModel else {
                action = unnamed(x, f)
                return
            }
            action = resolve(x, r, f, table: table)
        }
        return action
    }

    static func responseID(_ x: Exchange) -> ResponseID? {
        var id: ResponseID?
        x.client.withRequest { r in id = x.ctx.features?.responseID(r) }
        return id
    }

    /// Without `models:`: the first pool of the right protocol.
    static func passThrough(_ x: Exchange) -> PhaseAction {
        let w = x.worker
        let f = x.ctx.features
        if f == nil {
            var allowed = true
            x.client.withRequest { r in allowed = x.settings.passthroughPolicy == .defaultPool || isModelList(r) }
            if !allowed { return .respond(LocalResponse(notFound())) }
        }
        let v2 = f?.traits.server == .v2
        let pool = pinnedPool(x) ?? (v2 ? (w.pools.first { $0.serverProtocol == .kserveV2 } ?? w.defaultPool) : w.defaultPool)
        guard let pool else { return .respond(LocalResponse(.unavailable("No pool is configured."))) }
        x.ctx.target.pool = pool
        if w.accessLog != nil || x.settings.redis != nil || x.ctx.trace?.context.sampled == true, let f {
            x.client.withRequest { r in x.ctx.target.clientModel = modelName(f, r).map { String(decoding: $0, as: UTF8.self) } }
        }
        return .next
    }

    /// The pool of the pinned endpoint, if it is in one.
    static func pinnedPool(_ x: Exchange) -> UpstreamPool? {
        guard let pinned = x.ctx.target.pinned else { return nil }
        return x.worker.pools.first { p in p.endpoints.contains { $0.config.authority == pinned } }
    }

    /// With `models:`, a request that names no model: retrieve and cancel of a stored response
    /// go where it is (or, unknown, to the default pool, whose server answers 404); KServe's
    /// health to the first v2 pool; anything else must name one.
    static func unnamed(_ x: Exchange, _ f: RequestFeatures) -> PhaseAction {
        let w = x.worker
        switch f.traits.model {
        case .storedResponse, .none:
            let v2 = f.traits.server == .v2
            let pool = pinnedPool(x) ?? (v2 ? (w.pools.first { $0.serverProtocol == .kserveV2 } ?? w.defaultPool) : w.defaultPool)
            guard let pool else { return .respond(LocalResponse(.unavailable("No pool is configured."))) }
            x.ctx.target.pool = pool
            return .next
        default:
            let names = w.modelTable.entries.prefix(5).map { String(decoding: $0.name, as: UTF8.self) }.joined(separator: ", ")
            let where_ = switch f.traits.model {
            case .formField: "a 'model' form field"
            case .queryParameter: "a 'model' query parameter (?model=NAME)"
            case .pathSegment: "the model's name in the path"
            default: "'model' in the request body"
            }
            return .respond(LocalResponse(.invalidRequest("This gateway serves several models; name one with \(where_) (\(names)\(w.modelTable.entries.count > 5 ? ", ..." : "")).",
                                                          param: "model", code: "model_required")))
        }
    }

    /// The model's name as the client sent it, decoded (JSON escapes, `%` escapes); nil when
    /// it names none. Allocates only when it must decode.
    static func modelName(_ f: RequestFeatures, _ r: DownstreamRequest) -> [UInt8]? {
        if let t = f.targetModel {
            let target = r.target
            if !f.targetModelEncoded { return Array(target.slice(t)) }
            var out = [UInt8](repeating: 0, count: t.count)
            let n = out.withUnsafeMutableBytes { QueryString.percentDecode(target, t, plusIsSpace: f.traits.model == .queryParameter, into: $0) }
            guard let n else { return Array(target.slice(t)) }
            return Array(out[0..<n])
        }
        guard f.scanned.hasModel else { return nil }
        if f.scanned.modelEscaped { return Array(JSONString.decode(r.body, f.scanned.model).utf8) }
        return Array(r.body.slice(f.scanned.model))
    }

    static func resolve(_ x: Exchange, _ r: DownstreamRequest, _ f: RequestFeatures, table: ModelTable) -> PhaseAction {
        let w = x.worker
        let body = r.body
        // The usual case (a JSON body's unescaped model) is compared in place: no copy.
        let inPlace = f.targetModel == nil && !f.scanned.modelEscaped
        let decoded: [UInt8] = inPlace ? [] : (modelName(f, r) ?? [])
        let raw = inPlace ? body.slice(f.scanned.model) : UnsafeRawBufferPointer(start: nil, count: 0)
        let user = f.scanned.user
        let resolved = decoded.withUnsafeBytes { d -> ResolvedTarget? in
            table.resolve(inPlace ? raw : d, stickyKey: { sticky in
                switch sticky {
                case .none: return nil
                case .user:
                    guard let u = user else { return nil }
                    return ModelTable.hash(body.slice(u))
                case .header(let name):
                    return r.header(named: name).map { ModelTable.hash($0) }
                }
            }, random: { w.nextRandom() })
        }
        let name = { inPlace ? String(decoding: raw, as: UTF8.self) : String(decoding: decoded, as: UTF8.self) }
        guard let t = resolved else { return .respond(LocalResponse(.modelNotFound(name()))) }
        let pool = w.pools[t.pool]
        let wantsV2 = f.traits.server == .v2
        if wantsV2 != (pool.serverProtocol == .kserveV2) {
            var e = OpenAIError.modelNotFound(name())
            e.message = wantsV2
                ? "The model '\(name())' is not served over the Open Inference Protocol (v2): its pool '\(pool.name)' speaks the OpenAI API."
                : "The model '\(name())' is served over the Open Inference Protocol (v2) only: its pool '\(pool.name)' has protocol kserve_v2."
            return .respond(LocalResponse(e))
        }
        x.ctx.target.pool = pool
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
        // The name is rewritten where it lives in the body (JSON, form field); a name in the
        // query or the path goes upstream as the client wrote it.
        if f.targetModel == nil && (t.rewriteModel || f.scanned.modelEscaped) { x.ctx.target.upstreamModel = t.upstreamModel }
        x.ctx.target.resolvedModel = t.upstreamModel
        if w.accessLog != nil || x.settings.redis != nil || x.ctx.trace?.context.sampled == true { x.ctx.target.clientModel = name() }
        if t.metricSlot >= 0 { w.metrics.add(t.metricSlot) }
        return .next
    }

    static func isModelList(_ r: DownstreamRequest) -> Bool {
        let p = Bytes.prefix(r.target, before: UInt8(ascii: "?"))
        return r.head.method == .get && (p.elementsEqual("/v1/models".utf8) || p.elementsEqual("/health".utf8))
    }

    static func notFound() -> OpenAIError {
        .client(404, "Unknown request path. This gateway serves vLLM's inference API (see its README: chat, completions, embeddings, responses, messages, rerank, score, pooling, classify, tokenize, audio, realtime, KServe v2); other paths are refused (passthrough: deny).",
                code: "not_found")
    }

    /// With `models:`, what Sluice answers itself for a path outside vLLM's table, or where
    /// `passthrough: default_pool` sends it.
    static func local(_ r: DownstreamRequest, _ x: Exchange, table: ModelTable, loadedAt: Int) -> PhaseAction {
        let p = Bytes.prefix(r.target, before: UInt8(ascii: "?"))
        if r.head.method == .get && p.elementsEqual("/v1/models".utf8) {
            return .respond(LocalResponse(status: 200, contentType: "application/json", body: table.modelList(created: loadedAt)))
        }
        if r.head.method == .get && p.elementsEqual("/health".utf8) {
            return .respond(LocalResponse(status: 200, contentType: "text/plain", body: []))
        }
        guard x.settings.passthroughPolicy == .defaultPool else { return .respond(LocalResponse(notFound())) }
        let w = x.worker
        // The pool of the model a JSON body names, if it names a configured one.
        if let (range, escaped) = RequestScanner.topLevelModel(r.body) {
            let name = escaped ? Array(JSONString.decode(r.body, range).utf8) : Array(r.body.slice(range))
            if let t = name.withUnsafeBytes({ table.resolve($0, stickyKey: { _ in nil }, random: { w.nextRandom() }) }) {
                x.ctx.target.pool = w.pools[t.pool]
                x.ctx.target.clientModel = String(decoding: name, as: UTF8.self)
                return .next
            }
        }
        guard let pool = w.defaultPool else { return .respond(LocalResponse(.unavailable("No pool is configured."))) }
        x.ctx.target.pool = pool
        return .next
    }

    /// The path for the access log: without its query (which may hold secrets), at most 200 bytes.
    static func logPath(_ target: UnsafeRawBufferPointer) -> String {
        String(decoding: Bytes.prefix(target, before: UInt8(ascii: "?")).prefix(200), as: UTF8.self)
    }
}
