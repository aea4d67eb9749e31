import SluiceHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let head = HTTPHead(capacity: 64)
    for method in [HTTPMethod.get, .head] {
        var p = HTTP1HeadParser(kind: .response, limits: HTTP1Limits(maxHeadBytes: 4096, maxHeaderCount: 64, maxRequestLine: 1024))
        p.requestMethod = method
        if p.parse(bytes, into: head) == .complete {
            precondition(head.length <= size && (100...999).contains(head.status))
        }
    }
    return 0
}
