import Foundation
import SluiceBase
import Testing

/// SHA-256 (API keys, the admin token, cache keys) against FIPS 180 vectors, split updates and
/// coreutils.
@Suite struct SHA256Tests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func sha256Vectors() {
        #expect(Hex.string(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Hex.string(SHA256.hash(b("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.string(SHA256.hash(b("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var million = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { million.update(chunk) }
        #expect(Hex.string(million.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Incremental updates split at every offset give the one-shot digest (block-boundary logic).
    @Test func sha256SplitAtEveryOffset() {
        let message = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = SHA256.hash(message)
        for cut in 0...message.count {
            var s = SHA256()
            s.update(Array(message[..<cut]))
            s.update(Array(message[cut...]))
            #expect(s.finalize() == whole, "cut at \(cut)")
        }
    }

    /// Differential: against coreutils' sha256sum for lengths around the padding boundaries.
    @Test func sha256MatchesSha256sum() throws {
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000] {
            let data = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            let input = Pipe(), output = Pipe()
            p.standardInput = input
            p.standardOutput = output
            try p.run()
            input.fileHandleForWriting.write(Data(data))
            try input.fileHandleForWriting.close()
            let out = output.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let expected = String(decoding: out.prefix(64), as: UTF8.self)
            #expect(Hex.string(SHA256.hash(data)) == expected, "length \(n)")
        }
    }
}

/// The one byte range of every layer: 32-bit storage, `Int` views.
@Suite struct ByteRangeTests {
    @Test func intViewsOfCompactStorage() {
        var r = ByteRange(start: 3, end: 10)
        #expect(r.count == 7 && !r.isEmpty && r == ByteRange(3, 10))
        r.end = 1 << 30
        #expect(r.end == 1 << 30 && r.count == (1 << 30) - 3)
        #expect(r.shifted(by: 5) == ByteRange(start: 8, end: (1 << 30) + 5))
        #expect(ByteRange.empty.isEmpty && ByteRange.empty.count == 0)
        #expect(MemoryLayout<ByteRange>.size == 8)
        let bytes: [UInt8] = Array("hello".utf8)
        bytes.withUnsafeBytes { #expect(Array(ByteRange(1, 4).bytes(in: $0)) == Array("ell".utf8)) }
    }
}
