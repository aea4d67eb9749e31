import SluiceLLM

/// The Prometheus text parser and the vLLM extraction never crash and return ranges inside
/// the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var p = PrometheusText(bytes)
    var n = 0
    while let sample = try? p.next(), n < 10_000 {
        precondition(sample.name.end <= size)
        n += 1
    }
    _ = try? VLLMMetrics.extract(bytes)
    return 0
}
