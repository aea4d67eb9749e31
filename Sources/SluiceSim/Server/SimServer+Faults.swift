import SluiceIO
import SluiceHTTP

/// Injected faults for tests of what a gateway does with a bad model server (`--fail-rate`,
/// `--fail-status`, `--delay`): a seeded share of generation requests is answered with an
/// error at once, and every generation request can be held back before it reaches the engine
/// (its time to first token grows by the delay). Off by default.
extension SimServer {
    func generateWithFaults(_ req: HTTPServerRequest, _ resp: HTTPResponder, kind: Pending.Kind) {
        if options.failRate > 0 {
            faults &+= 1
            let u = Double(SimRandom.mix(options.seed ^ 0xFA17 &+ faults) >> 11) * (1.0 / 9_007_199_254_740_992.0)
            if u < options.failRate {
                sendError(resp, status: options.failStatus, message: "Injected fault (sluice sim --fail-rate).",
                          type: options.failStatus == 429 ? "TooManyRequestsError" : "InternalServerError", param: nil)
                return
            }
        }
        guard options.delayMilliseconds > 0 else { return generate(req, resp, kind: kind) }
        // The loop's timer heap holds the timer until it fires.
        let t = Timer { [weak self] in
            guard let self, resp.isOpen else { return }
            self.generate(req, resp, kind: kind)
        }
        loop.schedule(t, after: .milliseconds(Int64(options.delayMilliseconds)))
    }
}
