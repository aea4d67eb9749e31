import SluiceSettings
import Glibc
import SluiceHTTP
import SluiceIO
import SluiceRedis
import SluiceRouting
import Synchronization

/// The control loop: one extra event-loop thread beside the workers for everything that is not
/// a client request — the admin listener, active health checks, (with routing) telemetry
/// scrapes, and giving heap memory back after a spike. Nothing here blocks a worker; workers see
/// its results through shared atomics.
final class ControlPlane: @unchecked Sendable {
    let loop: EventLoop
    private var thread: pthread_t?
    unowned let gateway: Gateway
    private var admin: HTTPServer?
    private var healthClients: [String: HTTPClient] = [:]
    private var healthTimer: Timer?
    private var dns: DNSDiscovery?
    private var telemetry: TelemetryScraper?
    /// Telemetry timer firings so far (tests). `telemetry` is set before `start` returns.
    var telemetryTicks: Int { telemetry?.ticks.load(ordering: .relaxed) ?? 0 }
    /// Set before `start` returns.
    private(set) var heapTrimmer: HeapTrimmer?
    /// `/admin/stats` (the dashboard's data); samples only while polled.
    private(set) var stats: DashboardStats?
    /// The SLO guards of splits (issue 26); set before `start` returns.
    private(set) var splitGuards: SplitGuardRunner?
    /// Extra admin routes (metrics, config) installed by the gateway.
    var routes: [String: (HTTPServerRequest, HTTPResponder) -> Void] = [:]

    init(gateway: Gateway) throws(SyscallError) {
        self.gateway = gateway
        loop = try EventLoop(index: -1)
    }

    /// Starts the loop and the admin listener (if configured); returns once it listens.
    func start(adminAddress: SocketAddress?) throws(SyscallError) {
        let ready = Atomic<Int>(0)  // 1 ok, 2 failed
        let failure = Mutex<SyscallError?>(nil)
        thread = Threads.spawn(name: "sluice-control") { [self] in
            do throws(SyscallError) {
                if let a = adminAddress {
                    do throws(SyscallError) {
                        admin = try HTTPServer(address: a, loop: loop, limits: Self.adminLimits(gateway.currentSettings)) { [unowned self] req, r in
                            self.handleAdmin(req, r)
                        }
                    } catch {
                        throw error.about("admin listener \(a)")
                    }
                }
                scheduleHealthChecks()
                telemetry = TelemetryScraper(gateway: gateway, loop: loop)
                telemetry!.start()
                dns = DNSDiscovery(gateway: gateway, loop: loop)
                dns!.configure(gateway.desiredSettings)
                stats = DashboardStats(gateway: gateway, loop: loop)
                splitGuards = SplitGuardRunner(gateway: gateway, loop: loop)
                splitGuards!.start()
                heapTrimmer = HeapTrimmer(gateway: gateway, loop: loop)
                heapTrimmer!.start()
                ready.store(1, ordering: .releasing)
            } catch {
                failure.withLock { $0 = error }
                ready.store(2, ordering: .releasing)
            }
            loop.run()
        }
        while ready.load(ordering: .acquiring) == 0 { usleep(500) }
        if let e = failure.withLock({ $0 }) {
            stop()
            throw e
        }
    }

    var adminPort: UInt16? { admin?.listener.address.port }

    func stop() {
        loop.execute { [self] in
            admin?.close()
            dns?.stop()
            telemetry?.stop()
            heapTrimmer?.stop()
            stats?.stop()
            splitGuards?.stop()
            for c in healthClients.values { c.close() }
        }
        loop.stop()
        if let t = thread { Threads.join(t) }
        thread = nil
    }

    /// The configured pools changed (a reload): restart DNS discovery for them, and apply the
    /// new limits to the admin listener.
    func reconfigure(_ s: GatewaySettings) {
        loop.execute { [self] in
            dns?.configure(s)
            admin?.limits = Self.adminLimits(s)
            splitGuards?.reschedule()
        }
    }

