import Glibc
public import SluiceSettings
import SluiceHTTP
import SluiceIO
import SluiceRedis
import SluiceRouting
import SluiceTracing

/// One problem in a config file: where (path and line) and what.
public struct ConfigIssue: CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var line: Int
    public var description: String { "\(path): \(message) (line \(line))" }
}

public struct ConfigInvalid: Error, CustomStringConvertible {
    public var file: String
    public var issues: [ConfigIssue]
    public var description: String {
        "\(file) is invalid:\n" + issues.map { "  " + $0.description }.joined(separator: "\n")
    }
}

/// Reads the YAML config into gateway settings, collecting every problem (unknown keys, wrong
/// types, bad values, cross-references) rather than stopping at the first. Defaults are those of
/// `GatewaySettings` (one place); docs/configuration.md lists every key.
public struct ConfigLoader {
    private(set) var issues: [ConfigIssue] = []
    /// Offline (`sluice validate --offline`, for CI pipelines): host names that do not resolve
    /// here and secrets that are not mounted here are not problems (the values are placeholders).
    var offline = false
    private var placeholders = 0

    /// A distinct stand-in for a secret that is not available offline (distinct, so two keys
    /// from two files are not "the same key"; plain, so it fits inside a URL).
    private mutating func offlinePlaceholder() -> String {
        placeholders += 1
        return "offline\(placeholders)"
    }

    public static func load(path: String, offline: Bool = false) throws -> GatewaySettings {
        guard let text = readWholeFile(path) else {
            throw ConfigInvalid(file: path, issues: [ConfigIssue(path: path, message: "cannot read the file", line: 0)])
        }
        return try load(text: text, file: path, offline: offline)
    }

    public static func load(text: String, file: String = "config", offline: Bool = false) throws -> GatewaySettings {
        let root: YAMLNode
        do {
            root = try YAMLNode.parse(text)
        } catch {
            throw ConfigInvalid(file: file, issues: [ConfigIssue(path: "(document)", message: error.description, line: 0)])
        }
        var loader = ConfigLoader()
        loader.offline = offline
        let s = loader.settings(root)
        if !loader.issues.isEmpty { throw ConfigInvalid(file: file, issues: loader.issues) }
        return s!
    }

    // MARK: the schema

