import Foundation
import Testing

import SluiceLLM

/// Strict JSON validation: a corpus checked against expectations and, as a differential oracle,
/// against Foundation's JSONSerialization.
@Suite struct JSONValidatorTests {
    static let valid: [String] = [
        "{}", "[]", "0", "-0", "1", "-1", "123", "1.5", "-0.25", "1e5", "1E5", "1e+5", "1e-5", "1.5E-10",
        "0.0", "\"\"", "\"a\"", "true", "false", "null", " \t\n\r{} \t\n\r",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u20AC\"", "\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"",
        "\"é€😀\"", "\"\u{7F}\"", "[1,[2,[3,[4]]]]", "{\"a\":{\"b\":[true,false,null,{\"c\":\"d\"}]}}",
        "{\"a\" : 1 , \"b\" : [ 1 , 2 ] }", "{\"\":\"\"}", "{\"a\":1,\"a\":2}", "[\"\\u0000\"]",
        "123456789012345678901234567890", "1e400", "[-0.0e-0]",
    ]

    static let invalid: [(String, RequestScanError.Syntax)] = [
        ("", .unexpectedEnd), (" ", .unexpectedEnd), ("{", .unexpectedEnd), ("[", .unexpectedEnd),
        ("}", .expectedValue), ("]", .expectedValue), ("[1,]", .expectedValue), ("{\"a\":1,}", .expectedKey),
        ("{\"a\" 1}", .expectedColon), ("{a:1}", .expectedKey), ("{'a':1}", .expectedKey), ("['a']", .expectedValue),
        ("01", .leadingZero), ("-01", .leadingZero), ("00", .leadingZero), ("1.", .unexpectedEnd), ("[1.]", .invalidNumber),
        (".5", .expectedValue), ("1e", .unexpectedEnd), ("[1e]", .invalidNumber), ("+1", .expectedValue), ("-", .unexpectedEnd),
        ("[-]", .invalidNumber), ("[-a]", .invalidNumber), ("tru", .unexpectedEnd), ("True", .expectedValue), ("nul", .unexpectedEnd),
        ("[nulx]", .invalidLiteral), ("\"abc", .unexpectedEnd), ("\"\\x\"", .invalidEscape), ("\"\\u12\"", .invalidUnicodeEscape),
        ("\"\\uZZZZ\"", .invalidUnicodeEscape), ("\"\\ud800\"", .invalidUnicodeEscape), ("\"\\udc00\"", .invalidUnicodeEscape),
        ("\"\\ud800\\u0041\"", .invalidUnicodeEscape), ("\"\\ud800x\"", .invalidUnicodeEscape), ("\"\\ude00\\ud83d\"", .invalidUnicodeEscape),
        ("\"\t\"", .controlCharacterInString), ("\"a\nb\"", .controlCharacterInString), ("\"\u{01}\"", .controlCharacterInString),
        ("\"\u{00}\"", .controlCharacterInString), ("[1 2]", .expectedCommaOrArrayEnd), ("{\"a\":1 \"b\":2}", .expectedCommaOrObjectEnd),
        ("{} {}", .trailingData), ("[] x", .trailingData), ("1 2", .trailingData), ("NaN", .expectedValue), ("Infinity", .expectedValue),
        ("-Infinity", .invalidNumber), ("[1,,2]", .expectedValue), ("[,]", .expectedValue), ("{,}", .expectedKey), ("{\"a\"}", .expectedColon),
        ("{\"a\":}", .expectedValue), ("\u{FEFF}{}", .expectedValue), ("/* c */ {}", .expectedValue), ("[1]//", .trailingData),
        ("\"\\", .unexpectedEnd), ("\"\\u", .unexpectedEnd), ("\"\\ud83d\\", .unexpectedEnd), ("\"\\ud83d", .unexpectedEnd),
        ("0x10", .trailingData), ("1_000", .trailingData), ("[\"a\"\"b\"]", .expectedCommaOrArrayEnd),
    ]

