import Testing
@testable import SluiceHTTP

/// The eight-bytes-at-a-time helpers of the head parser against plain byte-by-byte
/// definitions, for every byte value at every position.
@Suite struct WordAtATimeTests {
    /// RFC 9110 tchar, spelled out independently of the parser's bitmaps.
    static let tchars = Set(Array("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))

    static func isAlphanumericOrDash(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
    }

    static func word(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    @Test func alphanumericOrDashPrefixForEveryByteAtEveryPosition() {
        for v in 0...255 {
            for k in 0..<8 {
                for filler in Array("aZ5-".utf8) {
                    var bytes = [UInt8](repeating: filler, count: 8)
                    bytes[k] = UInt8(v)
                    let expected = Self.isAlphanumericOrDash(UInt8(v)) ? 8 : k
                    #expect(CharacterClass.alphanumericOrDashPrefix(Self.word(bytes)) == expected, "byte \(v) at \(k)")
                }
            }
        }
    }

    @Test func alphanumericOrDashPrefixOnRandomWords() {
        var rng = LCG(seed: 42)
        for _ in 0..<20_000 {
            // Mostly name bytes, sometimes anything: the prefix length varies over 0...8.
            let bytes = (0..<8).map { _ in rng.next() % 8 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : Array("ab-Z09xY".utf8)[Int(rng.next() % 8)] }
            let expected = bytes.firstIndex { !Self.isAlphanumericOrDash($0) } ?? 8
            #expect(CharacterClass.alphanumericOrDashPrefix(Self.word(bytes)) == expected)
        }
    }

    @Test func lineFeedsMarksExactlyTheLFBytes() {
        for v in 0...255 {
            for k in 0..<8 {
                for filler: UInt8 in [0x0D, 0x0B, 0x8A, 0x41, 0x00, 0xFF] {
                    var bytes = [UInt8](repeating: filler, count: 8)
                    bytes[k] = UInt8(v)
                    let m = HTTP1HeadParser.lineFeeds(Self.word(bytes))
                    let expected = bytes.enumerated().reduce(UInt64(0)) { $0 | ($1.element == 10 ? UInt64(0x80) << (8 * UInt64($1.offset)) : 0) }
                    #expect(m == expected, "byte \(v) at \(k) among \(filler)")
                }
            }
        }
    }

    static func referenceEqual(_ a: [UInt8], _ literal: [UInt8]) -> Bool {
        a.count == literal.count && zip(a, literal).allSatisfy { ($0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0) == $1 }
    }

    static func caseInsensitiveEqual(_ a: [UInt8], _ literal: [UInt8]) -> Bool {
        a.withUnsafeBytes { ab in literal.withUnsafeBytes { lb in ASCIICase.equal(ab, ByteRange(0, a.count), lb) } }
    }

    @Test func caseInsensitiveEqualityAgainstTheByteWiseDefinition() {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-/.;=`{@[".utf8)
        var rng = LCG(seed: 7)
        for length in 0...24 {
            for _ in 0..<20 {
                let literal = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                // Any mix of cases matches.
                let cased = literal.map { $0 >= 97 && $0 <= 122 && rng.next() % 2 == 0 ? $0 - 32 : $0 }
                #expect(Self.caseInsensitiveEqual(cased, literal))
                // Every other value at every position does not (except the other case of a letter).
                for k in 0..<length {
                    for v in 0...255 {
                        var changed = cased
                        changed[k] = UInt8(v)
                        #expect(Self.caseInsensitiveEqual(changed, literal) == Self.referenceEqual(changed, literal),
                                "\(String(decoding: literal, as: UTF8.self)) with byte \(v) at \(k)")
                    }
                }
                // Lengths differ.
                if length > 0 { #expect(!Self.caseInsensitiveEqual(Array(cased.dropLast()), literal)) }
            }
        }
    }

    @Test func headerNamesAcceptExactlyTheTokenCharactersAtEveryPosition() {
        for v in 0...255 where v != 0x3A {  // ':' ends the name
            for k in 0..<12 {
                var name = Array("x-abcdefghij".utf8)
                name[k] = UInt8(v)
                let text = Array("GET / HTTP/1.1\r\nHost: a\r\n".utf8) + name + Array(": v\r\n\r\n".utf8)
                var p = HTTP1HeadParser(kind: .request, limits: HTTP1Limits())
                let head = HTTPHead(capacity: 16)
                let r = text.withUnsafeBytes { p.parse($0, into: head) }
                #expect((r == .complete) == Self.tchars.contains(UInt8(v)), "byte \(v) at \(k)")
                if r == .complete {
                    #expect(head.count == 2 && head[1].name == ByteRange(25, 37))
                }
            }
        }
    }
}

/// A deterministic generator for the tests above (Knuth's MMIX LCG; the high bits are used).
struct LCG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11 | state << 53
    }
}