    mutating func settings(_ root: YAMLNode) -> GatewaySettings? {
        var s = GatewaySettings(listen: [], workers: 0, pools: [])
        guard let top = map(root, "(document)") else { return nil }
        let known = ["listen", "admin", "workers", "limits", "timeouts", "upstream", "proxy", "health", "telemetry", "pools", "models",
                     "logging", "redis", "auth", "cache", "rate_limits", "flow_control", "tenancy", "tracing",
                     "passthrough", "responses", "realtime"]
        for (key, keyLine, _) in top where !known.contains(key) { issue(key, "unknown key", keyLine) }
        func child(_ k: String) -> YAMLNode? { top.first { $0.key == k }?.value }

        if let l = child("listen") {
            for (i, item) in seq(l, "listen").enumerated() {
                let p = "listen[\(i)]"
                guard let m = map(item, p) else { continue }
                unknown(m, p, ["address", "tls", "http2"])
                let address = addr(m, p, "address", required: true)
                var tls: ListenerTLS? = nil
                let http2 = bool(m, p, "http2") ?? true
                if !http2 { s.http2 = false }
                if let t = field(m, "tls"), let tm = map(t, "\(p).tls") {
                    unknown(tm, "\(p).tls", ["cert", "key"])
                    if let cert = str(tm, "\(p).tls", "cert", required: true), let key = str(tm, "\(p).tls", "key", required: true) {
                        do { tls = try ListenerTLS(certificateChain: cert, privateKey: key, http2: http2) } catch {
                            issue("\(p).tls", error.description, t.line)
                        }
                    }
                }
                if let address { s.listen.append(.init(address: address, tls: tls)) }
            }
        } else {
            s.listen = [.init(address: SocketAddress("0.0.0.0:8080")!)]
        }
        if s.listen.isEmpty && child("listen") != nil { issue("listen", "needs at least one address", child("listen")!.line) }
        if let a = child("admin"), let m = map(a, "admin") {
            unknown(m, "admin", ["address", "metrics", "token", "token_sha256"])
            s.admin = addr(m, "admin", "address", required: true)
            if let v = bool(m, "admin", "metrics") { s.metrics = v }
            if let raw = str(m, "admin", "token") {
                if let token = secret(raw, "admin.token", field(m, "token")!.line) {
                    if token.isEmpty { issue("admin.token", "is empty", field(m, "token")!.line) } else { s.adminTokenSHA256 = SHA256.hash(Array(token.utf8)) }
                }
            } else if let hex = str(m, "admin", "token_sha256") {
                s.adminTokenSHA256 = Self.hexBytes(hex)
                if s.adminTokenSHA256?.count != 32 {
                    issue("admin.token_sha256", "must be 64 hex digits (the SHA-256 of the token)", field(m, "token_sha256")!.line)
                    s.adminTokenSHA256 = nil
                }
            }
        } else {
            s.admin = SocketAddress("127.0.0.1:9090")
        }
        if let w = child("workers") { s.workers = int(w, "workers", min: 0, max: 1024) ?? 0 }

        if let n = child("limits"), let m = map(n, "limits") {
            let p = "limits"
            unknown(m, p, ["max_connections", "max_connections_per_worker", "max_header_bytes", "max_header_count",
                           "max_request_line", "max_body_bytes", "max_concurrent_streams", "spare_buffer_bytes",
                           "heap_trim_bytes", "http2_buffer_bytes", "default_max_tokens"])
            if let v = intField(m, p, "max_connections", min: 1, max: 1 << 24) { s.limits.maxConnections = v }
            if let v = intField(m, p, "max_connections_per_worker", min: 1, max: 1 << 24) { s.limits.maxConnectionsPerWorker = v }
            if let v = sizeField(m, p, "max_header_bytes", min: 1024, max: 1 << 20) { s.limits.head.maxHeadBytes = v }
            if let v = intField(m, p, "max_header_count", min: 1, max: 10_000) { s.limits.head.maxHeaderCount = v }
            if let v = sizeField(m, p, "max_request_line", min: 256, max: 1 << 20) { s.limits.head.maxRequestLine = v }
            if let v = sizeField(m, p, "max_body_bytes", min: 1, max: 1 << 30) { s.limits.maxBodyBytes = v }
            if let v = intField(m, p, "max_concurrent_streams", min: 1, max: 1 << 16) { s.limits.maxConcurrentStreams = v }
            if let v = sizeField(m, p, "spare_buffer_bytes", min: 0, max: 1 << 40) { s.limits.spareBufferBytes = v }
            if let v = sizeField(m, p, "heap_trim_bytes", min: 0, max: 1 << 40) { s.limits.heapTrimBytes = v }
            if let v = sizeField(m, p, "http2_buffer_bytes", min: 0, max: 1 << 30) { s.limits.http2BufferBytes = v }
            if let v = intField(m, p, "default_max_tokens", min: 1, max: Int(Int32.max)) { s.limits.defaultMaxTokens = v }
        }
        if let n = child("timeouts"), let m = map(n, "timeouts") {
            let p = "timeouts"
            let keys: [(String, WritableKeyPath<GatewaySettings.Timeouts, Duration>)] = [
                ("client_header", \.clientHeader), ("client_body", \.clientBody), ("idle", \.idle),
                ("upstream_connect", \.upstreamConnect), ("upstream_first_byte", \.upstreamFirstByte),
                ("upstream_idle", \.upstreamIdle), ("request", \.request), ("grace", \.grace), ("drain_delay", \.drainDelay),
            ]
            unknown(m, p, keys.map(\.0))
            for (k, kp) in keys { if let d = durationField(m, p, k) { s.timeouts[keyPath: kp] = d } }
        }
        if let n = child("upstream"), let m = map(n, "upstream") {
            let p = "upstream"
            unknown(m, p, ["keepalive_per_endpoint", "max_idle_time", "retries"])
            if let v = intField(m, p, "keepalive_per_endpoint", min: 0, max: 1 << 20) { s.upstream.keepalivePerEndpoint = v }
            if let v = durationField(m, p, "max_idle_time") { s.upstream.maxIdleTime = v }
            if let v = intField(m, p, "retries", min: 0, max: 10) { s.upstream.retries = v }
        }
        if let n = child("proxy"), let m = map(n, "proxy") {
            unknown(m, "proxy", ["x_forwarded", "trust_forwarded", "via", "request_usage", "route_header", "body_low_water"])
            if let v = bool(m, "proxy", "x_forwarded") { s.proxy.xForwarded = v }
            if let v = bool(m, "proxy", "trust_forwarded") { s.proxy.trustForwarded = v }
            if let v = bool(m, "proxy", "via") { s.proxy.via = v }
            if let v = bool(m, "proxy", "request_usage") { s.proxy.requestUsage = v }
            if let v = bool(m, "proxy", "route_header") { s.proxy.routeHeader = v }
            if let v = sizeField(m, "proxy", "body_low_water", min: 0, max: 1 << 30) { s.proxy.bodyLowWater = v }
        }
        if let n = child("health"), let m = map(n, "health") {
            let p = "health"
            unknown(m, p, ["path", "interval", "timeout", "unhealthy_threshold", "eject_base", "max_eject"])
            if let v = str(m, p, "path") { s.health.path = v }
            if let v = durationField(m, p, "interval") { s.health.interval = v }
            if let v = durationField(m, p, "timeout") { s.health.timeout = v }
            if let v = intField(m, p, "unhealthy_threshold", min: 1, max: 1_000_000) { s.health.unhealthyThreshold = v }
            if let v = durationField(m, p, "eject_base") { s.health.ejectBase = v }
            if let v = durationField(m, p, "max_eject") { s.health.maxEject = v }
        }
        if let n = child("logging"), let m = map(n, "logging") {
            unknown(m, "logging", ["access_log"])
            if let v = str(m, "logging", "access_log") {
                s.accessLog = v == "off" ? .off : v == "stdout" ? .stdout : .file(v)
            }
        }
        if let n = child("telemetry"), let m = map(n, "telemetry") {
            let p = "telemetry"
            unknown(m, p, ["interval", "timeout", "staleness", "metrics_path", "models_path"])
            if let v = durationField(m, p, "interval") { s.telemetry.interval = v }
            if let v = durationField(m, p, "timeout") { s.telemetry.timeout = v }
            if let v = durationField(m, p, "staleness") { s.telemetry.staleness = v }
            if let v = str(m, p, "metrics_path") { s.telemetry.metricsPath = v }
            if let v = str(m, p, "models_path") { s.telemetry.modelsPath = v }
        }
        if let n = child("pools") {
            for (i, item) in seq(n, "pools").enumerated() {
                let p = "pools[\(i)]"
                guard let m = map(item, p) else { continue }
                unknown(m, p, ["name", "endpoints", "dns", "dns_interval", "tls", "routing", "protocol"])
                guard let name = str(m, p, "name", required: true) else { continue }
                if s.pools.contains(where: { $0.name == name }) { issue("\(p).name", "duplicate pool name '\(name)'", item.line) }
                var tlsCA: String? = nil
                var verify = true
                var serverName: String? = nil
                if let t = field(m, "tls"), let tm = map(t, "\(p).tls") {
                    unknown(tm, "\(p).tls", ["ca_file", "server_name", "verify"])
                    tlsCA = str(tm, "\(p).tls", "ca_file")
                    serverName = str(tm, "\(p).tls", "server_name")
                    verify = bool(tm, "\(p).tls", "verify") ?? true
                }
                var pool = GatewaySettings.Pool(name: name, endpoints: [])
                if let e = field(m, "endpoints") {
                    for (j, u) in seq(e, "\(p).endpoints").enumerated() {
                        guard case .scalar(let url, let line, _) = u else { issue("\(p).endpoints[\(j)]", "must be a URL string", u.line); continue }
                        guard let ep = endpoint(url, caFile: tlsCA, verify: verify, serverName: serverName) else {
                            issue("\(p).endpoints[\(j)]", "'\(url)' is not an http:// or https:// URL with host and port", line)
                            continue
                        }
                        pool.endpoints.append(ep)
                    }
                }
                if let d = str(m, p, "dns") {
                    if let (host, port) = SocketAddress.split(d) { pool.dns = (host, port) } else {
                        issue("\(p).dns", "'\(d)' is not host:port", field(m, "dns")!.line)
                    }
                }
                if let d = durationField(m, p, "dns_interval") { pool.dnsInterval = d }
                if let v = str(m, p, "protocol") {
                    if let proto = PoolProtocol(rawValue: v == "v2" ? "kserve_v2" : v) { pool.serverProtocol = proto } else {
                        issue("\(p).protocol", "must be openai or kserve_v2 (alias v2)", field(m, "protocol")!.line)
                    }
                }
                if let r = field(m, "routing") { routing(r, "\(p).routing", into: &pool) }
                if field(m, "endpoints") == nil && pool.dns == nil { issue(p, "needs endpoints or dns", item.line) }
                if field(m, "endpoints") != nil && pool.dns != nil { issue(p, "has both endpoints and dns; choose one", item.line) }
                s.pools.append(pool)
            }
        }
        if s.pools.isEmpty { issue("pools", "at least one pool is required", root.line) }
        if let n = child("models") {
            for (i, item) in seq(n, "models").enumerated() {
                let p = "models[\(i)]"
                guard let m = map(item, p) else { continue }
                unknown(m, p, ["name", "pool", "upstream_model", "adapter", "adapter_path", "split", "sticky", "priority", "guard", "shadow", "fallback"])
                guard let name = str(m, p, "name", required: true) else { continue }
                if s.models.contains(where: { $0.name == name }) { issue("\(p).name", "duplicate model name '\(name)'", item.line) }
                var model = GatewaySettings.Model(name: name, pool: str(m, p, "pool"), upstreamModel: str(m, p, "upstream_model"),
                                                  adapter: str(m, p, "adapter"))
                model.adapterPath = str(m, p, "adapter_path")
                model.priority = band(m, p)
                if let sp = field(m, "split") {
                    for (j, armNode) in seq(sp, "\(p).split").enumerated() {
                        let ap = "\(p).split[\(j)]"
                        guard let am = map(armNode, ap) else { continue }
                        unknown(am, ap, ["model", "weight"])
                        guard let target = str(am, ap, "model", required: true) else { continue }
                        let weight = number(am, ap, "weight") ?? 1
                        if weight <= 0 { issue("\(ap).weight", "must be > 0", field(am, "weight")?.line ?? armNode.line) }
                        model.split.append((target, weight))
                    }
                    if model.split.isEmpty { issue("\(p).split", "needs at least one arm", sp.line) }
                }
                if let st = str(m, p, "sticky") {
                    switch st {
                    case "none": model.sticky = .none
                    case "user": model.sticky = .user
                    default:
                        if st.hasPrefix("header:") && st.count > 7 { model.sticky = .header(String(st.dropFirst(7))) } else {
                            issue("\(p).sticky", "must be none, user or header:NAME", field(m, "sticky")!.line)
                        }
                    }
                }
                rollouts(m, p, into: &model)
                if model.pool == nil && model.split.isEmpty { issue(p, "needs a pool or a split", item.line) }
                if model.pool != nil && !model.split.isEmpty { issue(p, "has both pool and split; choose one", item.line) }
                if let pool = model.pool, !s.pools.contains(where: { $0.name == pool }) {
                    issue("\(p).pool", "no pool named '\(pool)'", field(m, "pool")!.line)
                }
                if name.contains(where: { $0 == "\"" || $0 == "\\" }) { issue("\(p).name", "must not contain quotes or backslashes", item.line) }
                s.models.append(model)
            }
            // Split arms exist and splits are not cyclic.
            for (i, model) in s.models.enumerated() {
                for (j, arm) in model.split.enumerated() where !s.models.contains(where: { $0.name == arm.model }) {
                    issue("models[\(i)].split[\(j)].model", "no model named '\(arm.model)'", modelLine(n, i))
                }
                var seen: Set<String> = [model.name]
                var frontier = model.split.map(\.model)
                while let next = frontier.popLast() {
                    if next == model.name { issue("models[\(i)].split", "is cyclic (reaches '\(model.name)' again)", modelLine(n, i)); break }
                    if !seen.insert(next).inserted { continue }
                    frontier += s.models.first { $0.name == next }?.split.map(\.model) ?? []
                }
            }
            checkRollouts(&s, n)
        }
        services(s: &s, child: child, root: root)
        if let n = child("tracing"), let m = map(n, "tracing") { tracing(m, into: &s) }
        // Listeners and the admin listener must not collide.
        var ports: [SocketAddress] = s.listen.map(\.address)
        if let a = s.admin { ports.append(a) }
        for (i, a) in ports.enumerated() where a.port != 0 && ports[..<i].contains(where: { $0.port == a.port && ($0 == a || $0.host == "0.0.0.0" || a.host == "0.0.0.0") }) {
            issue(i < s.listen.count ? "listen[\(i)].address" : "admin.address", "port \(a.port) is used twice", root.line)
        }
        return s
    }

