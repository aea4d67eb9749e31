import Testing
@testable import SluiceHTTP

/// RFC 8441 on the codec's side: what a stream's `:method` and `:protocol` ask for, what is
/// refused and how, and the `Sec-WebSocket-Key` the gateway sends upstream in the client's name.
struct HTTP2ExtendedConnectTests {
    @Test(arguments: [
        ("GET", "", HTTP2RequestKind.request),
        ("POST", "", .request),
        ("CONNECT", "", .plainConnect),
        ("CONNECT", "websocket", .websocket),
        ("CONNECT", "WebSocket", .websocket),
        ("CONNECT", "websockets", .unsupportedProtocol),
        ("CONNECT", "connect-udp", .unsupportedProtocol),
        ("CONNECT", "websocke", .unsupportedProtocol),
        ("GET", "websocket", .unsupportedProtocol),
        ("connect", "websocket", .unsupportedProtocol),  // methods are case-sensitive
        ("connect", "", .request),
    ])
    func classify(method: String, proto: String, expected: HTTP2RequestKind) {
        let kind = Array(method.utf8).withUnsafeBytes { m in
            Array(proto.utf8).withUnsafeBytes { HTTP2RequestKind.classify(method: m, protocol: $0) }
        }
        #expect(kind == expected)
    }

    @Test func onlyRequestsAndWebSocketsAreServed() {
        #expect(HTTP2RequestKind.request.refusal == nil)
        #expect(HTTP2RequestKind.websocket.refusal == nil)
        #expect(HTTP2RequestKind.plainConnect.refusal?.status == 405)
        #expect(HTTP2RequestKind.unsupportedProtocol.refusal?.status == 400)
        #expect(HTTP2RequestKind.unsupportedProtocol.refusal?.message.contains(":protocol websocket") == true)
    }

    @Test func webSocketKeyIsSixteenBytesInBase64() {
        // RFC 6455 §1.3's example nonce, "the sample nonce".
        let nonce = Array("the sample nonce".utf8)
        var a: UInt64 = 0, b: UInt64 = 0
        for k in 0..<8 {
            a = a << 8 | UInt64(nonce[k])
            b = b << 8 | UInt64(nonce[8 + k])
        }
        #expect(String(decoding: HTTP2RequestKind.webSocketKey((a, b)), as: UTF8.self) == "dGhlIHNhbXBsZSBub25jZQ==")
        #expect(HTTP2RequestKind.webSocketKey((0, 0)).count == 24)
        #expect(HTTP2RequestKind.webSocketKey((.max, .max)) == Array("/////////////////////w==".utf8))
    }

    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")])
    func base64MatchesRFC4648(input: String, output: String) {
        #expect(String(decoding: HTTP2RequestKind.base64(Array(input.utf8)), as: UTF8.self) == output)
    }
}
