import SluiceIO
import SluiceRouting

/// Route: read → decide → commit (`Router.pick`, decisions in SluiceRouting). The first
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
        let picked = Router.pick(pool: pool, scored: scored, adapter: adapter?.name, prefixHashes: hashes,
                                 index: w.prefixIndex, excluding: x.ctx.attempt.excluded, now: x.loop.now,
                                 staleness: x.settings.telemetry.staleness, flow: x.settings.flow.enabled ? x.settings.flow : nil,
                                 scratch: w.routerScratch, random: &w.random)
        guard let (ep, reason) = picked else {
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
        x.ctx.attempt.routeReason = reason
        x.ctx.attempt.endpointName = ep.config.authority
        // Commit: the chosen endpoint now has these prefix blocks (vLLM will cache them there).
        if hashes.count > 0 { w.prefixIndex.record(hashes, endpoint: ep.runtime.id) }
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