    /// `redis`, `auth`, `cache`, `rate_limits`.
    private mutating func services(s: inout GatewaySettings, child: (String) -> YAMLNode?, root: YAMLNode) {
        if let n = child("redis"), let m = map(n, "redis") {
            let p = "redis"
            unknown(m, p, ["url", "on_failure", "command_timeout", "connect_timeout", "connections_per_worker"])
            if let raw = str(m, p, "url", required: true), let text = secret(raw, "\(p).url", field(m, "url")!.line) {
                do {
                    let url = try RedisURL(parsing: text)
                    do {
                        var c = offline ? RedisConfiguration(url: url, address: SocketAddress("127.0.0.1:\(url.port)")!)
                                        : try RedisConfiguration(resolving: url)
                        if let d = durationField(m, p, "command_timeout") { c.commandTimeout = d }
                        if let d = durationField(m, p, "connect_timeout") { c.connectTimeout = d }
                        if let v = intField(m, p, "connections_per_worker", min: 1, max: 64) { c.connectionsPerLoop = v }
                        var r = GatewaySettings.Redis(configuration: c)
                        if let f = str(m, p, "on_failure") {
                            if let v = GatewaySettings.Redis.OnFailure(rawValue: f) { r.onFailure = v } else {
                                issue("\(p).on_failure", "must be open or closed", field(m, "on_failure")!.line)
                            }
                        }
                        s.redis = r
                    } catch {
                        issue("\(p).url", "cannot resolve \(url.host): \(error)", field(m, "url")!.line)
                    }
                } catch {
                    // The message names the problem, never the URL (it may hold a password).
                    issue("\(p).url", error.description, field(m, "url")!.line)
                }
            }
        }
        if let n = child("auth"), let m = map(n, "auth") {
            unknown(m, "auth", ["api_keys"])
            var auth = GatewaySettings.Auth()
            if let list = field(m, "api_keys") {
                for (i, item) in seq(list, "auth.api_keys").enumerated() {
                    let p = "auth.api_keys[\(i)]"
                    guard let km = map(item, p) else { continue }
                    unknown(km, p, ["key", "key_sha256", "tenant", "priority", "allow_priority_header"])
                    guard let tenant = str(km, p, "tenant", required: true) else { continue }
                    if tenant == "*" || tenant.isEmpty { issue("\(p).tenant", "must be a name (not empty, not '*')", item.line) }
                    var digest: [UInt8]? = nil
                    if let raw = str(km, p, "key") {
                        if let key = secret(raw, "\(p).key", field(km, "key")!.line) {
                            if key.isEmpty { issue("\(p).key", "is empty", field(km, "key")!.line) } else { digest = SHA256.hash(Array(key.utf8)) }
                        }
                    } else if let hex = str(km, p, "key_sha256") {
                        digest = Self.hexBytes(hex)
                        if digest?.count != 32 { issue("\(p).key_sha256", "must be 64 hex digits (the SHA-256 of the key)", field(km, "key_sha256")!.line); digest = nil }
                    } else {
                        issue(p, "needs key or key_sha256", item.line)
                    }
                    if let d = digest {
                        if auth.keys[d] != nil { issue(p, "the same key is listed twice", item.line) }
                        auth.keys[d] = tenant
                        let band = band(km, p)
                        let header = bool(km, p, "allow_priority_header") ?? false
                        if band != nil || header { auth.priorities[d] = GatewaySettings.KeyPriority(band: band, allowHeader: header) }
                    }
                }
            }
            if auth.keys.isEmpty { issue("auth.api_keys", "needs at least one key (without auth, remove the section)", n.line) }
            s.auth = auth
        }
        if let n = child("cache"), let m = map(n, "cache") {
            let p = "cache"
            unknown(m, p, ["enabled", "ttl", "max_entry_size", "scope", "seed_is_deterministic"])
            s.cache.enabled = bool(m, p, "enabled") ?? true
            if let d = durationField(m, p, "ttl") {
                if d < .milliseconds(1) { issue("\(p).ttl", "must be at least 1ms", field(m, "ttl")!.line) } else { s.cache.ttl = d }
            }
            if let v = sizeField(m, p, "max_entry_size", min: 1, max: 512 << 20) { s.cache.maxEntryBytes = v }
            if let v = str(m, p, "scope") {
                if let sc = GatewaySettings.Cache.Scope(rawValue: v) { s.cache.scope = sc } else {
                    issue("\(p).scope", "must be tenant or shared", field(m, "scope")!.line)
                }
            }
            if let v = bool(m, p, "seed_is_deterministic") { s.cache.seedIsDeterministic = v }
            if s.cache.enabled && s.redis == nil { issue("cache", "needs redis (the cache is kept in Redis)", n.line) }
        }
        if let n = child("rate_limits") {
            for (i, item) in seq(n, "rate_limits").enumerated() {
                let p = "rate_limits[\(i)]"
                guard let m = map(item, p) else { continue }
                unknown(m, p, ["tenant", "model", "requests_per_minute", "tokens_per_minute", "request_burst", "token_burst"])
                var rule = GatewaySettings.RateLimitRule(tenant: str(m, p, "tenant") ?? "*", model: str(m, p, "model"))
                rule.requestsPerMinute = intField(m, p, "requests_per_minute", min: 1, max: 1 << 40)
                rule.tokensPerMinute = intField(m, p, "tokens_per_minute", min: 1, max: 1 << 50)
                rule.requestBurst = intField(m, p, "request_burst", min: 1, max: 1 << 40)
                rule.tokenBurst = intField(m, p, "token_burst", min: 1, max: 1 << 50)
                if rule.requestsPerMinute == nil && rule.tokensPerMinute == nil {
                    issue(p, "needs requests_per_minute or tokens_per_minute", item.line)
                }
                if let model = rule.model, !s.models.isEmpty, !s.models.contains(where: { $0.name == model }) {
                    issue("\(p).model", "no model named '\(model)'", field(m, "model")!.line)
                }
                if s.rateLimits.contains(where: { $0.tenant == rule.tenant && $0.model == rule.model }) {
                    issue(p, "duplicates an earlier rule for the same tenant and model", item.line)
                }
                if rule.tenant != "*", let keys = s.auth?.keys, !keys.values.contains(rule.tenant) {
                    issue("\(p).tenant", "no API key belongs to tenant '\(rule.tenant)'", field(m, "tenant")?.line ?? item.line)
                }
                s.rateLimits.append(rule)
            }
            if !s.rateLimits.isEmpty && s.redis == nil { issue("rate_limits", "needs redis (limits are enforced in Redis)", n.line) }
        }
        if let n = child("flow_control"), let m = map(n, "flow_control") {
            let p = "flow_control"
            unknown(m, p, ["enabled", "max_waiting", "max_kv_use", "queue_ttl", "max_queued", "max_queued_bytes",
                           "max_queued_per_tenant", "max_queued_bytes_per_tenant", "fairness", "slot_hold", "sheddable_headroom", "max_prefill_tokens"])
            if let v = bool(m, p, "enabled") { s.flow.enabled = v }
            if let v = intField(m, p, "max_waiting", min: 0, max: 1 << 20) { s.flow.maxWaiting = v }
            if let v = number(m, p, "max_kv_use") {
                if v > 0 && v <= 1 { s.flow.maxKVUse = v } else { issue("\(p).max_kv_use", "must be > 0 and <= 1", field(m, "max_kv_use")!.line) }
            }
            if let v = durationField(m, p, "queue_ttl") { s.flow.queueTTL = v }
            if let v = durationField(m, p, "slot_hold") {
                if v <= .seconds(10) { s.flow.slotHold = v } else { issue("\(p).slot_hold", "must be at most 10s", field(m, "slot_hold")!.line) }
            }
            if let v = number(m, p, "sheddable_headroom") {
                if v >= 0 && v < 1 { s.flow.sheddableHeadroom = v } else { issue("\(p).sheddable_headroom", "must be >= 0 and < 1", field(m, "sheddable_headroom")!.line) }
            }
            if let v = intField(m, p, "max_prefill_tokens", min: 0, max: 1 << 30) { s.flow.maxPrefillTokens = v }
            if let v = intField(m, p, "max_queued", min: 0, max: 1 << 24) { s.flow.maxQueued = v }
            if let v = sizeField(m, p, "max_queued_bytes", min: 0, max: 1 << 40) { s.flow.maxQueuedBytes = v }
            if let v = intField(m, p, "max_queued_per_tenant", min: 0, max: 1 << 24) { s.flow.maxQueuedPerTenant = v }
            if let v = sizeField(m, p, "max_queued_bytes_per_tenant", min: 0, max: 1 << 40) { s.flow.maxQueuedBytesPerTenant = v }
            if let v = str(m, p, "fairness") {
                if let f = FairnessPolicy(rawValue: v) { s.flow.fairness = f } else {
                    issue("\(p).fairness", "must be tokens or round_robin", field(m, "fairness")!.line)
                }
            }
        }
        if let n = child("tenancy"), let m = map(n, "tenancy") {
            unknown(m, "tenancy", ["kv_isolation"])
            if let v = bool(m, "tenancy", "kv_isolation") { s.kvIsolation = v }
        }
        if let n = child("passthrough") {
            if case .scalar(let v, let line, _) = n {
                if let policy = GatewaySettings.Passthrough(rawValue: v) { s.passthrough = policy } else {
                    issue("passthrough", "must be deny or default_pool", line)
                }
            } else {
                issue("passthrough", "must be deny or default_pool", n.line)
            }
        }
        if let n = child("responses"), let m = map(n, "responses") {
            unknown(m, "responses", ["max_ids", "ttl"])
            if let v = intField(m, "responses", "max_ids", min: 1, max: 1 << 24) { s.responses.maxIDs = v }
            if let v = durationField(m, "responses", "ttl") {
                if v.isPositive && v <= .seconds(30 * 86_400) { s.responses.ttl = v } else {
                    issue("responses.ttl", "must be between 1s and 30d", field(m, "ttl")!.line)
                }
            }
        }
        if let n = child("realtime"), let m = map(n, "realtime") {
            unknown(m, "realtime", ["max_connections", "idle_timeout", "buffer_bytes"])
            if let v = intField(m, "realtime", "max_connections", min: 0, max: 1 << 20) { s.realtime.maxConnections = v }
            if let v = durationField(m, "realtime", "idle_timeout") {
                if v.isPositive { s.realtime.idleTimeout = v } else { issue("realtime.idle_timeout", "must be positive", field(m, "idle_timeout")!.line) }
            }
            if let v = sizeField(m, "realtime", "buffer_bytes", min: 4096, max: 64 << 20) { s.realtime.bufferBytes = v }
        }
    }

