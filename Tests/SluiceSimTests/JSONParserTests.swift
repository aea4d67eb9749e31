import Foundation
@testable import SluiceSim
import Testing

/// The request-body parser, checked against Foundation's JSONSerialization.
@Suite struct JSONParserTests {
    static func foundation(_ v: Any) -> JSONValue {
        switch v {
        case is NSNull: return .null
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            return .number(n.doubleValue)
        case let s as String: return .string(s)
        case let a as [Any]: return .array(a.map(foundation))
        case let d as [String: Any]: return .object(d.keys.sorted().map { ($0, foundation(d[$0]!)) })
        default: fatalError("unexpected \(type(of: v))")
        }
    }

    static func sorted(_ v: JSONValue) -> JSONValue {
        switch v {
        case .array(let a): return .array(a.map(sorted))
        case .object(let m): return .object(m.sorted { $0.0 < $1.0 }.map { ($0.0, sorted($0.1)) })
        default: return v
        }
    }

    static let valid = [
        #"{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5}"#,
        #"  [1, -2.5, 3e2, 0, -0, 1E-3, true, false, null]  "#,
        #"{"a":{"b":{"c":[[],{}]}},"d":""}"#,
        #""\u00e9\ud83d\ude00 \n\t\"\\\/ caf\u00E9""#,
        "\"héllo wörld ✓ 😀\"",
        #"{"content":[{"type":"text","text":"part one"},{"type":"text","text":"part two"}]}"#,
        "123456789012",
        "0.5",
    ]

    @Test(arguments: valid)
    func agreesWithFoundation(_ text: String) throws {
        let ours = try JSONValue.parse(Array(text.utf8))
        let theirs = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        #expect(Self.sorted(ours) == Self.foundation(theirs))
    }

    static let invalid: [(String, Int, String)] = [
        (#"{"model":"#, 9, "Expecting value"),
        ("", 0, "Expecting value"),
        ("{", 1, "Expecting property name enclosed in double quotes"),
        (#"{"a" 1}"#, 5, "Expecting ':' delimiter"),
        (#"{"a":1 "b":2}"#, 7, "Expecting ',' delimiter"),
        ("[1,]", 3, "Expecting value"),
        (#"{"a":"x}"#, 5, "Unterminated string starting at"),
        ("[1] x", 4, "Extra data"),
        ("tru", 0, "Expecting value"),
        ("01", 1, "Extra data"),
        ("\"a\u{01}\"", 2, "Invalid control character at"),
        (#""\q""#, 1, "Invalid \\escape"),
    ]

    @Test(arguments: invalid)
    func rejectsWithPythonWording(_ c: (String, Int, String)) {
        #expect(throws: JSONParseError(offset: c.1, message: c.2)) { try JSONValue.parse(Array(c.0.utf8)) }
        // swift-corelibs-foundation accepts a trailing comma; Python (and we) do not.
        if c.0 != "[1,]" {
            #expect((try? JSONSerialization.jsonObject(with: Data(c.0.utf8), options: [.fragmentsAllowed])) == nil)
        }
    }

    @Test func deepNestingIsRefused() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(deep.utf8)) }
    }

    @Test func quoteRoundTrips() throws {
        for s in ["plain", "q\"uote", "back\\slash", "nl\nx", "\u{01}ctl", "é😀"] {
            let parsed = try JSONValue.parse(Array(JSONText.quote(s).utf8))
            #expect(parsed == .string(s))
        }
    }

    @Test func base64MatchesFoundation() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            #expect(Base64.encode(bytes) == Data(bytes).base64EncodedString())
        }
    }
}
