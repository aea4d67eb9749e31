/// A Prometheus histogram's state: cumulative rendering happens at exposition.
public struct SimHistogram: Sendable {
    /// Upper bounds, ascending, without +Inf.
    public let bounds: [Double]
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count + 1)
    }

    public mutating func observe(_ v: Double) {
        var i = 0
        while i < bounds.count && v > bounds[i] { i += 1 }
        counts[i] += 1
        sum += v
        count += 1
    }

    // vLLM 0.32's buckets (from ../shared/vllm-reference/metrics-after-load.txt).
    static let tokens: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    static let iterationTokens: [Double] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
    static let n: [Double] = [1, 2, 5, 10, 20]
    static let ttft: [Double] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                                 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
    static let itl: [Double] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                                10.0, 20.0, 40.0, 80.0]
    static let latency: [Double] = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                                    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
    static let preemptions: [Double] = [1, 2, 3, 4, 5, 10, 20]
}
