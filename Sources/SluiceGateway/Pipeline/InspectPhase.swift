package import SluiceHTTP
import SluiceIO
package import SluiceLLM

/// What the inspect phase learned from a request to one of vLLM's API paths (``LLMEndpoint``):
/// enough for routing, admission, metrics and the relay, kept as plain values (the body itself
/// stays where it was read). Trivially copyable on purpose — no references — so it costs no
/// reference counting.
package struct RequestFeatures {
    var endpoint: LLMEndpoint
    /// `endpoint.traits`, read once (a call into SluiceLLM per read otherwise).
    var traits: LLMEndpoint.Traits
    package var scanned: ScannedRequest
    /// The model's name when it is in the request target rather than the body (the realtime
    /// query's `model`, KServe v2's path segment): offsets into the target, `%`-encoded when
    /// `targetModelEncoded`. Nil for body models (``ScannedRequest/model``) and for none.
    var targetModel: ByteRange?
    var targetModelEncoded = false
    /// The stored response (Responses API) this request addresses: the path's id for retrieve
    /// and cancel (in the target, maybe `%`-encoded), `previous_response_id` for a follow-up (in
    /// the body); checked at inspect, read by ``responseID(_:)`` when it is routed (offsets, so
    /// the features every request carries stay small).
    var responseIDRange: ByteRange?
    var responseIDInTarget = false
    var responseIDEncoded = false
    /// The client asked for a stream.
    var stream: Bool { scanned.stream == true }
    /// Sluice asked the model server for usage the client did not ask for, so the usage-only
    /// chunk must be kept from the client.
    var injectedUsage = false
    /// Chained prefix block hashes (in the worker's scratch buffer, valid until the next inspect).
    package var prefixBlocks = 0

    /// The request names a model (in the body, the query or the path).
    var hasModel: Bool { targetModel != nil || scanned.hasModel }

    /// The stored response's id, copied inline (nil when the request names none).
    func responseID(_ r: DownstreamRequest) -> ResponseID? {
        guard let range = responseIDRange else { return nil }
        return try? InspectPhase.responseID(responseIDInTarget ? r.target : r.body, range, encoded: responseIDEncoded)
    }
}

/// Per-worker scratch space for the inspect phase, allocated once.
package final class InspectScratch {
    let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 1024)
    package let prefixHashes = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 256)
    deinit {
        segments.deallocate()
        prefixHashes.deallocate()
    }
}

