import Glibc
import SluiceLLM

/// Scanner + prefix hasher throughput on a 200 KB chat body (escapes, non-ASCII, many messages),
/// next to two baselines over the same bytes measured in the same run: memchr for a byte that
/// does not occur (the floor of any byte-by-byte scan) and memcpy.
@main
enum LLMScan {
    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    static func chatBody(bytes: Int) -> [UInt8] {
        let paragraph = "Sluice routes requests to the model server that already holds their prefix in its KV cache. "
            + "Ünïcödé text, “quotes”, \\\"escaped quotes\\\", tabs\\tand newlines\\n, emoji 😀 and numbers 12345. "
        var messages = ["{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}"]
        var size = 200
        var i = 0
        while size < bytes {
            let text = String(repeating: paragraph, count: 40)
            messages.append("{\"role\":\"\(i % 2 == 0 ? "user" : "assistant")\",\"content\":\"\(text)\"}")
            size += text.utf8.count + 40
            i += 1
        }
        return Array("{\"model\":\"tiny-llama\",\"messages\":[\(messages.joined(separator: ","))],\"stream\":true,\"temperature\":0.7,\"max_tokens\":256}".utf8)
    }

    /// Benchmarks/compare's section 3 body: one 220 KB ASCII system prompt and a short user turn.
    static func comparePromptBody() -> [UInt8] {
        var filler = ""
        while filler.utf8.count < 220 * 1024 { filler += "The quick brown fox jumps over the lazy dog. " }
        filler = String(filler.utf8.prefix(220 * 1024))!
        return Array(("{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": \"\(filler)\"}, "
            + "{\"role\": \"user\", \"content\": \"Summarize.\"}], \"max_tokens\": 8}").utf8)
    }

    /// Best of `rounds` runs of `iterations` calls, in GB/s of `bytes` per call.
    static func measure(_ bytes: Int, iterations: Int, rounds: Int = 5, _ body: () throws -> Void) rethrows -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let t0 = now()
            for _ in 0..<iterations { try body() }
            let s = Double(now() - t0) / 1e9
            best = max(best, Double(bytes * iterations) / s / 1e9)
        }
        return best
    }

    static func fmt(_ v: Double, _ digits: Int = 2) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        return String(r)
    }

    static func main() throws {
        let body = chatBody(bytes: 200_000)
        let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 1024)
        let hashes = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 4096)
        let copy = UnsafeMutableRawPointer.allocate(byteCount: body.count + 64, alignment: 64)
        defer { segments.deallocate(); hashes.deallocate(); copy.deallocate() }
        var sink: UInt64 = 0
        let n = 2000
        let results: [(String, Double)] = try body.withUnsafeBytes { b in
            let scanned = try RequestScanner().scan(b, endpoint: .chatCompletions, segments: segments)
            let segs = UnsafeBufferPointer(rebasing: segments[0..<scanned.segmentCount])
            let scan = try measure(b.count, iterations: n) {
                sink &+= UInt64(try RequestScanner().scan(b, endpoint: .chatCompletions, segments: segments).promptBytes)
            }
            let hash = measure(b.count, iterations: n) {
                let k = PrefixHasher.hashPrompt(body: b, segments: segs, seed: 1, into: hashes)
                sink &+= hashes[k - 1]
            }
            let both = try measure(b.count, iterations: n) {
                let r = try RequestScanner().scan(b, endpoint: .chatCompletions, segments: segments)
                let k = PrefixHasher.hashPrompt(body: b, segments: UnsafeBufferPointer(rebasing: segments[0..<r.segmentCount]),
                                                seed: 1, into: hashes)
                sink &+= hashes[k - 1]
            }
            // The baselines vary an argument every call so the compiler cannot hoist them.
            var k = 0
            let chr = measure(b.count, iterations: n) {
                k &+= 1
                if let p = memchr(b.baseAddress!, Int32(1 + (k & 7)), b.count) { sink &+= UInt64(Int(bitPattern: p) & 1) }
                sink &+= UInt64(k & 1)
            }
            let cpy = measure(b.count, iterations: n) {
                k &+= 1
                memcpy(copy + (k & 63), b.baseAddress!, b.count)
                sink &+= UInt64(copy.load(fromByteOffset: (k & 63) + b.count / 2, as: UInt8.self))
            }
            let ascii = comparePromptBody()
            let scanASCII = try ascii.withUnsafeBytes { a in
                try measure(a.count, iterations: n) {
                    sink &+= UInt64(try RequestScanner().scan(a, endpoint: .chatCompletions, segments: segments).promptBytes)
                }
            }
            return [("scan (validate + extract)", scan), ("prefix hash", hash), ("scan + hash", both),
                    ("memchr (baseline)", chr), ("memcpy (baseline)", cpy),
                    ("scan, compare's 220 KB ASCII prompt", scanASCII)]
        }
        print("\(body.count)-byte chat body, best of 5 × \(n) passes (sink \(sink & 1))")
        for (name, gbs) in results {
            print(name + String(repeating: " ", count: max(1, 26 - name.count)) + fmt(gbs) + " GB/s")
        }
        let both = results[2].1
        let ms = 220_000 / (both * 1e9) * 1000
        print("scan + hash: \(fmt(both)) GB/s, \(fmt(ms, 3)) ms for a 220 KB prompt (target ≥ 1 GB/s: \(both >= 1 ? "met" : "NOT met")); "
              + "\(fmt(both / results[4].1))× memcpy's speed, \(fmt(both / results[3].1))× memchr's")
    }
}
