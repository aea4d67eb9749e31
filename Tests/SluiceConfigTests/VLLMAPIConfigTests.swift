import SluiceSettings
import Testing
@testable import SluiceConfig

/// Issue 27's keys: passthrough, responses, realtime, pools[].protocol.
@Suite struct VLLMAPIConfigTests {
    let pools = "pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\n"

    func issues(_ yaml: String) -> [String] {
        do {
            _ = try ConfigLoader.load(text: yaml)
            return []
        } catch let e as ConfigInvalid {
            return e.issues.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    @Test func defaults() throws {
        let s = try ConfigLoader.load(text: pools)
        #expect(s.passthrough == nil)
        #expect(s.passthroughPolicy == .defaultPool)  // no models: a transparent proxy
        #expect(s.responses.maxIDs == 100_000 && s.responses.ttl == .seconds(3600))
        #expect(s.realtime.maxConnections == 1024 && s.realtime.idleTimeout == .seconds(300) && s.realtime.bufferBytes == 256 << 10)
        #expect(s.pools[0].serverProtocol == .openAI)
        let m = try ConfigLoader.load(text: pools + "models: [{ name: tiny, pool: p }]\n")
        #expect(m.passthroughPolicy == .deny)  // a curated gateway
    }

    @Test func everyKeyIsRead() throws {
        let s = try ConfigLoader.load(text: """
            pools: [{ name: p, endpoints: [http://127.0.0.1:1] }, { name: t, protocol: kserve_v2, endpoints: [http://127.0.0.1:2] }]
            models: [{ name: tiny, pool: p }]
            passthrough: default_pool
            responses: { max_ids: 500, ttl: 10m }
            realtime: { max_connections: 3, idle_timeout: 30s, buffer_bytes: 64KiB }
            """)
        #expect(s.passthrough == .defaultPool && s.passthroughPolicy == .defaultPool)
        #expect(s.responses.maxIDs == 500 && s.responses.ttl == .seconds(600))
        #expect(s.realtime.maxConnections == 3 && s.realtime.idleTimeout == .seconds(30) && s.realtime.bufferBytes == 64 << 10)
        #expect(s.pools[1].serverProtocol == .kserveV2)
        let v2 = try ConfigLoader.load(text: "pools: [{ name: t, protocol: v2, endpoints: [http://127.0.0.1:2] }]\n")
        #expect(v2.pools[0].serverProtocol == .kserveV2)
    }

    @Test(arguments: [
        ("passthrough: allow\n", "passthrough"),
        ("passthrough: [deny]\n", "passthrough"),
        ("responses: { max_ids: 0 }\n", "responses.max_ids"),
        ("responses: { ttl: 0s }\n", "responses.ttl"),
        ("responses: { ttl: 90d }\n", "responses.ttl"),
        ("responses: { size: 3 }\n", "responses.size"),
        ("realtime: { max_connections: -1 }\n", "realtime.max_connections"),
        ("realtime: { idle_timeout: 0s }\n", "realtime.idle_timeout"),
        ("realtime: { buffer_bytes: 10 }\n", "realtime.buffer_bytes"),
    ])
    func badValuesAreReported(_ yaml: String, _ path: String) {
        let found = issues(pools + yaml)
        #expect(found.contains { $0.contains(path) }, "\(found)")
    }

    @Test func aBadProtocolIsReported() {
        let found = issues("pools: [{ name: t, protocol: grpc, endpoints: [http://127.0.0.1:2] }]\n")
        #expect(found.contains { $0.contains("pools[0].protocol") && $0.contains("kserve_v2") }, "\(found)")
    }
}
