import SluiceHTTP
import SluiceIO
import SluiceLLM

/// What the inspect phase learned from an OpenAI request body: enough for routing, metrics and
/// the relay, kept as plain values (the body itself stays where it was read). Trivially
/// copyable on purpose — no references — so it costs no reference counting.
struct RequestFeatures {
    var endpoint: OpenAIEndpoint
    var scanned: ScannedRequest
    /// The client asked for a stream.
    var stream: Bool { scanned.stream == true }
    /// Sluice asked the model server for usage the client did not ask for, so the usage-only
    /// chunk must be kept from the client.
    var injectedUsage = false
    /// Chained prefix block hashes (in the worker's scratch buffer, valid until the next inspect).
    var prefixBlocks = 0
}

/// Per-worker scratch space for the inspect phase, allocated once.
final class InspectScratch {
    let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 1024)
    let prefixHashes = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 256)
    deinit {
        segments.deallocate()
        prefixHashes.deallocate()
    }
}

/// Inspect: for the OpenAI inference endpoints (POST /v1/chat/completions, /v1/completions,
/// /v1/embeddings) the body is scanned in place and validated strictly — malformed JSON, a
/// wrong shape or an out-of-range number is a 400 naming the problem, before any model server
/// is bothered — and the prompt's chained prefix block hashes are computed into the worker's
/// scratch space. Other requests pass uninspected (`features` stays nil).
enum InspectPhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        var action = PhaseAction.next
        x.client.withRequest { r in
            do throws(OpenAIError) {
                x.ctx.features = try inspect(method: r.head.method, path: r.target, body: r.body, scratch: x.worker.inspectScratch)
            } catch {
                action = .respond(LocalResponse(error))
            }
        }
        return action
    }

    static func inspect(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                        scratch: InspectScratch) throws(OpenAIError) -> RequestFeatures? {
        guard method == .post, let endpoint = OpenAIEndpoint(path: path) else { return nil }
        let scanned: ScannedRequest
        do {
            scanned = try RequestScanner().scan(body, endpoint: endpoint, segments: scratch.segments)
        } catch {
            throw error.openAIError
        }
        var f = RequestFeatures(endpoint: endpoint, scanned: scanned)
        let segments = UnsafeBufferPointer(rebasing: scratch.segments[0..<min(scanned.segmentCount, scratch.segments.count)])
        let seed = PrefixHasher.mixSeed(0x5EED, UnsafeRawBufferPointer(rebasing: body[Int(scanned.model.start)..<Int(scanned.model.end)]))
        f.prefixBlocks = PrefixHasher.hashPrompt(body: body, segments: segments, seed: seed, into: scratch.prefixHashes)
        return f
    }
}
