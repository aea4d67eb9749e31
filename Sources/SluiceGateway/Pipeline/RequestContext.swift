import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRedis
import SluiceRouting
import SluiceSettings

/// Everything a request's phases learn, in one typed value (Pingora's per-request `CTX`): each
/// phase reads what the earlier ones wrote and adds its own part. It lives in the request's
/// ``Exchange`` and is changed in place (no copies of the ~300-byte scan result between phases).
///
/// Noncopyable because it owns the request's endpoint lease: exactly one owner releases it.
struct RequestContext: ~Copyable {
    /// The settings the request started with: a reload during the request changes neither its
    /// timeouts, retries nor the header policy of a retry.
    let generation: SettingsGeneration
    var settings: GatewaySettings { _read { yield generation.value } }
    let method: HTTPMethod
    /// Sluice's id for the request (the client's own `X-Request-Id`, when usable, is kept by
    /// the downstream and echoed).
    let requestID: UInt64
    let startedAt: Instant

    /// Inspect: what the body says (nil for requests that are not OpenAI inference calls).
    var features: RequestFeatures?
    /// How errors Sluice answers are worded on this path (inspect: the endpoint's; OpenAI's
    /// for paths outside vLLM's table).
    var errorShape = ErrorShape.openAI
    /// The vLLM API endpoint the path addresses (inspect; nil outside the table), even when
    /// its body was refused (metrics by endpoint kind).
    var endpoint: LLMEndpoint?
    /// A WebSocket upgrade the gateway tunnels (`/v1/realtime` with `Upgrade: websocket` over
    /// HTTP/1.1): forwarded with its upgrade fields, a 101 answer becomes a ``Tunnel``.
    var upgrade = false
    /// The request holds one of `realtime.max_connections` (given back at the end unless a
    /// tunnel took it over).
    var tunnelSlot = false
    /// Authenticate: who is asking (API key → tenant; never the key itself).
    var tenant = "anonymous"
    /// Resolve: where the request goes.
    var target = Target()
    /// Admit: rate limits and the cache.
    var admission = Admission()
    /// Queue: flow control while the pool is saturated.
    var queue = QueueState()
    /// Route and forward: the current attempt.
    var attempt = Attempt()
    /// Observe: the response as it went to the client.
    var response = ResponseState()
    /// The request's trace while tracing is on (nil: off).
    var trace: TraceState?

    init(generation: SettingsGeneration, method: HTTPMethod, requestID: UInt64, startedAt: Instant) {
        self.generation = generation
        self.method = method
        self.requestID = requestID
        self.startedAt = startedAt
    }

    /// Where the resolve phase sent the request.
    struct Target {
        /// The pool (nil until resolved, and for requests Sluice answers itself).
        var pool: UpstreamPool?
        /// The split arm chosen (`x-sluice-arm`).
        var arm: String?
        /// The LoRA adapter the model resolved to.
        var adapter: LoRATarget?
        /// The `model` to send upstream when it differs from the client's (nil: unchanged).
        var upstreamModel: [UInt8]?
        /// What the model resolved to upstream (the cache key's model).
        var resolvedModel: [UInt8]?
        /// The model's flow-control band, if it sets one.
        var modelPriority: PriorityBand?
        /// The model as the client named it (access log, per-model limits).
        var clientModel: String?
        /// The endpoint the request must reach (authority): the one holding the stored response
        /// it continues, retrieves or cancels (``ResponseAffinity``); nil: the router picks.
        var pinned: String?
        /// Redis was asked for the endpoint of the request's response id (once).
        var lookedUpResponse = false
        /// Per model-and-arm metric slots (nil: no `models:`, or answered before resolve).
        var armSlots: ArmSlots?
        /// The model-table entries named and resolved (the table of the worker's settings when
        /// the request resolved; nil without `models:`).
        var entry: Int?
        var resolvedEntry: Int?
        /// Fallback chain (issue 26): the next position in the chain to try, and the model that
        /// finally served when it was not the resolved one (`x-sluice-fallback`).
        var fallbackChain: FallbackChain?
        var fallbackNext = 0
        var servedByFallback: String?
        /// The resolved model failed the request (5xx, connection failure, no endpoint) and a
        /// fallback took it: its arm counts it as a 5xx, so that the SLO guard sees the
        /// failure a fallback hides from the client.
        var armFailed = false
        /// A sampled request's shadow copy, sent by the forward phase (issue 26).
        var shadow: ShadowPlan?
        var shadowPool: UpstreamPool?
    }