/// Inspect: a request to a path of vLLM's API (``LLMEndpoint/match(path:)``, served on its
/// method) is read where its endpoint keeps what the gateway routes by — a JSON body scanned in
/// place and validated strictly (malformed JSON, a wrong shape or an out-of-range number is a
/// 400 naming the problem, in the endpoint's error shape, before any model server is bothered),
/// a multipart form's fields (audio), the query (realtime), the path (KServe v2, stored
/// responses) — and the prompt's chained prefix block hashes are computed into the worker's
/// scratch space. Other requests pass uninspected (`features` stays nil: the resolve phase
/// answers them itself or applies `passthrough`).
package enum InspectPhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        var action = PhaseAction.next
        x.client.withRequest { r in
            guard let m = LLMEndpoint.match(path: r.target) else { return }
            let t = m.endpoint.traits
            guard t.method == (r.head.method == .get ? .get : .post), r.head.method == .get || r.head.method == .post else { return }
            x.ctx.errorShape = t.errors
            x.ctx.endpoint = m.endpoint
            if t.upgrade && x.client.canUpgrade, let u = r.header(named: "upgrade"),
               u.count == 9, ASCIICase.equal(u, ByteRange(0, 9), "websocket") {
                x.ctx.upgrade = true
            }
            do throws(OpenAIError) {
                x.ctx.features = try inspect(m, traits: t, request: r, scratch: x.worker.inspectScratch)
            } catch {
                action = .respond(LocalResponse(error))
            }
        }
        return action
    }

    /// The features of a request to `path` (nil when it is no path of the table or is sent
    /// with another method).
    package static func inspect(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer, contentType: UnsafeRawBufferPointer? = nil,
                        scratch: InspectScratch) throws(OpenAIError) -> RequestFeatures? {
        guard let m = LLMEndpoint.match(path: path), m.endpoint.traits.method == (method == .get ? .get : .post),
              method == .get || method == .post else { return nil }
        return try inspect(m, traits: m.endpoint.traits, target: path, body: body, contentType: contentType, scratch: scratch)
    }

    static func inspect(_ m: LLMEndpoint.Match, traits t: LLMEndpoint.Traits, request r: DownstreamRequest,
                        scratch: InspectScratch) throws(OpenAIError) -> RequestFeatures {
        try inspect(m, traits: t, target: r.target, body: r.body, contentType: t.body == .multipart ? r.header(named: "content-type") : nil,
                    scratch: scratch)
    }

    static func inspect(_ m: LLMEndpoint.Match, traits t: LLMEndpoint.Traits, target: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                        contentType: UnsafeRawBufferPointer?, scratch: InspectScratch) throws(OpenAIError) -> RequestFeatures {
        let endpoint = m.endpoint
        let scanned: ScannedRequest
        do {
            switch t.body {
            case .json:
                switch endpoint {
                case .chatCompletions:
                    scanned = try RequestScanner().scan(body, endpoint: .chatCompletions, segments: scratch.segments, requireModel: false)
                case .completions:
                    scanned = try RequestScanner().scan(body, endpoint: .completions, segments: scratch.segments, requireModel: false)
                case .embeddings:
                    scanned = try RequestScanner().scan(body, endpoint: .embeddings, segments: scratch.segments, requireModel: false)
                default:
                    scanned = try RequestScanner().scan(body, for: endpoint, segments: scratch.segments)
                }
            case .multipart:
                guard let ct = contentType else {
                    throw OpenAIError.invalidRequest("This endpoint takes a multipart/form-data body (Content-Type: multipart/form-data; boundary=...).",
                                                     code: "invalid_content_type")
                }
                scanned = try RequestScanner().scanMultipart(body, contentType: ct)
            case .none:
                scanned = ScannedRequest()
            }
        } catch let e as RequestScanError {
            throw e.openAIError
        } catch let e as OpenAIError {
            throw e
        } catch {
            throw OpenAIError.invalidRequest("The request body could not be read.")
        }
        var f = RequestFeatures(endpoint: endpoint, traits: t, scanned: scanned)
        switch t.model {
        case .queryParameter:
            if let (range, encoded) = QueryString.value(named: "model", in: target), range.count > 0 {
                f.targetModel = range
                f.targetModelEncoded = encoded
            }
        case .pathSegment:
            f.targetModel = m.parameter
            f.targetModelEncoded = m.parameterEncoded
        case .storedResponse:
            if let id = m.parameter {
                _ = try responseID(target, id, encoded: m.parameterEncoded)  // a 400 now if unusable
                f.responseIDRange = id
                f.responseIDInTarget = true
                f.responseIDEncoded = m.parameterEncoded
            }
        case .jsonField, .formField, .none:
            break
        }
        if let prev = scanned.previousResponseID {
            _ = try responseID(body, prev, encoded: false)
            f.responseIDRange = prev
        }
        if t.prefixAffinity && scanned.segmentCount > 0 {
            let segments = UnsafeBufferPointer(rebasing: scratch.segments[0..<min(scanned.segmentCount, scratch.segments.count)])
            let seed = PrefixHasher.mixSeed(0x5EED, UnsafeRawBufferPointer(rebasing: body[Int(scanned.model.start)..<Int(scanned.model.end)]))
            f.prefixBlocks = PrefixHasher.hashPrompt(body: body, segments: segments, seed: seed, into: scratch.prefixHashes)
        }
        return f
    }

    /// A response id from `buffer[range]` (decoded when `%`-encoded), at most
    /// ``ResponseID/capacity`` bytes (vLLM's are 21, OpenAI's 53).
    static func responseID(_ buffer: UnsafeRawBufferPointer, _ range: ByteRange, encoded: Bool) throws(OpenAIError) -> ResponseID {
        var id: ResponseID?
        if encoded {
            var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            id = withUnsafeMutableBytes(of: &out) { o -> ResponseID? in
                guard let n = QueryString.percentDecode(buffer, range, plusIsSpace: false, into: o) else { return nil }
                return ResponseID(UnsafeRawBufferPointer(rebasing: o[0..<n]))
            }
        } else {
            id = ResponseID(buffer.slice(range))
        }
        guard let id, id.count > 0 else {
            throw OpenAIError.invalidRequest("Invalid response id: at most \(ResponseID.capacity) bytes.", param: "response_id", code: "invalid_response_id")
        }
        return id
    }
}
