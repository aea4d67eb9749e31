import SluiceLLM

/// The request scanner on arbitrary bytes, for each endpoint kind: it either throws or returns
/// ranges inside the input; and it accepts exactly what the strict validator accepts. What it
/// accepts is then reserved against token limits (the admission arithmetic): counts are in
/// range and no reservation traps, whatever the numbers (the corpus holds extreme ones).
/// The same bytes then go through every JSON endpoint of ``LLMEndpoint`` (Anthropic Messages,
/// the Responses API, rerank/score/pooling/classify/tokenize/detokenize, v2 infer), the multipart
/// scanner (as a body, and as growing prefixes of it), the endpoint table (as a request target)
/// and the query reader.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = UnsafeRawBufferPointer(start: data, count: size)
    let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 16)
    defer { segments.deallocate() }
    let valid = (try? JSONValidator.validate(body, maxDepth: 64)) != nil
    for endpoint in [OpenAIEndpoint.chatCompletions, .completions, .embeddings] {
        do {
            let r = try RequestScanner().scan(body, endpoint: endpoint, segments: segments)
            precondition(valid, "scanner accepted invalid JSON")
            precondition(r.model.end <= size && r.closingBrace < size)
            for i in 0..<min(r.segmentCount, segments.count) { precondition(segments[i].range.end <= size) }
            if let n = r.n { precondition(n >= 1 && n <= ScannedRequest.maxCount) }
            if let m = r.maxTokens { precondition(m >= 1 && m <= ScannedRequest.maxCount) }
            if let v = r.includeUsageValue { precondition(v.start >= 0 && v.end <= size && v.start < v.end) }
            for defaultMax in [1, 4096, Int(Int32.max)] {
                let reserved = TokenReservation.estimate(r, endpoint: endpoint, defaultMaxTokens: defaultMax)
                precondition(reserved >= TokenReservation.promptTokens(r))
                _ = TokenReservation.charge(reserved: reserved, promptEstimate: TokenReservation.promptTokens(r), usage: nil, relayedTokens: .max)
            }
            var hashes = [UInt64](repeating: 0, count: 64)
            _ = hashes.withUnsafeMutableBufferPointer { out in
                PrefixHasher.hashPrompt(body: body, segments: UnsafeBufferPointer(rebasing: segments[0..<min(r.segmentCount, segments.count)]),
                                        seed: 1, blockSize: 64, into: out)
            }
        } catch {
            // Rejected; fine. (Valid JSON can still be the wrong shape.)
        }
    }
    for endpoint in LLMEndpoint.allCases where endpoint.traits.body == .json {
        guard let r = try? RequestScanner().scan(body, for: endpoint, segments: segments) else { continue }
        precondition(valid, "scanner accepted invalid JSON for \(endpoint)")
        precondition(r.model.end <= size && r.closingBrace < size)
        precondition(r.hasModel || !(endpoint.traits.modelRequired && endpoint.traits.model == .jsonField))
        for i in 0..<min(r.segmentCount, segments.count) { precondition(segments[i].range.start >= 0 && segments[i].range.end <= size) }
        if let m = r.maxTokens { precondition(m >= 1 && m <= ScannedRequest.maxCount) }
        if let p = r.previousResponseID { precondition(p.start >= 0 && p.end <= size) }
        if let u = r.user { precondition(u.end <= size) }
        _ = TokenReservation.estimate(r, for: endpoint, defaultMaxTokens: Int(Int32.max))
    }
    // Multipart: the whole body, then growing prefixes (the streaming use); parts stay inside.
    let boundary: StaticString = "fuzzB"
    let contentType: StaticString = "multipart/form-data; boundary=fuzzB"
    _ = try? RequestScanner().scanMultipart(body, contentType: UnsafeRawBufferPointer(start: contentType.utf8Start, count: contentType.utf8CodeUnitCount))
    if var m = MultipartScanner(boundary: UnsafeRawBufferPointer(start: boundary.utf8Start, count: boundary.utf8CodeUnitCount), maxHeaderBytes: 256) {
        var end = min(size, 7)
        var steps = 0
        while steps < 10_000 {
            steps += 1
            let prefix = UnsafeRawBufferPointer(rebasing: body[0..<end])
            let step = m.next(prefix, isComplete: end == size)
            if case .part(let p) = step {
                precondition(p.value.start <= p.value.end && p.value.end <= end && p.headers.end <= end)
                continue
            }
            if step != .needMore || end == size { break }
            end = min(size, end * 2 + 1)
        }
    }
    _ = MultipartScanner.boundary(contentType: body)
    // The same bytes as a request target.
    if let m = LLMEndpoint.match(path: body) {
        if let p = m.parameter { precondition(p.start >= 0 && p.end <= size && p.count > 0) }
    }
    if let (r, _) = QueryString.value(named: "model", in: body) {
        precondition(r.start >= 0 && r.end <= size)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: r.count, alignment: 1)
        defer { out.deallocate() }
        if let n = QueryString.percentDecode(body, r, into: out) { precondition(n <= r.count) }
    }
    return 0
}
