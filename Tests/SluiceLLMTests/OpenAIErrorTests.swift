import Foundation
import Testing

import SluiceLLM

@Suite struct OpenAIErrorTests {
    static func decode(_ e: OpenAIError) throws -> [String: Any] {
        let obj = try JSONSerialization.jsonObject(with: Data(e.render())) as? [String: Any]
        return try #require(obj?["error"] as? [String: Any])
    }

    @Test(arguments: [
        (OpenAIError.invalidRequest("bad", param: "model"), 400, "invalid_request_error", "model", nil),
        (OpenAIError.invalidAPIKey(), 401, "invalid_request_error", nil, "invalid_api_key"),
        (OpenAIError.modelNotFound("gpt-x"), 404, "invalid_request_error", "model", "model_not_found"),
        (OpenAIError.requestTimeout(), 408, "invalid_request_error", nil, "request_timeout"),
        (OpenAIError.requestTooLarge(limitBytes: 1024), 413, "invalid_request_error", nil, "request_too_large"),
        (OpenAIError.rateLimited(.requests, limit: 10, retryAfterSeconds: 1.5), 429, "requests", nil, "rate_limit_exceeded"),
        (OpenAIError.rateLimited(.tokens, limit: 1000), 429, "tokens", nil, "rate_limit_exceeded"),
        (OpenAIError.headersTooLarge(), 431, "invalid_request_error", nil, "request_header_fields_too_large"),
        (OpenAIError.internalError(), 500, "server_error", nil, nil),
        (OpenAIError.badGateway(), 502, "server_error", nil, "bad_gateway"),
        (OpenAIError.serviceUnavailable(), 503, "server_error", nil, "service_unavailable"),
        (OpenAIError.gatewayTimeout(), 504, "timeout", nil, "upstream_timeout"),
    ] as [(OpenAIError, Int, String, String?, String?)])
    func commonErrors(_ e: OpenAIError, _ status: Int, _ type: String, _ param: String?, _ code: String?) throws {
        #expect(e.status == status)
        let d = try Self.decode(e)
        #expect(d["message"] as? String == e.message)
        #expect(d["type"] as? String == type)
        #expect(d["param"] as? String == param)
        #expect(d["code"] as? String == code)
        if param == nil { #expect(d["param"] is NSNull) }
    }

    @Test(arguments: ["quote \" backslash \\ slash /", "ctl \u{0}\u{1}\u{8}\u{9}\u{A}\u{C}\u{D}\u{1F}\u{7F}", "é€😀 \u{2028}", "", "model `a3`"])
    func escaping(_ message: String) throws {
        let e = OpenAIError.invalidRequest(message, param: "p\"q")
        #expect(try Self.decode(e)["message"] as? String == message)
        #expect(try Self.decode(e)["param"] as? String == "p\"q")
        // Our own strict validator accepts what we render.
        #expect(validate(e.render()) == nil)
    }

    @Test func exactBytes() {
        let e = OpenAIError(status: 400, message: "a\"b\n", type: "invalid_request_error", param: nil, code: "x")
        #expect(String(decoding: e.render(), as: UTF8.self)
            == "{\"error\":{\"message\":\"a\\\"b\\n\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"x\"}}")
    }

    @Test func renderIntoBuffer() {
        let e = OpenAIError.modelNotFound("m")
        let full = e.render()
        var buf = [UInt8](repeating: 0, count: full.count)
        let n = buf.withUnsafeMutableBytes { e.render(into: $0) }
        #expect(n == full.count && buf == full)
        var small = [UInt8](repeating: 0, count: full.count - 1)
        #expect(small.withUnsafeMutableBytes { e.render(into: $0) } == nil)
    }

    @Test func fromScanError() {
        let e = scanError(Array("{\"model\":\"m\" \"x\":1}".utf8))!.openAIError
        #expect(e.status == 400 && e.type == "invalid_request_error" && e.param == nil)
        #expect(e.message == "Invalid JSON at byte 13: expected ',' or '}'")
        #expect(scanError(Array("{}".utf8))!.openAIError.param == "model")
    }
}
