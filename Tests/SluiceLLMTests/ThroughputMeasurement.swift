import Foundation
import Testing

import SluiceLLM

/// Not a timed test: a measurement that prints scanner + hasher throughput on a 200 KB chat body.
/// Run it in release mode:
///
///     SLUICE_LLM_MEASURE=1 swift test -c release --filter ThroughputMeasurement
@Suite struct ThroughputMeasurement {
    static let enabled = ProcessInfo.processInfo.environment["SLUICE_LLM_MEASURE"] != nil

    static func chatBody(bytes: Int) -> [UInt8] {
        let paragraph = "Sluice routes requests to the model server that already holds their prefix in its KV cache. "
            + "Ünïcödé text, “quotes”, \\\"escaped quotes\\\", tabs\\tand newlines\\n, emoji 😀 and numbers 12345. "
        var messages = ["{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}"]
        var size = 200
        var i = 0
        while size < bytes {
            let text = String(repeating: paragraph, count: 40)
            let role = i % 2 == 0 ? "user" : "assistant"
            messages.append("{\"role\":\"\(role)\",\"content\":\"\(text)\"}")
            size += text.utf8.count + 40
            i += 1
        }
        return Array("{\"model\":\"tiny-llama\",\"messages\":[\(messages.joined(separator: ","))],\"stream\":true,\"temperature\":0.7,\"max_tokens\":256}".utf8)
    }

    @Test(.enabled(if: enabled)) func scanAndHash200KB() throws {
        let body = Self.chatBody(bytes: 200_000)
        var segments = [PromptSegment](repeating: PromptSegment(range: ByteRange(start: 0, end: 0), kind: .text), count: 256)
        var hashes = [UInt64](repeating: 0, count: 4096)
        let iterations = 3000
        var sink: UInt64 = 0
        func runHashOnly(_ n: Int) throws -> Double {
            var secs = 0.0
            try body.withUnsafeBytes { b in
                try segments.withUnsafeMutableBufferPointer { segs in
                    let r = try RequestScanner().scan(b, endpoint: .chatCompletions, segments: segs)
                    hashes.withUnsafeMutableBufferPointer { out in
                        let start = DispatchTime.now().uptimeNanoseconds
                        for _ in 0..<n {
                            let k = PrefixHasher.hashPrompt(body: b, segments: UnsafeBufferPointer(rebasing: segs[0..<r.segmentCount]), seed: 1, into: out)
                            sink &+= out[k - 1]
                        }
                        secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                    }
                }
            }
            return Double(body.count * n) / secs / 1e9
        }
        func run(_ n: Int, hash: Bool) throws -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body.withUnsafeBytes { b in
                try segments.withUnsafeMutableBufferPointer { segs in
                    try hashes.withUnsafeMutableBufferPointer { out in
                        for _ in 0..<n {
                            let r = try RequestScanner().scan(b, endpoint: .chatCompletions, segments: segs)
                            if hash {
                                let k = PrefixHasher.hashPrompt(body: b, segments: UnsafeBufferPointer(rebasing: segs[0..<r.segmentCount]),
                                                                seed: 1, into: out)
                                sink &+= out[k - 1]
                            }
                            sink &+= UInt64(r.promptBytes)
                        }
                    }
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            return Double(body.count * n) / seconds / 1e9
        }
        _ = try run(100, hash: true)  // warm up
        let scanOnly = try run(iterations, hash: false)
        let both = try run(iterations, hash: true)
        let hashOnly = try runHashOnly(iterations)
        print("SluiceLLM throughput on a \(body.count)-byte chat body: scan \(String(format: "%.2f", scanOnly)) GB/s, "
              + "hash \(String(format: "%.2f", hashOnly)) GB/s, "
              + "scan+hash \(String(format: "%.2f", both)) GB/s (sink \(sink & 1))")
        #expect(sink != 0)
    }
}
