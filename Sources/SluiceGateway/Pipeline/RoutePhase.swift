import SluiceIO
import SluiceLLM
import SluiceRouting

/// Route: read → decide → commit (`Router.route`, decisions in SluiceRouting). The first
/// attempt routes with the prompt's prefix hashes; a retry (they may be overwritten by then)
/// routes by load and adapter, avoiding the endpoint that failed. The chosen endpoint is leased
/// (counted in its in-flight load until the attempt ends) and committed to the prefix index.
/// When no endpoint has the requested LoRA adapter, one is asked to load it (once per request)
/// and the phase runs again when that is done.
enum RoutePhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        guard let pool = x.pool else { return .next }  // answered already
        x.ctx.attempt.number += 1
        let w = x.worker
        let first = x.ctx.attempt.number == 1
        if let pinned = x.ctx.target.pinned { return routePinned(x, pinned, first: first) }
        let blocks = x.ctx.features?.prefixBlocks ?? 0
        if first, let saved = x.ctx.attempt.savedPrefixHashes {
            saved.withUnsafeBufferPointer { h in
                _ = UnsafeMutableBufferPointer(rebasing: w.inspectScratch.prefixHashes[0..<h.count]).initialize(fromContentsOf: h)
            }
        }
        let scored = x.ctx.features != nil
        // After a fallback the scratch space holds other requests' hashes (issue 26).
        let hashes = scored && first && x.ctx.target.fallbackNext == 0
            ? UnsafeBufferPointer(rebasing: w.inspectScratch.prefixHashes[0..<blocks])
            : UnsafeBufferPointer(start: nil, count: 0)
        let adapter = x.ctx.target.adapter
        // The prompt's size as admission estimates it (bytes / 4): the cost model's own prefill
        // there is this minus what that endpoint holds of its prefix.
        let promptTokens = x.ctx.features.map { TokenReservation.promptTokens($0.scanned) } ?? 0
        let decided = Router.route(pool: pool, scored: scored, adapter: adapter?.name, prefixHashes: hashes,
                                   promptTokens: promptTokens, index: w.prefixIndex, excluding: x.ctx.attempt.excluded,
                                   now: x.loop.now, staleness: x.settings.telemetry.staleness,
                                   flow: x.settings.flow.enabled ? x.settings.flow : nil,
                                   scratch: w.routerScratch, random: &w.random)
        guard let d = decided else {
            if first, !x.ctx.attempt.loadedAdapter, let a = adapter, let path = a.path,
               let target = Router.loadTarget(pool: pool, adapter: a.name, now: x.loop.now) {
                waitForAdapter(x, a.name, path: path, on: target)
                return .wait
            }
            if FallbackPhase.advance(x, .noEndpoint) { return .again }
            return .respond(LocalResponse(adapter != nil
                ? .unavailable("No endpoint of pool '\(pool.name)' can serve adapter '\(adapter!.name)'.")
                : .unavailable("No endpoints are available in pool '\(pool.name)'.")))
        }
        let ep = d.endpoint
        x.ctx.attempt.routeReason = d.reason
        x.ctx.attempt.endpointName = ep.config.authority
        x.ctx.attempt.predictedTTFT = d.predictedTTFT
        // Commit: the chosen endpoint now has these prefix blocks (vLLM will cache them there).
        if hashes.count > 0 { w.prefixIndex.record(hashes, endpoint: ep.runtime.id) }
        // Requests with a prompt report their prefill and first token to the endpoint's
        // counters through the lease (requests the gateway does not read have no prompt to
        // queue there and are left out).
        let tenant = x.ctx.queue.counted ? x.ctx.tenant : nil
        x.ctx.attempt.lease = EndpointLease(ep, flowTenant: tenant, band: x.ctx.queue.band,
                                            prediction: scored ? RoutePrediction(d) : nil)
        return .next
    }

    /// A stored response's request goes to the endpoint holding it, or nowhere: no other
    /// server knows the response (a retry cannot go elsewhere either).
    static func routePinned(_ x: Exchange, _ pinned: String, first: Bool) -> PhaseAction {
        let id = ResolvePhase.responseID(x)?.description ?? "?"
        guard first else {
            return .respond(LocalResponse(.badGateway("The model server holding response '\(id)' (\(pinned)) failed to answer; no other server has it.")))
        }
        var found: UpstreamPool.Endpoint? = nil
        for p in [x.pool].compactMap({ $0 }) + x.worker.pools {
            if let ep = p.endpoints.first(where: { $0.config.authority == pinned }) {
                found = ep
                x.ctx.target.pool = p
                break
            }
        }
        guard let ep = found else {
            return .respond(LocalResponse(.client(404, "Response '\(id)' was made by model server \(pinned), which is no longer in any pool of this gateway; its state is gone. Start a new response without previous_response_id.",
                                                  param: "response_id", code: "response_endpoint_gone")))
        }
        x.ctx.attempt.routeReason = .storedResponse
        x.ctx.attempt.endpointName = ep.config.authority
        x.ctx.attempt.lease = EndpointLease(ep, flowTenant: x.ctx.queue.counted ? x.ctx.tenant : nil, band: x.ctx.queue.band)
        return .next
    }

    /// No endpoint has the adapter registered: have it loaded on `target` (or join a load of it
    /// already in flight), then route again.
    private static func waitForAdapter(_ x: Exchange, _ adapter: String, path: String, on target: UpstreamPool.Endpoint) {
        x.ctx.attempt.loadedAdapter = true
        savePrefixHashes(x)
        // Counted again when the phase runs again.
        x.ctx.attempt.number -= 1
        // The completion holds the exchange: a client that leaves meanwhile ends it, and
        // `resume` then does nothing.
        x.worker.adapterLoader.load(adapter: adapter, path: path, endpoint: target.config, runtime: target.runtime, loop: x.loop) { ok in
            x.resume(ok ? .again : .respond(LocalResponse(.unavailable("Loading LoRA adapter '\(adapter)' failed; try again shortly."))))
        }
    }

    /// Copies the prompt's prefix hashes out of the worker's scratch space before the request
    /// waits for I/O (requests inspected meanwhile reuse the scratch).
    static func savePrefixHashes(_ x: Exchange) {
        guard x.ctx.attempt.savedPrefixHashes == nil, let blocks = x.ctx.features?.prefixBlocks, blocks > 0 else { return }
        x.ctx.attempt.savedPrefixHashes = Array(x.worker.inspectScratch.prefixHashes[0..<blocks])
    }
}
