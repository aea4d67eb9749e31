import SluiceHTTP
import SluiceIO
import SluiceLLM

/// What the inspect phase learned from an OpenAI request body: enough for routing, metrics and
/// the relay, kept as plain values (the body itself stays where it was read).
struct RequestFeatures {
    var endpoint: OpenAIEndpoint
    var scanned: ScannedRequest
    /// The client asked for a stream.
    var stream: Bool { scanned.stream == true }
    /// Sluice added `stream_options.include_usage` upstream, so the usage-only chunk must be
    /// kept from the client.
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

extension Worker {
    /// The inspect phase: for the OpenAI inference endpoints (POST /v1/chat/completions,
    /// /v1/completions, /v1/embeddings) the body is scanned in place and validated strictly —
    /// malformed JSON or a wrong shape is a 400 naming the problem, before any model server is
    /// bothered. Other requests pass through uninspected (nil).
    func inspect(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) throws(OpenAIError) -> RequestFeatures? {
        guard method == .post else { return nil }
        var p = path
        if let q = p.firstIndex(of: UInt8(ascii: "?")) { p = UnsafeRawBufferPointer(rebasing: p[..<q]) }
        guard let endpoint = OpenAIEndpoint(path: p) else { return nil }
        let scanned: ScannedRequest
        do {
            scanned = try RequestScanner().scan(body, endpoint: endpoint, segments: inspectScratch.segments)
        } catch {
            throw error.openAIError
        }
        var f = RequestFeatures(endpoint: endpoint, scanned: scanned)
        let segments = UnsafeBufferPointer(rebasing: inspectScratch.segments[0..<min(scanned.segmentCount, inspectScratch.segments.count)])
        let seed = PrefixHasher.mixSeed(0x5EED, UnsafeRawBufferPointer(rebasing: body[Int(scanned.model.start)..<Int(scanned.model.end)]))
        f.prefixBlocks = PrefixHasher.hashPrompt(body: body, segments: segments, seed: seed, into: inspectScratch.prefixHashes)
        return f
    }

    /// Writes the body with `"stream_options":{"include_usage":true}` added into a pool buffer,
    /// when the client streams without asking for usage and `proxy.request_usage` is on (the one
    /// place the gateway copies a body: it must change). Nil when there is nothing to add.
    func bodyRequestingUsage(_ body: UnsafeRawBufferPointer, _ f: RequestFeatures) -> ByteBuffer? {
        guard settings.proxy.requestUsage, f.stream, f.scanned.includeUsage == nil, f.endpoint != .embeddings else { return nil }
        var out = loop.bufferPool.take(minimumCapacity: body.count + 64)
        if let value = f.scanned.streamOptionsValue {
            // An options object without include_usage: add the member after its `{`.
            let open = Int(value.start)
            guard body[open] == UInt8(ascii: "{") else { return nil }
            var k = open + 1
            while k < Int(value.end) && (body[k] == 32 || body[k] == 9 || body[k] == 10 || body[k] == 13) { k += 1 }
            let empty = body[k] == UInt8(ascii: "}")
            out.append(UnsafeRawBufferPointer(rebasing: body[0...open]))
            out.append(empty ? "\"include_usage\":true" : "\"include_usage\":true,")
            out.append(UnsafeRawBufferPointer(rebasing: body[(open + 1)...]))
        } else {
            let close = f.scanned.closingBrace
            out.append(UnsafeRawBufferPointer(rebasing: body[0..<close]))
            out.append(f.scanned.memberCount > 0 ? ",\"stream_options\":{\"include_usage\":true}" : "\"stream_options\":{\"include_usage\":true}")
            out.append(UnsafeRawBufferPointer(rebasing: body[close...]))
        }
        return out
    }
}
