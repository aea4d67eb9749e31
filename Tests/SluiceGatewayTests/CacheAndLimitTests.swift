import SluiceSettings
import SluiceBase
import Foundation
import Glibc
@testable import SluiceGateway
import SluiceHTTP
import SluiceIO
import SluiceRedis
import Testing

/// A redis-server owned by one test, on a free loopback port, ended by its PID.
final class TestRedis: @unchecked Sendable {
    let port: UInt16
    private var process: Process?

    init() throws {
        port = freePort()
        try start()
    }

    deinit { stop() }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        p.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let ok = eventually(10) { (try? TestClient(port: port)) != nil }
        if !ok { stop() }
        try #require(ok, "redis-server did not start")
    }

    /// SIGKILL, like a crash: no goodbye on the sockets.
    func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    var settings: GatewaySettings.Redis {
        var c = RedisConfiguration(url: RedisURL(host: "127.0.0.1", port: port), address: SocketAddress("127.0.0.1:\(port)")!)
        c.commandTimeout = .milliseconds(300)
        c.reconnectBaseDelay = .milliseconds(20)
        c.reconnectMaxDelay = .milliseconds(200)
        return GatewaySettings.Redis(configuration: c)
    }
}

/// A model server stand-in that counts the requests it gets and answers each one differently
/// (`reply-<n>`), so a test can tell a cached answer from a fresh one. Streams when asked,
/// with usage when asked; a prompt containing `fail` gets a 500.
func countingModelHandler(_ count: Counter) -> HTTPHandler {
    return { req, r in
        let n = count.load(ordering: .relaxed) + 1
        count.store(n, ordering: .relaxed)
        let body = String(decoding: req.body, as: UTF8.self)
        if body.contains("fail") {
            r.respond(status: 500, headers: [("Content-Type", "application/json")], body: Array("{\"error\":{\"message\":\"boom\"}}".utf8))
            return
        }
        let usage = "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}"
        if body.contains("\"stream\":true") {
            r.startStream(headers: [("Content-Type", "text/event-stream")])
            for (i, word) in ["reply", "-\(n)", "!"].enumerated() {
                r.writeChunk(Array("data: {\"id\":\"c\(n)\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(word)\"},\"finish_reason\":\(i == 2 ? "\"stop\"" : "null")}]}\n\n".utf8))
            }
            if body.contains("include_usage") { r.writeChunk(Array("data: {\"id\":\"c\(n)\",\"choices\":[],\(usage)}\n\n".utf8)) }
            r.writeChunk(Array("data: [DONE]\n\n".utf8))
            r.endStream()
            return
        }
        r.respond(status: 200, headers: [("Content-Type", "application/json")],
                  body: Array("{\"id\":\"c\(n)\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"reply-\(n)\"},\"finish_reason\":\"stop\"}],\(usage)}".utf8))
    }
}

func chat(_ extra: String = "\"temperature\":0", content: String = "hello", model: String = "tiny") -> String {
    "{\"model\":\"\(model)\",\"messages\":[{\"role\":\"user\",\"content\":\"\(content)\"}],\(extra)}"
}

@Suite(.serialized) struct CacheAndLimitTests {
    func gateway(_ upstream: TestUpstream, _ redis: TestRedis, configure: @escaping (inout GatewaySettings) -> Void = { _ in }) throws -> (Gateway, UInt16) {
        try startGateway([upstream.endpoint]) { s in
            s.redis = redis.settings
            s.admin = nil
            s.models = [GatewaySettings.Model(name: "tiny", pool: "default")]
            configure(&s)
        }
    }

