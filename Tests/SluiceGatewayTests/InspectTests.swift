import Foundation
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO
import Testing

/// An upstream speaking vLLM's streaming shape: content chunks, then (if the request asked for
/// it) a usage-only chunk with `"choices":[]`, then [DONE]. It echoes the body it got in a header.
func vllmLikeHandler() -> HTTPHandler {
    return { req, r in
        let body = String(decoding: req.body, as: UTF8.self)
        let wantsUsage = body.contains("\"include_usage\":true")
        if body.contains("\"stream\":true") {
            r.startStream(headers: [("Content-Type", "text/event-stream"), ("X-Seen-Body", body.replacingOccurrences(of: "\n", with: " "))])
            for t in ["Hel", "lo"] {
                r.writeChunk(Array("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(t)\"},\"finish_reason\":null}]}\n\n".utf8))
            }
            r.writeChunk(Array("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".utf8))
            if wantsUsage {
                r.writeChunk(Array("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n".utf8))
            }
            r.writeChunk(Array("data: [DONE]\n\n".utf8))
            r.endStream()
        } else {
            r.respond(status: 200, headers: [("Content-Type", "application/json"), ("X-Seen-Body", body)],
                      body: Array("{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"Hello\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}".utf8))
        }
    }
}

@Suite(.serialized) struct InspectTests {
    let chat = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

    @Test(arguments: [
        ("{\"model\":\"tiny\",\"messages\":[}", "Invalid JSON"),
        ("{\"model\":\"tiny\",\"messages\":[],\"n\":0}", "n"),
        ("{\"model\":7,\"messages\":[]}", "model"),
        ("[1,2]", "JSON object"),
        ("{\"model\":\"tiny\",\"messages\":[]} trailing", "Invalid JSON"),
    ])
    func malformedBodiesGet400WithoutReachingTheUpstream(_ body: String, _ mention: String) throws {
        let up = try TestUpstream(vllmLikeHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: body))
        let r = try #require(c.response())
        #expect(r.status == 400)
        let err = try #require((try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["error"] as? [String: Any])
        #expect(err["type"] as? String == "invalid_request_error")
        #expect((err["message"] as? String ?? "").contains(mention))
        // The connection stays usable, and nothing reached the upstream.
        c.send(request("GET", "/v1/models"))
        #expect(c.response()?.status == 200)
        #expect(up.acceptedConnections == 1)
    }

    @Test func usageIsRequestedUpstreamAndTheExtraChunkStripped() throws {
        let up = try TestUpstream(vllmLikeHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chat + ",\"stream\":true}"))
        let r = try #require(c.response())
        #expect(r.header("x-seen-body")?.contains("\"stream_options\":{\"include_usage\":true}") == true)
        #expect(!r.text.contains("\"usage\""))
        #expect(!r.text.contains("\"choices\":[]"))
        #expect(r.text.contains("\"content\":\"Hel\""))
        #expect(r.text.hasSuffix("data: [DONE]\n\n"))
    }

    @Test func clientsThatAskForUsageStillGetIt() throws {
        let up = try TestUpstream(vllmLikeHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chat + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}"))
        let r = try #require(c.response())
        #expect(r.text.contains("\"usage\":{\"prompt_tokens\":5"))
        // An options object without include_usage gets it added inside.
        c.send(request("POST", "/v1/chat/completions", body: chat + ",\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":false}}"))
        let r2 = try #require(c.response())
        #expect(r2.header("x-seen-body")?.contains("\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":false}") == true)
        #expect(!r2.text.contains("\"usage\""))
    }

    @Test func injectionCanBeTurnedOff() throws {
        let up = try TestUpstream(vllmLikeHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.proxy.requestUsage = false }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        let body = chat + ",\"stream\":true}"
        c.send(request("POST", "/v1/chat/completions", body: body))
        let r = try #require(c.response())
        #expect(r.header("x-seen-body") == body)
    }

    @Test func nonStreamingBodiesAreForwardedUnchanged() throws {
        let up = try TestUpstream(vllmLikeHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        let body = chat + ",\"temperature\":0}"
        c.send(request("POST", "/v1/chat/completions", body: body))
        let r = try #require(c.response())
        #expect(r.header("x-seen-body") == body)
        #expect(r.text.contains("\"usage\""))
    }
}
