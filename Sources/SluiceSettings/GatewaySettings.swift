public import SluiceIO
public import SluiceHTTP
public import SluiceRedis
public import SluiceRouting
public import SluiceTracing

/// Where access log lines go (`logging.access_log`).
public enum AccessLogTarget: Sendable, Equatable {
    case off
    case stdout
    case file(String)
}

/// Everything a worker needs, compiled from the config file: plain values, no YAML. The schema
/// lives in its own target so that the config loader (SluiceConfig) and the gateway both depend
/// on it, and not on each other.
///
/// Immutable and shared by all workers; a reload publishes a new one.
/// What a pool's servers speak (`pools[].protocol`).
public enum PoolProtocol: String, Sendable {
    case openAI = "openai"
    case kserveV2 = "kserve_v2"
}

public struct GatewaySettings: Sendable {
    public struct Listen: Sendable {
        public var address: SocketAddress
        /// TLS termination on this listener; nil for plaintext (where h2c prior knowledge and
        /// HTTP/1.1 share the port).
        public var tls: ListenerTLS?
        public init(address: SocketAddress, tls: ListenerTLS? = nil) {
            self.address = address
            self.tls = tls
        }
    }

    public struct Endpoint: Sendable, Equatable {
        public var address: SocketAddress
        /// `host:port` as configured, sent as Host when the client sent none and used in logs.
        public var authority: String
        /// TLS to this endpoint (`https://` URLs).
        public var tls: UpstreamTLS?
        public init(address: SocketAddress, authority: String, tls: UpstreamTLS? = nil) {
            self.address = address
            self.authority = authority
            self.tls = tls
        }
        public static func == (a: Endpoint, b: Endpoint) -> Bool {
            a.address == b.address && a.authority == b.authority && a.tls === b.tls
        }
    }

    public struct Pool: Sendable {
        public var name: String
        public var endpoints: [Endpoint]
        /// DNS discovery (a Kubernetes headless Service): `host:port` re-resolved every
        /// `dnsInterval`; the addresses found become the endpoints, added and removed without a
        /// reload, their state kept.
        public var dns: (host: String, port: UInt16)?
        public var dnsInterval: Duration = .seconds(5)
        /// How an endpoint is picked for each request.
        public var routing: RoutingPolicy = .default
        /// The filters, scorers and picker of the `default` (cost model) or `weighted` policy.
        public var profile: RoutingProfile = .costModel()
        /// What the pool's servers speak (`pools[].protocol`): vLLM's OpenAI-compatible API, or
        /// KServe's Open Inference Protocol v2 (`/v2/...` requests go to such pools).
        public var serverProtocol: PoolProtocol = .openAI
        public init(name: String, endpoints: [Endpoint], dns: (host: String, port: UInt16)? = nil) {
            self.name = name
            self.endpoints = endpoints
            self.dns = dns
        }
    }

    public struct Limits: Sendable {
        /// Client connections across all workers; over it, new connections get a 503 and close.
        public var maxConnections = 65_536
        public var maxConnectionsPerWorker = 16_384
        public var head = HTTP1Limits()
        public var maxBodyBytes = 32 << 20
        /// HTTP/2 streams a client may have open at once on one connection.
        public var maxConcurrentStreams = 128
        /// Free buffer memory in large blocks (64 KiB and up) each worker keeps for reuse beyond a
        /// small floor per block size; what goes unused is given back within seconds (BufferPool).
        public var spareBufferBytes = 64 << 20
        /// Once this much heap memory has been freed and not reused since (by connections,
        /// streams and requests that ended), it is given back to the system within seconds
        /// (HeapTrimmer); 0 leaves it to the allocator, which keeps it for reuse.
        public var heapTrimBytes = 16 << 20
        /// Request body bytes one HTTP/2 connection holds for requests still arriving, beyond
        /// the oldest one's (which may always grow to `maxBodyBytes`); past it the client's
        /// flow-control windows stay shut until a request completes.
        public var http2BufferBytes = 4 << 20
        /// Completion tokens reserved against token rate limits for a request that names no
        /// `max_tokens` (settled with the real usage afterwards).
        public var defaultMaxTokens = 4096
        public init() {}
    }

