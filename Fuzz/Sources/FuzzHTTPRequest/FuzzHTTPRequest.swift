import SluiceHTTP

/// Feeds the input to the request head parser whole and split in two at a position taken from
/// the first byte; both must agree, and a complete head's ranges must lie inside the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let head = HTTPHead(capacity: 64)
    var whole = HTTP1HeadParser(kind: .request, limits: HTTP1Limits(maxHeadBytes: 4096, maxHeaderCount: 64, maxRequestLine: 1024))
    let r1 = whole.parse(bytes, into: head)
    if r1 == .complete {
        precondition(head.length <= size)
        for i in 0..<head.count {
            precondition(head[i].name.end <= head[i].value.start && Int(head[i].value.end) <= head.length)
        }
    }
    if size > 1 {
        let cut = Int(bytes[0]) % size
        var split = HTTP1HeadParser(kind: .request, limits: HTTP1Limits(maxHeadBytes: 4096, maxHeaderCount: 64, maxRequestLine: 1024))
        let first = split.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<cut]), into: head)
        let r2 = first == .incomplete ? split.parse(bytes, into: head) : first
        if first == .incomplete { precondition(r2 == r1, "split parse disagrees") }
    }
    return 0
}
