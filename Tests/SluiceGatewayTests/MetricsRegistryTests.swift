import Testing
@testable import SluiceGateway

@Suite struct MetricsTests {
    @Test func countersAndHistogramsRenderInPrometheusFormat() {
        let schema = MetricsSchema()
        let c = schema.family("t_requests_total", help: "Requests.", kind: .counter, labels: ["pool", "code_class"])
        let h = schema.family("t_duration_seconds", help: "Duration.", kind: .histogram, labels: ["pool"], buckets: [0.1, 1])
        let a = schema.series(c, ["p\"1", "2xx"]), b = schema.series(c, ["p\"1", "5xx"]), hs = schema.series(h, ["x"])
        #expect(schema.series(c, ["p\"1", "2xx"]) == a)  // stable slots
        let s1 = MetricsShard(), s2 = MetricsShard(capacity: 1)
        s1.add(a); s1.add(a); s2.add(a); s2.add(b, 3)
        for v in [0.05, 0.1, 0.5, 2, 30] { s1.observe(hs, [0.1, 1], v) }
        let merged = PrometheusExposition.merge([s1.values, s2.values], slots: schema.slotCount)
        let text = PrometheusExposition.render(schema: schema, values: merged, gauges: [
            .init(name: "t_up", help: "Up.", samples: [([("e", "a\nb")], 1)]),
        ])
        let expected = """
            # HELP t_requests_total Requests.
            # TYPE t_requests_total counter
            t_requests_total{pool="p\\"1",code_class="2xx"} 3
            t_requests_total{pool="p\\"1",code_class="5xx"} 3
            # HELP t_duration_seconds Duration.
            # TYPE t_duration_seconds histogram
            t_duration_seconds_bucket{pool="x",le="0.1"} 2
            t_duration_seconds_bucket{pool="x",le="1"} 3
            t_duration_seconds_bucket{pool="x",le="+Inf"} 5
            t_duration_seconds_sum{pool="x"} 32.65
            t_duration_seconds_count{pool="x"} 5
            # HELP t_up Up.
            # TYPE t_up gauge
            t_up{e="a\\nb"} 1

            """
        #expect(text == expected)
    }

    @Test func cardinalityIsBounded() {
        let schema = MetricsSchema()
        let c = schema.family("t_total", help: "x", kind: .counter, labels: ["user"], maxSeries: 3)
        let slots = (0..<10).map { schema.series(c, ["u\($0)"]) }
        #expect(Set(slots).count == 4)  // three real series and one shared `other`
        #expect(schema.snapshot.series.filter { $0.values == ["other"] }.count == 1)
    }

    /// Histogram bucket boundaries are inclusive upper bounds (`le`).
    @Test(arguments: [(0.0, 0), (0.1, 0), (0.10001, 1), (1.0, 1), (1.5, 2), (1e9, 2)])
    func bucketBoundaries(_ v: Double, _ bucket: Int) {
        let shard = MetricsShard(capacity: 4)
        shard.observe(0, [0.1, 1], v)
        #expect(shard.values[bucket] == 1)
        #expect(shard.values[3] == v)
    }

    @Test(arguments: [("plain", "plain"), ("a\"b", "a\\\"b"), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb")])
    func labelEscaping(_ raw: String, _ escaped: String) {
        #expect(PrometheusExposition.escapeLabel(raw) == escaped)
    }
}
