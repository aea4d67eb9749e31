import Testing

import SluiceLLM

@Suite struct SSEScannerTests {
    /// Feeds `stream` cut at `cuts` and collects the events.
    static func events(_ stream: [UInt8], cuts: [Int], maxEventBytes: Int = 64 << 10) -> [SSEEvent] {
        var scanner = SSEScanner(maxEventBytes: maxEventBytes)
        var out: [SSEEvent] = []
        let bounds = [0] + cuts.filter { $0 > 0 && $0 < stream.count }.sorted() + [stream.count]
        for k in 0..<bounds.count - 1 {
            let chunk = Array(stream[bounds[k]..<bounds[k + 1]])
            chunk.withUnsafeBytes { c in
                var i = 0
                while case .event(let e, let next) = scanner.next(c, from: i) {
                    #expect(next > i || (next == i && i == 0) || next >= i)
                    out.append(e)
                    i = next
                }
            }
        }
        return out
    }

    static func body(_ name: String) throws -> [UInt8] {
        responseBody(try #require(referenceFile(name), "missing reference file \(name)"))
    }

    @Test func chatStreamWithUsage() throws {
        let b = try Self.body("chat-stream-usage.txt")
        let ev = Self.events(b, cuts: [])
        #expect(ev.count == 8)
        #expect(ev.allSatisfy { $0.inspected })
        #expect(ev.map(\.hasToken) == [false, true, true, true, true, true, false, false])  // first delta is content ""
        #expect(ev[5].finishReason == .length)
        #expect(ev[0..<5].allSatisfy { $0.finishReason == nil })
        #expect(ev[6].isUsageOnly)
        #expect(ev[6].usage == Usage(promptTokens: 18, completionTokens: 5, totalTokens: 23))
        #expect(ev[7].isDone)
        #expect(ev.filter(\.isUsageOnly).count == 1)
        // Events tile the body from its first byte.
        #expect(ev[0].start == 0)
        for k in 1..<ev.count { #expect(ev[k].start == ev[k - 1].end) }
        #expect(b[ev[6].start..<ev[6].end].starts(with: Array("data: {".utf8)))
        #expect(Array(b[(ev[7].start)..<(ev[7].end)]) == Array("data: [DONE]\n\n".utf8))
    }

    @Test func chatStreamWithoutUsage() throws {
        let ev = Self.events(try Self.body("chat-stream-nousage.txt"), cuts: [])
        #expect(ev.last?.isDone == true)
        #expect(ev.allSatisfy { $0.usage == nil && !$0.isUsageOnly })
        #expect(ev.compactMap(\.finishReason) == [.length])
        #expect(ev.firstIndex(where: \.hasToken) == 1)
    }

    @Test func completionsStream() throws {
        let ev = Self.events(try Self.body("completions-stream.txt"), cuts: [])
        #expect(ev.count == 5)
        #expect(ev.map(\.hasToken) == [true, true, true, false, false])
        #expect(ev[2].finishReason == .length)
        #expect(ev[3].isUsageOnly && ev[3].usage == Usage(promptTokens: 6, completionTokens: 3, totalTokens: 9))
        #expect(ev[4].isDone)
    }

    /// Split at every offset (two chunks), and one byte at a time: the same events.
    @Test(arguments: ["chat-stream-usage.txt", "chat-stream-nousage.txt", "completions-stream.txt"])
    func splitAtEveryOffset(_ name: String) throws {
        let b = try Self.body(name)
        let whole = Self.events(b, cuts: [])
        for cut in 0...b.count { #expect(Self.events(b, cuts: [cut]) == whole, "cut at \(cut)") }
        #expect(Self.events(b, cuts: Array(0..<b.count)) == whole)
        var rng = TestRNG(seed: 5)
        for _ in 0..<200 {
            let cuts = (0..<Int.random(in: 1...8, using: &rng)).map { _ in Int.random(in: 0...b.count, using: &rng) }
            #expect(Self.events(b, cuts: cuts) == whole)
        }
    }

    /// CRLF and CR line ends give the same events (payload facts), at every split.
    @Test(arguments: [[13, 10], [13]] as [[UInt8]])
    func otherLineEnds(_ eol: [UInt8]) throws {
        let lf = try Self.body("chat-stream-usage.txt")
        let b = lf.flatMap { $0 == 10 ? eol : [$0] }
        let expected = Self.events(lf, cuts: []).map { [$0.hasToken, $0.isDone, $0.isUsageOnly, $0.finishReason != nil] }
        let whole = Self.events(b, cuts: [])
        #expect(whole.map { [$0.hasToken, $0.isDone, $0.isUsageOnly, $0.finishReason != nil] } == expected)
        // An event completes at the CR of its blank line; with CRLF the final LF starts the next range.
        let last = try #require(whole.last)
        #expect(Array(b[last.start..<last.end]) == (eol.count == 2 ? [10] : []) + Array("data: [DONE]".utf8) + eol + [13])
        for k in 1..<whole.count { #expect(whole[k].start == whole[k - 1].end) }
        for cut in 0...b.count { #expect(Self.events(b, cuts: [cut]) == whole, "cut at \(cut)") }
    }

    @Test func leadingBlankLinesCommentsAndFields() {
        let s = Array("\n\n: keep-alive\n\nevent: message\nid: 7\nretry: 100\ndata:{\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\ndata\n\n".utf8)
        let ev = Self.events(s, cuts: [])
        #expect(ev.count == 3)
        #expect(ev[0].dataLines == 0 && ev[0].inspected && !ev[0].hasToken)
        #expect(ev[0].start == 0)
        #expect(ev[1].hasToken)
        #expect(ev[2].dataLines == 1 && ev[2].isMalformed)  // "data" with an empty value is not JSON
        #expect(ev[2].end == s.count)
    }

    /// Events that lie within one chunk are read from what delimiting them found (no second scan
    /// for lines): comment-only, bare `data`, several data lines and plain events, in a chunk that
    /// is not the stream's first, give the same facts as when each arrives byte by byte (read
    /// from the copy).
    @Test func eventsWithinALaterChunk() {
        let first = Array("data: {\"choices\":[{\"text\":\"a\"}]}\n\n".utf8)
        let second = Array(": keep-alive\n\ndata\n\nid: 3\ndata: {\"a\":\ndata: 1}\n\nevent: x\ndata:[DONE]\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n".utf8)
        let stream = first + second
        let inChunks = Self.events(stream, cuts: [first.count])
        #expect(inChunks == Self.events(stream, cuts: Array(0..<stream.count)))
        #expect(inChunks.count == 6)
        #expect(inChunks.map(\.dataLines) == [1, 0, 1, 2, 1, 1])
        #expect(inChunks[1].inspected && !inChunks[1].hasToken)
        #expect(inChunks[2].isMalformed)
        #expect(!inChunks[3].inspected)
        #expect(inChunks[4].isDone)
        #expect(inChunks[5].hasToken && inChunks[5].start == stream.count - 34)
    }

    @Test func payloadFacts() {
        func one(_ data: String) -> SSEEvent { Self.events(Array("data: \(data)\n\n".utf8), cuts: [])[0] }
        #expect(one("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}").hasToken)
        #expect(!one("{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}").hasToken)
        #expect(one("{\"choices\":[{\"delta\":{\"reasoning\":\"x\"}}]}").hasToken)
        #expect(!one("{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}").hasToken)
        #expect(one("{\"choices\":[{\"finish_reason\":\"stop\"}]}").finishReason == .stop)
        #expect(one("{\"choices\":[{\"finish_reason\":\"tool_calls\"}]}").finishReason == .toolCalls)
        #expect(one("{\"choices\":[{\"finish_reason\":\"weird\"}]}").finishReason == .other)
        #expect(one("{\"error\":{\"message\":\"boom\",\"code\":500}}").hasError)
        #expect(!one("{\"choices\":[],\"usage\":null}").isUsageOnly)
        #expect(one("{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}").usage == Usage(promptTokens: 1, completionTokens: 2, totalTokens: 3))
        #expect(one("{not json").isMalformed)
        #expect(one("[DONE]").isDone)
        let two = Self.events(Array("data: {\"a\":\ndata: 1}\n\n".utf8), cuts: [])[0]
        #expect(two.dataLines == 2 && !two.inspected)
    }

    /// An event larger than the buffer limit is delimited but not inspected when it spans chunks;
    /// the next event is inspected again.
    @Test func oversizedEvent() {
        let big = "data: {\"choices\":[{\"text\":\"" + String(repeating: "x", count: 5000) + "\"}]}\n\n"
        let s = Array((big + "data: [DONE]\n\n").utf8)
        let ev = Self.events(s, cuts: [100, 2000, 4000], maxEventBytes: 1024)
        #expect(ev.count == 2)
        #expect(!ev[0].inspected && ev[0].end == big.utf8.count)
        #expect(ev[1].isDone && ev[1].inspected)
        // In one chunk it is inspected in place whatever its size.
        let inPlace = Self.events(s, cuts: [], maxEventBytes: 1024)
        #expect(inPlace[0].inspected && inPlace[0].hasToken)
        // With a large enough limit, split events are inspected from the copy.
        #expect(Self.events(s, cuts: [100, 2000, 4000])[0].hasToken)
    }

    @Test func pendingBytesAndOffsets() {
        var scanner = SSEScanner()
        let a = Array("data: [DO".utf8)
        let b = Array("NE]\n\nda".utf8)
        a.withUnsafeBytes { #expect(scanner.next($0, from: 0) == .needMore) }
        #expect(scanner.streamOffset == a.count)
        scanner.withPendingBytes { #expect(Array($0) == a) }
        b.withUnsafeBytes { c in
            guard case .event(let e, let next) = scanner.next(c, from: 0) else { Issue.record("no event"); return }
            #expect(e.isDone && e.start == 0 && e.end == 14 && next == 5)
            #expect(scanner.completeThrough == 14)
            #expect(scanner.next(c, from: next) == .needMore)
        }
        scanner.withPendingBytes { #expect(Array($0) == Array("da".utf8)) }
        #expect(scanner.eventStart == 14 && scanner.streamOffset == 16)
    }
}

@Suite struct ResponseScannerTests {
    @Test func chatNonStream() throws {
        let b = responseBody(try #require(referenceFile("chat-nonstream.txt")))
        let r = try #require(b.withUnsafeBytes { ResponseScanner.scan($0) })
        #expect(r.usage == Usage(promptTokens: 30, completionTokens: 16, totalTokens: 46))
        #expect(r.finishReason == .length)
        #expect(r.choiceCount == 1)
        #expect(!r.hasError)
    }

    @Test(arguments: [
        "{\"error\":{\"message\":\"The model `nope` does not exist. Valid aliases: tiny-llama.\",\"type\":\"NotFoundError\",\"param\":\"model\",\"code\":404}}",
        "{\"error\":{\"message\":\"1 validation error:\\n  {'type': 'json_invalid'}\",\"type\":\"Bad Request\",\"param\":\"body.9\",\"code\":400}}",
    ])
    func errorBodies(_ body: String) throws {
        let r = try #require(Array(body.utf8).withUnsafeBytes { ResponseScanner.scan($0) })
        #expect(r.hasError && r.usage == nil && r.choiceCount == nil)
    }

    @Test(arguments: ["", "Success: LoRA adapter 'a3' added successfully.", "[1]", "{\"usage\":", "{\"a\":1} x"])
    func notJSONObjects(_ body: String) {
        #expect(Array(body.utf8).withUnsafeBytes { ResponseScanner.scan($0) } == nil)
    }

    @Test func truncatedAtEveryOffset() throws {
        let b = responseBody(try #require(referenceFile("chat-nonstream.txt")))
        let close = try #require(b.lastIndex(of: UInt8(ascii: "}")))
        for n in 0...close { #expect(Array(b[0..<n]).withUnsafeBytes { ResponseScanner.scan($0) } == nil) }
    }
}
