/// Renders merged shard values in the Prometheus text format 0.0.4, plus gauges computed at
/// scrape time.
public struct PrometheusExposition {
    /// A value read at scrape time: a gauge, or a counter kept outside the shards (an atomic
    /// of another thread, such as the trace exporter's).
    public struct Gauge {
        public var name: String
        public var help: String
        public var samples: [(labels: [(String, String)], value: Double)]
        public var isCounter = false
        public init(name: String, help: String, samples: [(labels: [(String, String)], value: Double)], counter: Bool = false) {
            self.name = name
            self.help = help
            self.samples = samples
            self.isCounter = counter
        }
    }

    /// Sums the shards slot by slot.
    public static func merge(_ shards: [[Double]], slots: Int) -> [Double] {
        var total = Array(repeating: 0.0, count: slots)
        for s in shards {
            for i in 0..<min(slots, s.count) { total[i] += s[i] }
        }
        return total
    }

    public static func render(schema: MetricsSchema, values: [Double], gauges: [Gauge]) -> String {
        let st = schema.snapshot
        var out = ""
        for (fi, f) in st.families.enumerated() {
            let series = st.series.filter { $0.family == fi }
            out += "# HELP \(f.name) \(escapeHelp(f.help))\n"
            out += "# TYPE \(f.name) \(f.kind == .counter ? "counter" : "histogram")\n"
            for s in series {
                let labels = zip(f.labels, s.values).map { ($0, $1) }
                switch f.kind {
                case .counter:
                    out += "\(f.name)\(labelText(labels)) \(number(value(values, s.slot)))\n"
                case .histogram:
                    var cumulative = 0.0
                    for (bi, b) in f.buckets.enumerated() {
                        cumulative += value(values, s.slot + bi)
                        out += "\(f.name)_bucket\(labelText(labels + [("le", number(b))])) \(number(cumulative))\n"
                    }
                    cumulative += value(values, s.slot + f.buckets.count)
                    out += "\(f.name)_bucket\(labelText(labels + [("le", "+Inf")])) \(number(cumulative))\n"
                    out += "\(f.name)_sum\(labelText(labels)) \(number(value(values, s.slot + f.buckets.count + 1)))\n"
                    out += "\(f.name)_count\(labelText(labels)) \(number(cumulative))\n"
                }
            }
        }
        for g in gauges {
            out += "# HELP \(g.name) \(escapeHelp(g.help))\n# TYPE \(g.name) \(g.isCounter ? "counter" : "gauge")\n"
            for s in g.samples { out += "\(g.name)\(labelText(s.labels)) \(number(s.value))\n" }
        }
        return out
    }

    static func value(_ v: [Double], _ i: Int) -> Double { i < v.count ? v[i] : 0 }

    static func labelText(_ labels: [(String, String)]) -> String {
        if labels.isEmpty { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// Label values escape backslash, double quote and newline.
    public static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingAll("\\", "\\\\").replacingAll("\n", "\\n")
    }

    /// Integers without a fraction, others in Swift's shortest round-trip form.
    public static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}

extension String {
    func replacingAll(_ a: Character, _ b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
