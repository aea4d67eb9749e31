import Foundation
import Testing

import SluiceLLM

/// The canonical form used for response-cache keys: equal for requests that differ only in
/// layout, different whenever anything that can change the output differs.
@Suite struct CanonicalJSONTests {
    func canon(_ s: String, dropping: [StaticString] = []) throws -> String {
        String(decoding: try CanonicalJSON.canonical(Array(s.utf8), dropping: dropping), as: UTF8.self)
    }

    @Test(arguments: [
        ("{}", "{}"), ("[]", "[]"), (" { } ", "{}"), ("[ 1 , 2 ]", "[1,2]"),
        ("{\"b\":1,\"a\":2}", "{\"a\":2,\"b\":1}"),
        ("{ \"z\" : [ {\"y\":true, \"x\":null} ] , \"a\" : \"s p\" }", "{\"a\":\"s p\",\"z\":[{\"x\":null,\"y\":true}]}"),
        ("\"x\"", "\"x\""), ("-1.5e3", "-1.5e3"),
        // Keys compare decoded ("\u0061" is "a"), and keep their spelling.
        ("{\"b\":1,\"\\u0061\":2}", "{\"\\u0061\":2,\"b\":1}"),
        // Duplicate keys keep their order (stable).
        ("{\"a\":2,\"a\":1}", "{\"a\":2,\"a\":1}"),
    ])
    func layoutIsNormalized(_ input: String, _ expected: String) throws {
        #expect(try canon(input) == expected)
    }

    @Test func equalRequestsShareAFormAndDifferentOnesDoNot() throws {
        let a = try canon("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0}")
        let b = try canon("{ \"temperature\": 0, \"messages\": [ { \"content\": \"hi\", \"role\": \"user\" } ], \"model\": \"m\" }")
        #expect(a == b)
        // Message order, values, strings and numbers as spelled all matter.
        let different = [
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi!\"}],\"temperature\":0}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.0}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0,\"max_tokens\":3}",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"hi\"}],\"temperature\":0}",
        ]
        for d in different { #expect(try canon(d) != a, "\(d)") }
    }

    @Test func droppedMembersAreTopLevelOnly() throws {
        let s = "{\"user\":\"u\",\"model\":\"m\",\"n\":1,\"metadata\":{\"user\":\"kept\"}}"
        #expect(try canon(s, dropping: ["model", "user"]) == "{\"metadata\":{\"user\":\"kept\"},\"n\":1}")
        #expect(try canon("{\"user\":\"a\",\"n\":1}", dropping: ["user"]) == canon("{\"n\":1,\"user\":\"b\"}", dropping: ["user"]))
    }

    @Test(arguments: ["", "{", "{\"a\"}", "[1,]", "{} x", "{\"a\":tru}", String(repeating: "[", count: 100) + String(repeating: "]", count: 100)])
    func malformedInputThrows(_ input: String) {
        #expect(throws: RequestScanError.self) { _ = try canon(input) }
    }

    /// Differential check: the canonical form parses to the same value as the input.
    @Test func canonicalFormIsEquivalentJSON() throws {
        let inputs = [
            "{\"b\":[1,{\"d\":\"x\",\"c\":[true,false,null]}],\"a\":{\"f\":-0.5,\"e\":\"\\u00e9\\n\"}}",
            "[{\"k\":{\"z\":1,\"y\":{\"x\":[]}}}, \"s\", 3]",
        ]
        for i in inputs {
            let original = try JSONSerialization.jsonObject(with: Data(i.utf8), options: [.fragmentsAllowed]) as! NSObject
            let canonical = try JSONSerialization.jsonObject(with: Data(try canon(i).utf8), options: [.fragmentsAllowed]) as! NSObject
            #expect(original == canonical)
        }
    }
}
