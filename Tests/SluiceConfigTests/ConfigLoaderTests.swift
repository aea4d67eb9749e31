import SluiceSettings
import SluiceBase
import Foundation
import SluiceRedis
import SluiceRouting
import Testing
import SluiceTracing
import SluiceIO
@testable import SluiceConfig

@Suite struct ConfigLoaderTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

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

    @Test(arguments: [("250ms", 250_000_000), ("10s", 10_000_000_000), ("5m", 300_000_000_000), ("1h", 3_600_000_000_000),
                      ("0", 0), ("1.5s", 1_500_000_000)])
    func durations(_ text: String, _ ns: Int64) {
        #expect(ConfigLoader.parseDuration(text) == .nanoseconds(ns))
    }

    @Test(arguments: ["", "10", "s", "-1s", "1d", "ten seconds", "1e30h"])
    func badDurations(_ text: String) { #expect(ConfigLoader.parseDuration(text) == nil) }

    @Test(arguments: [("512", 512), ("64KiB", 65536), ("8MiB", 8 << 20), ("1GiB", 1 << 30), ("2KB", 2000), ("0", 0)])
    func sizes(_ text: String, _ n: Int) { #expect(ConfigLoader.parseSize(text) == n) }

    @Test(arguments: ["", "KiB", "-1", "1.5MiB", "8 MiB", "1TiB", "99999999999999999GiB"])
    func badSizes(_ text: String) { #expect(ConfigLoader.parseSize(text) == nil) }

    @Test func defaultsApplyWhenKeysAreAbsent() throws {
        let s = try ConfigLoader.load(text: "pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]")
        let d = GatewaySettings(listen: [], workers: 0, pools: [])
        #expect(s.listen.map(\.address.description) == ["0.0.0.0:8080"])
        #expect(s.admin?.description == "127.0.0.1:9090")
        #expect(s.workers == 0)
        #expect(s.limits.maxBodyBytes == d.limits.maxBodyBytes)
        #expect(s.timeouts.upstreamFirstByte == d.timeouts.upstreamFirstByte)
        #expect(s.timeouts.drainDelay == d.timeouts.drainDelay)
        #expect(s.telemetry.interval == d.telemetry.interval)
        #expect(s.proxy.bodyLowWater == 32 * 1024)
        #expect(s.models.isEmpty)
    }

    @Test func everyKeyIsRead() throws {
        let s = try ConfigLoader.load(text: """
            listen: [{ address: "127.0.0.1:7000", http2: false }]
            admin: { address: "127.0.0.1:7001", token: "t0ken" }
            workers: 3
            limits: { max_connections: 10, max_connections_per_worker: 5, max_header_bytes: 4KiB, max_header_count: 20,
                      max_request_line: 1KiB, max_body_bytes: 1MiB, max_concurrent_streams: 7, spare_buffer_bytes: 3MiB,
                      heap_trim_bytes: 5MiB, http2_buffer_bytes: 2MiB, default_max_tokens: 77 }
            timeouts: { client_header: 1s, client_body: 2s, idle: 3s, upstream_connect: 4s, upstream_first_byte: 5s,
                        upstream_idle: 6s, request: 7s, grace: 8s, drain_delay: 9s }
            upstream: { keepalive_per_endpoint: 11, max_idle_time: 12s, retries: 2 }
            proxy: { x_forwarded: false, trust_forwarded: true, via: true, request_usage: false, body_low_water: 0 }
            health: { path: /ready, interval: 13s, timeout: 14s, unhealthy_threshold: 4, eject_base: 2s, max_eject: 60s }
            telemetry: { interval: 100ms, timeout: 200ms, staleness: 300ms, metrics_path: /m, models_path: /mm }
            pools:
              - { name: a, endpoints: [http://127.0.0.1:1, http://127.0.0.1:2] }
              - { name: b, dns: "localhost:8000", dns_interval: 15s, routing: least_loaded }
            models:
              - { name: m1, pool: a, upstream_model: up1 }
              - { name: m2, pool: b, adapter: ad, adapter_path: /x }
              - { name: m3, split: [{ model: m1, weight: 3 }, { model: m2, weight: 1 }], sticky: "header:x-user" }
            """)
        #expect(s.listen[0].address.description == "127.0.0.1:7000" && !s.http2)
        #expect(s.admin?.port == 7001 && s.workers == 3)
        #expect(s.limits.maxConnections == 10 && s.limits.maxConnectionsPerWorker == 5 && s.limits.head.maxHeadBytes == 4096)
        #expect(s.limits.head.maxHeaderCount == 20 && s.limits.head.maxRequestLine == 1024 && s.limits.maxBodyBytes == 1 << 20)
        #expect(s.limits.maxConcurrentStreams == 7 && s.limits.spareBufferBytes == 3 << 20)
        #expect(s.limits.heapTrimBytes == 5 << 20 && s.limits.http2BufferBytes == 2 << 20 && s.limits.defaultMaxTokens == 77)
        #expect(s.proxy.trustForwarded)
        #expect(s.adminTokenSHA256 == SHA256.hash(Array("t0ken".utf8)))
        #expect(s.timeouts.clientHeader == .seconds(1) && s.timeouts.drainDelay == .seconds(9) && s.timeouts.request == .seconds(7))
        #expect(s.upstream.keepalivePerEndpoint == 11 && s.upstream.maxIdleTime == .seconds(12) && s.upstream.retries == 2)
        #expect(!s.proxy.xForwarded && s.proxy.via && !s.proxy.requestUsage && s.proxy.bodyLowWater == 0)
        #expect(s.health.path == "/ready" && s.health.unhealthyThreshold == 4 && s.health.maxEject == .seconds(60))
        #expect(s.telemetry.interval == .milliseconds(100) && s.telemetry.metricsPath == "/m" && s.telemetry.modelsPath == "/mm")
        #expect(s.pools.map(\.name) == ["a", "b"] && s.pools[0].endpoints.count == 2)
        #expect(s.pools[1].routing == .leastLoaded && s.pools[0].routing == .default)
        #expect(s.pools[1].dns?.host == "localhost" && s.pools[1].dns?.port == 8000 && s.pools[1].dnsInterval == .seconds(15))
        #expect(s.models[0].upstreamModel == "up1" && s.models[1].adapter == "ad" && s.models[1].adapterPath == "/x")
        #expect(s.models[2].split.map(\.model) == ["m1", "m2"] && s.models[2].sticky == .header("x-user"))
    }

    /// `pools[].routing` as a mapping composes the weighted profile: weights by scorer name, the
    /// load guard, hard limits; what is not given keeps its default.
    @Test func routingProfilesComeFromConfig() throws {
        let s = try ConfigLoader.load(text: """
            pools:
              - name: a
                endpoints: [http://127.0.0.1:1]
                routing:
                  policy: weighted
                  weights: { prefix_affinity: 4, inflight: 2.5 }
                  load_guard: { factor: 1.5, slack: 3 }
                  max_waiting: 16
                  max_kv_use: 0.95
              - { name: b, endpoints: [http://127.0.0.1:2], routing: { policy: least_loaded } }
            """)
        let p = s.pools[0].profile
        let weights = Dictionary(uniqueKeysWithValues: p.scorers.map { ($0.scorer.name, $0.weight) })
        #expect(weights == ["prefix_affinity": 4, "prefix_home": 1, "queue_depth": 1, "kv_use": 1, "lora_affinity": 1, "inflight": 2.5])
        #expect(p.filters.map(\.name) == ["health", "adapter", "saturation", "load_guard"])
        let guardFilter = try #require(p.filters.last as? LoadGuardFilter)
        #expect(guardFilter.factor == 1.5 && guardFilter.slack == 3)
        let saturation = try #require(p.filters[2] as? SaturationFilter)
        #expect(saturation.maxWaiting == 16 && saturation.maxKVUse == 0.95)
        #expect(s.pools[0].routing == .weighted && s.pools[1].routing == .leastLoaded)
    }

    /// The default policy is the cost model; `routing: weighted` the hand-weighted profile; the
    /// cost model's parameters come from `cost`, and each profile's parts are refused on the other.
    @Test func theCostModelIsTheDefaultAndConfigurable() throws {
        let s = try ConfigLoader.load(text: """
            pools:
              - { name: a, endpoints: [http://127.0.0.1:1] }
              - { name: b, endpoints: [http://127.0.0.1:2], routing: weighted }
              - name: c
                endpoints: [http://127.0.0.1:3]
                routing:
                  cost: { chunk_tokens: 512, adapter_load: 20ms, adapter_wait: 1s, interference: 0.5, tie_band: 2ms, tie_band_relative: 0.1, home_band: 0.3 }
                  max_waiting: 8
            """)
        #expect(s.pools.map(\.routing) == [.default, .weighted, .default])
        #expect(s.pools[0].profile.costModel == CostModel())
        #expect(s.pools[0].profile.scorers.map(\.scorer.name) == ["predicted_ttft"] && s.pools[0].profile.picker.name == "least_ttft")
        #expect(s.pools[1].profile.costModel == nil)
        #expect(s.pools[1].profile.scorers.map(\.weight) == RoutingProfile.defaultScorers.map(\.weight))
        #expect(s.pools[2].profile.costModel == CostModel(chunkTokens: 512, adapterLoad: 0.02, adapterWait: 1, interference: 0.5))
        let picker = try #require(s.pools[2].profile.picker as? LeastTTFTPicker)
        #expect(picker.absoluteBand == 0.002 && picker.relativeBand == 0.1 && picker.homeBand == 0.3)
        #expect(s.pools[2].profile.filters.map(\.name) == ["health", "adapter", "saturation"])
        let wrong = """
            pools:
              - { name: a, endpoints: [http://127.0.0.1:1], routing: { weights: { kv_use: 2 }, load_guard: { slack: 1 } } }
              - { name: b, endpoints: [http://127.0.0.1:2], routing: { policy: weighted, cost: { chunk_tokens: 1 } } }
              - { name: c, endpoints: [http://127.0.0.1:3], routing: { cost: { chunk_tokens: 0, tie_band_relative: 2, speed: 1 } } }
            """
        let found = issues(wrong)
        for expected in ["pools[0].routing.weights: applies to policy weighted only", "pools[0].routing.load_guard: applies to policy weighted only",
                         "pools[1].routing.cost: applies to policy default only", "pools[2].routing.cost.chunk_tokens",
                         "pools[2].routing.cost.tie_band_relative: must be >= 0 and <= 1", "pools[2].routing.cost.speed: unknown key"] {
            #expect(found.contains { $0.contains(expected) }, "\(expected) not in \(found)")
        }
    }

    /// Each rule, with the path and line it reports; several problems come back together.
    @Test(arguments: [
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nbogus: 1", "bogus: unknown key (line 2)"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], weight: 2 }]", "pools[0].weight: unknown key (line 1)"),
        ("pools: []", "pools: at least one pool is required"),
        ("pools: [{ name: p }]", "pools[0]: needs endpoints or dns"),
        ("pools: [{ name: p, endpoints: [x] }]", "pools[0].endpoints[0]: 'x' is not an http:// or https:// URL"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }, { name: p, endpoints: [http://127.0.0.1:2] }]", "duplicate pool name 'p'"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels: [{ name: m, pool: q }]", "models[0].pool: no pool named 'q' (line 2)"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels: [{ name: m }]", "models[0]: needs a pool or a split"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels:\n  - name: m\n    split: [{ model: x, weight: 1 }]", "models[0].split[0].model: no model named 'x' (line 3)"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels:\n  - name: m\n    split:\n      - { model: m, weight: 0 }", "models[0].split[0].weight: must be > 0 (line 5)"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels: [{ name: a, split: [{model: b}] }, { name: b, split: [{model: a}] }]", "is cyclic"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels: [{ name: m, pool: p, sticky: always }]", "must be none, user or header:NAME"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\ntimeouts: { idle: forever }", "timeouts.idle: must be a duration"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { max_body_bytes: lots }", "limits.max_body_bytes: must be a size"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nworkers: two", "workers: must be an integer"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlisten: [{ address: \"127.0.0.1:9090\" }]\nadmin: { address: \"127.0.0.1:9090\" }", "port 9090 is used twice"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nproxy: { via: maybe }", "proxy.via: must be true or false"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nproxy: { body_low_water: -1 }", "proxy.body_low_water: must be"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmetrics: { x: 1 }", "metrics: unknown key"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nredis: { url: \"http://127.0.0.1:6379\" }", "redis.url: not a redis:// URL"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nredis: { url: \"redis://127.0.0.1:6379\", on_failure: maybe }", "redis.on_failure: must be open or closed"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\ncache: { ttl: 10m }", "cache: needs redis"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nrate_limits: [{ tenant: \"*\", requests_per_minute: 5 }]", "rate_limits: needs redis"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nredis: { url: \"redis://127.0.0.1:6379\" }\nrate_limits: [{ tenant: \"*\" }]", "rate_limits[0]: needs requests_per_minute or tokens_per_minute"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nredis: { url: \"redis://127.0.0.1:6379\" }\nrate_limits: [{ requests_per_minute: 0 }]", "rate_limits[0].requests_per_minute: must be between 1"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key: k, tenant: a }] }\nredis: { url: \"redis://127.0.0.1:6379\" }\nrate_limits: [{ tenant: b, requests_per_minute: 5 }]", "rate_limits[0].tenant: no API key belongs to tenant 'b'"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ tenant: a }] }", "auth.api_keys[0]: needs key or key_sha256"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key: \"${env:SLUICE_TEST_UNSET_VARIABLE}\", tenant: a }] }", "environment variable SLUICE_TEST_UNSET_VARIABLE is not set"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key: \"${vault:x}\", tenant: a }] }", "must be ${env:NAME} or ${file:/path}"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key_sha256: abc, tenant: a }] }", "must be 64 hex digits"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key: k, tenant: a }, { key: k, tenant: b }] }", "the same key is listed twice"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlogging: { level: debug }", "logging.level: unknown key"),
        ("pools: &x [{ name: p, endpoints: [http://127.0.0.1:1] }]", "anchors are not supported"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: fastest }]", "pools[0].routing: must be default, weighted, round_robin or least_loaded"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { policy: fastest } }]", "pools[0].routing.policy: must be default"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { weights: { luck: 1 } } }]", "pools[0].routing.weights.luck: unknown scorer"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { weights: { kv_use: -1 } } }]", "pools[0].routing.weights.kv_use: must be >= 0"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { load_guard: { factor: 0.5 } } }]", "load_guard.factor: must be >= 1"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { max_kv_use: 1.5 } }]", "max_kv_use: must be > 0 and <= 1"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { max_waiting: -1 } }]", "max_waiting: must be between 0"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1], routing: { pick: best } }]", "pools[0].routing.pick: unknown key"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }\n", "YAML:"),
        // Every size and count has an upper bound (issue 22: numbers from a config file are
        // range-checked too; they size buffers and windows).
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { max_body_bytes: 2GiB }", "limits.max_body_bytes: must be at most 1GiB"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { max_header_bytes: 2MiB }", "limits.max_header_bytes: must be at most 1MiB"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { http2_buffer_bytes: 4GiB }", "limits.http2_buffer_bytes: must be at most 1GiB"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { max_concurrent_streams: 100000000 }", "limits.max_concurrent_streams: must be between 1 and 65536"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { default_max_tokens: 0 }", "limits.default_max_tokens: must be between 1 and 2147483647"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nlimits: { max_connections: 9223372036854775807 }", "limits.max_connections: must be between 1"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nadmin: { address: \"127.0.0.1:9\", token: \"\" }", "admin.token: is empty"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nadmin: { address: \"127.0.0.1:9\", token_sha256: abc }", "admin.token_sha256: must be 64 hex digits"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nflow_control: { fairness: lottery }", "flow_control.fairness: must be tokens or round_robin"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nflow_control: { max_kv_use: 0 }", "flow_control.max_kv_use: must be > 0 and <= 1"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels: [{ name: m, pool: p, priority: urgent }]", "models[0].priority: must be critical, standard or sheddable"),
        ("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nauth: { api_keys: [{ key: k, tenant: a, priority: high }] }", "auth.api_keys[0].priority: must be critical"),
    ])

    func rules(_ yaml: String, _ expected: String) {
        let found = issues(yaml)
        #expect(found.contains { $0.contains(expected) }, "\(found)")
    }

    @Test func flowControlAndPriorities() throws {
        let s = try ConfigLoader.load(text: """
            pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]
            models: [{ name: m, pool: p, priority: sheddable }]
            auth: { api_keys: [{ key: k1, tenant: a, priority: critical }, { key: k2, tenant: b, allow_priority_header: true }, { key: k3, tenant: c }] }
            flow_control: { enabled: false, max_waiting: 2, max_kv_use: 0.9, queue_ttl: 5s, max_queued: 10, max_queued_bytes: 1MiB,
                            max_queued_per_tenant: 3, max_queued_bytes_per_tenant: 64KiB, fairness: round_robin, slot_hold: 5ms,
                            sheddable_headroom: 0.25, max_prefill_tokens: 4096 }
            tenancy: { kv_isolation: true }
            """)
        #expect(!s.flow.enabled && s.flow.maxWaiting == 2 && s.flow.maxKVUse == 0.9 && s.flow.queueTTL == .seconds(5))
        #expect(s.flow.maxQueued == 10 && s.flow.maxQueuedBytes == 1 << 20 && s.flow.maxQueuedPerTenant == 3)
        #expect(s.flow.maxQueuedBytesPerTenant == 64 << 10 && s.flow.fairness == .roundRobin && s.kvIsolation && s.flow.slotHold == .milliseconds(5))
        #expect(s.flow.sheddableHeadroom == 0.25 && s.flow.maxPrefillTokens == 4096)
        #expect(s.models[0].priority == .sheddable)
        let p = s.auth!.priorities
        #expect(p[SHA256.hash(Array("k1".utf8))] == GatewaySettings.KeyPriority(band: .critical, allowHeader: false))
        #expect(p[SHA256.hash(Array("k2".utf8))] == GatewaySettings.KeyPriority(band: nil, allowHeader: true))
        #expect(p[SHA256.hash(Array("k3".utf8))] == nil)
        // Defaults: on, with no keys at all.
        let d = try ConfigLoader.load(text: "pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]")
        #expect(d.flow.enabled && d.flow.maxWaiting == 0 && d.flow.fairness == .tokens && !d.kvIsolation && d.flow.slotHold == .milliseconds(20))
        #expect(d.flow.sheddableHeadroom == 0.1 && d.flow.maxPrefillTokens == 32_768)
        #expect(issues("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nflow_control: { sheddable_headroom: 1 }")
            .contains { $0.contains("flow_control.sheddable_headroom") })
        #expect(issues("pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nflow_control: { slot_hold: 11s }")
            .contains { $0.contains("flow_control.slot_hold") && $0.contains("at most 10s") })
    }

    /// Redis, auth, cache and limits are read, with secrets from the environment and files
    /// (only their digests are kept).
    @Test func servicesAndSecrets() throws {
        setenv("SLUICE_TEST_TEAM_A_KEY", "sk-team-a", 1)
        setenv("SLUICE_TEST_REDIS_PASSWORD", "s3cret", 1)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-test-key-\(getpid())")
        try "sk-team-b\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let s = try ConfigLoader.load(text: """
            pools: [{ name: p, endpoints: ["http://127.0.0.1:1"] }]
            models: [{ name: tiny, pool: p }]
            redis: { url: "redis://:${env:SLUICE_TEST_REDIS_PASSWORD}@127.0.0.1:6390/2", on_failure: closed, command_timeout: 80ms, connect_timeout: 2s, connections_per_worker: 3 }
            auth:
              api_keys:
                - { key: "${env:SLUICE_TEST_TEAM_A_KEY}", tenant: team-a }
                - { key: "${file:\(file.path)}", tenant: team-b }
                - { key_sha256: "\(String(repeating: "ab", count: 32))", tenant: team-c }
            cache: { ttl: 5m, max_entry_size: 256KiB, scope: shared, seed_is_deterministic: false }
            rate_limits:
              - { tenant: team-a, requests_per_minute: 600, tokens_per_minute: 200000, request_burst: 50, token_burst: 10000 }
              - { tenant: "*", model: tiny, requests_per_minute: 60 }
            """)
        let r = try #require(s.redis)
        #expect(r.onFailure == .closed)
        #expect(r.configuration.url.password == "s3cret")
        #expect(r.configuration.url.database == 2)
        #expect(r.configuration.address.port == 6390)
        #expect(r.configuration.commandTimeout == .milliseconds(80))
        #expect(r.configuration.connectTimeout == .seconds(2))
        #expect(r.configuration.connectionsPerLoop == 3)
        #expect(!"\(r.configuration)".contains("s3cret"))
        let keys = try #require(s.auth?.keys)
        #expect(keys.count == 3)
        #expect(keys[SHA256.hash(Array("sk-team-a".utf8))] == "team-a")
        #expect(keys[SHA256.hash(Array("sk-team-b".utf8))] == "team-b")
        #expect(keys[[UInt8](repeating: 0xab, count: 32)] == "team-c")
        #expect(s.cache.enabled && s.cache.ttl == .seconds(300) && s.cache.maxEntryBytes == 256 << 10)
        #expect(s.cache.scope == .shared && !s.cache.seedIsDeterministic)
        #expect(s.rateLimits.count == 2)
        #expect(s.rateLimits[0] == {
            var r = GatewaySettings.RateLimitRule(tenant: "team-a", requestsPerMinute: 600, tokensPerMinute: 200_000)
            r.requestBurst = 50
            r.tokenBurst = 10_000
            return r
        }())
        #expect(s.rateLimits[1] == GatewaySettings.RateLimitRule(tenant: "*", model: "tiny", requestsPerMinute: 60))
    }

    /// `validate --offline`: unresolvable hosts and missing secrets are not problems there, and
    /// are everywhere else.
    @Test func offlineValidationSkipsDNSAndSecrets() throws {
        let yaml = """
            pools: [{ name: p, endpoints: ["http://127.0.0.1:1"] }]
            redis: { url: "redis://:${file:/nonexistent/sluice-password}@redis.invalid:6379" }
            auth: { api_keys: [{ key: "${env:SLUICE_TEST_UNSET_A}", tenant: a }, { key: "${env:SLUICE_TEST_UNSET_B}", tenant: b }] }
            """
        let s = try ConfigLoader.load(text: yaml, offline: true)
        #expect(s.redis?.configuration.url.host == "redis.invalid")
        #expect(s.auth?.keys.count == 2)
        let found = issues(yaml)
        #expect(found.contains { $0.contains("cannot read /nonexistent/sluice-password") }, "\(found)")
        #expect(found.contains { $0.contains("SLUICE_TEST_UNSET_A is not set") }, "\(found)")
    }

    @Test func allProblemsAreReportedTogether() {
        let found = issues("workers: x\npools: [{ name: p }]\nmodels: [{ name: m, pool: q }]\nbogus: 1")
        #expect(found.count == 4, "\(found)")
    }

    @Test func shippedConfigsAreValid() throws {
        let dir = Self.repo.appendingPathComponent("config")
        var files = [dir.appendingPathComponent("sluice.yaml")]
        files += try FileManager.default.contentsOfDirectory(at: dir.appendingPathComponent("examples"), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }
        #expect(files.count >= 5)
        for f in files {
            // Offline: the examples name cluster hosts and mounted Secrets.
            #expect(throws: Never.self, "\(f.lastPathComponent)") { _ = try ConfigLoader.load(path: f.path, offline: true) }
        }
    }

    /// docs/configuration.md names every key the loader reads.
    @Test func everyKeyIsDocumented() throws {
        let doc = try String(contentsOf: Self.repo.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        let keys = ["listen[].address", "listen[].tls.cert", "listen[].tls.key", "listen[].http2", "admin.address", "admin.metrics", "workers",
                    "limits.max_connections", "limits.max_connections_per_worker", "limits.max_header_bytes", "limits.max_header_count",
                    "limits.max_request_line", "limits.max_body_bytes", "limits.max_concurrent_streams", "limits.spare_buffer_bytes", "limits.heap_trim_bytes",
                    "timeouts.client_header", "timeouts.client_body", "timeouts.idle", "timeouts.upstream_connect",
                    "timeouts.upstream_first_byte", "timeouts.upstream_idle", "timeouts.request", "timeouts.grace", "timeouts.drain_delay",
                    "upstream.keepalive_per_endpoint", "upstream.max_idle_time", "upstream.retries",
                    "proxy.x_forwarded", "proxy.via", "proxy.request_usage", "proxy.route_header", "proxy.body_low_water",
                    "health.path", "health.interval", "health.timeout", "health.unhealthy_threshold", "health.eject_base", "health.max_eject",
                    "telemetry.interval", "telemetry.timeout", "telemetry.staleness", "telemetry.metrics_path", "telemetry.models_path",
                    "pools[].name", "pools[].endpoints", "pools[].dns", "pools[].dns_interval", "pools[].routing", "pools[].tls.ca_file",
                    "pools[].routing.policy", "pools[].routing.weights.prefix_affinity", "pools[].routing.weights.prefix_home",
                    "pools[].routing.weights.queue_depth", "pools[].routing.weights.kv_use", "pools[].routing.weights.lora_affinity",
                    "pools[].routing.weights.inflight", "pools[].routing.load_guard.factor", "pools[].routing.load_guard.slack",
                    "pools[].routing.max_waiting", "pools[].routing.max_kv_use", "pools[].routing.cost.chunk_tokens",
                    "pools[].routing.cost.adapter_load", "pools[].routing.cost.adapter_wait", "pools[].routing.cost.interference", "pools[].routing.cost.tie_band",
                    "pools[].routing.cost.tie_band_relative", "pools[].routing.cost.home_band",
                    "pools[].tls.server_name", "pools[].tls.verify",
                    "models[].name", "models[].pool", "models[].upstream_model", "models[].adapter", "models[].adapter_path",
                    "models[].split[].model", "models[].split[].weight", "models[].sticky", "logging.access_log",
                    "redis.url", "redis.on_failure", "redis.command_timeout", "redis.connect_timeout", "redis.connections_per_worker",
                    "auth.api_keys[].key", "auth.api_keys[].key_sha256", "auth.api_keys[].tenant",
                    "cache.enabled", "cache.ttl", "cache.max_entry_size", "cache.scope", "cache.seed_is_deterministic",
                    "rate_limits[].tenant", "rate_limits[].model", "rate_limits[].requests_per_minute", "rate_limits[].tokens_per_minute",
                    "rate_limits[].request_burst", "rate_limits[].token_burst",
                    "tracing.endpoint", "tracing.sample_ratio", "tracing.always_sample_errors", "tracing.parent_based",
                    "tracing.service_name", "tracing.max_batch_size", "tracing.max_queue_size", "tracing.export_interval",
                    "tracing.export_timeout"]
        for k in keys { #expect(doc.contains("`\(k)`"), "\(k) is not documented") }
    }
}

@Suite struct TracingConfigTests {
    let base = "pools: [{name: p, endpoints: ['http://127.0.0.1:8000']}]\n"

    @Test func noSectionIsOff() throws {
        #expect(try ConfigLoader.load(text: base).tracing == nil)
    }

    @Test func everyKeyIsRead() throws {
        let s = try ConfigLoader.load(text: base + """
            tracing:
              endpoint: http://127.0.0.1:4318/otlp
              sample_ratio: 0.25
              always_sample_errors: false
              parent_based: true
              service_name: gateway-eu
              max_batch_size: 100
              max_queue_size: 1000
              export_interval: 500ms
              export_timeout: 2s
            """)
        let t = try #require(s.tracing)
        #expect(t.address == SocketAddress("127.0.0.1:4318")!)
        #expect(t.authority == "127.0.0.1:4318")
        #expect(t.tracesPath == "/otlp/v1/traces")
        #expect(t.sampleRatio == 0.25)
        #expect(t.alwaysSampleErrors == false)
        #expect(t.parentBased == true)
        #expect(t.serviceName == "gateway-eu")
        #expect(t.maxBatchSize == 100)
        #expect(t.maxQueueSize == 1000)
        #expect(t.exportInterval == .milliseconds(500))
        #expect(t.exportTimeout == .seconds(2))
    }

    @Test func defaults() throws {
        let t = try #require(try ConfigLoader.load(text: base + "tracing: {endpoint: 'http://127.0.0.1:4318'}").tracing)
        let d = TracingConfiguration(address: t.address, authority: t.authority)
        #expect(t == d)
        #expect(t.sampleRatio == 0.01 && t.alwaysSampleErrors && !t.parentBased && t.serviceName == "sluice")
        #expect(t.tracesPath == "/v1/traces")
    }

    @Test(arguments: [
        ("tracing: {}", "tracing.endpoint: is required"),
        ("tracing: {endpoint: 'https://c:4318'}", "tracing.endpoint: 'https://c:4318' is not an http://host[:port][/path] URL"),
        ("tracing: {endpoint: 'http://127.0.0.1:4318', sample_ratio: 1.5}", "tracing.sample_ratio: must be between 0 and 1"),
        ("tracing: {endpoint: 'http://127.0.0.1:4318', max_batch_size: 100, max_queue_size: 10}", "tracing.max_queue_size: must be at least max_batch_size"),
        ("tracing: {endpoint: 'http://127.0.0.1:4318', export_interval: 1ms}", "tracing.export_interval: must be between 10ms and 1h"),
        ("tracing: {endpoint: 'http://127.0.0.1:4318', export_timeout: 1h}", "tracing.export_timeout: must be between 10ms and 5m"),
        ("tracing: {endpoint: 'http://127.0.0.1:4318', sampler: always}", "tracing.sampler: unknown key"),
        ("tracing: {endpoint: 'http://no-such-host.invalid:4318'}", "tracing.endpoint: cannot resolve no-such-host.invalid"),
    ])
    func problemsAreReported(yaml: String, problem: String) {
        let found = issues(base + yaml)
        #expect(found.contains { $0.hasPrefix(problem) }, "\(found)")
    }

    @Test func offlineDoesNotResolve() throws {
        let s = try ConfigLoader.load(text: base + "tracing: {endpoint: 'http://collector.observability:4318'}", offline: true)
        #expect(s.tracing?.authority == "collector.observability:4318")
    }

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
}

/// `models[].guard`, `shadow`, `fallback` (issue 26).
@Suite struct RolloutConfigTests {
    static let head = "pools: [{ name: p, endpoints: [http://127.0.0.1:1] }]\nmodels:\n  - { name: a, pool: p }\n  - { name: b, pool: p }\n"

    func issues(_ yaml: String) -> [String] { ConfigLoaderTests().issues(Self.head + yaml) }

    @Test func guardShadowAndFallbackParse() throws {
        let s = try ConfigLoader.load(text: Self.head + """
          - name: m
            split: [{ model: a, weight: 95 }, { model: b, weight: 5 }]
            guard: { baseline: a, window: 30s, interval: 500ms, min_requests: 10, error_rate_margin: 0.05,
                     ttft_p90_ratio: 2, inter_token_p90_ratio: 3, ramp: [1, 5, 25, 50] }
            shadow: { model: b, fraction: 0.25, max_in_flight: 8 }
            fallback: [b, a]
        """)
        let m = s.models[2]
        let g = try #require(m.sloGuard)
        #expect(g.baseline == 0 && g.windowNanos == 30_000_000_000 && g.intervalNanos == 500_000_000 && g.minRequests == 10)
        #expect(g.errorRateMargin == 0.05 && g.ttftP90Ratio == 2 && g.interTokenP90Ratio == 3 && g.ramp == [1, 5, 25, 50])
        #expect(m.shadow == GatewaySettings.Shadow(model: "b", fraction: 0.25).with(maxInFlight: 8))
        #expect(m.fallback == ["b", "a"])
    }

    @Test func guardNeedsMetrics() {
        let got = ConfigLoaderTests().issues("admin: { address: 127.0.0.1:9999, metrics: false }\n" + Self.head
                                             + "  - { name: m, split: [{ model: a }, { model: b }], guard: {} }")
        #expect(got.contains { $0.hasPrefix("models[2].guard: needs admin.metrics") }, "\(got)")
    }

    @Test func defaults() throws {
        let s = try ConfigLoader.load(text: Self.head + """
          - name: m
            split: [{ model: a }, { model: b }]
            guard: {}
            shadow: { model: b, fraction: 1 }
        """)
        let g = try #require(s.models[2].sloGuard)
        #expect(g == SplitGuardConfig())
        #expect(g.windowNanos == 60_000_000_000 && g.intervalNanos == 5_000_000_000 && g.minRequests == 50)
        #expect(g.errorRateMargin == 0.02 && g.ttftP90Ratio == 1.5 && g.interTokenP90Ratio == nil && g.ramp.isEmpty)
        #expect(s.models[2].shadow?.maxInFlight == 32)
        #expect(s.models[0].sloGuard == nil && s.models[0].shadow == nil && s.models[0].fallback.isEmpty)
    }

    @Test(arguments: [
        ("  - { name: m, pool: p, guard: {} }", "models[2].guard: needs a split"),
        ("  - { name: m, split: [{ model: a }], guard: { baseline: z } }", "models[2].guard.baseline: 'z' is not an arm of this split"),
        ("  - { name: m, split: [{ model: a }], guard: { window: 500ms } }", "models[2].guard.window: must be between 1s and 1h"),
        ("  - { name: m, split: [{ model: a }], guard: { interval: 10ms } }", "models[2].guard.interval: must be between 100ms and 10m"),
        ("  - { name: m, split: [{ model: a }], guard: { window: 5s, interval: 10s } }", "models[2].guard.interval: must not be longer than the window"),
        ("  - { name: m, split: [{ model: a }], guard: { min_requests: 0 } }", "models[2].guard.min_requests: must be between 1 and 1000000"),
        ("  - { name: m, split: [{ model: a }], guard: { error_rate_margin: 2 } }", "models[2].guard.error_rate_margin: must be between 0 and 1"),
        ("  - { name: m, split: [{ model: a }], guard: { ttft_p90_ratio: 0.5 } }", "models[2].guard.ttft_p90_ratio: must be at least 1 (or 0: off)"),
        ("  - { name: m, split: [{ model: a }], guard: { ramp: [5, 1] } }", "models[2].guard.ramp[1]: steps must rise"),
        ("  - { name: m, split: [{ model: a }], guard: { ramp: [100] } }", "models[2].guard.ramp[0]: steps must rise"),
        ("  - { name: m, split: [{ model: a }], guard: { ramp: [\((1...21).map(String.init).joined(separator: ", "))] } }", "models[2].guard.ramp: at most 20 steps"),
        ("  - { name: m, pool: p, fallback: [a, b, c, d, e] }\n  - { name: c, pool: p }\n  - { name: d, pool: p }\n  - { name: e, pool: p }", "models[2].fallback: at most 4 models"),
        ("  - { name: m, split: [{ model: a }], guard: { tolerance: 1 } }", "models[2].guard.tolerance: unknown key"),
        ("  - { name: m, pool: p, shadow: { model: z, fraction: 0.1 } }", "models[2].shadow.model: no model named 'z'"),
        ("  - { name: m, pool: p, shadow: { model: m, fraction: 0.1 } }", "models[2].shadow.model: must be another model"),
        ("  - { name: m, pool: p, shadow: { model: a } }", "models[2].shadow.fraction: is required"),
        ("  - { name: m, pool: p, shadow: { model: a, fraction: 0 } }", "models[2].shadow.fraction: must be > 0 and <= 1"),
        ("  - { name: m, pool: p, shadow: { model: a, fraction: 0.5, max_in_flight: 0 } }", "models[2].shadow.max_in_flight: must be between 1 and 100000"),
        ("  - { name: m, pool: p, fallback: [z] }", "models[2].fallback[0]: no model named 'z'"),
        ("  - { name: m, pool: p, fallback: [a, a] }", "models[2].fallback[1]: 'a' is listed twice or is the model itself"),
        ("  - { name: m, pool: p, fallback: [m] }", "models[2].fallback[0]: 'm' is listed twice or is the model itself"),
        ("  - { name: m, pool: p, fallback: [s] }\n  - { name: s, split: [{ model: a }] }", "models[2].fallback[0]: 's' is a split"),
        ("  - { name: m, pool: p, shadow: { model: s, fraction: 1 } }\n  - { name: s, split: [{ model: a }] }", "models[2].shadow.model: 's' is a split"),
    ])
    func rejected(_ yaml: String, _ want: String) {
        let got = issues(yaml)
        #expect(got.contains { $0.hasPrefix(want) }, "\(got)")
    }
}

extension RolloutConfigTests {
    /// docs/configuration.md names every key of issue 26.
    @Test func everyRolloutKeyIsDocumented() throws {
        let doc = try String(contentsOf: ConfigLoaderTests.repo.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        for key in ["models[].guard", "models[].guard.baseline", "models[].guard.window", "models[].guard.interval", "models[].guard.min_requests",
                    "models[].guard.error_rate_margin", "models[].guard.ttft_p90_ratio", "models[].guard.inter_token_p90_ratio",
                    "models[].guard.ramp", "models[].shadow.model", "models[].shadow.fraction", "models[].shadow.max_in_flight",
                    "models[].fallback"] {
            #expect(doc.contains("| `\(key)` |"), "\(key) is not in docs/configuration.md")
        }
    }

    @Test func theSafeRolloutExampleLoads() throws {
        let s = try ConfigLoader.load(path: ConfigLoaderTests.repo.appendingPathComponent("config/examples/safe-rollout.yaml").path, offline: true)
        let chat = try #require(s.models.first { $0.name == "chat" })
        #expect(chat.sloGuard?.ramp == [1, 5, 25] && chat.shadow?.model == "chat-v3" && chat.sloGuard?.interTokenP90Ratio == 2)
        #expect(s.models.first { $0.name == "chat-v2" }?.fallback == ["chat-v1", "chat-small"])
    }
}

extension GatewaySettings.Shadow {
    func with(maxInFlight n: Int) -> Self { var c = self; c.maxInFlight = n; return c }
}
