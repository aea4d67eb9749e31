import SluiceRouting

/// Sluice's metric families (Prometheus names with a `sluice_` prefix, base units, `_total` for
/// counters; token and latency names follow the OpenTelemetry GenAI conventions where they fit).
/// Labels are bounded: pools, endpoints and models come from config, never from requests.
public final class GatewayMetrics: Sendable {
    public let schema = MetricsSchema()

    /// Latency buckets that suit LLM requests: milliseconds for errors and cache hits up to
    /// minutes for long generations.
    public static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
    public static let tokenGapBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

    let requests: Int
    let modelRequests: Int
    let duration: Int
    let upstreamDuration: Int
    let ttft: Int
    let interToken: Int
    let tokens: Int
    let retries: Int
    let connectErrors: Int
    let upstreamRequests: Int
    let cache: Int
    let routes: Int
    let rateLimit: Int
    let queueOutcomes: Int
    let queueWait: Int
    let endpointRequests: Int
    let tunnels: Int
    let tunnelBytes: Int
    /// By model asked for and arm, tenant, shadow, fallback (issue 26: ModelMetrics.swift).
    let models: ModelFamilies

    /// How a request that met a saturated pool fared (flow control).
    static let queueOutcomeNames = ["dispatched", "shed", "expired", "rejected_tenant", "rejected_pool", "abandoned"]

    public init() {
        requests = schema.family("sluice_requests_total", help: "Requests answered, by pool and status class (aborted: the client left).",
                                 kind: .counter, labels: ["pool", "code_class"])
        modelRequests = schema.family("sluice_model_requests_total", help: "Requests by the model clients asked for and the split arm chosen.",
                                      kind: .counter, labels: ["model", "arm"])
        upstreamRequests = schema.family("sluice_upstream_requests_total", help: "Requests sent to each endpoint.",
                                         kind: .counter, labels: ["pool", "endpoint"])
        duration = schema.family("sluice_request_duration_seconds", help: "Time from the request to the end of its response.",
                                 kind: .histogram, labels: ["pool"], buckets: Self.latencyBuckets)
        upstreamDuration = schema.family("sluice_upstream_duration_seconds",
                                         help: "Time from sending a request to a model server to the end of its response (the last attempt).",
                                         kind: .histogram, labels: ["pool"], buckets: Self.latencyBuckets)
        ttft = schema.family("sluice_time_to_first_token_seconds", help: "Time from the request to the first generated token.",
                             kind: .histogram, labels: ["pool"], buckets: Self.latencyBuckets)
        interToken = schema.family("sluice_inter_token_latency_seconds", help: "Gaps between streamed token events.",
                                   kind: .histogram, labels: ["pool"], buckets: Self.tokenGapBuckets)
        tokens = schema.family("sluice_tokens_total", help: "Tokens reported by the model servers' usage (gen_ai.token.type).",
                               kind: .counter, labels: ["pool", "type"])
        retries = schema.family("sluice_upstream_retries_total", help: "Requests retried on another endpoint before any response byte.",
                                kind: .counter, labels: ["pool"])
        routes = schema.family("sluice_route_decisions_total",
                               help: "Requests by why their endpoint was chosen (prefix_hit, new_prefix, least_loaded, adapter_affinity, round_robin, only_candidate, no_healthy_endpoint, cache_hit, stored_response).",
                               kind: .counter, labels: ["pool", "reason"])
        cache = schema.family("sluice_cache_requests_total",
                              help: "Response-cache outcomes: hit, miss, bypass (not looked up), error (Redis failed), stored, store_error.",
                              kind: .counter, labels: ["result"])
        rateLimit = schema.family("sluice_rate_limit_decisions_total",
                                  help: "Rate-limit decisions: allowed, limited, error (Redis failed), local (allowed by the fallback limiter).",
                                  kind: .counter, labels: ["result"])
        connectErrors = schema.family("sluice_upstream_errors_total", help: "Upstream connection failures, resets and 5xx answers.",
                                      kind: .counter, labels: ["pool", "endpoint"])
        queueOutcomes = schema.family("sluice_queue_requests_total",
                                      help: "Requests that met a saturated pool: dispatched (waited, then served), shed (sheddable band), expired (queue_ttl), rejected_tenant / rejected_pool (queue bounds), abandoned (the client left while queued).",
                                      kind: .counter, labels: ["pool", "outcome"])
        endpointRequests = schema.family("sluice_endpoint_requests_total",
                                         help: "Requests by the vLLM API endpoint they addressed (chat_completions, messages, responses, rerank, realtime, v2_infer, ...; other: paths outside the API table) and status class.",
                                         kind: .counter, labels: ["endpoint", "code_class"])
        tunnels = schema.family("sluice_realtime_connections_total",
                                help: "WebSocket upgrades on /v1/realtime: opened (the model server switched protocols), closed (either side ended it; opened - closed are open now), idle_closed (realtime.idle_timeout), refused (realtime.max_connections).",
                                kind: .counter, labels: ["outcome"])
        tunnelBytes = schema.family("sluice_realtime_bytes_total", help: "Bytes relayed through WebSocket tunnels, by direction.",
                                    kind: .counter, labels: ["direction"])
        queueWait = schema.family("sluice_queue_wait_seconds", help: "Time requests waited in a pool's flow-control queue before dispatch.",
                                  kind: .histogram, labels: ["pool"], buckets: Self.latencyBuckets)
        models = ModelFamilies(schema)
    }

    static let classes = ["2xx", "3xx", "4xx", "5xx", "aborted", "1xx"]

    static func classIndex(_ status: Int) -> Int {
        switch status {
        case 200..<300: 0
        case 300..<400: 1
        case 400..<500: 2
        case 500..<600: 3
        case 0: 4
        default: 5
        }
    }

    /// Slots for one pool, resolved once per pool and worker.
    struct PoolSlots {
        var requests: [Int]
        var duration: Int
        var upstreamDuration: Int
        var ttft: Int
        var interToken: Int
        var inputTokens: Int
        var outputTokens: Int
        var retries: Int
        /// By `RouteReason.ordinal`.
        var routes: [Int]
        /// By `queueOutcomeNames` index.
        var queue: [Int]
        var queueWait: Int
    }

    func slots(pool: String) -> PoolSlots {
        PoolSlots(requests: Self.classes.map { schema.series(requests, [pool, $0]) },
                  duration: schema.series(duration, [pool]), upstreamDuration: schema.series(upstreamDuration, [pool]),
                  ttft: schema.series(ttft, [pool]),
                  interToken: schema.series(interToken, [pool]),
                  inputTokens: schema.series(tokens, [pool, "input"]), outputTokens: schema.series(tokens, [pool, "output"]),
                  retries: schema.series(retries, [pool]),
                  routes: RouteReason.allCases.map { schema.series(routes, [pool, $0.rawValue]) },
                  queue: Self.queueOutcomeNames.map { schema.series(queueOutcomes, [pool, $0]) },
                  queueWait: schema.series(queueWait, [pool]))
    }
}
