import Testing

@testable import SluiceLLM

/// SSEScanner.lineEnd (sixteen, then eight bytes a step) against its byte-by-byte definition.
@Suite struct SSELineEndTests {
    static func reference(_ b: [UInt8], from: Int) -> Int {
        var i = from
        while i < b.count && b[i] != 0x0A && b[i] != 0x0D { i += 1 }
        return i
    }

    static func lineEnd(_ b: [UInt8], from: Int) -> Int {
        b.withUnsafeBufferPointer { SSEScanner.lineEnd($0.baseAddress!, from: from, end: b.count) }
    }

    @Test func everyBreakAtEveryPositionFromEveryStart() {
        for n in 1...50 {  // three 16-byte steps, then words and bytes
            for breakByte: UInt8 in [0x0A, 0x0D] {
                for at in 0...n {  // n: no break at all
                    var b = [UInt8](repeating: UInt8(ascii: "x"), count: n)
                    if at < n { b[at] = breakByte }
                    for from in 0...n { #expect(Self.lineEnd(b, from: from) == Self.reference(b, from: from), "n \(n) at \(at) from \(from)") }
                }
            }
        }
    }

    @Test func neighboursOfTheBreakBytesAreNotBreaks() {
        // Bytes one off 0x0A and 0x0D, high bytes and zero never end a line; the first break does.
        var rng = UInt64(0x5EED)
        for _ in 0..<2000 {
            let n = Int(rng % 53) + 1
            var b = [UInt8](repeating: 0, count: n)
            for k in 0..<n {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                b[k] = [0x09, 0x0B, 0x0C, 0x0E, 0x00, 0x8A, 0x8D, 0xFF, 0x20, 0x0A, 0x0D][Int(rng >> 33) % 11]
            }
            let from = Int(rng >> 40) % (n + 1)
            #expect(Self.lineEnd(b, from: from) == Self.reference(b, from: from))
        }
    }
}
