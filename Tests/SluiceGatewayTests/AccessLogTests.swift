import SluiceSettings
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceIO
import SluiceBase
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
            #expect(obj["bytes"] as? Int == "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}".utf8.count)
            #expect((obj["time"] as? String)?.hasSuffix("Z") == true)
            ids.insert(obj["request_id"] as? String ?? "")
        }
        #expect(ids == Set((0..<12).map { "req-\($0)" }))
        #expect(!text.contains(secret) && !text.contains("sk-should-not-appear") && !text.contains("key=abc"))
    }

    /// Requests Sluice answers itself (unknown model, bad JSON, the model list) get a line too.
    @Test func requestsAnsweredByTheGatewayAreLogged() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-access-local-\(getpid()).log").path
        defer { unlink(path) }
        let up = try TestUpstream(modelEchoHandler("a"))
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.accessLog = .file(path)
            $0.models = [GatewaySettings.Model(name: "tiny", pool: "default")]
        }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chatBody("nope"), headers: ["X-Request-Id: unknown-model"]))
        #expect(c.response()?.status == 404)
        c.send(request("POST", "/v1/chat/completions?secret=1", body: "{not json", headers: ["X-Request-Id: bad-json"]))
        #expect(c.response()?.status == 400)
        let d = try TestClient(port: port)
        d.send(request("GET", "/v1/models", headers: ["X-Request-Id: list"]))
        #expect(d.response()?.status == 200)
        gw.stop(grace: .seconds(1))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var byID: [String: [String: Any]] = [:]
        for l in text.split(separator: "\n") {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
            byID[obj["request_id"] as? String ?? ""] = obj
        }
        #expect(byID["unknown-model"]?["status"] as? Int == 404)
        #expect(byID["bad-json"]?["status"] as? Int == 400)
        #expect(byID["bad-json"]?["path"] as? String == "/v1/chat/completions")
        #expect(byID["list"]?["status"] as? Int == 200)
        #expect(byID["list"]?["route_reason"] as? String == "answered_by_gateway")
        #expect(!text.contains("secret=1"))
    }

    /// With `auth`, the tenant's configured name (never the key) and, with flow control on, the
    /// request's priority band are in every forwarded request's line.
    @Test func tenantAndPriorityBand() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-access-tenant-\(getpid()).log").path
        defer { unlink(path) }
        let up = try TestUpstream(modelEchoHandler("a"))
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.accessLog = .file(path)
            $0.models = [GatewaySettings.Model(name: "tiny", pool: "default")]
            var auth = GatewaySettings.Auth()
            auth.keys[SHA256.hash(Array("sk-team-a-key".utf8))] = "team-a"
            auth.priorities[SHA256.hash(Array("sk-team-a-key".utf8))] = GatewaySettings.KeyPriority(band: .critical, allowHeader: false)
            $0.auth = auth
        }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny"), headers: ["Authorization: Bearer sk-team-a-key"]))
        #expect(c.response()?.status == 200)
        gw.stop(grace: .seconds(1))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n")[0].utf8)) as? [String: Any])
        #expect(obj["tenant"] as? String == "team-a")
        #expect(obj["priority"] as? String == "critical")
        #expect(!text.contains("sk-team-a-key"))
    }

    @Test func rfc3339() {
        #expect(AccessLogLine.rfc3339(1_795_394_416_123_000_000) == "2026-11-23T00:40:16.123Z")
    }
}
