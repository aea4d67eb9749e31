public import SluiceIO

/// The `tracing:` section: where spans go and how many. No section: tracing is off.
public struct TracingConfiguration: Sendable, Equatable {
    /// The collector's address (resolved when the config is loaded).
    public var address: SocketAddress
    /// `host:port` as configured (the `Host` header).
    public var authority: String
    /// The endpoint's path prefix; spans are posted to `path + "/v1/traces"`.
    public var basePath: String
    /// Share of traces recorded, by trace id (0...1).
    public var sampleRatio = 0.01
    /// Requests that end in an error are recorded whatever the ratio says.
    public var alwaysSampleErrors = true
    /// A client's `traceparent` with the sampled flag set is recorded (and one without it is
    /// not); off, the ratio alone decides.
    public var parentBased = false
    /// `service.name` of the resource.
    public var serviceName = "sluice"
    /// Spans per export request. Larger than OpenTelemetry SDKs' 512: a gateway at ratio 1
    /// records three spans per request, and each export costs the exporter thread two wake-ups
    /// (measured: a quarter of tracing's CPU at 512 on a 2-core machine).
    public var maxBatchSize = 2048
    /// Spans waiting for export across all workers; beyond it new spans are dropped (counted).
    /// ~300 bytes a span: about 5 MB at most.
    public var maxQueueSize = 16384
    /// Export at least this often while spans wait.
    public var exportInterval: Duration = .seconds(2)
    /// An export that takes longer fails (its spans are dropped and counted; no retry).
    public var exportTimeout: Duration = .seconds(5)

    public init(address: SocketAddress, authority: String, basePath: String = "") {
        self.address = address
        self.authority = authority
        self.basePath = basePath
    }

    public var tracesPath: String { (basePath.hasSuffix("/") ? String(basePath.dropLast()) : basePath) + "/v1/traces" }

    /// Splits `http://host:port[/path]` into authority and path (nil if not http://host[:port]).
    /// The port defaults to 4318 (OTLP/HTTP).
    public static func splitEndpoint(_ url: String) -> (host: String, port: UInt16, authority: String, path: String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        let path = String(rest[slash...])
        if authority.isEmpty || authority.contains("@") || path.contains("?") || path.contains("#") { return nil }
        if let (h, p) = SocketAddress.split(authority) { return (h, p, authority, path) }
        if !authority.contains(":") || (authority.hasPrefix("[") && authority.hasSuffix("]")) {
            let host = authority.hasPrefix("[") ? String(authority.dropFirst().dropLast()) : authority
            return (host, 4318, authority + ":4318", path)
        }
        return nil
    }
}

/// Head sampling by trace id, as OpenTelemetry's `TraceIdRatioBased` sampler does it: the trace
/// id's last 8 bytes (random in W3C ids), shifted to 63 bits, below `ratio × 2^63`. Every
/// service that samples by ratio this way keeps the same traces.
public struct TraceIDSampler: Sendable, Equatable {
    public let threshold: UInt64
    public init(ratio: Double) {
        threshold = ratio >= 1 ? 1 << 63 : ratio <= 0 ? 0 : UInt64(ratio * Double(UInt64(1) << 63))
    }
    @inline(__always)
    public func sampled(_ t: TraceID) -> Bool { t.lo >> 1 < threshold }
}