    static let invalidUTF8: [[UInt8]] = [
        [0x22, 0xC3, 0x28, 0x22],              // bad continuation
        [0x22, 0xC0, 0xAF, 0x22],              // overlong '/'
        [0x22, 0xC1, 0xBF, 0x22],              // overlong
        [0x22, 0xE0, 0x80, 0xAF, 0x22],        // overlong 3-byte
        [0x22, 0xF0, 0x80, 0x80, 0xAF, 0x22],  // overlong 4-byte
        [0x22, 0xED, 0xA0, 0x80, 0x22],        // UTF-16 surrogate encoded in UTF-8
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],  // invalid lead byte
        [0x22, 0xE2, 0x82, 0x22],              // truncated sequence
        [0x22, 0x80, 0x22],                    // lone continuation
        [0x22, 0xFF, 0x22], [0x22, 0xFE, 0x22],
        [0x22, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xC3, 0x22],  // after a SWAR-skipped word
        [0x7B, 0x22, 0xC3, 0xA9, 0x22, 0x3A, 0xE9, 0x7D],              // outside a string
    ]

    @Test(arguments: valid)
    func acceptsValid(_ text: String) {
        #expect(validate(Array(text.utf8)) == nil, "\(text.debugDescription)")
    }

    @Test(arguments: invalid)
    func rejectsInvalid(_ text: String, _ expected: RequestScanError.Syntax) {
        let e = validate(Array(text.utf8))
        #expect(e?.kind == .syntax(expected), "\(text.debugDescription): \(String(describing: e))")
        if let e { #expect(e.offset >= 0 && e.offset <= text.utf8.count) }
    }

    @Test(arguments: invalidUTF8)
    func rejectsInvalidUTF8(_ bytes: [UInt8]) {
        let e = validate(bytes)
        #expect(e != nil)
        if let e, bytes.first == 0x22 { #expect(e.kind == .syntax(.invalidUTF8) || e.kind == .syntax(.expectedValue), "\(e)") }
    }

    /// Every valid UTF-8 encoding length and boundary scalar is accepted raw and matches Foundation.
    @Test(arguments: [0x80, 0x7FF, 0x800, 0xFFFF, 0xD7FF, 0xE000, 0xFFFD, 0x10000, 0x10FFFF, 0x1F600] as [UInt32])
    func acceptsBoundaryScalars(_ v: UInt32) {
        let s = "\"" + String(Unicode.Scalar(v)!) + "\""
        #expect(validate(Array(s.utf8)) == nil)
    }

    @Test func depthLimit() {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(validate(Array(ok.utf8)) == nil)
        #expect(validate(Array(deep.utf8))?.kind == .syntax(.tooDeep))
        // Very deep input fails fast instead of overflowing the stack.
        let huge = String(repeating: "{\"a\":", count: 100_000)
        #expect(validate(Array(huge.utf8))?.kind == .syntax(.tooDeep))
    }

    /// Differential: for every corpus entry, validity agrees with JSONSerialization. Known and
    /// intended differences are listed: Foundation accepts these, RFC 8259 strictness rejects them.
    @Test func agreesWithFoundation() {
        let foundationLenient: Set<String> = [
            "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"\\ude00\\ud83d\"",  // lone surrogates
            "\u{FEFF}{}",  // byte order mark
            "1e400",  // Foundation rejects out-of-range numbers; RFC 8259 allows them
            "[1,]", "{\"a\":1,}",  // Foundation (swift-foundation) tolerates trailing commas
        ]
        var disagreements: [String] = []
        let corpus = Self.valid.map { ($0, true) } + Self.invalid.map { ($0.0, false) }
        for (text, expectValid) in corpus {
            let ours = validate(Array(text.utf8)) == nil
            #expect(ours == expectValid, "\(text.debugDescription)")
            let theirs = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) != nil
            if ours != theirs && !foundationLenient.contains(text) { disagreements.append(text) }
        }
        for bytes in Self.invalidUTF8 {
            let theirs = (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
            if theirs { disagreements.append("\(bytes)") }
        }
        #expect(disagreements.isEmpty, "disagreements with JSONSerialization: \(disagreements)")
    }

    /// Random mutations of valid documents: whatever we accept, Foundation must accept too (we
    /// are never more lenient), and nothing crashes.
    @Test func mutationsNeverMoreLenientThanFoundation() {
        var rng = TestRNG(seed: 42)
        let seeds = Self.valid.filter { $0.utf8.count > 2 && $0 != "1e400" } + [
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9llo\"}],\"temperature\":0.5}",
        ]
        let alphabet = Array("{}[]\",:\\u0123456789.eE+-tfnrl \t\n".utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xA9, 0xED, 0xFF]
        var accepted = 0
        for _ in 0..<20_000 {
            var b = Array(seeds.randomElement(using: &rng)!.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0...b.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0 where i < b.count: b.remove(at: i)
                case 1 where i < b.count: b[i] = alphabet.randomElement(using: &rng)!
                default: b.insert(alphabet.randomElement(using: &rng)!, at: i)
                }
            }
            if validate(b) == nil {
                accepted += 1
                // Foundation rejects numbers beyond Double's range, which RFC 8259 allows: neutralise
                // long exponents before asking it.
                let theirs = (try? JSONSerialization.jsonObject(with: Data(Self.neutraliseExponents(b)), options: [.fragmentsAllowed])) != nil
                #expect(theirs, "we accept but Foundation rejects: \(String(decoding: b, as: UTF8.self).debugDescription) \(b)")
            }
        }
        #expect(accepted > 100)  // the mutation mix exercises both outcomes
    }

    /// Replaces exponents outside strings with `e0`.
    static func neutraliseExponents(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var inString = false
        var i = 0
        while i < b.count {
            let c = b[i]
            if inString {
                out.append(c)
                if c == UInt8(ascii: "\\"), i + 1 < b.count { out.append(b[i + 1]); i += 1 }
                else if c == UInt8(ascii: "\"") { inString = false }
                i += 1
            } else if c == UInt8(ascii: "\"") {
                inString = true
                out.append(c)
                i += 1
            } else if c | 0x20 == UInt8(ascii: "e"), i > 0, b[i - 1] >= 48 && b[i - 1] <= 57 || b[i - 1] == 46 {
                out.append(contentsOf: Array("e0".utf8))
                i += 1
                if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
                while i < b.count && b[i] >= 48 && b[i] <= 57 { i += 1 }
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }
}
