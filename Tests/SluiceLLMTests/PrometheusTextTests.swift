import Foundation
import Testing

import SluiceLLM

@Suite struct PrometheusTextTests {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
        var timestamp: Int64?
    }

    static func parse(_ bytes: [UInt8]) throws(PrometheusParseError) -> [Sample] {
        let r: Result<[Sample], PrometheusParseError> = bytes.withUnsafeBytes { b in Result { () throws(PrometheusParseError) -> [Sample] in
            var p = PrometheusText(b)
            var out: [Sample] = []
            while let s = try p.next() {
                var labels: [String: String] = [:]
                for l in PrometheusText.labels(of: s, in: b) {
                    labels[String(decoding: l.name.bytes(in: b), as: UTF8.self)] = PrometheusText.decode(b, l.value)
                }
                out.append(Sample(name: String(decoding: s.name.bytes(in: b), as: UTF8.self), labels: labels, value: s.value, timestamp: s.timestamp))
            }
            return out
        } }
        return try r.get()
    }

    static func metricsFile() throws -> [UInt8] { try #require(referenceFile("metrics-after-load.txt")) }

    /// Differential: every sample line of the reference scrape, split naively by the test, gives
    /// the same name and value.
    @Test func referenceScrapeAllSamples() throws {
        let bytes = try Self.metricsFile()
        let samples = try Self.parse(bytes)
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
        #expect(samples.count == lines.count)
        for (s, line) in zip(samples, lines) {
            let valueText = line[line.index(after: line.lastIndex(of: " ")!)...]
            let expected = Double(valueText)!
            #expect(s.value == expected || (s.value.isNaN && expected.isNaN), "\(line)")
            #expect(line.hasPrefix(s.name))
        }
        let inf = samples.first { $0.labels["le"] == "+Inf" }
        #expect(inf != nil)
        let hits = samples.first { $0.name == "vllm:prefix_cache_hits_total" }
        #expect(hits?.value == 83584 && hits?.labels == ["engine": "0", "model_name": "tiny-llama"])
    }

    @Test func vllmExtract() throws {
        let bytes = try Self.metricsFile()
        try bytes.withUnsafeBytes { b in
            let m = try VLLMMetrics.extract(b)
            #expect(m.requestsWaiting == 0)
            #expect(m.requestsRunning == 0)
            #expect(m.kvCacheUsage == 0)
            #expect(m.prefixCacheHits == 83584)
            #expect(m.prefixCacheQueries == 320610)
            #expect(m.blockSize == 128)
            #expect(m.numGPUBlocks == 128)
            let lora = try #require(m.lora)
            // The newest series is the empty one (1.79537466632448e+09 beats a2's ...6663174052e+09).
            #expect(lora.updatedAt == 1.79537466632448e+09)
            #expect(lora.maxLoras == 2)
            #expect(Array(VLLMMetrics.adapterNames(lora.running, in: b)).isEmpty)
            #expect(Array(VLLMMetrics.adapterNames(lora.waiting, in: b)).isEmpty)
        }
    }

    static let synthetic = """
        # HELP vllm:num_requests_waiting Number of requests waiting.
        # TYPE vllm:num_requests_waiting gauge
        vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
        vllm:num_requests_waiting{engine="1",model_name="m"} 4.0

        vllm:num_requests_running{engine="0",model_name="m"} 1
        vllm:num_requests_running{engine="1",model_name="m"} 2
        vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25
        vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.75
        vllm:lora_requests_info{max_lora="4",running_lora_adapters="a1,a2",waiting_lora_adapters=""} 1.7e+09
        vllm:lora_requests_info{max_lora="4",running_lora_adapters="b1, b2 ,b3",waiting_lora_adapters="w1"} 1.8e+09
        vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.6e+09
        vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="100"} 1.0
        vllm:cache_config_info{block_size="16",engine="1",num_gpu_blocks="50"} 1.0
        vllm:prefix_cache_hits_total{engine="0"} 10
        vllm:prefix_cache_hits_total{engine="1"} 5
        vllm:prefix_cache_hits_created{engine="1"} 1.7e9
        """

    @Test func vllmExtractSumsEnginesAndFallsBack() throws {
        let bytes = Array(Self.synthetic.utf8)
        try bytes.withUnsafeBytes { b in
            let m = try VLLMMetrics.extract(b)
            #expect(m.requestsWaiting == 7)
            #expect(m.requestsRunning == 3)
            #expect(m.kvCacheUsage == 0.5)  // mean of the older gauge
            #expect(m.numGPUBlocks == 150 && m.blockSize == 16)
            #expect(m.prefixCacheHits == 15 && m.prefixCacheQueries == nil)
            let lora = try #require(m.lora)
            #expect(lora.maxLoras == 4)
            let names = VLLMMetrics.adapterNames(lora.running, in: b).map { String(decoding: $0.bytes(in: b), as: UTF8.self) }
            #expect(names == ["b1", "b2", "b3"])
            #expect(VLLMMetrics.adapterNames(lora.waiting, in: b).map { String(decoding: $0.bytes(in: b), as: UTF8.self) } == ["w1"])
        }
    }

    @Test(arguments: [
        ("a 1", Sample(name: "a", labels: [:], value: 1, timestamp: nil)),
        ("a{} 1", Sample(name: "a", labels: [:], value: 1, timestamp: nil)),
        ("a{x=\"1\",} 2.5e3", Sample(name: "a", labels: ["x": "1"], value: 2500, timestamp: nil)),
        ("a { x = \"q\\\"\\\\\\n\" } -Inf 1700000000000", Sample(name: "a", labels: ["x": "q\"\\\n"], value: -.infinity, timestamp: 1_700_000_000_000)),
        ("ns:a_b:c{le=\"+Inf\"}\t+Inf", Sample(name: "ns:a_b:c", labels: ["le": "+Inf"], value: .infinity, timestamp: nil)),
        ("a 1 -5", Sample(name: "a", labels: [:], value: 1, timestamp: -5)),
        ("a .5", Sample(name: "a", labels: [:], value: 0.5, timestamp: nil)),
        ("a 1.", Sample(name: "a", labels: [:], value: 1, timestamp: nil)),
        ("a +7", Sample(name: "a", labels: [:], value: 7, timestamp: nil)),
        ("a 1.7953746396535962e+09", Sample(name: "a", labels: [:], value: 1.7953746396535962e+09, timestamp: nil)),
        ("  a 1  \r", Sample(name: "a", labels: [:], value: 1, timestamp: nil)),
        ("a{x=\"é\"} 0", Sample(name: "a", labels: ["x": "é"], value: 0, timestamp: nil)),
    ])
    func parsesLine(_ line: String, _ expected: Sample) throws {
        #expect(try Self.parse(Array(line.utf8)) == [expected])
    }

    @Test func nanValue() throws {
        #expect(try Self.parse(Array("a NaN\nb nan".utf8)).allSatisfy { $0.value.isNaN })
    }

    @Test(arguments: [
        ("1a 1", PrometheusParseError.Reason.invalidName), ("a", .invalidValue), ("a ", .invalidValue), ("a{ 1", .invalidLabel),
        ("a{x} 1", .invalidLabel), ("a{x=1} 1", .invalidLabel), ("a{x=\"1} 1", .unterminatedLabelValue), ("a{x=\"\\t\"} 1", .invalidEscape),
        ("a{x=\"1\" y=\"2\"} 1", .invalidLabel), ("a{:x=\"1\"} 1", .invalidLabel), ("a{1x=\"1\"} 1", .invalidLabel), ("a one", .invalidValue),
        ("a 1e", .invalidValue), ("a 0x10", .invalidValue), ("a 1 2 3", .trailingGarbage), ("a 1 x", .invalidTimestamp),
        ("a 1 1.5", .trailingGarbage), ("a-b 1", .invalidName), ("a Infinityy", .invalidValue), ("a --1", .invalidValue), ("a{x=\"1\"}1", .invalidName),
        ("{x=\"1\"} 1", .invalidName), ("a 99999999999 99999999999999999999", .invalidTimestamp),
    ])
    func rejectsGarbage(_ text: String, _ reason: PrometheusParseError.Reason) {
        do {
            let s = try Self.parse(Array(("ok 1\n" + text + "\nok 2").utf8))
            Issue.record("accepted \(text.debugDescription): \(s)")
        } catch {
            #expect(error.reason == reason, "\(text.debugDescription)")
            #expect(error.line == 2)
        }
    }

    /// Truncating or corrupting the reference scrape anywhere never crashes (errors are fine).
    @Test func neverCrashesOnDamagedInput() throws {
        let bytes = try Self.metricsFile()
        var rng = TestRNG(seed: 99)
        for _ in 0..<500 {
            var b = bytes
            let n = Int.random(in: 0..<b.count, using: &rng)
            if Bool.random(using: &rng) { b.removeSubrange(n...) } else { b[n] = UInt8.random(in: 0...255, using: &rng) }
            _ = try? Self.parse(b)
            _ = b.withUnsafeBytes { try? VLLMMetrics.extract($0) }
        }
    }
}
