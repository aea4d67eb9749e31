import Testing
@testable import SluiceHTTP

/// Parses `text` fed in pieces of `step` bytes (and all at once), returning the result of the
/// last call and the head.
func parse(_ text: String, kind: HTTP1HeadParser.Kind = .request, step: Int = .max,
           limits: HTTP1Limits = HTTP1Limits(), method: HTTPMethod = .get) -> (HTTP1HeadParser.Result, HTTPHead, [UInt8]) {
    let bytes = Array(text.utf8)
    var p = HTTP1HeadParser(kind: kind, limits: limits)
    p.requestMethod = method
    let head = HTTPHead(capacity: limits.maxHeaderCount)
    var n = 0
    var result = HTTP1HeadParser.Result.incomplete
    repeat {
        n = min(bytes.count, n == 0 && step == .max ? bytes.count : n + step)
        result = bytes.withUnsafeBytes { p.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), into: head) }
        if result != .incomplete { break }
    } while n < bytes.count
    return (result, head, bytes)
}

func str(_ bytes: [UInt8], _ r: ByteRange) -> String { String(decoding: bytes[Int(r.start)..<Int(r.end)], as: UTF8.self) }

@Suite struct HeadParserTests {
    let sample = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + "Content-Length: 17\r\nX-Custom:   padded value \t\r\n\r\n{\"model\":\"tiny\"}x"

    @Test func parsesARequest() {
        let (r, head, bytes) = parse(sample)
        #expect(r == .complete)
        #expect(head.method == .post)
        #expect(str(bytes, head.target) == "/v1/chat/completions")
        #expect(head.version == .http11)
        #expect(head.framing == .length(17))
        #expect(head.keepAlive)
        #expect(head.count == 4)
        #expect(str(bytes, head[3].value) == "padded value")
        #expect(str(bytes, head.host) == "gw")
        #expect(head.length == sample.utf8.count - 17)
    }

