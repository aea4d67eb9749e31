import Testing
@testable import SluiceHTTP

/// Decodes `text` fed in pieces of `step` bytes; returns the payload, the end offset in the
/// whole input, or the error.
func decodeChunked(_ text: String, step: Int) -> (payload: String, end: Int?, error: HTTPParseError?) {
    let bytes = Array(text.utf8)
    var d = ChunkedDecoder()
    var payload: [UInt8] = []
    var offset = 0
    while offset < bytes.count {
        let piece = Array(bytes[offset..<min(bytes.count, offset + step)])
        var pos = 0
        loop: while true {
            let ev = piece.withUnsafeBytes { d.next($0, from: pos) }
            switch ev {
            case .data(let s, let e):
                payload += piece[s..<e]
                pos = e
            case .needMore:
                break loop
            case .done(let end):
                return (String(decoding: payload, as: UTF8.self), offset + end, nil)
            case .error(let err):
                return (String(decoding: payload, as: UTF8.self), nil, err)
            }
        }
        offset += piece.count
    }
    return (String(decoding: payload, as: UTF8.self), nil, nil)
}

@Suite struct ChunkedDecoderTests {
    @Test func decodesAtEverySplit() {
        let body = "5\r\nhello\r\nA;ext=1\r\n, world!!!\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
        for step in 1...body.utf8.count {
            let r = decodeChunked(body, step: step)
            #expect(r.error == nil)
            #expect(r.payload == "hello, world!!!")
            #expect(r.end == body.utf8.count - 4, "step \(step)")
        }
    }

    @Test(arguments: [
        "x\r\n", "5\r\nhelloX\r\n", "5\nhello\r\n", "5\r\nhello\r\n0\r\n\n",
        "fffffffffffffffff\r\n", "5\r\nhello\r\n0\r\nbad\u{0}trailer\r\n\r\n", "\r\n",
    ])
    func rejects(_ text: String) {
        for step in [1, 3, 100] {
            #expect(decodeChunked(text, step: step).error != nil, "\(text.debugDescription)")
        }
    }

    @Test func uppercaseHexAndLargeSizes() {
        let chunk = String(repeating: "z", count: 0x1AB)
        let r = decodeChunked("1AB\r\n\(chunk)\r\n0\r\n\r\n", step: 64)
        #expect(r.payload == chunk)
        #expect(r.error == nil)
    }
}

@Suite struct ChunkedWholeTests {
    @Test func decodesACompleteBodyAndReportsWhereItEnds() {
        let text = Array("HEAD5\r\nhello\r\n0\r\n\r\nNEXT".utf8)
        let r = text.withUnsafeBytes { ChunkedDecoder.decodeWhole($0, from: 4) }
        #expect(r == .complete(payload: Array("hello".utf8), end: text.count - 4))
    }

    @Test func incompleteAndInvalidBodies() {
        #expect(Array("5\r\nhel".utf8).withUnsafeBytes { ChunkedDecoder.decodeWhole($0, from: 0) } == .incomplete)
        #expect(Array("z\r\n".utf8).withUnsafeBytes { ChunkedDecoder.decodeWhole($0, from: 0) } == .invalid)
    }
}

/// Chunk extensions are bounded per chunk (a client could otherwise stream an endless one).
@Suite struct ChunkExtensionBoundTests {
    func decode(_ s: [UInt8]) -> ChunkedDecoder.Event {
        var d = ChunkedDecoder()
        return s.withUnsafeBytes { b in
            var pos = 0
            while true {
                let e = d.next(b, from: pos)
                if case .data(_, let end) = e { pos = end; continue }
                return e
            }
        }
    }

    @Test func extensionsUpToTheBoundAreSkipped() {
        let ext = Array(";a=".utf8) + [UInt8](repeating: UInt8(ascii: "b"), count: 4096 - 3)
        #expect(decode(Array("1".utf8) + ext + Array("\r\nx\r\n0\r\n\r\n".utf8)) == .done(end: 1 + ext.count + 10))
    }

    @Test func longerExtensionsAreAnError() {
        let ext = Array(";a=".utf8) + [UInt8](repeating: UInt8(ascii: "b"), count: 4096)
        #expect(decode(Array("1".utf8) + ext) == .error(.badChunk("chunk extension too long")))
        // Fed a byte at a time, the count carries across calls.
        var d = ChunkedDecoder()
        let all = Array("1".utf8) + ext
        var last = ChunkedDecoder.Event.needMore
        for i in 0..<all.count {
            last = all.withUnsafeBytes { d.next(UnsafeRawBufferPointer(rebasing: $0[0...i]), from: i) }
            if case .error = last { break }
        }
        #expect(last == .error(.badChunk("chunk extension too long")))
    }
}