    // MARK: admin API

    /// The admin listener parses with the data plane's head limits and keeps its deadlines;
    /// its requests carry no real bodies, so those are held to 1 MiB at most.
    static func adminLimits(_ s: GatewaySettings) -> HTTPServerLimits {
        HTTPServerLimits(head: s.limits.head, maxBodyBytes: min(s.limits.maxBodyBytes, 1 << 20),
                         headerTimeout: s.timeouts.clientHeader, bodyTimeout: s.timeouts.clientBody, idleTimeout: s.timeouts.idle)
    }

    /// With `admin.token` set, everything but the probes and the dashboard's page needs
    /// `Authorization: Bearer <token>` (compared as SHA-256 digests, in constant time). The page
    /// is a static file with no data in it; it sends the token with each `/admin/stats` poll.
    static func authorized(_ req: HTTPServerRequest, _ s: GatewaySettings) -> Bool {
        guard let want = s.adminTokenSHA256 else { return true }
        if req.path == "/healthz" || req.path == "/readyz" || req.path == "/" || req.path == "/admin/ui" { return true }
        guard let value = req.header("authorization") else { return false }
        let bytes = Array(value.utf8)
        guard let token = bytes.withUnsafeBytes({ AuthenticatePhase.bearerToken($0).map(Array.init) }) else { return false }
        var h = SHA256()
        h.update(token)
        let got = h.finalize()
        var diff: UInt8 = 0
        for (a, b) in zip(got, want) { diff |= a ^ b }
        return diff == 0 && got.count == want.count
    }