    /// Waits until `n` responses were stored in the cache (the store is written after the
    /// response went out: a request sent before it lands is a miss and asks the pool again).
    func waitStored(_ admin: UInt16, _ n: Int) -> Bool {
        eventually {
            guard let text = try? metrics(admin),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("sluice_cache_requests_total{result=\"stored\"} ") }),
                  let v = Double(line.split(separator: " ").last ?? "") else { return false }
            return v >= Double(n)
        }
    }

    /// The Prometheus text from a gateway's admin listener.
    func metrics(_ admin: UInt16) throws -> String {
        let c = try TestClient(port: admin)
        c.send(request("GET", "/metrics"))
        return try #require(c.response()).text
    }

    func post(_ c: TestClient, _ body: String, headers: [String] = []) throws -> TestClient.Response {
        c.send(request("POST", "/v1/chat/completions", body: body, headers: headers))
        return try #require(c.response())
    }

    @Test func deterministicRequestsAreServedFromTheCache() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let admin = freePort()
        let (gw, port) = try gateway(up, redis) {
            $0.cache.enabled = true
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)

        let first = try post(c, chat())
        #expect(first.status == 200)
        #expect(first.header("x-sluice-cache") == "miss")
        #expect(count.load(ordering: .relaxed) == 1)
        #expect(waitStored(admin, 1))
        // The same request with other whitespace, member order and `user`: a hit, and the pool
        // is not asked.
        let same = "{ \"temperature\": 0, \"messages\": [ {\"content\":\"hello\", \"role\":\"user\"} ], \"user\":\"u1\", \"model\":\"tiny\" }"
        let second = try #require(try eventuallyValue { let r = try post(c, same); return r.header("x-sluice-cache") == "hit" ? r : nil })
        #expect(second.status == 200)
        #expect(second.body == first.body)
        #expect(second.header("content-type") == "application/json")
        #expect(count.load(ordering: .relaxed) == 1)

        // A different prompt or parameter is a different entry.
        _ = try post(c, chat(content: "other"))
        _ = try post(c, chat("\"temperature\":0,\"max_tokens\":5"))
        #expect(count.load(ordering: .relaxed) == 3)

        // Not deterministic: never cached.
        for _ in 0..<2 { #expect(try post(c, chat("\"temperature\":0.7")).header("x-sluice-cache") == nil) }
        #expect(count.load(ordering: .relaxed) == 5)
        // A seed makes it deterministic; the opt-in header forces caching.
        _ = try post(c, chat("\"temperature\":1,\"seed\":7"))
        #expect(try eventuallyValue { try post(c, chat("\"temperature\":1,\"seed\":7")).header("x-sluice-cache") == "hit" ? true : nil } == true)
        _ = try post(c, chat("\"temperature\":1", content: "forced"), headers: ["x-sluice-cache: force"])
        #expect(try eventuallyValue { try post(c, chat("\"temperature\":1", content: "forced"), headers: ["x-sluice-cache: force"]).header("x-sluice-cache") == "hit" ? true : nil } == true)
        let afterOptIn = count.load(ordering: .relaxed)

        // Errors are never cached.
        for _ in 0..<2 { #expect(try post(c, chat(content: "fail")).status == 500) }
        #expect(count.load(ordering: .relaxed) == afterOptIn + 2)

        // Cache-Control from the client: no-cache skips the lookup (the fresh answer replaces
        // the entry); no-store is looked up as usual but never stored.
        let fresh = try post(c, chat(), headers: ["Cache-Control: no-cache"])
        #expect(fresh.header("x-sluice-cache") == nil)
        #expect(count.load(ordering: .relaxed) == afterOptIn + 3)
        _ = try post(c, chat(content: "never-stored"), headers: ["Cache-Control: no-store"])
        usleep(100_000)
        #expect(try post(c, chat(content: "never-stored")).header("x-sluice-cache") == "miss")

        let text = try metrics(admin)
        #expect(text.contains("sluice_cache_requests_total{result=\"hit\"}"))
        #expect(text.contains("sluice_cache_requests_total{result=\"stored\"}"))
    }

    @Test func streamsAreReplayedByteForByte() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let admin = freePort()
        let (gw, port) = try gateway(up, redis) {
            $0.cache.enabled = true
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        let body = chat("\"temperature\":0,\"stream\":true")
        let first = try post(c, body)
        #expect(first.header("content-type") == "text/event-stream")
        #expect(first.text.contains("reply") && first.text.hasSuffix("data: [DONE]\n\n"))
        // Sluice asked for usage upstream and kept that chunk from this client; the replay is
        // what this client saw.
        #expect(!first.text.contains("usage"))
        #expect(waitStored(admin, 1))
        let replay = try #require(try eventuallyValue { let r = try post(c, body); return r.header("x-sluice-cache") == "hit" ? r : nil })
        #expect(replay.body == first.body)
        #expect(replay.header("content-type") == "text/event-stream")
        #expect(count.load(ordering: .relaxed) == 1)
        // A streaming and a non-streaming request are different entries.
        #expect(try post(c, chat()).header("x-sluice-cache") == "miss")
        #expect(count.load(ordering: .relaxed) == 2)
    }

    /// Over HTTP/2 (nghttp): the same stream replayed from the cache, and a 429 with its headers.
    @Test func http2HitsAndLimits() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let (gw, port) = try gateway(up, redis) { s in
            s.cache.enabled = true
            s.rateLimits = [.init(tenant: "*", requestsPerMinute: 3)]
        }
        defer { gw.stop(grace: .seconds(1)) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-h2-cache-\(getpid())")
        try chat("\"temperature\":0,\"stream\":true").write(to: tmp, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let url = "http://127.0.0.1:\(port)/v1/chat/completions"
        let (s1, first) = try run("nghttp", ["-d", tmp.path, url])
        #expect(s1 == 0)
        #expect(first.hasSuffix("data: [DONE]\n\n"))
        usleep(100_000)
        let (s2, verbose) = try run("nghttp", ["-v", "-d", tmp.path, url])
        #expect(s2 == 0)
        #expect(verbose.contains("x-sluice-cache: hit"))
        #expect(verbose.contains("x-ratelimit-remaining-requests: 1"))
        let (_, replay) = try run("nghttp", ["-d", tmp.path, url])
        #expect(replay == first)
        #expect(count.load(ordering: .relaxed) == 1)
        let (_, limited) = try run("nghttp", ["-v", "-d", tmp.path, url])
        #expect(limited.contains(":status: 429"))
        #expect(limited.contains("retry-after: "))
        #expect(limited.contains("\"code\":\"rate_limit_exceeded\""))
    }

    @Test func tenantsNeverShareEntriesAndKeysAreRequired() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let (gw, port) = try gateway(up, redis) { s in
            s.cache.enabled = true
            var auth = GatewaySettings.Auth()
            auth.keys[SHA256.hash(Array("key-a".utf8))] = "team-a"
            auth.keys[SHA256.hash(Array("key-b".utf8))] = "team-b"
            s.auth = auth
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        let a = ["Authorization: Bearer key-a"], b = ["Authorization: Bearer key-b"]
        let fromA = try post(c, chat(), headers: a)
        #expect(fromA.status == 200)
        #expect(try eventuallyValue { try post(c, chat(), headers: a).header("x-sluice-cache") == "hit" ? true : nil } == true)
        let fromB = try post(c, chat(), headers: b)
        #expect(fromB.header("x-sluice-cache") == "miss")
        #expect(fromB.body != fromA.body)
        #expect(count.load(ordering: .relaxed) == 2)

        let none = try post(c, chat())
        #expect(none.status == 401)
        #expect(none.text.contains("\"code\":\"invalid_api_key\""))
        #expect(none.header("www-authenticate")?.hasPrefix("Bearer") == true)
        let wrong = try post(c, chat(), headers: ["Authorization: Bearer nope"])
        #expect(wrong.status == 401)
        #expect(!wrong.text.contains("nope"))
        #expect(count.load(ordering: .relaxed) == 2)
    }

    @Test func entriesExpire() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let (gw, port) = try gateway(up, redis) { s in
            s.cache.enabled = true
            s.cache.ttl = .milliseconds(400)
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        _ = try post(c, chat())
        #expect(try eventuallyValue { try post(c, chat()).header("x-sluice-cache") == "hit" ? true : nil } == true)
        usleep(600_000)
        #expect(try post(c, chat()).header("x-sluice-cache") == "miss")
    }

    @Test func requestLimitAnswers429WithOpenAIHeaders() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let admin = freePort()
        let (gw, port) = try gateway(up, redis) { s in
            s.rateLimits = [.init(tenant: "*", requestsPerMinute: 3)]
            s.admin = SocketAddress("127.0.0.1:\(admin)")!
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        for left in [2, 1, 0] {
            let r = try post(c, chat("\"temperature\":0.5"), headers: ["Authorization: Bearer k1"])
            #expect(r.status == 200)
            #expect(r.header("x-ratelimit-limit-requests") == "3")
            #expect(r.header("x-ratelimit-remaining-requests") == String(left))
            #expect(r.header("x-ratelimit-reset-requests")?.hasSuffix("s") == true)
        }
        let limited = try post(c, chat("\"temperature\":0.5"), headers: ["Authorization: Bearer k1"])
        #expect(limited.status == 429)
        #expect(limited.text.contains("\"code\":\"rate_limit_exceeded\""))
        #expect(limited.text.contains("\"type\":\"requests\""))
        let retry = try #require(limited.header("retry-after").flatMap { Int($0) })
        #expect(retry >= 1 && retry <= 21)
        #expect(limited.header("x-ratelimit-remaining-requests") == "0")
        #expect(count.load(ordering: .relaxed) == 3)
        // Another key is another tenant with its own bucket.
        #expect(try post(c, chat("\"temperature\":0.5"), headers: ["Authorization: Bearer k2"]).status == 200)
        #expect(try metrics(admin).contains("sluice_rate_limit_decisions_total{result=\"limited\"} 1"))
    }

    @Test func tokenLimitsAreSettledWithRealUsage() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let (gw, port) = try gateway(up, redis) { s in
            s.rateLimits = [.init(tenant: "*", tokensPerMinute: 1000)]
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        // Estimate: ceil(5 prompt bytes / 4) + max_tokens 400 = 402; real usage: 12.
        let body = chat("\"temperature\":0.5,\"max_tokens\":400")
        let r1 = try post(c, body)
        #expect(r1.header("x-ratelimit-limit-tokens") == "1000")
        let left1 = try #require(r1.header("x-ratelimit-remaining-tokens").flatMap { Int($0) })
        #expect(left1 >= 597 && left1 <= 599)
        // The settlement (−390) lands right after the response; without it only ~196 would be left.
        usleep(100_000)
        let left2 = try #require(try post(c, body).header("x-ratelimit-remaining-tokens").flatMap { Int($0) })
        #expect(left2 >= 1000 - 12 - 402 - 1 && left2 <= 1000 - 12 - 402 + 3)
        // A request that can never fit gets a 429 without Retry-After.
        let huge = try post(c, chat("\"temperature\":0.5,\"max_tokens\":5000"))
        #expect(huge.status == 429)
        #expect(huge.text.contains("\"type\":\"tokens\""))
        #expect(huge.header("retry-after") == nil)
    }

    @Test func twoGatewaysShareOneLimit() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let configure: (inout GatewaySettings) -> Void = { $0.rateLimits = [.init(tenant: "*", requestsPerMinute: 4)] }
        let (g1, p1) = try gateway(up, redis, configure: configure)
        let (g2, p2) = try gateway(up, redis, configure: configure)
        defer { g1.stop(grace: .seconds(1)); g2.stop(grace: .seconds(1)) }
        let c1 = try TestClient(port: p1), c2 = try TestClient(port: p2)
        var statuses: [Int] = []
        for i in 0..<6 { statuses.append(try post(i % 2 == 0 ? c1 : c2, chat("\"temperature\":0.5")).status) }
        #expect(statuses == [200, 200, 200, 200, 429, 429])
    }

    @Test func redisFailureOpenServesAndRecovers() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let admin = freePort()
        let (gw, port) = try gateway(up, redis) { s in
            s.cache.enabled = true
            s.workers = 1
            s.rateLimits = [.init(tenant: "*", requestsPerMinute: 1000)]
            s.admin = SocketAddress("127.0.0.1:\(admin)")!
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        _ = try post(c, chat())
        #expect(try eventuallyValue { try post(c, chat()).header("x-sluice-cache") == "hit" ? true : nil } == true)
        redis.stop()
        // Redis is gone: every request is still served (no cache, local limits), none fails.
        var statuses: [Int] = []
        for i in 0..<20 { statuses.append(try post(c, chat(content: "down-\(i % 3)")).status) }
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect(try metrics(admin).contains("sluice_rate_limit_decisions_total{result=\"local\"}"))
        // Back: the cache works again (a new, empty Redis), without a restart of Sluice.
        try redis.start()
        #expect(try eventuallyValue(10) { () throws -> Bool? in
            _ = try post(c, chat(content: "after"))
            return try post(c, chat(content: "after")).header("x-sluice-cache") == "hit" ? true : nil
        } == true)
    }

    @Test func redisFailureClosedAnswers503Quickly() throws {
        let count = Counter()
        let up = try TestUpstream(countingModelHandler(count))
        let redis = try TestRedis()
        defer { up.stop(); redis.stop() }
        let (gw, port) = try gateway(up, redis) { s in
            s.redis!.onFailure = .closed
            s.rateLimits = [.init(tenant: "*", requestsPerMinute: 1000)]
        }
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        #expect(try post(c, chat()).status == 200)
        redis.stop()
        let started = Date()
        let r = try post(c, chat())
        #expect(r.status == 503)
        #expect(r.text.contains("\"type\":\"server_error\""))
        #expect(Date().timeIntervalSince(started) < 1.0)
        #expect(count.load(ordering: .relaxed) == 1)
    }
}

/// Retries `body` until it returns a value (entries are stored just after a response ends).
func eventuallyValue<T>(_ seconds: Double = 3, _ body: () throws -> T?) throws -> T? {
    let end = Date().addingTimeInterval(seconds)
    while true {
        if let v = try body() { return v }
        if Date() > end { return nil }
        usleep(20_000)
    }
}