    /// A flow-control priority band (`critical`, `standard` or `sheddable`).
    private mutating func band(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String) -> PriorityBand? {
        guard let v = str(m, p, "priority") else { return nil }
        guard let b = PriorityBand(name: v) else {
            issue("\(p).priority", "must be critical, standard or sheddable", field(m, "priority")!.line)
            return nil
        }
        return b
    }

    /// `tracing`: OTLP/HTTP export to a collector. The endpoint's host is resolved at load time
    /// (as Redis's is); offline, any host will do.
    private mutating func tracing(_ m: [(key: String, keyLine: Int, value: YAMLNode)], into s: inout GatewaySettings) {
        let p = "tracing"
        unknown(m, p, ["endpoint", "sample_ratio", "always_sample_errors", "parent_based", "service_name",
                       "max_batch_size", "max_queue_size", "export_interval", "export_timeout"])
        // An endpoint that is missing or wrong is one problem; the other keys are still checked.
        var endpoint: (address: SocketAddress, authority: String, path: String)? = nil
        if let url = str(m, p, "endpoint", required: true) {
            if let parts = TracingConfiguration.splitEndpoint(url) {
                var address = SocketAddress("\(parts.host):\(parts.port)") ?? SocketAddress("[\(parts.host)]:\(parts.port)")
                if address == nil {
                    if offline { address = SocketAddress("127.0.0.1:\(parts.port)") } else {
                        address = (try? SocketAddress.resolve(host: parts.host, port: parts.port))?.first
                    }
                }
                if let address { endpoint = (address, parts.authority, parts.path) } else {
                    issue("\(p).endpoint", "cannot resolve \(parts.host)", field(m, "endpoint")!.line)
                }
            } else {
                issue("\(p).endpoint", "'\(url)' is not an http://host[:port][/path] URL (OTLP/HTTP; https is not supported)", field(m, "endpoint")!.line)
            }
        }
        var t = TracingConfiguration(address: endpoint?.address ?? SocketAddress("127.0.0.1:4318")!, authority: endpoint?.authority ?? "",
                                     basePath: endpoint?.path ?? "")
        if let r = number(m, p, "sample_ratio") {
            if r < 0 || r > 1 { issue("\(p).sample_ratio", "must be between 0 and 1", field(m, "sample_ratio")!.line) } else { t.sampleRatio = r }
        }
        if let v = bool(m, p, "always_sample_errors") { t.alwaysSampleErrors = v }
        if let v = bool(m, p, "parent_based") { t.parentBased = v }
        if let v = str(m, p, "service_name") {
            if v.isEmpty { issue("\(p).service_name", "is empty", field(m, "service_name")!.line) } else { t.serviceName = v }
        }
        if let v = intField(m, p, "max_batch_size", min: 1, max: 65_536) { t.maxBatchSize = v }
        if let v = intField(m, p, "max_queue_size", min: 1, max: 1 << 20) { t.maxQueueSize = v }
        if t.maxQueueSize < t.maxBatchSize { issue("\(p).max_queue_size", "must be at least max_batch_size (\(t.maxBatchSize))", field(m, "max_queue_size")?.line ?? 0) }
        if let d = durationField(m, p, "export_interval") {
            if d < .milliseconds(10) || d > .seconds(3600) { issue("\(p).export_interval", "must be between 10ms and 1h", field(m, "export_interval")!.line) } else { t.exportInterval = d }
        }
        if let d = durationField(m, p, "export_timeout") {
            if d < .milliseconds(10) || d > .seconds(300) { issue("\(p).export_timeout", "must be between 10ms and 5m", field(m, "export_timeout")!.line) } else { t.exportTimeout = d }
        }
        if endpoint != nil { s.tracing = t }
    }

