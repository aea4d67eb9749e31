import SluiceLLM

/// The SSE scanner over the input whole and split in two: the same events, covering the stream
/// without gaps, and the same facts read from them (an event within one chunk is read from what
/// delimiting it found, one split across chunks from its copy), except that a split event over
/// the copy limit is not read at all. In each response dialect (OpenAI, Anthropic, the Responses
/// API); usage read is never negative and a tally of it never traps.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    func events(cut: Int, _ dialect: ResponseDialect) -> [SSEEvent] {
        var s = SSEScanner(maxEventBytes: 1024, dialect: dialect)
        var out: [SSEEvent] = []
        for piece in [bytes[0..<cut], bytes[cut..<size]] {
            let chunk = UnsafeRawBufferPointer(rebasing: piece)
            var pos = 0
            while case .event(let e, let next) = s.next(chunk, from: pos) {
                precondition(e.start <= e.end && e.end <= size)
                out.append(e)
                pos = next
            }
        }
        return out
    }
    for dialect in [ResponseDialect.openAI, .anthropic, .responses] {
        let whole = events(cut: size, dialect)
        let split = events(cut: size > 0 ? Int(bytes[0]) % size : 0, dialect)
        precondition(whole.map { [$0.start, $0.end] } == split.map { [$0.start, $0.end] }, "split changes event boundaries")
        var tally = UsageTally()
        for (w, s) in zip(whole, split) {
            precondition(w == s || (!s.inspected && s.end - s.start > 1024), "split changes what an event says")
            if let u = w.usage { precondition(u.promptTokens >= 0 && u.completionTokens >= 0 && u.totalTokens >= 0) }
            tally.add(w.payload)
        }
        if dialect != .openAI, let r = ResponseScanner.scan(bytes, dialect: dialect), let id = r.responseID {
            precondition(id.start >= 0 && id.end <= size)
        }
    }
    return 0
}