    /// What admission decided.
    struct Admission {
        /// Limits to charge and the cache key (nil: nothing to do, e.g. no Redis).
        var ticket: AdmissionTicket?
        var limitOutcome: LimitOutcome?
        var cacheOutcome: CacheOutcome?
        /// Limits were charged by the local limiter (Redis was unreachable at admission).
        var chargedLocally = false
        /// Replies still awaited from Redis (rate limits, cache lookup).
        var pending = 0
        var limitResult: Result<RateLimitDecision, RedisError>?
        var cacheResult: Result<[UInt8]?, RedisError>?
    }

    /// Where the request stands in its pool's flow control.
    struct QueueState {
        /// What the key may say about priority (authenticate; nil without auth).
        var keyPriority: GatewaySettings.KeyPriority?
        var band = PriorityBand.standard
        /// Its id in the pool's queue while it waits there.
        var id: UInt64?
        var enqueuedAt: Instant?
        /// Time spent queued (the access log's `queue_ms`).
        var waited: Duration?
        var bytes = 0
        /// Its leases count in its tenant's share of the pool (the pool was saturated lately:
        /// see ``PoolFlow/leaseBegan(tenant:)``).
        var counted = false
    }

    /// The current attempt at an endpoint.
    struct Attempt: ~Copyable {
        /// Attempts made so far (1 after the first pick).
        var number = 0
        /// The endpoint that just failed (a retry avoids it).
        var excluded: Int?
        var routeReason = RouteReason.roundRobin
        var endpointName: String?
        /// What the cost model predicted for this attempt: seconds from sending to the first
        /// token (nil: not predicted — round robin, the weighted profile, a local answer).
        var predictedTTFT: Double?
        /// The chosen endpoint, counted in its in-flight load while this is held (and the
        /// attempt's prefill and first token reported to its cost-model counters).
        var lease: EndpointLease?
        /// The connection carrying the attempt.
        var upstream: (any Upstream)?
        /// When the attempt's request went to its endpoint (nil: never forwarded).
        var sentAt: Instant?
        /// An on-demand adapter load was tried for this request (at most once).
        var loadedAdapter = false
        /// Prefix hashes kept across an asynchronous step (the worker's scratch space is
        /// reused by requests inspected meanwhile); nil while they are still in the scratch.
        var savedPrefixHashes: [UInt64]?
    }

    /// The response as the client got it.
    struct ResponseState {
        /// Watches tokens and usage (inspected requests with a 2xx answer).
        var observer: ResponseObserver?
        var upstreamStatus = 0
        /// The status the client ended up with (0: the client went away).
        var finalStatus = 0
        /// The head went to the client: from then on an upstream failure can only cut it.
        var started = false
        /// The upstream's response reached its end (only then may it be cached).
        var completed = false
        /// Body bytes relayed (the access log's `bytes`).
        var bodyBytes = 0
        /// Fields added to the response head (rate-limit state, cache result, route).
        var headers: [OpenAIError.Header] = []
        /// The response as it will be stored in the cache (entry header, then body bytes).
        var capture: [UInt8]?
        var captureHeaderBytes = 0
    }
}

/// How a request fared in admission (metrics and the access log).
enum CacheOutcome: String { case hit, miss, bypass, error }
enum LimitOutcome: String { case allowed, limited, error, local }
