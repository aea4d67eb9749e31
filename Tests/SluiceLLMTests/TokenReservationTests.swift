import SluiceLLM
import Testing

/// Reservations against token limits and their settlement: exact values, and no trap for any
/// input the scanners let through (or anything else).
@Suite struct TokenReservationTests {
    func scanned(_ body: String, _ endpoint: OpenAIEndpoint = .chatCompletions) throws -> ScannedRequest {
        try scan(body, endpoint).result
    }

    @Test func promptBytesOverFourRoundedUpPlusTokenIDs() throws {
        // "hello" (5) + role "user" (4) = 9 bytes → 3 tokens.
        let chat = try scanned(#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#)
        #expect(TokenReservation.promptTokens(chat) == (chat.promptBytes + 3) / 4)
        let ids = "[" + (1...1500).map(String.init).joined(separator: ",") + "]"
        let tokens = try scanned(#"{"model":"m","prompt":\#(ids)}"#, .completions)
        #expect(TokenReservation.promptTokens(tokens) == 1500)
    }

    @Test(arguments: [
        (#"{"model":"m","prompt":"abcd","max_tokens":10}"#, OpenAIEndpoint.completions, 4096, 1 + 10),
        (#"{"model":"m","prompt":"abcd","max_tokens":10,"n":3}"#, .completions, 4096, 1 + 30),
        (#"{"model":"m","prompt":"abcd"}"#, .completions, 500, 1 + 500),
        (#"{"model":"m","prompt":"abcd","n":2}"#, .completions, 500, 1 + 1000),
        (#"{"model":"m","input":"abcd"}"#, .embeddings, 500, 1),
        (#"{"model":"m","prompt":"abcd","max_tokens":2147483647,"n":2147483647}"#, .completions, 4096, 1 + 2147483647 * 2147483647),
    ])
    func estimate(_ body: String, _ endpoint: OpenAIEndpoint, _ defaultMax: Int, _ expected: Int) throws {
        #expect(TokenReservation.estimate(try scanned(body, endpoint), endpoint: endpoint, defaultMaxTokens: defaultMax) == expected)
    }

    @Test func chargeIsUsageOrAtLeastTheReservation() {
        let u = Usage(promptTokens: 7, completionTokens: 5)
        #expect(TokenReservation.charge(reserved: 100, promptEstimate: 10, usage: u, relayedTokens: 3) == 12)
        // No usage: never less than reserved; more when more tokens were relayed.
        #expect(TokenReservation.charge(reserved: 100, promptEstimate: 10, usage: nil, relayedTokens: 3) == 100)
        #expect(TokenReservation.charge(reserved: 100, promptEstimate: 10, usage: nil, relayedTokens: 500) == 510)
    }

    @Test func arithmeticSaturates() {
        #expect(TokenReservation.saturatingAdd(.max, 1) == .max)
        #expect(TokenReservation.saturatingAdd(.min, -1) == .min)
        #expect(TokenReservation.saturatingAdd(2, 3) == 5)
        #expect(TokenReservation.saturatingMultiply(.max, 2) == .max)
        #expect(TokenReservation.saturatingMultiply(.min, 2) == .min)
        #expect(TokenReservation.saturatingMultiply(-3, .max) == .min)
        #expect(TokenReservation.saturatingMultiply(6, 7) == 42)
        let huge = Usage(promptTokens: .max, completionTokens: .max)
        #expect(huge.totalTokens == .max)
        #expect(TokenReservation.charge(reserved: 1, promptEstimate: .max, usage: nil, relayedTokens: .max) == .max)
        #expect(TokenReservation.charge(reserved: 1, promptEstimate: 0, usage: huge, relayedTokens: 0) == .max)
    }

    /// Usage counts from a model server are bounded too: absurd ones read as unknown.
    @Test func usageCountsAreBounded() {
        let body = Array(#"{"choices":[],"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":2147483647}}"#.utf8)
        let r = body.withUnsafeBytes { ResponseScanner.scan($0) }
        #expect(r?.usage?.promptTokens == 0)
        #expect(r?.usage?.completionTokens == 2147483647)
    }
}

/// The tail of a JSON body too large to keep whole.
@Suite struct ResponseTailTests {
    func tail(_ s: String) -> ScannedResponse { Array(s.utf8).withUnsafeBytes { ResponseScanner.scanTail($0) } }

    @Test func readsTheLastUsageAndFinishReason() {
        let r = tail(#"aaaa"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12},"x":null}"#)
        #expect(r.usage == Usage(promptTokens: 5, completionTokens: 7, totalTokens: 12))
        #expect(r.finishReason == .length)
    }

    @Test func textPosingAsAKeyIsNotOne() {
        // Generated text that spells `,"usage":{...}` has its quotes escaped.
        let r = tail(#"xx, \"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":50,"completion_tokens":70}}"#)
        #expect(r.usage?.promptTokens == 50 && r.usage?.completionTokens == 70)
        let only = tail(#"content":"a \"usage\": {\"prompt_tokens\":1}"}"#)
        #expect(only.usage == nil)
    }

    @Test func whitespaceAroundTheKeyAndAMissingUsage() {
        #expect(tail("{ \"usage\" : {\"prompt_tokens\": 3, \"completion_tokens\": 4} }").usage == Usage(promptTokens: 3, completionTokens: 4))
        #expect(tail(#"{"a":1}"#).usage == nil)
        #expect(tail("").usage == nil)
        #expect(tail(#""usage""#).usage == nil)
    }
}

@Suite struct TokenReservationTableTests {
    @Test func everyEndpoint() throws {
        let messages = try scanFor(#"{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"12345678"}]}"#, .messages)
        #expect(TokenReservation.estimate(messages.result, for: .messages, defaultMaxTokens: 7) == (4 + 8) / 4 + 100)  // "user" + the text, 4 bytes a token
        let responses = try scanFor(#"{"input":"1234","max_output_tokens":9}"#, .responses)
        #expect(TokenReservation.estimate(responses.result, for: .responses, defaultMaxTokens: 7) == 1 + 9)
        let open = try scanFor(#"{"input":"1234"}"#, .responses)
        #expect(TokenReservation.completionTokens(open.result, for: .responses, defaultMaxTokens: 7) == 7)
        let rerank = try scanFor(#"{"query":"1234","documents":["12345"]}"#, .rerank)
        #expect(TokenReservation.estimate(rerank.result, for: .rerank, defaultMaxTokens: 7) == 3)
        let detok = try scanFor(#"{"tokens":[1,2,3]}"#, .detokenize)
        #expect(TokenReservation.estimate(detok.result, for: .detokenize, defaultMaxTokens: 7) == 3)
        // Same as the OpenAI overload on the OpenAI three.
        let chat = try scan(#"{"model":"m","n":2,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
        for e in [OpenAIEndpoint.chatCompletions, .completions, .embeddings] {
            #expect(TokenReservation.estimate(chat.result, endpoint: e, defaultMaxTokens: 3)
                    == TokenReservation.estimate(chat.result, for: LLMEndpoint(e), defaultMaxTokens: 3))
        }
        #expect(TokenReservation.completionTokens(chat.result, for: .messages, defaultMaxTokens: .max) == 10)
    }
}
