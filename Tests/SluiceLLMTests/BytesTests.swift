import Testing
import SluiceLLM

/// Bytes.equal (JSON key comparison, endpoint and finish-reason matching) against plain byte
/// equality.
@Suite struct BytesEqualTests {
    @Test func runsOfEveryLengthDifferingAtEveryPosition() {
        let base = (0..<48).map { UInt8(truncatingIfNeeded: 0x41 &+ $0 &* 7) }
        base.withUnsafeBytes { raw in
            let a = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            for n in 0...40 {
                var other = Array(base[3..<(3 + n)])
                other.withUnsafeBufferPointer { #expect(Bytes.equal(a + 3, $0.baseAddress!, n), "length \(n)") }
                for k in 0..<n {
                    for delta: UInt8 in [1, 0x20, 0x80] {
                        other = Array(base[3..<(3 + n)])
                        other[k] ^= delta
                        other.withUnsafeBufferPointer { #expect(!Bytes.equal(a + 3, $0.baseAddress!, n), "length \(n), byte \(k)") }
                    }
                }
            }
        }
    }
}
