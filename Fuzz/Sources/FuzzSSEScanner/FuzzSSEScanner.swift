import SluiceLLM

/// The SSE scanner over the input whole and split in two: the same events, covering the stream
/// without gaps, and the same facts read from them (an event within one chunk is read from what
/// delimiting it found, one split across chunks from its copy), except that a split event over
/// the copy limit is not read at all.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    func events(cut: Int) -> [SSEEvent] {
        var s = SSEScanner(maxEventBytes: 1024)
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
    let whole = events(cut: size)
    let split = events(cut: size > 0 ? Int(bytes[0]) % size : 0)
    precondition(whole.map { [$0.start, $0.end] } == split.map { [$0.start, $0.end] }, "split changes event boundaries")
    for (w, s) in zip(whole, split) {
        precondition(w == s || (!s.inspected && s.end - s.start > 1024), "split changes what an event says")
    }
    return 0
}