    /// Durations; zero disables a timeout.
    public struct Timeouts: Sendable {
        public var clientHeader: Duration = .seconds(10)
        public var clientBody: Duration = .seconds(60)
        public var idle: Duration = .seconds(75)
        public var upstreamConnect: Duration = .seconds(5)
        /// Time to the first response byte; LLM servers queue under load, so it is generous.
        public var upstreamFirstByte: Duration = .seconds(300)
        /// Silence allowed between response bytes (between streamed tokens).
        public var upstreamIdle: Duration = .seconds(120)
        /// Whole-request deadline.
        public var request: Duration = .seconds(1800)
        /// How long a graceful stop waits for in-flight requests.
        public var grace: Duration = .seconds(30)
        /// After SIGTERM, readiness is false at once but listeners keep accepting this long,
        /// so load balancers and Kubernetes endpoints stop sending before we stop listening.
        public var drainDelay: Duration = .seconds(5)
        public init() {}
    }

    public struct Upstream: Sendable {
        /// Idle keep-alive connections kept per endpoint per worker.
        public var keepalivePerEndpoint = 256
        public var maxIdleTime: Duration = .seconds(60)
        /// Extra endpoints tried when a connection fails before any response byte.
        public var retries = 1
        public init() {}
    }

    /// Endpoint health: passive (data-path failures) and active (`GET path` on an interval).
    public struct Health: Sendable {
        /// Consecutive failures that eject an endpoint.
        public var unhealthyThreshold = 3
        /// First ejection lasts this long; each further one doubles it, up to `maxEject`.
        public var ejectBase: Duration = .seconds(1)
        public var maxEject: Duration = .seconds(30)
        /// Active checks; a zero interval disables them.
        public var path = "/health"
        public var interval: Duration = .seconds(5)
        public var timeout: Duration = .seconds(1)
        public init() {}
    }

    /// Scraping model servers' `/metrics` and `/v1/models` for routing.
    public struct Telemetry: Sendable {
        /// A zero interval turns scraping off.
        public var interval: Duration = .milliseconds(50)
        public var timeout: Duration = .milliseconds(500)
        /// Older telemetry is not trusted by the scorers that depend on it.
        public var staleness: Duration = .milliseconds(500)
        public var metricsPath = "/metrics"
        public var modelsPath = "/v1/models"
        public init() {}
    }

    public struct Proxy: Sendable {
        public var xForwarded = true
        /// Believe the client's `Forwarded`, `X-Forwarded-*` and `X-Real-IP` (Sluice sits
        /// behind a load balancer that sets them): they pass through and `X-Forwarded-For` is
        /// appended to. Off, they are dropped and Sluice states the client's address itself.
        public var trustForwarded = false
        public var via = false
        /// Ask model servers for usage on every stream (`stream_options.include_usage`) and
        /// strip that extra chunk from clients that did not ask, so token accounting is exact.
        public var requestUsage = true
        /// Tell clients why their request went where it did (`x-sluice-route: prefix_hit;
        /// endpoint=10.0.0.7:8000`). Off by default: it names internal endpoints.
        public var routeHeader = false
        /// A request body still missing at least this many bytes is read once all of them have
        /// arrived (the socket's receive low-water mark, SO_RCVLOWAT), not segment by segment;
        /// 0 reads as bytes arrive. Saves the wakeups and reads of uploads that trickle in.
        public var bodyLowWater = 32 * 1024
        public init() {}
    }

    /// A model name clients may send, and where it goes.
    public struct Model: Sendable {
        public enum Sticky: Sendable, Equatable {
            case none
            /// The request body's `user` field.
            case user
            /// A request header (e.g. `x-session-id`).
            case header(String)
        }
        public var name: String
        /// The pool that serves it (nil for a split, whose arms name their own).
        public var pool: String?
        /// The `model` sent upstream; default: the adapter if any, else `name`.
        public var upstreamModel: String?
        /// A LoRA adapter served by the pool's endpoints.
        public var adapter: String?
        public var adapterPath: String?
        /// A weighted A/B split over other models (arms).
        public var split: [(model: String, weight: Double)] = []
        public var sticky: Sticky = .none
        /// The flow-control band of requests for this model (a key's band or an allowed
        /// `x-sluice-priority` header overrides it).
        public var priority: PriorityBand?
        /// The SLO guard of a split (`guard`; nil: none). Safe rollouts, issue 26.
        public var sloGuard: SplitGuardConfig?
        /// A copy of sampled requests for another model, its answer discarded (`shadow`).
        public var shadow: Shadow?
        /// Models tried in order when this one's pool cannot serve (`fallback`).
        public var fallback: [String] = []
        public init(name: String, pool: String? = nil, upstreamModel: String? = nil, adapter: String? = nil) {
            self.name = name
            self.pool = pool
            self.upstreamModel = upstreamModel
            self.adapter = adapter
        }
    }

