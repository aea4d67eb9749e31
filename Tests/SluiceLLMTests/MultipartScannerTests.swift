import Testing

import SluiceLLM

@Suite struct MultipartScannerTests {
    static let boundary = "sluiceboundary7MA4YWxkTrZu0gW"

    /// What httpx (the OpenAI SDK's transport) sends for an audio upload: form fields, then the
    /// file (the same layout as Tests/vllm-captures/capture.py's request).
    static func upload(file: [UInt8], fields: [(String, String)] = [("model", "whisper-1"), ("language", "en")]) -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in fields {
            out += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)
        }
        out += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8)
        out += file
        out += Array("\r\n--\(boundary)--\r\n".utf8)
        return out
    }

    struct Part: Equatable {
        var name: String?
        var filename: String?
        var contentType: String?
        var value: [UInt8]
    }

    /// Feeds growing prefixes of `body` (cut at `cuts`) and collects the parts and the last step.
    static func parts(_ body: [UInt8], boundary: String = boundary, cuts: [Int] = [], maxHeaderBytes: Int = 8192) -> ([Part], MultipartScanner.Step) {
        var s = Array(boundary.utf8).withUnsafeBytes { MultipartScanner(boundary: $0, maxHeaderBytes: maxHeaderBytes) }!
        var out: [Part] = []
        var last = MultipartScanner.Step.needMore
        let ends = cuts.filter { $0 > 0 && $0 < body.count }.sorted() + [body.count]
        for end in ends {
            let prefix = Array(body[0..<end])
            prefix.withUnsafeBytes { b in
                while true {
                    let step = s.next(b, isComplete: end == body.count)
                    last = step
                    guard case .part(let p) = step else { return }
                    func str(_ r: ByteRange?) -> String? { r.map { String(decoding: prefix[$0.start..<$0.end], as: UTF8.self) } }
                    out.append(Part(name: str(p.name), filename: str(p.filename), contentType: str(p.contentType), value: Array(prefix[p.value.start..<p.value.end])))
                }
            }
        }
        return (out, last)
    }

    @Test func httpxUpload() {
        let file: [UInt8] = [0x52, 0x49, 0x46, 0x46, 13, 10, 0x2D, 0x2D, 0, 255, 13, 13, 10]
        let (p, last) = Self.parts(Self.upload(file: file))
        #expect(last == .end)
        #expect(p == [Part(name: "model", value: Array("whisper-1".utf8)), Part(name: "language", value: Array("en".utf8)),
                      Part(name: "file", filename: "a.wav", contentType: "audio/wav", value: file)])
    }

    /// The same parts however the body arrives: every single cut, and random multi-cuts.
    @Test func splitAtEveryOffset() {
        var file = [UInt8](repeating: 0, count: 300)
        var rng = TestRNG(seed: 7)
        for i in file.indices { file[i] = UInt8(truncatingIfNeeded: rng.next()) }
        // Near-miss delimiters inside the file.
        file.replaceSubrange(100..<100, with: Array("\r\n--\(Self.boundary.dropLast())X".utf8))
        file.replaceSubrange(10..<10, with: Array("\r\n-".utf8))
        let body = Self.upload(file: file)
        let (whole, end) = Self.parts(body)
        #expect(end == .end && whole.count == 3 && whole[2].value == file)
        for cut in 1..<body.count {
            let (p, e) = Self.parts(body, cuts: [cut])
            #expect(p == whole && e == .end, "cut at \(cut)")
        }
        for _ in 0..<200 {
            let cuts = (0..<Int(rng.next() % 6)).map { _ in Int(rng.next() % UInt64(body.count)) }
            let (p, e) = Self.parts(body, cuts: cuts)
            #expect(p == whole && e == .end, "cuts \(cuts)")
        }
    }

    /// The model field is known before the file has arrived.
    @Test func modelBeforeTheFile() {
        let body = Self.upload(file: [UInt8](repeating: 7, count: 100_000))
        let firstPartEnd = Array(body[0..<200]).firstRange(of: Array("\r\n--\(Self.boundary)\r\n".utf8))!.upperBound
        var s = Array(Self.boundary.utf8).withUnsafeBytes { MultipartScanner(boundary: $0) }!
        let prefix = Array(body[0..<firstPartEnd])
        let step = prefix.withUnsafeBytes { s.next($0, isComplete: false) }
        guard case .part(let p) = step else { Issue.record("got \(step)"); return }
        #expect(String(decoding: prefix[p.value.start..<p.value.end], as: UTF8.self) == "whisper-1")
    }

    @Test func preambleEpilogueEmptyHeadersAndPadding() {
        let b = Self.boundary
        let body = Array("This is a preamble.\r\n--\(b)  \t\r\n\r\nno headers\r\n--\(b)\r\ncontent-disposition: form-data;name=model\r\n\r\n\r\n--\(b)--epilogue".utf8)
        let (p, e) = Self.parts(body)
        #expect(e == .end)
        #expect(p == [Part(value: Array("no headers".utf8)), Part(name: "model", value: [])])
    }

    @Test(arguments: [
        ("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv", MultipartError.truncated),
        ("nothing here", .noBoundary),
        ("--B\r\nbroken header line\r\n\r\nv\r\n--B--", .malformed),
        ("--Bxx\r\n\r\nv\r\n--B--", .malformed),
        ("--B\r\n" + String(repeating: "X-Long: y\r\n", count: 20), .headersTooLarge),
        ("--B\r\n\r\nv\r\n--B", .truncated),
    ])
    func malformed(_ body: String, _ error: MultipartError) {
        let (_, last) = Self.parts(Array(body.utf8), boundary: "B", maxHeaderBytes: 64)
        #expect(last == .malformed(error))
    }

    @Test(arguments: [
        ("multipart/form-data; boundary=abc", "abc"),
        ("Multipart/Form-Data;boundary=\"a b:c\"", "a b:c"),
        ("multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", "----WebKitFormBoundary7MA4YWxkTrZu0gW"),
        ("multipart/form-data; BOUNDARY=x ", "x"),
    ])
    func boundaries(_ contentType: String, _ expected: String) {
        let b = Array(contentType.utf8)
        let r = b.withUnsafeBytes { MultipartScanner.boundary(contentType: $0) }
        #expect(r.map { String(decoding: b[$0.start..<$0.end], as: UTF8.self) } == expected)
    }

    @Test(arguments: ["application/json", "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=\"unterminated",
                      "multipart/mixed; boundary=a", "multipart/form-data; boundary=" + String(repeating: "x", count: 71), "multipart/form-data boundary=a"])
    func noBoundary(_ contentType: String) {
        #expect(Array(contentType.utf8).withUnsafeBytes { MultipartScanner.boundary(contentType: $0) } == nil)
    }

    @Test func scanMultipartFields() throws {
        let ct = Array("multipart/form-data; boundary=\(Self.boundary)".utf8)
        let body = Self.upload(file: [1, 2, 3], fields: [("model", "tiny-llama"), ("stream", "true"), ("max_completion_tokens", "64")])
        let result: Result<ScannedRequest, RequestScanError> = body.withUnsafeBytes { b in
            ct.withUnsafeBytes { t in Result { () throws(RequestScanError) -> ScannedRequest in try RequestScanner().scanMultipart(b, contentType: t) } }
        }
        let r = try result.get()
        #expect(r.hasModel && String(decoding: body[r.model.start..<r.model.end], as: UTF8.self) == "tiny-llama")
        #expect(r.stream == true && r.maxTokens == 64)
        func error(_ fields: [(String, String)], _ type: String = "multipart/form-data; boundary=\(Self.boundary)") -> RequestScanError? {
            let b = Self.upload(file: [], fields: fields)
            let t = Array(type.utf8)
            let r: Result<ScannedRequest, RequestScanError> = b.withUnsafeBytes { bb in
                t.withUnsafeBytes { tt in Result { () throws(RequestScanError) -> ScannedRequest in try RequestScanner().scanMultipart(bb, contentType: tt) } }
            }
            if case .failure(let e) = r { return e }
            return nil
        }
        #expect(error([("stream", "maybe")])?.kind == .wrongType(.stream, expected: .boolean))
        #expect(error([("max_completion_tokens", "0")])?.kind == .notInRange(.maxCompletionTokens, min: 1, max: Int64(Int32.max)))
        #expect(error([("max_completion_tokens", "99999999999999999999")])?.kind == .wrongType(.maxCompletionTokens, expected: .integer))
        #expect(error([("model", "m")], "application/json")?.kind == .malformedMultipart(.noBoundary))
        #expect(error([]) == nil)
        let truncated = Array(Self.upload(file: [9], fields: [("model", "m")]).dropLast(8))
        let e = truncated.withUnsafeBytes { b in ct.withUnsafeBytes { t in (try? RequestScanner().scanMultipart(b, contentType: t)) == nil } }
        #expect(e)
    }

    /// Random bytes never trap and ranges stay inside the body.
    @Test func randomBodiesNeverTrap() {
        var rng = TestRNG(seed: 99)
        let pieces = ["--B", "\r\n", "\r", "\n", "--", "Content-Disposition: form-data; name=\"", "filename=", "\"", ";", ":", "x", " ", "B"]
        for _ in 0..<5000 {
            var s = ""
            for _ in 0..<Int(rng.next() % 20) { s += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let body = Array(s.utf8)
            var sc = Array("B".utf8).withUnsafeBytes { MultipartScanner(boundary: $0, maxHeaderBytes: 32) }!
            var steps = 0
            body.withUnsafeBytes { b in
                while steps < 100 {
                    steps += 1
                    guard case .part(let p) = sc.next(b, isComplete: true) else { break }
                    #expect(p.value.start <= p.value.end && p.value.end <= body.count)
                    #expect(p.headers.end <= body.count)
                    if let n = p.name { #expect(n.start <= n.end && n.end <= body.count) }
                }
            }
            #expect(steps < 100)
        }
    }
}
