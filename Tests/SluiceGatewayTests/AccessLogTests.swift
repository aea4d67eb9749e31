import Foundation
import Glibc
@testable import SluiceGateway
import SluiceIO
import Testing

@Suite(.serialized) struct AccessLogTests {
    @Test func oneJSONLinePerRequestWithoutPromptText() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-access-\(getpid()).log").path
        defer { unlink(path) }
        let up = try TestUpstream(modelEchoHandler("a"))
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint], workers: 2) {
            $0.accessLog = .file(path)
            $0.models = [GatewaySettings.Model(name: "tiny", pool: "default")]
        }
        let secret = "my secret prompt text"
        for i in 0..<12 {
            let c = try TestClient(port: port)
            c.send(request("POST", "/v1/chat/completions?key=abc", body: "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"\(secret)\"}]}",
                           headers: ["Authorization: Bearer sk-should-not-appear", "X-Request-Id: req-\(i)"]))
            #expect(c.response()?.status == 200)
        }
        gw.stop(grace: .seconds(1))  // flushes and closes the log
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 12)
        var ids = Set<String>()
        for l in lines {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
            #expect(obj["status"] as? Int == 200)
            #expect(obj["model"] as? String == "tiny")
            #expect(obj["pool"] as? String == "default")
            #expect(obj["endpoint"] as? String == up.endpoint.authority)
            #expect(obj["prompt_tokens"] as? Int == 1)
            #expect((obj["time"] as? String)?.hasSuffix("Z") == true)
            ids.insert(obj["request_id"] as? String ?? "")
        }
        #expect(ids == Set((0..<12).map { "req-\($0)" }))
        #expect(!text.contains(secret) && !text.contains("sk-should-not-appear") && !text.contains("key=abc"))
    }

    @Test func rfc3339() {
        #expect(AccessLogLine.rfc3339(1_795_394_416_123_000_000) == "2026-11-23T00:40:16.123Z")
    }
}
