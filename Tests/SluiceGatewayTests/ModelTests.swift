import SluiceSettings
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceHTTP
import SluiceIO
import SluiceRouting
import Testing

/// An upstream that answers with the `model` it was sent.
func modelEchoHandler(_ name: String) -> HTTPHandler {
    return { req, r in
        let body = String(decoding: req.body, as: UTF8.self)
        r.respond(status: 200, headers: [("Content-Type", "application/json"), ("X-Server", name), ("X-Seen-Body", body)],
                  body: Array("{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}".utf8))
    }
}

func chatBody(_ model: String, user: String? = nil) -> String {
    "{\"model\":\"\(model)\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" + (user.map { ",\"user\":\"\($0)\"" } ?? "") + "}"
}

@Suite(.serialized) struct ModelTests {
    func settings(_ a: TestUpstream, _ b: TestUpstream) -> (inout GatewaySettings) -> Void {
        return { s in
            s.pools = [.init(name: "base", endpoints: [a.endpoint]), .init(name: "lora", endpoints: [b.endpoint])]
            var tiny = GatewaySettings.Model(name: "tiny", pool: "base")
            tiny.upstreamModel = "tiny-llama"
            var sql = GatewaySettings.Model(name: "sql", pool: "base", adapter: "sql-lora")
            sql.adapterPath = "/adapters/sql"
            var v1 = GatewaySettings.Model(name: "chat-v1", pool: "base")
            v1.upstreamModel = "tiny-llama"
            let v2 = GatewaySettings.Model(name: "chat-v2", pool: "lora")
            var chat = GatewaySettings.Model(name: "chat")
            chat.split = [("chat-v1", 90), ("chat-v2", 10)]
            chat.sticky = .user
            s.models = [tiny, sql, v1, v2, chat]
        }
    }

    @Test func modelsResolveToPoolsAndUpstreamNames() throws {
        let a = try TestUpstream(modelEchoHandler("a")), b = try TestUpstream(modelEchoHandler("b"))
        defer { a.stop(); b.stop() }
        let (gw, port) = try startGateway([a.endpoint], configure: settings(a, b))
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/v1/chat/completions", body: chatBody("tiny")))
        var r = try #require(c.response())
        #expect(r.header("x-server") == "a")
        #expect(r.header("x-seen-body") == chatBody("tiny-llama"))
        #expect(r.header("x-sluice-arm") == nil)
        // An adapter model is sent as the adapter's name.
        c.send(request("POST", "/v1/chat/completions", body: chatBody("sql")))
        r = try #require(c.response())
        #expect(r.header("x-seen-body") == chatBody("sql-lora"))
        // Unknown models: 404 model_not_found, nothing forwarded.
        c.send(request("POST", "/v1/chat/completions", body: chatBody("nope")))
        r = try #require(c.response())
        #expect(r.status == 404)
        #expect(r.text.contains("\"code\":\"model_not_found\""))
        #expect(r.text.contains("`nope`"))
        // Paths that are not the OpenAI API: 404; the model list comes from Sluice.
        c.send(request("GET", "/other"))
        #expect(c.response()?.status == 404)
        c.send(request("GET", "/v1/models"))
        r = try #require(c.response())
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        #expect(list["object"] as? String == "list")
        let data = try #require(list["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["tiny", "sql", "chat-v1", "chat-v2", "chat"])
        #expect(data[1]["parent"] as? String == "tiny")
        #expect(data[0]["parent"] is NSNull)
        #expect(a.acceptedConnections == 1 && b.acceptedConnections == 0)
    }

    @Test func splitsAreWeightedAndStickyAndReported() throws {
        let a = try TestUpstream(modelEchoHandler("a")), b = try TestUpstream(modelEchoHandler("b"))
        defer { a.stop(); b.stop() }
        let (gw, port) = try startGateway([a.endpoint], configure: settings(a, b))
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        var arms: [String: Int] = [:]
        var userArm: [String: String] = [:]
        for i in 0..<600 {
            let user = "user-\(i % 60)"
            c.send(request("POST", "/v1/chat/completions", body: chatBody("chat", user: user)))
            let r = try #require(c.response())
            let arm = try #require(r.header("x-sluice-arm"))
            arms[arm, default: 0] += 1
            #expect(r.header("x-server") == (arm == "chat-v1" ? "a" : "b"))
            if let prev = userArm[user] { #expect(prev == arm, "user \(user) moved arms") }
            userArm[user] = arm
        }
        #expect(Set(arms.keys) == ["chat-v1", "chat-v2"])
    }

    /// 10,000 draws: the split is 90/10 within ±1.5 %, sticky keys never move, and changing a
    /// weight moves only users that must move (rendezvous hashing).
    @Test func splitStatistics() {
        var s = GatewaySettings(listen: [], workers: 1, pools: [.init(name: "p", endpoints: [])])
        var chat = GatewaySettings.Model(name: "chat")
        chat.split = [("v1", 90), ("v2", 10)]
        chat.sticky = .user
        s.models = [GatewaySettings.Model(name: "v1", pool: "p"), GatewaySettings.Model(name: "v2", pool: "p"), chat]
        let table = ModelTable(s)
        var rng = SplitMix64(seed: 42)
        func random() -> Double { rng.nextUnit() }
        func arm(_ t: ModelTable, key: UInt64?) -> String {
            Array("chat".utf8).withUnsafeBytes { t.resolve($0, stickyKey: { _ in key }, random: random)!.arm! }
        }
        var random90 = 0, sticky90 = 0
        var before: [String] = []
        for i in 0..<10_000 {
            if arm(table, key: nil) == "v1" { random90 += 1 }
            let a = arm(table, key: ModelTable.hash(Array("user-\(i)".utf8)))
            before.append(a)
            if a == "v1" { sticky90 += 1 }
            #expect(arm(table, key: ModelTable.hash(Array("user-\(i)".utf8))) == a)
        }
        #expect(abs(Double(random90) / 10_000 - 0.9) <= 0.015)
        #expect(abs(Double(sticky90) / 10_000 - 0.9) <= 0.015)
        // Shift to 80/20: only v1 users move, about 1/9 of them.
        s.models[2].split = [("v1", 80), ("v2", 20)]
        let shifted = ModelTable(s)
        var moved = 0
        for i in 0..<10_000 {
            let a = arm(shifted, key: ModelTable.hash(Array("user-\(i)".utf8)))
            if a != before[i] {
                #expect(before[i] == "v1" && a == "v2")
                moved += 1
            }
        }
        #expect(abs(Double(moved) / 10_000 - 0.1) <= 0.015)
    }
}