    /// `models[].shadow`: a sampled copy of requests goes to `model`; what it answers is read
    /// and discarded.
    public struct Shadow: Sendable, Equatable {
        public var model: String
        /// The share of requests copied, 0...1.
        public var fraction: Double
        /// Shadow requests in flight at once towards the shadow model's pool, across workers;
        /// beyond it a sampled request is not copied (counted as `skipped`).
        public var maxInFlight = 32
        public init(model: String, fraction: Double) {
            self.model = model
            self.fraction = fraction
        }
    }

    /// The Redis shared by every Sluice process of a deployment (response cache, rate limits).
    public struct Redis: Sendable {
        public enum OnFailure: String, Sendable { case open, closed }
        /// Address resolved and secrets expanded at load time (never on a worker).
        public var configuration: RedisConfiguration
        /// `open`: serve without the cache and enforce limits with a local, per-worker limiter
        /// while Redis is unreachable; `closed`: answer 503 at once.
        public var onFailure: OnFailure = .open
        public init(configuration: RedisConfiguration) { self.configuration = configuration }
    }

    /// API keys and the tenants they belong to. With auth configured, every request needs a
    /// known key (`Authorization: Bearer …`); the tenant scopes cache entries and rate limits.
    public struct Auth: Sendable {
        /// SHA-256 of each accepted key (keys themselves are not kept) and its tenant.
        public var keys: [[UInt8]: String] = [:]
        /// What a key may say about its requests' priority (keys absent here: nothing).
        public var priorities: [[UInt8]: KeyPriority] = [:]
        public init() {}
    }

    /// A key's priority band for flow control, and whether its requests may choose their own
    /// with `x-sluice-priority`.
    public struct KeyPriority: Sendable, Equatable {
        public var band: PriorityBand?
        public var allowHeader: Bool
        public init(band: PriorityBand?, allowHeader: Bool) {
            self.band = band
            self.allowHeader = allowHeader
        }
    }

    /// Flow control: while every endpoint of a pool is saturated, requests wait in a queue per
    /// pool (shared by the workers), per priority band and per tenant, served fairly.
    public struct FlowControl: Sendable {
        public var enabled = true
        /// An endpoint whose concurrency Sluice has learned (from `num_requests_running` while
        /// requests were waiting there) is saturated once the gateway has this many more in
        /// flight there than it runs; 0 keeps the model server's own queue empty, so the
        /// gateway's fair queue decides who goes next.
        public var maxWaiting = 0
        /// An endpoint with at least this KV-cache use (scraped) is saturated.
        public var maxKVUse = 0.95
        /// How long a request may wait; then 503 with Retry-After.
        public var queueTTL: Duration = .seconds(30)
        public var maxQueued = 1000
        public var maxQueuedBytes = 256 << 20
        public var maxQueuedPerTenant = 250
        public var maxQueuedBytesPerTenant = 64 << 20
        public var fairness: FairnessPolicy = .tokens
        /// How long a slot freed by a tenant using less than its fair share of a saturated
        /// pool is kept for that tenant's next request before it goes to others waiting
        /// (anticipation: an agent or a chat's next turn comes moments after the last ended;
        /// without it, the slot goes to the busiest tenant and the next turn waits a whole
        /// request's time). 0 turns it off.
        public var slotHold: Duration = .milliseconds(20)
        /// The share of a saturated-once pool's slots that `sheddable` requests leave free (at
        /// least one slot when above 0): batch traffic may fill the pool only up to this
        /// headroom, so a `critical` or `standard` request arriving finds a slot at once
        /// instead of waiting for a sheddable one to finish. 0: sheddable may take every slot.
        public var sheddableHeadroom = 0.1
        /// An endpoint is saturated while the uncached prompt tokens the gateway sent it that
        /// have not produced a first token reach this (a burst of long prompts: the next
        /// request's prefill would start only after all of theirs). ~4 of vLLM's default
        /// 8,192-token batches. 0: not counted.
        public var maxPrefillTokens = 32_768
        public init() {}
    }

    /// The response cache (needs `redis`).
    /// Paths outside vLLM's API table (and `/v1/models`, `/health`): refused (404) or sent on.
    public enum Passthrough: String, Sendable {
        /// 404 `not_found`: vLLM's operational endpoints (`/metrics`, `/load_lora_adapter`,
        /// `/reset_prefix_cache`, `/sleep`, profiling, ...) stay out of the clients' reach.
        case deny
        /// To the pool of the model named by a JSON body's top-level `model` (with `models:`
        /// configured), otherwise to the default (first) pool.
        case defaultPool = "default_pool"
    }

