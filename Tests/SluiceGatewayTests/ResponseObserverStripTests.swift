import SluiceIO
@testable import SluiceGateway
import Testing

/// When Sluice injected `include_usage`, the usage-only event is taken out of what the client
/// sees wherever the upstream's reads cut the stream: an event cut by a read is held back and
/// relayed ahead of the next read's bytes unless it turns out to be the usage one.
@Suite struct ResponseObserverStripTests {
    static let token1 = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
    static let token2 = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}\n\n"
    static let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"total_tokens\":11,\"completion_tokens\":2}}\n\n"
    static let done = "data: [DONE]\n\n"

    /// Feeds `stream` cut at `cuts` (each read one buffer, its payload split into ranges with
    /// `framing` bytes between them, as chunked framing leaves them) and returns what would be
    /// relayed, in order, and the usage read.
    static func relay(_ stream: [UInt8], cuts: [Int], strip: Bool, framing: Int = 0, rangesPerRead: Int = 1) -> ([UInt8], Int?) {
        let pool = BufferPool()
        var o = ResponseObserver(eventStream: true, strip: strip, contentLength: nil)
        var out: [UInt8] = []
        let bounds = [0] + cuts + [stream.count]
        for k in 0..<(bounds.count - 1) {
            let read = Array(stream[bounds[k]..<bounds[k + 1]])
            // The read's payload in `rangesPerRead` pieces, `framing` junk bytes before each.
            var b = ByteBuffer(emptyIn: pool)
            b.reserve(writable: read.count + framing * rangesPerRead + 16)
            var ranges: [(Int, Int)] = []
            let step = max(1, (read.count + rangesPerRead - 1) / rangesPerRead)
            var i = 0
            while i < read.count {
                let j = min(read.count, i + step)
                for _ in 0..<framing { b.append(UInt8(ascii: "#")) }
                let start = b.writerIndex
                read[i..<j].withUnsafeBytes { b.append($0) }
                ranges.append((start, b.writerIndex))
                i = j
            }
            o.observe(b, &ranges, now: Instant(nanoseconds: 0))
            out += o.release
            o.release.removeAll()
            for r in ranges { out += Array(b.bytes(r.0, r.1)) }
            b.release()
        }
        out += o.takeHeldAtEnd()
        return (out, o.usage?.completionTokens)
    }

    @Test func theUsageEventIsStrippedWhereverAReadCutsTheStream() {
        let stream = Array((Self.token1 + Self.token2 + Self.usage + Self.done).utf8)
        let want = Array((Self.token1 + Self.token2 + Self.done).utf8)
        for cut in 1..<stream.count {
            for (framing, pieces) in [(0, 1), (7, 2), (5, 3)] {
                let (got, usage) = Self.relay(stream, cuts: [cut], strip: true, framing: framing, rangesPerRead: pieces)
                #expect(got == want, "cut at \(cut), \(pieces) ranges")
                #expect(usage == 2)
            }
        }
        // Three reads: every pair of cuts around the usage event.
        let u0 = Self.token1.utf8.count + Self.token2.utf8.count
        for a in stride(from: u0 - 20, to: u0 + Self.usage.utf8.count, by: 3) {
            for b in stride(from: a + 1, to: stream.count, by: 5) {
                #expect(Self.relay(stream, cuts: [a, b], strip: true).0 == want, "cuts at \(a), \(b)")
            }
        }
    }

    @Test func withoutStrippingEveryByteGoesAsItCame() {
        let stream = Array((Self.token1 + Self.usage + Self.done).utf8)
        for cut in stride(from: 1, to: stream.count, by: 7) {
            #expect(Self.relay(stream, cuts: [cut], strip: false, framing: 3, rangesPerRead: 2).0 == stream)
        }
    }

    /// A stream that ends inside an event still delivers it; a held event longer than an event
    /// may be is let go (relayed, not stripped), never held without bound.
    @Test func heldBytesAreBoundedAndNeverLost() {
        let cutShort = Array((Self.token1 + "data: {\"partial\"").utf8)
        #expect(Self.relay(cutShort, cuts: [Self.token1.utf8.count + 5], strip: true).0 == cutShort)
        let huge = "data: {\"choices\":[{\"delta\":{\"content\":\"" + String(repeating: "x", count: 70_000) + "\"}}]}\n\n"
        let stream = Array((huge + Self.done).utf8)
        let cuts = Array(stride(from: 4096, to: stream.count, by: 4096))
        #expect(Self.relay(stream, cuts: cuts, strip: true).0 == stream)
    }
}