    private func handleAdmin(_ req: HTTPServerRequest, _ r: HTTPResponder) {
        guard Self.authorized(req, gateway.currentSettings) else {
            var e = ErrorResponse.client(401, "This admin path needs the admin token: Authorization: Bearer <admin.token>.", code: "invalid_api_key")
            e.type = "invalid_request_error"
            r.respond(status: 401, headers: [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")], body: e.body())
            return
        }
        switch req.path {
        case "/healthz":
            r.respond(status: 200, contentType: "text/plain", "ok\n")
        case "/readyz":
            let (ready, why) = gateway.readiness()
            r.respond(status: ready ? 200 : 503, contentType: "text/plain", ready ? "ready\n" : "not ready: \(why)\n")
        case "/metrics" where !gateway.currentSettings.metrics:
            r.respond(status: 404, ErrorResponse.client(404, "Metrics are off (admin.metrics: false).").bodyString)
        case "/metrics":
            r.respond(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body: Array(metricsText().utf8))
        case "/admin/config":
            // What is in force: generation, source, digest and load time. No values are shown,
            // so nothing secret can leak here.
            var w = JSONWriter()
            let src = gateway.configSource.withLock { $0 }
            let s = gateway.currentSettings
            w.beginObject()
            w.field("generation", gateway.generation)
            w.field("source", src.path)
            w.field("digest", src.digest)
            w.field("loaded_at", gateway.loadedAt.load(ordering: .relaxed))
            w.field("reload_failures", gateway.reloadFailures.load(ordering: .relaxed))
            w.field("workers", gateway.workerCount)
            w.field("listeners", s.listen.map { $0.address.description + ($0.tls != nil ? " (tls)" : "") })
            w.field("pools", s.pools.map { "\($0.name): \($0.endpoints.count) endpoint(s)" })
            w.field("models", s.models.map(\.name))
            // Redis by host and database only (the URL's password is redacted); tenants by name.
            w.field("redis", s.redis.map { "\($0.configuration.url) on_failure=\($0.onFailure.rawValue)" })
            w.field("tenants", Array(Set((s.auth?.keys ?? [:]).values)).sorted())
            w.field("cache", s.cache.enabled)
            w.field("rate_limits", s.rateLimits.count)
            w.endObject()
            r.respond(status: 200, headers: [("Content-Type", "application/json")], body: w.bytes)
        case "/admin/splits":
            r.respond(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: splitGuards?.splitsJSON() ?? [])
        case let p where p.hasPrefix("/admin/splits/") && p.hasSuffix("/reset"):
            // POST /admin/splits/{model}/reset (behind the admin token when one is set).
            guard req.method == "POST" else {
                r.respond(status: 405, headers: [("Content-Type", "application/json"), ("Allow", "POST")],
                          body: ErrorResponse.client(405, "Use POST to reset a split's guard.").body())
                return
            }
            let model = String(p.dropFirst("/admin/splits/".count).dropLast("/reset".count))
            if splitGuards?.reset(model: model) == true {
                r.respond(status: 200, headers: [("Content-Type", "application/json")], body: splitGuards!.splitsJSON())
            } else {
                r.respond(status: 404, ErrorResponse.client(404, "No guarded split named '\(model)'.").bodyString)
            }
        case "/admin/endpoints":
            r.respond(status: 200, headers: [("Content-Type", "application/json")], body: endpointsJSON())
        case "/admin/stats":
            r.respond(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body: stats?.poll() ?? [])
        case "/", "/admin/ui":
            r.respond(status: 200, headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache"),
                                             ("Content-Security-Policy", DashboardPage.contentSecurityPolicy),
                                             ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")],
                      body: DashboardPage.bytes)
        default:
            if let route = routes[req.path] {
                route(req, r)
            } else {
                r.respond(status: 404, ErrorResponse.client(404, "No admin route \(req.path).").bodyString)
            }
        }
    }

    /// A scrape: every worker's values copied on its own loop and summed, plus gauges read now.
    private func metricsText() -> String {
        let catalog = gateway.metrics
        let snapshot = gateway.metricSnapshots()
        let values = PrometheusExposition.merge(snapshot.values, slots: catalog.schema.slotCount)
        let now = Instant.now()
        var inflight: [(labels: [(String, String)], value: Double)] = []
        var up: [(labels: [(String, String)], value: Double)] = []
        var waiting: [(labels: [(String, String)], value: Double)] = []
        var running: [(labels: [(String, String)], value: Double)] = []
        var kv: [(labels: [(String, String)], value: Double)] = []
        var age: [(labels: [(String, String)], value: Double)] = []
        var ejections: [(labels: [(String, String)], value: Double)] = []
        for pool in gateway.currentSettings.pools {
            for e in pool.endpoints {
                let rt = gateway.registry.runtime(for: e)
                let t = rt.telemetry.withLock { $0 }
                let l = [("pool", pool.name), ("endpoint", e.authority)]
                inflight.append((l, Double(rt.inflight.load(ordering: .relaxed))))
                up.append((l, rt.isAdmitted(at: now) ? 1 : 0))
                ejections.append((l, Double(rt.ejections.load(ordering: .relaxed))))
                if t.scrapedAt.nanoseconds != 0 {
                    waiting.append((l, Double(t.waiting)))
                    running.append((l, Double(t.running)))
                    kv.append((l, t.kvUse))
                    age.append((l, now.seconds(since: t.scrapedAt)))
                }
            }
        }
        var queuedReqs: [(labels: [(String, String)], value: Double)] = []
        var queuedBytes: [(labels: [(String, String)], value: Double)] = []
        var queuedTenants: [(labels: [(String, String)], value: Double)] = []
        let flows = gateway.poolFlows
        let tenants = Array(Set((gateway.currentSettings.auth?.keys ?? [:]).values)).sorted()
        for pool in gateway.currentSettings.pools {
            guard let f = flows[pool.name] else { continue }
            for b in PriorityBand.allCases { queuedReqs.append(([("pool", pool.name), ("band", b.description)], Double(f.queued(b)))) }
            queuedBytes.append(([("pool", pool.name)], Double(f.queuedBytes.load(ordering: .relaxed))))
            // Per tenant only for tenants the config names (bounded series).
            for t in tenants { queuedTenants.append(([("pool", pool.name), ("tenant", t)], Double(f.queuedBy(tenant: t)))) }
        }
        let gauges = [
            PrometheusExposition.Gauge(name: "sluice_queue_length", help: "Requests waiting in each pool's flow-control queue, by priority band.", samples: queuedReqs),
            PrometheusExposition.Gauge(name: "sluice_queue_bytes", help: "Request bytes held by each pool's flow-control queue.", samples: queuedBytes),
            PrometheusExposition.Gauge(name: "sluice_queue_tenant_length", help: "Requests waiting per configured tenant.", samples: queuedTenants),
            PrometheusExposition.Gauge(name: "sluice_inflight_requests", help: "Requests in flight to each endpoint (all workers).", samples: inflight),
            PrometheusExposition.Gauge(name: "sluice_endpoint_up", help: "1 when the endpoint is admitted (not ejected).", samples: up),
            PrometheusExposition.Gauge(name: "sluice_endpoint_ejections", help: "Times the endpoint was ejected since it was last healthy.", samples: ejections),
            PrometheusExposition.Gauge(name: "sluice_endpoint_queue_waiting", help: "Scraped vllm:num_requests_waiting.", samples: waiting),
            PrometheusExposition.Gauge(name: "sluice_endpoint_running", help: "Scraped vllm:num_requests_running.", samples: running),
            PrometheusExposition.Gauge(name: "sluice_endpoint_kv_cache_usage_ratio", help: "Scraped vllm:kv_cache_usage_perc (0-1).", samples: kv),
            PrometheusExposition.Gauge(name: "sluice_endpoint_telemetry_age_seconds", help: "Age of the endpoint's last successful scrape.", samples: age),
            PrometheusExposition.Gauge(name: "sluice_client_connections", help: "Client connections open.", samples: [([], Double(gateway.openConnections))]),
            PrometheusExposition.Gauge(name: "sluice_config_generation", help: "Config generation in force (1 = as started).", samples: [([], Double(gateway.generation))]),
            PrometheusExposition.Gauge(name: "sluice_config_reload_failures", help: "Config reloads that failed (the previous config stayed).",
                                       samples: [([], Double(gateway.reloadFailures.load(ordering: .relaxed)))]),
            PrometheusExposition.Gauge(name: "sluice_workers", help: "Worker threads.", samples: [([], Double(gateway.workerCount))]),
            PrometheusExposition.Gauge(name: "sluice_heap_trims",
                                       help: "Times freed heap memory was given back to the system (limits.heap_trim_bytes).",
                                       samples: [([], Double(heapTrimmer?.trims ?? 0))]),
            PrometheusExposition.Gauge(name: "sluice_trace_spans_exported_total", help: "Spans the trace exporter delivered to the collector.",
                                       samples: [([], Double(gateway.tracer.exportedSpans.load(ordering: .relaxed)))], counter: true),
            PrometheusExposition.Gauge(name: "sluice_trace_spans_dropped_total",
                                       help: "Spans dropped: the export queue was full (queue_full) or their export failed (export_failed; no retry).",
                                       samples: [([("reason", "queue_full")], Double(gateway.tracer.droppedQueueFull.load(ordering: .relaxed))),
                                                 ([("reason", "export_failed")], Double(gateway.tracer.droppedExportFailed.load(ordering: .relaxed)))],
                                       counter: true),
            PrometheusExposition.Gauge(name: "sluice_trace_export_failures_total",
                                       help: "Trace export requests that failed (no connection, timeout, or a status other than 2xx).",
                                       samples: [([], Double(gateway.tracer.failedExports.load(ordering: .relaxed)))], counter: true),
            PrometheusExposition.Gauge(name: "sluice_trace_spans_queued", help: "Spans waiting for export.",
                                       samples: [([], Double(gateway.tracer.queuedSpans))]),
            PrometheusExposition.Gauge(name: "sluice_event_loop_lag_seconds",
                                       help: "How long a task posted to each worker's loop waited before it ran (measured at this scrape).",
                                       samples: snapshot.workers.enumerated().map { ([("worker", String($0.offset))], $0.element.lag) }),
            PrometheusExposition.Gauge(name: "sluice_buffer_bytes",
                                       help: "Each worker's I/O buffer memory: held by connections and requests (in_use) or pooled for reuse (free).",
                                       samples: snapshot.workers.enumerated().flatMap { i, w in
                                           [([("worker", String(i)), ("state", "in_use")], Double(w.buffersInUse)),
                                            ([("worker", String(i)), ("state", "free")], Double(w.buffersFree))]
                                       }),
        ]
        return PrometheusExposition.render(schema: catalog.schema, values: values, gauges: gauges + (splitGuards?.gauges() ?? []))
    }

    private func endpointsJSON() -> [UInt8] {
        let now = Instant.now()
        var w = JSONWriter()
        w.beginObject()
        w.beginArray("pools")
        for pool in gateway.currentSettings.pools {
            w.beginObject()
            w.field("name", pool.name)
            w.beginArray("endpoints")
            for e in pool.endpoints {
                let rt = gateway.registry.runtime(for: e)
                let t = rt.telemetry.withLock { $0 }
                w.beginObject()
                w.field("url", "http://\(e.authority)")
                w.field("admitted", rt.isAdmitted(at: now))
                w.field("consecutive_failures", rt.consecutiveFailures.load(ordering: .relaxed))
                w.field("ejections", rt.ejections.load(ordering: .relaxed))
                w.field("inflight", rt.inflight.load(ordering: .relaxed))
                w.beginObject("telemetry")
                w.field("age_seconds", t.scrapedAt.nanoseconds == 0 ? -1 : now.seconds(since: t.scrapedAt))
                w.field("waiting", t.waiting)
                w.field("running", t.running)
                w.field("kv_cache_usage", t.kvUse)
                w.field("kv_capacity_tokens", t.kvCapacityTokens)
                w.field("max_loras", t.maxLoras)
                w.field("prefix_cache_hit_rate", t.prefixCacheQueries > 0 ? t.prefixCacheHits / t.prefixCacheQueries : 0)
                w.field("adapters_running", t.adaptersRunning)
                w.field("adapters_waiting", t.adaptersWaiting)
                w.field("adapters_loaded", t.adaptersLoaded)
                w.endObject()
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w.endArray()
        w.endObject()
        return w.bytes
    }

    // MARK: active health checks

    private func scheduleHealthChecks() {
        let h = gateway.currentSettings.health
        guard h.interval > .zero else { return }
        let t = Timer { [unowned self] in
            self.runHealthChecks()
            self.scheduleHealthChecks()
        }
        healthTimer = t
        loop.schedule(t, after: h.interval)
    }

    private func runHealthChecks() {
        let settings = gateway.currentSettings
        for pool in settings.pools {
            // KServe v2 servers answer readiness at the protocol's own path.
            let path = pool.serverProtocol == .kserveV2 && settings.health.path == "/health" ? "/v2/health/ready" : settings.health.path
            for e in pool.endpoints {
                let rt = gateway.registry.runtime(for: e)
                let client = healthClients[e.authority] ?? {
                    let c = HTTPClient(address: e.address, host: e.authority, loop: loop)
                    healthClients[e.authority] = c
                    return c
                }()
                client.get(path, timeout: settings.health.timeout) { [unowned self] result in
                    switch result {
                    case .success(let resp) where resp.status < 500:
                        rt.readmit()
                    default:
                        let h = self.gateway.currentSettings.health
                        // A failed active check ejects at once (threshold 1): it is a direct probe.
                        rt.recordFailure(at: Instant.now(), threshold: 1, base: h.ejectBase, maxBackoff: h.maxEject)
                    }
                }
            }
        }
    }
}

extension ErrorResponse {
    var bodyString: String { String(decoding: body(), as: UTF8.self) }
}