    /// The Responses API's stored responses (`responses:`): which endpoint holds which id.
    public struct Responses: Sendable {
        /// Ids remembered per replica (oldest dropped first).
        public var maxIDs = 100_000
        /// How long an id is remembered after its response was made (locally and in Redis).
        public var ttl: Duration = .seconds(3600)
        public init() {}
    }

    /// WebSocket tunnels (`/v1/realtime`, `realtime:`).
    public struct Realtime: Sendable {
        /// Tunnels open at once across the replica's workers; more are refused (503).
        public var maxConnections = 1024
        /// A tunnel with no byte in either direction for this long is closed.
        public var idleTimeout: Duration = .seconds(300)
        /// Bytes queued towards the slower side before the faster side stops being read.
        public var bufferBytes = 256 << 10
        public init() {}
    }

    public struct Cache: Sendable {
        public enum Scope: String, Sendable { case tenant, shared }
        public var enabled = false
        public var ttl: Duration = .seconds(600)
        /// Larger responses are relayed but not stored.
        public var maxEntryBytes = 1 << 20
        /// `tenant`: entries are readable only by the tenant (API key) that stored them.
        public var scope: Scope = .tenant
        /// A request with a `seed` counts as deterministic (as well as `temperature: 0`).
        public var seedIsDeterministic = true
        public init() {}
    }

    /// A rate limit: per tenant (`*`: each tenant gets its own bucket), optionally for one model.
    public struct RateLimitRule: Sendable, Equatable {
        public var tenant: String
        public var model: String?
        public var requestsPerMinute: Int?
        public var tokensPerMinute: Int?
        /// Bursts (default: a minute's worth).
        public var requestBurst: Int?
        public var tokenBurst: Int?
        public init(tenant: String, model: String? = nil, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil) {
            self.tenant = tenant
            self.model = model
            self.requestsPerMinute = requestsPerMinute
            self.tokensPerMinute = tokensPerMinute
        }
    }

    public var listen: [Listen]
    /// Models clients may ask for. Empty: pass-through mode (every request goes to the first pool).
    public var models: [Model] = []
    /// The admin listener (health, readiness, metrics, state); nil disables it.
    public var admin: SocketAddress? = nil
    /// SHA-256 of the admin token (`admin.token`): when set, every admin path but `/healthz`
    /// and `/readyz` needs `Authorization: Bearer <token>`.
    public var adminTokenSHA256: [UInt8]? = nil
    /// Record and serve Prometheus metrics (off: `/metrics` answers 404 and workers skip the
    /// recording; for sidecars nobody scrapes, and to measure what metrics cost).
    public var metrics = true
    public var workers: Int
    /// Accept prior-knowledge HTTP/2 (h2c) on plaintext listeners.
    public var http2 = true
    public var pools: [Pool]
    public var limits = Limits()
    public var timeouts = Timeouts()
    public var upstream = Upstream()
    public var proxy = Proxy()
    public var health = Health()
    /// One JSON line per request (set at start; a reload keeps the first target).
    public var accessLog: AccessLogTarget = .off
    public var telemetry = Telemetry()
    public var redis: Redis? = nil
    public var auth: Auth? = nil
    public var cache = Cache()
    public var rateLimits: [RateLimitRule] = []
    public var flow = FlowControl()
    /// Tenants never share vLLM's prefix cache: each request carries its tenant's `cache_salt`,
    /// and the prefix index keys blocks by tenant (one tenant cannot probe another's prompts by
    /// timing).
    public var kvIsolation = false
    /// Paths the gateway does not know (`passthrough:`); nil: `default_pool` without `models:`
    /// (a transparent proxy, as before), `deny` with it (a curated gateway).
    public var passthrough: Passthrough? = nil
    /// The policy in effect (see ``passthrough``).
    public var passthroughPolicy: Passthrough { passthrough ?? (models.isEmpty ? .defaultPool : .deny) }
    public var responses = Responses()
    public var realtime = Realtime()
    /// OpenTelemetry trace export (`tracing:`); nil: off.
    public var tracing: TracingConfiguration? = nil

    /// The files the settings read credentials from (listener certificates and keys, upstream
    /// CA bundles): a change to one reloads the config, so rotated certificates are used for
    /// new connections without a restart.
    public var credentialFiles: [String] {
        var files: [String] = []
        for l in listen { if let t = l.tls { files += [t.certificateChain, t.privateKey] } }
        for p in pools { for e in p.endpoints { if let f = e.tls?.caFile { files.append(f) } } }
        var seen = Set<String>()
        return files.filter { seen.insert($0).inserted }
    }

    public init(listen: [Listen], workers: Int, pools: [Pool]) {
        self.listen = listen
        self.workers = workers
        self.pools = pools
    }
}