    /// Byte by byte and split at every offset: the same head, never a premature answer.
    @Test func splitAtEveryOffset() {
        let (_, whole, bytes) = parse(sample)
        for step in 1...8 {
            let (r, head, _) = parse(sample, step: step)
            #expect(r == .complete)
            #expect(head.length == whole.length)
            #expect(head.count == whole.count)
            for i in 0..<head.count {
                #expect(head[i].name == whole[i].name && head[i].value == whole[i].value)
            }
        }
        // Every strict prefix shorter than the head is incomplete.
        for cut in 0..<whole.length {
            var p = HTTP1HeadParser(kind: .request)
            let h = HTTPHead(capacity: 100)
            let r = bytes.withUnsafeBytes { p.parse(UnsafeRawBufferPointer(rebasing: $0[0..<cut]), into: h) }
            #expect(r == .incomplete, "prefix \(cut)")
        }
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, BodyFraming.none),
        ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, BodyFraming.none),
        ("GET / HTTP/1.0\r\n\r\n", false, BodyFraming.none),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, BodyFraming.none),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", true, BodyFraming.chunked),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", true, BodyFraming.length(5)),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true, BodyFraming.none),
        ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true, BodyFraming.none),
        ("GET http://example.com/x HTTP/1.1\r\nHost: a\r\n\r\n", true, BodyFraming.none),
        ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", true, BodyFraming.none),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: caf\u{e9}\r\n\r\n", true, BodyFraming.none),
    ])
    func accepts(_ text: String, _ keepAlive: Bool, _ framing: BodyFraming) {
        let (r, head, _) = parse(text)
        #expect(r == .complete)
        #expect(head.keepAlive == keepAlive)
        #expect(head.framing == framing)
    }

    /// The strictness and smuggling table: each case is rejected with the status RFC 9112 asks for.
    @Test(arguments: [
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  // CL.TE
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),  // TE.CL
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        // Chunked not last: the length cannot be known, 400 (RFC 9112 §6.3 (4), a MUST); chunked
        // last after a coding we do not implement: 501 (§6.1, a SHOULD).
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \u{0B}chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),  // obs-fold
        ("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),  // bare LF
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),  // bare CR
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\u{0}b\r\n\r\n", 400),  // NUL
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Name: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n: novalue\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),  // no Host
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        ("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
    ])
    func rejects(_ text: String, _ status: Int) {
        for step in [Int.max, 1, 7] {
            let (r, _, _) = parse(text, step: step)
            guard case .error(let e) = r else {
                Issue.record("accepted: \(text.debugDescription)")
                return
            }
            #expect(e.status == status, "\(text.debugDescription) → \(e)")
        }
    }

    @Test func limits() {
        let limits = HTTP1Limits(maxHeadBytes: 200, maxHeaderCount: 3, maxRequestLine: 64)
        let longLine = "GET /" + String(repeating: "a", count: 100) + " HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(parse(longLine, limits: limits).0 == .error(.requestLineTooLong))
        // The request line alone, unfinished, past the limit: 414 before the head is complete.
        #expect(parse("GET /" + String(repeating: "a", count: 100), limits: limits).0 == .error(.requestLineTooLong))
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
        #expect(parse(many, limits: limits).0 == .error(.tooManyHeaders))
        let big = "GET / HTTP/1.1\r\nHost: a\r\nA: " + String(repeating: "x", count: 300)
        #expect(parse(big, limits: limits).0 == .error(.headerTooLarge))
    }

    /// The eight-bytes-at-a-time value check flags exactly the words holding a control byte
    /// or DEL: every byte value at every position, then seeded random words.
    @Test func wordCheckFlagsExactlyControlBytesAndDEL() {
        func reference(_ w: UInt64) -> Bool {
            (0..<8).contains { let c = UInt8(truncatingIfNeeded: w >> ($0 * 8)); return c < 0x20 || c == 0x7F }
        }
        let filler = UInt64(0x6161_6161_6161_6161)
        for pos in 0..<8 {
            for c in 0...255 {
                let w = filler & ~(0xFF << UInt64(pos * 8)) | UInt64(c) << UInt64(pos * 8)
                #expect(HTTP1HeadParser.hasControlOrDEL(w) == reference(w), "byte \(c) at \(pos)")
            }
        }
        var rng: UInt64 = 88172645463325252
        for _ in 0..<100_000 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            #expect(HTTP1HeadParser.hasControlOrDEL(rng) == reference(rng))
        }
    }

    /// The field table starts small and grows: exactly `maxHeaderCount` fields (well past the
    /// initial size) parse in order, one more is refused; a head reused for a smaller message
    /// keeps working.
    @Test(arguments: [1, 16, 17, 33, 100])
    func fieldTableGrowsUpToTheLimit(limit: Int) {
        let limits = HTTP1Limits(maxHeadBytes: 16 << 10, maxHeaderCount: limit, maxRequestLine: 64)
        // Field 0 is Host (HTTP/1.1 requires it), then X-F1, X-F2, ...
        func name(_ i: Int) -> String { i == 0 ? "Host" : "X-F\(i)" }
        func request(_ n: Int) -> String {
            "GET / HTTP/1.1\r\n" + (0..<n).map { "\(name($0)): v\($0)\r\n" }.joined() + "\r\n"
        }
        let (r, head, bytes) = parse(request(limit), limits: limits)
        #expect(r == .complete)
        #expect(head.count == limit)
        for i in 0..<head.count {
            #expect(str(bytes, head[i].name) == name(i) && str(bytes, head[i].value) == "v\(i)")
        }
        #expect(parse(request(limit + 1), limits: limits).0 == .error(.tooManyHeaders))
        // Byte by byte too, so growth happens mid-parse.
        let (r2, head2, _) = parse(request(limit), step: 1, limits: limits)
        #expect(r2 == .complete && head2.count == limit)
    }

    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", HTTPMethod.get, 200, BodyFraming.length(3), true),
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .get, 200, .chunked, true),
        ("HTTP/1.1 200 OK\r\n\r\n", .get, 200, .untilClose, false),
        ("HTTP/1.1 200\r\nContent-Length: 3\r\n\r\n", .get, 200, .length(3), true),
        ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", .head, 200, BodyFraming.none, true),
        ("HTTP/1.1 204 No Content\r\n\r\n", .get, 204, BodyFraming.none, true),
        ("HTTP/1.1 304 Not Modified\r\n\r\n", .get, 304, BodyFraming.none, true),
        ("HTTP/1.1 100 Continue\r\n\r\n", .post, 100, BodyFraming.none, true),
        ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", .get, 200, .length(2), false),
        ("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", .get, 503, .length(2), false),
    ])
    func parsesResponses(_ text: String, _ method: HTTPMethod, _ status: Int, _ framing: BodyFraming, _ keepAlive: Bool) {
        let (r, head, _) = parse(text, kind: .response, method: method)
        #expect(r == .complete)
        #expect(head.status == status)
        #expect(head.framing == framing)
        #expect(head.keepAlive == keepAlive)
    }

    @Test(arguments: [
        "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ])
    func rejectsBadResponses(_ text: String) {
        let (r, _, _) = parse(text, kind: .response)
        guard case .error = r else { Issue.record("accepted \(text.debugDescription)"); return }
    }

    @Test func hopByHopAndConnectionNamedFieldsAreNotForwarded() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
            + "TE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: b\r\nX-Keep: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        let (r, head, bytes) = parse(text)
        #expect(r == .complete)
        var kept: [String] = []
        bytes.withUnsafeBytes { raw in head.forEachEndToEndField(in: raw) { kept.append(str(bytes, head[$0].name)) } }
        #expect(kept == ["Host", "X-Keep"])
    }
}

/// The bitmaps agree with RFC 9110's definitions for every byte.
@Test func characterClassesMatchTheRFC() {
    let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    for b in 0...255 {
        let c = UInt8(b)
        #expect(CharacterClass.isToken(c) == tchar.contains(c), "token \(b)")
        #expect(CharacterClass.isFieldValue(c) == (c == 9 || (c >= 32 && c != 127)), "value \(b)")
        #expect(CharacterClass.isTarget(c) == (c > 32 && c < 127), "target \(b)")
    }
}
