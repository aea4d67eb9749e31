import SluiceLLM

/// The request scanner on arbitrary bytes, for each endpoint kind: it either throws or returns
/// ranges inside the input; and it accepts exactly what the strict validator accepts. What it
/// accepts is then reserved against token limits (the admission arithmetic): counts are in
/// range and no reservation traps, whatever the numbers (the corpus holds extreme ones).
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
    return 0
}
