import SluiceHTTP

/// Decodes the input whole and byte by byte: same payload, same end, or both an error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    func decode(step: Int) -> (payload: Int, end: Int?, failed: Bool) {
        var d = ChunkedDecoder()
        var payload = 0
        var offset = 0
        while offset < size {
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(size, offset + step)])
            var pos = 0
            loop: while true {
                switch d.next(piece, from: pos) {
                case .data(let s, let e):
                    precondition(s >= pos && e <= piece.count && s < e)
                    payload += e - s
                    pos = e
                case .needMore: break loop
                case .done(let end): return (payload, offset + end, false)
                case .error: return (payload, nil, true)
                }
            }
            offset += piece.count
        }
        return (payload, nil, false)
    }
    let a = decode(step: max(size, 1)), b = decode(step: 1)
    precondition(a.end == b.end && a.failed == b.failed && (a.failed || a.payload == b.payload))
    return 0
}
