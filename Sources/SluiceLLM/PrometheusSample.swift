/// One sample line of the Prometheus text exposition format, as offsets into the scraped body.
public struct PrometheusSample: Sendable, Equatable {
    /// The metric name (e.g. `vllm:num_requests_waiting`).
    public var name: ByteRange
    /// The label list between the braces (empty when there are none); iterate it with
    /// ``PrometheusText/labels(of:in:)``.
    public var labels: ByteRange
    public var value: Double
    /// Milliseconds since the epoch, when the line has one.
    public var timestamp: Int64?

    public init(name: ByteRange, labels: ByteRange, value: Double, timestamp: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestamp = timestamp
    }
}

/// One `name="value"` pair; `value` is the raw contents between the quotes.
public struct PrometheusLabel: Sendable, Equatable {
    public var name: ByteRange
    public var value: ByteRange
    /// The value contains `\\`, `\"` or `\n` escapes (decode with ``PrometheusText/unescape(_:_:into:)``).
    public var escaped: Bool
}

/// Why a scrape body was rejected.
public struct PrometheusParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case invalidName, invalidLabel, unterminatedLabelValue, invalidEscape, invalidValue, invalidTimestamp, trailingGarbage
    }
    /// Offset in the body, and the 1-based line number.
    public var offset: Int
    public var line: Int
    public var reason: Reason

    public var description: String { "Prometheus text: \(reason) at line \(line) (byte \(offset))" }
}
