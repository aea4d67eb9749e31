@testable import SluiceGateway
import SluiceHTTP
import SluiceIO
import Testing

/// The run-merging copier must produce exactly what copying each kept line on its own does.
@Suite struct FieldLineCopierTests {
    static let heads = [
        "GET / HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Drop: gone\r\nHost: a\r\nX-Drop-Too: x\r\nX-Keep: k\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a  \r\nX-Pad:\tv \t\r\nX-Next: n\r\nX-Drop: d\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Empty2:   \r\nX-Last: z\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Drop: 1\r\nX-Drop: 2\r\nHost: only\r\n\r\n",
    ]

    @Test(arguments: heads)
    func mergedRunsEqualLineByLineCopies(_ text: String) throws {
        let bytes = Array(text.utf8)
        var parser = HTTP1HeadParser(kind: .request, limits: HTTP1Limits())
        let head = HTTPHead(capacity: 100)
        try bytes.withUnsafeBytes { b in
            try #require(parser.parse(b, into: head) == .complete)
            let pool = BufferPool()
            var merged = pool.take()
            var naive = pool.take()
            var copier = FieldLineCopier()
            for i in 0..<head.count {
                let f = head[i]
                let name = String(decoding: b[Int(f.name.start)..<Int(f.name.end)], as: UTF8.self)
                if name.lowercased().hasPrefix("x-drop") { continue }
                copier.add(f, from: b, to: &merged)
                naive.append(UnsafeRawBufferPointer(rebasing: b[Int(f.name.start)..<Int(f.value.end)]))
                naive.append("\r\n")
            }
            copier.flush(from: b, to: &merged)
            #expect(Array(merged.readable) == Array(naive.readable),
                    "\(String(decoding: merged.readable, as: UTF8.self).debugDescription) vs \(String(decoding: naive.readable, as: UTF8.self).debugDescription)")
        }
    }
}