    /// Expands secret references in a value: `${env:NAME}` (an environment variable) and
    /// `${file:/path}` (a file's contents without the trailing newline, as Kubernetes mounts
    /// Secrets), anywhere in it (`redis://:${env:REDIS_PASSWORD}@redis:6379`); other text is
    /// literal. Problems name the reference, never a value.
    private mutating func secret(_ raw: String, _ path: String, _ line: Int) -> String? {
        var out = ""
        var rest = Substring(raw)
        while let dollar = rest.firstIndex(of: "$") {
            let brace = rest.index(after: dollar)
            guard brace < rest.endIndex, rest[brace] == "{" else {
                out += rest[...dollar]
                rest = rest[brace...]
                continue
            }
            out += rest[..<dollar]
            guard let close = rest[brace...].firstIndex(of: "}") else {
                issue(path, "an unterminated ${ reference", line)
                return nil
            }
            let inner = rest[rest.index(after: brace)..<close]
            if inner.hasPrefix("env:") {
                let name = String(inner.dropFirst(4))
                if let v = getenv(name) { out += String(cString: v) } else if offline { out += offlinePlaceholder() } else {
                    issue(path, "environment variable \(name) is not set", line)
                    return nil
                }
            } else if inner.hasPrefix("file:") {
                let file = String(inner.dropFirst(5))
                if var text = readWholeFile(file) {
                    while text.last == "\n" || text.last == "\r" { text.removeLast() }
                    out += text
                } else if offline {
                    out += offlinePlaceholder()
                } else {
                    issue(path, "cannot read \(file)", line)
                    return nil
                }
            } else {
                issue(path, "a secret reference must be ${env:NAME} or ${file:/path}", line)
                return nil
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    static func hexBytes(_ s: String) -> [UInt8]? {
        let b = Array(s.lowercased().utf8)
        guard b.count % 2 == 0 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            default: nil
            }
        }
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            guard let h = v(b[i]), let l = v(b[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }

    private func modelLine(_ models: YAMLNode, _ i: Int) -> Int {
        if case .sequence(let items, _) = models, i < items.count { return items[i].line }
        return models.line
    }

    /// `pools[].routing`: a policy name, or a mapping with the policy and its profile's parts:
    /// for `default` (the cost model) `cost`; for `weighted` the scorer weights and the load
    /// guard; for both the hard limits.
    private mutating func routing(_ node: YAMLNode, _ p: String, into pool: inout GatewaySettings.Pool) {
        let policies = "must be default, weighted, round_robin or least_loaded"
        if case .scalar(let name, let line, _) = node {
            if let policy = RoutingPolicy(rawValue: name) {
                pool.routing = policy
                pool.profile = policy == .weighted ? .weighted() : .costModel()
            } else {
                issue(p, policies + " (or a mapping with policy and its parts)", line)
            }
            return
        }
        guard let m = map(node, p) else { return }
        unknown(m, p, ["policy", "cost", "weights", "load_guard", "max_waiting", "max_kv_use"])
        if let name = str(m, p, "policy") {
            if let policy = RoutingPolicy(rawValue: name) { pool.routing = policy } else {
                issue("\(p).policy", policies, field(m, "policy")!.line)
            }
        }
        let weighted = pool.routing == .weighted
        var weights: [String: Double] = [:]
        if let w = field(m, "weights") {
            if !weighted { issue("\(p).weights", "applies to policy weighted only", w.line) }
            if let wm = map(w, "\(p).weights") {
                let names = RoutingProfile.defaultScorers.map(\.scorer.name)
                for (k, line, _) in wm {
                    guard names.contains(k) else {
                        issue("\(p).weights.\(k)", "unknown scorer (one of \(names.joined(separator: ", ")))", line)
                        continue
                    }
                    guard let v = number(wm, "\(p).weights", k) else { continue }
                    if v < 0 { issue("\(p).weights.\(k)", "must be >= 0", line) } else { weights[k] = v }
                }
            }
        }
        var loadGuard = LoadGuardFilter()
        if let g = field(m, "load_guard") {
            if !weighted { issue("\(p).load_guard", "applies to policy weighted only", g.line) }
            if let gm = map(g, "\(p).load_guard") {
                unknown(gm, "\(p).load_guard", ["factor", "slack"])
                if let f = number(gm, "\(p).load_guard", "factor") {
                    if f < 1 { issue("\(p).load_guard.factor", "must be >= 1", field(gm, "factor")!.line) } else { loadGuard.factor = f }
                }
                if let sl = intField(gm, "\(p).load_guard", "slack", min: 0, max: 1 << 20) { loadGuard.slack = sl }
            }
        }
        var model = CostModel()
        var absoluteBand = 0.001, relativeBand = 0.05, homeBand = 0.25
        if let c = field(m, "cost") {
            if pool.routing != .default { issue("\(p).cost", "applies to policy default only", c.line) }
            if let cm = map(c, "\(p).cost") {
                let q = "\(p).cost"
                unknown(cm, q, ["chunk_tokens", "adapter_load", "adapter_wait", "interference", "tie_band", "tie_band_relative", "home_band"])
                if let v = intField(cm, q, "chunk_tokens", min: 1, max: 1 << 24) { model.chunkTokens = v }
                if let d = durationField(cm, q, "adapter_load") { model.adapterLoad = Double(d.nanoseconds) / 1e9 }
                if let d = durationField(cm, q, "adapter_wait") { model.adapterWait = Double(d.nanoseconds) / 1e9 }
                if let v = number(cm, q, "interference") {
                    if v < 0 || v > 100 { issue("\(q).interference", "must be >= 0 and <= 100", field(cm, "interference")!.line) } else { model.interference = v }
                }
                if let d = durationField(cm, q, "tie_band") { absoluteBand = Double(d.nanoseconds) / 1e9 }
                if let v = number(cm, q, "tie_band_relative") {
                    if v < 0 || v > 1 { issue("\(q).tie_band_relative", "must be >= 0 and <= 1", field(cm, "tie_band_relative")!.line) } else { relativeBand = v }
                }
                if let v = number(cm, q, "home_band") {
                    if v < 0 || v > 1 { issue("\(q).home_band", "must be >= 0 and <= 1", field(cm, "home_band")!.line) } else { homeBand = v }
                }
            }
        }
        var saturation = SaturationFilter()
        if let w = intField(m, p, "max_waiting", min: 0, max: 1 << 20) { saturation.maxWaiting = w }
        if let kv = number(m, p, "max_kv_use") {
            if kv <= 0 || kv > 1 { issue("\(p).max_kv_use", "must be > 0 and <= 1", field(m, "max_kv_use")!.line) } else { saturation.maxKVUse = kv }
        }
        pool.profile = weighted ? .weighted(weights: weights, guard: loadGuard, saturation: saturation)
            : .costModel(model: model, absoluteBand: absoluteBand, relativeBand: relativeBand, homeBand: homeBand, saturation: saturation)
    }

    // MARK: typed readers

    // MARK: safe rollouts (issue 26): models[].guard, shadow, fallback

    /// Reads `guard`, `shadow` and `fallback` of one model (references are checked once every
    /// model is known, in ``checkRollouts``).
    private mutating func rollouts(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, into model: inout GatewaySettings.Model) {
        if let gn = field(m, "guard"), let gm = map(gn, "\(p).guard") {
            let gp = "\(p).guard"
            unknown(gm, gp, ["baseline", "window", "interval", "min_requests", "error_rate_margin", "ttft_p90_ratio",
                             "inter_token_p90_ratio", "ramp"])
            var g = SplitGuardConfig()
            if model.split.isEmpty { issue(gp, "needs a split (the guard compares a split's arms)", gn.line) }
            if let b = str(gm, gp, "baseline") {
                if let i = model.split.firstIndex(where: { $0.model == b }) { g.baseline = i } else if !model.split.isEmpty {
                    issue("\(gp).baseline", "'\(b)' is not an arm of this split", field(gm, "baseline")!.line)
                }
            }
            if let d = durationField(gm, gp, "window") {
                if d < .seconds(1) || d > .seconds(3600) { issue("\(gp).window", "must be between 1s and 1h", field(gm, "window")!.line) } else { g.windowNanos = Self.nanos(d) }
            }
            if let d = durationField(gm, gp, "interval") {
                if d < .milliseconds(100) || d > .seconds(600) { issue("\(gp).interval", "must be between 100ms and 10m", field(gm, "interval")!.line) } else { g.intervalNanos = Self.nanos(d) }
            }
            if g.intervalNanos > g.windowNanos { issue("\(gp).interval", "must not be longer than the window", field(gm, "interval")?.line ?? gn.line) }
            if let v = intField(gm, gp, "min_requests", min: 1, max: 1_000_000) { g.minRequests = v }
            if let v = number(gm, gp, "error_rate_margin") {
                if v < 0 || v > 1 { issue("\(gp).error_rate_margin", "must be between 0 and 1", field(gm, "error_rate_margin")!.line) } else { g.errorRateMargin = v }
            }
            for (key, isTTFT) in [("ttft_p90_ratio", true), ("inter_token_p90_ratio", false)] {
                guard let v = number(gm, gp, key) else { continue }
                // 0 turns the check off.
                if v != 0 && v < 1 { issue("\(gp).\(key)", "must be at least 1 (or 0: off)", field(gm, key)!.line); continue }
                if isTTFT { g.ttftP90Ratio = v == 0 ? nil : v } else { g.interTokenP90Ratio = v == 0 ? nil : v }
            }
            if let rn = field(gm, "ramp") {
                var previous = 0.0
                for (j, step) in seq(rn, "\(gp).ramp").enumerated() {
                    guard case .scalar(let text, let line, false) = step, let v = Double(text), v.isFinite else {
                        issue("\(gp).ramp[\(j)]", "must be a number (percent)", step.line); continue
                    }
                    if v <= previous || v >= 100 { issue("\(gp).ramp[\(j)]", "steps must rise, each above 0 and below 100 (percent)", line); continue }
                    previous = v
                    g.ramp.append(v)
                }
                if g.ramp.count > 20 { issue("\(gp).ramp", "at most 20 steps", rn.line) }
            }
            model.sloGuard = g
        }
        if let sn = field(m, "shadow"), let sm = map(sn, "\(p).shadow") {
            let sp = "\(p).shadow"
            unknown(sm, sp, ["model", "fraction", "max_in_flight"])
            if let target = str(sm, sp, "model", required: true) {
                var sh = GatewaySettings.Shadow(model: target, fraction: 0)
                if let f = number(sm, sp, "fraction") {
                    if f <= 0 || f > 1 { issue("\(sp).fraction", "must be > 0 and <= 1", field(sm, "fraction")!.line) } else { sh.fraction = f }
                } else {
                    issue("\(sp).fraction", "is required (the share of requests copied, e.g. 0.1)", sn.line)
                }
                if let v = intField(sm, sp, "max_in_flight", min: 1, max: 100_000) { sh.maxInFlight = v }
                model.shadow = sh
            }
        }
        if let fn = field(m, "fallback") {
            for (j, item) in seq(fn, "\(p).fallback").enumerated() {
                guard case .scalar(let name, _, _) = item, !name.isEmpty else { issue("\(p).fallback[\(j)]", "must be a model name", item.line); continue }
                if model.fallback.contains(name) || name == model.name {
                    issue("\(p).fallback[\(j)]", "'\(name)' is listed twice or is the model itself", item.line); continue
                }
                model.fallback.append(name)
            }
            if model.fallback.count > 4 { issue("\(p).fallback", "at most 4 models", fn.line) }
        }
    }

    /// Shadow and fallback models exist and are served by a pool (not splits).
    private mutating func checkRollouts(_ s: inout GatewaySettings, _ n: YAMLNode) {
        for (i, model) in s.models.enumerated() {
            // The guard reads the per-arm metrics; with recording off it would see nothing.
            if model.sloGuard != nil && !s.metrics {
                issue("models[\(i)].guard", "needs admin.metrics (the guard reads the per-arm metrics)", modelLine(n, i))
            }
            if let sh = model.shadow {
                if sh.model == model.name {
                    issue("models[\(i)].shadow.model", "must be another model", modelLine(n, i))
                } else if let t = s.models.first(where: { $0.name == sh.model }) {
                    if t.pool == nil { issue("models[\(i)].shadow.model", "'\(sh.model)' is a split; name a model with a pool", modelLine(n, i)) }
                } else {
                    issue("models[\(i)].shadow.model", "no model named '\(sh.model)'", modelLine(n, i))
                }
            }
            for (j, f) in model.fallback.enumerated() {
                if let t = s.models.first(where: { $0.name == f }) {
                    if t.pool == nil { issue("models[\(i)].fallback[\(j)]", "'\(f)' is a split; name a model with a pool", modelLine(n, i)) }
                } else {
                    issue("models[\(i)].fallback[\(j)]", "no model named '\(f)'", modelLine(n, i))
                }
            }
        }
    }

    static func nanos(_ d: Duration) -> UInt64 {
        let (s, a) = d.components
        return UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, a / 1_000_000_000))
    }

    private mutating func issue(_ path: String, _ message: String, _ line: Int) {
        issues.append(ConfigIssue(path: path, message: message, line: line))
    }

    private mutating func map(_ n: YAMLNode, _ path: String) -> [(key: String, keyLine: Int, value: YAMLNode)]? {
        if case .mapping(let m, _) = n { return m }
        if case .scalar(let s, _, false) = n, s.isEmpty || s == "null" || s == "~" { return [] }
        issue(path, "must be a mapping", n.line)
        return nil
    }

    private mutating func seq(_ n: YAMLNode, _ path: String) -> [YAMLNode] {
        if case .sequence(let items, _) = n { return items }
        issue(path, "must be a list", n.line)
        return []
    }

    private func field(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ k: String) -> YAMLNode? {
        m.first { $0.key == k }?.value
    }

    private mutating func unknown(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ path: String, _ known: [String]) {
        for (k, line, _) in m where !known.contains(k) { issue("\(path).\(k)", "unknown key", line) }
    }

    private mutating func str(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String, required: Bool = false) -> String? {
        guard let n = field(m, k) else {
            if required { issue("\(p).\(k)", "is required", m.first?.keyLine ?? 0) }
            return nil
        }
        guard case .scalar(let s, _, _) = n else { issue("\(p).\(k)", "must be a string", n.line); return nil }
        return s
    }

    private mutating func bool(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String) -> Bool? {
        guard let n = field(m, k) else { return nil }
        if case .scalar(let s, _, false) = n {
            if ["true", "yes", "on"].contains(s) { return true }
            if ["false", "no", "off"].contains(s) { return false }
        }
        issue("\(p).\(k)", "must be true or false", n.line)
        return nil
    }

    private mutating func int(_ n: YAMLNode, _ path: String, min: Int = Int.min, max: Int = Int.max) -> Int? {
        guard case .scalar(let s, _, false) = n, let v = Int(s) else { issue(path, "must be an integer", n.line); return nil }
        guard v >= min && v <= max else { issue(path, "must be between \(min) and \(max)", n.line); return nil }
        return v
    }

    private mutating func intField(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String, min: Int = Int.min, max: Int = Int.max) -> Int? {
        field(m, k).flatMap { int($0, "\(p).\(k)", min: min, max: max) }
    }

    private mutating func number(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String) -> Double? {
        guard let n = field(m, k) else { return nil }
        guard case .scalar(let s, _, false) = n, let v = Double(s), v.isFinite else { issue("\(p).\(k)", "must be a number", n.line); return nil }
        return v
    }

    private mutating func addr(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String, required: Bool) -> SocketAddress? {
        guard let s = str(m, p, k, required: required) else { return nil }
        if let a = SocketAddress(s) { return a }
        if let (host, port) = SocketAddress.split(s) {
            if offline { return SocketAddress("127.0.0.1:\(port)") }
            if let a = (try? SocketAddress.resolve(host: host, port: port))?.first { return a }
        }
        issue("\(p).\(k)", "'\(s)' is not host:port", field(m, k)!.line)
        return nil
    }

    private mutating func durationField(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String) -> Duration? {
        guard let n = field(m, k) else { return nil }
        guard case .scalar(let s, _, _) = n, let d = Self.parseDuration(s) else {
            issue("\(p).\(k)", "must be a duration like 250ms, 10s, 5m or 1h", n.line)
            return nil
        }
        return d
    }

    /// A size in `min...max` bytes. Every size has an upper bound: the values feed buffer
    /// sizes, flow-control windows (31 bits) and arithmetic that must not overflow.
    private mutating func sizeField(_ m: [(key: String, keyLine: Int, value: YAMLNode)], _ p: String, _ k: String, min: Int, max: Int) -> Int? {
        guard let n = field(m, k) else { return nil }
        guard case .scalar(let s, _, _) = n, let v = Self.parseSize(s) else {
            issue("\(p).\(k)", "must be a size like 512, 64KiB, 8MiB or 1GiB", n.line)
            return nil
        }
        if v < min { issue("\(p).\(k)", "must be at least \(min) bytes", n.line); return nil }
        if v > max { issue("\(p).\(k)", "must be at most \(Self.describeSize(max))", n.line); return nil }
        return v
    }

    /// `1GiB`, `512MiB`, `64KiB` or bytes: how a bound is named in an issue.
    static func describeSize(_ v: Int) -> String {
        for (unit, m) in [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where v >= m && v % m == 0 {
            return "\(v / m)\(unit)"
        }
        return "\(v) bytes"
    }

    /// `250ms`, `10s`, `5m`, `1h`; `0` (no unit) means disabled.
    static func parseDuration(_ s: String) -> Duration? {
        if s == "0" { return .zero }
        for (suffix, ns) in [("ms", Int64(1_000_000)), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)] where s.hasSuffix(suffix) {
            if let v = Double(s.dropLast(suffix.count)), v >= 0, v.isFinite, v * Double(ns) < 9e18 { return .nanoseconds(Int64(v * Double(ns))) }
        }
        return nil
    }

    /// `512` (bytes), `64KiB`, `8MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
    static func parseSize(_ s: String) -> Int? {
        for (suffix, mult) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000)] where s.hasSuffix(suffix) {
            if let v = Int(s.dropLast(suffix.count)), v >= 0, v <= Int.max / mult { return v * mult }
            return nil
        }
        if let v = Int(s), v >= 0 { return v }
        return nil
    }

    private func endpoint(_ url: String, caFile: String?, verify: Bool, serverName: String?) -> GatewaySettings.Endpoint? {
        guard var e = parseEndpointURL(url, caFile: caFile, offline: offline) else { return nil }
        if let tls = e.tls, (!verify || serverName != nil), let ctx = try? TLSClientContext(caFile: caFile, verify: verify) {
            e.tls = UpstreamTLS(context: ctx, serverName: serverName ?? tls.serverName, caFile: caFile)
        }
        return e
    }
}

/// A whole file as text (nil if it cannot be read).
public func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
