/// The families of safe rollouts (issue 26): requests, latency and tokens by the model clients
/// asked for and the split arm chosen, so that two arms on one pool can be told apart (and a
/// canary judged, by a person, Flagger, or the SLO guard); tokens by tenant for chargeback;
/// shadow copies and fallbacks. Every label value comes from config (models, arms, tenants),
/// never from a request: series are bounded by what is configured.
struct ModelFamilies: Sendable {
    let responses: Int
    let duration: Int
    let ttft: Int
    let interToken: Int
    let tokens: Int
    let tenantTokens: Int
    let shadow: Int
    let fallbacks: Int

    /// The arm label of a model that is no split, and of shadow copies.
    static let noArm = ""
    static let shadowArm = "shadow"
    /// Why a request went on to the next model of its fallback chain.
    enum FallbackReason: String, CaseIterable {
        case noEndpoint = "no_endpoint", status5xx = "status_5xx", status429 = "status_429", connectError = "connect_error"
    }

    init(_ schema: MetricsSchema) {
        responses = schema.family("sluice_model_responses_total",
                                  help: "Requests answered, by the model clients asked for, the split arm chosen (shadow: shadow copies) and status class (aborted: the client left; 5xx also when the arm's model failed and a fallback model answered).",
                                  kind: .counter, labels: ["model", "arm", "code_class"])
        duration = schema.family("sluice_model_request_duration_seconds", help: "Time from the request to the end of its response, by model asked for and arm.",
                                 kind: .histogram, labels: ["model", "arm"], buckets: GatewayMetrics.latencyBuckets)
        ttft = schema.family("sluice_model_time_to_first_token_seconds", help: "Time from the request to the first generated token, by model asked for and arm.",
                             kind: .histogram, labels: ["model", "arm"], buckets: GatewayMetrics.latencyBuckets)
        interToken = schema.family("sluice_model_inter_token_latency_seconds", help: "Gaps between streamed token events, by model asked for and arm.",
                                   kind: .histogram, labels: ["model", "arm"], buckets: GatewayMetrics.tokenGapBuckets)
        tokens = schema.family("sluice_model_tokens_total", help: "Tokens reported by the model servers' usage, by model asked for, arm and type (input, output).",
                               kind: .counter, labels: ["model", "arm", "type"])
        tenantTokens = schema.family("sluice_tenant_tokens_total", help: "Tokens reported by the model servers' usage, by tenant (configured API keys' tenants, anonymous) and type.",
                                     kind: .counter, labels: ["tenant", "type"])
        shadow = schema.family("sluice_shadow_requests_total",
                               help: "Sampled requests copied to a shadow model (sent), or not copied because the shadow model's pool had max_in_flight shadows already (skipped).",
                               kind: .counter, labels: ["model", "shadow", "result"])
        fallbacks = schema.family("sluice_fallbacks_total",
                                  help: "Requests that went on to the next model of their fallback chain, by the model they left, the one they went to and why (no_endpoint, status_5xx, status_429, connect_error).",
                                  kind: .counter, labels: ["model", "to", "reason"])
    }

    func armSlots(_ schema: MetricsSchema, model: String, arm: String) -> ArmSlots {
        ArmSlots(requests: GatewayMetrics.classes.map { schema.series(responses, [model, arm, $0]) },
                 duration: schema.series(duration, [model, arm]), ttft: schema.series(ttft, [model, arm]),
                 interToken: schema.series(interToken, [model, arm]),
                 inputTokens: schema.series(tokens, [model, arm, "input"]), outputTokens: schema.series(tokens, [model, arm, "output"]))
    }

    func tenantSlots(_ schema: MetricsSchema, tenant: String) -> (input: Int, output: Int) {
        (schema.series(tenantTokens, [tenant, "input"]), schema.series(tenantTokens, [tenant, "output"]))
    }
}

/// The metric slots of one (model asked for, arm) pair, resolved when the model table is built.
/// A class, so a request holds it for one retain and reads the slots of the table it was
/// resolved with even if a reload replaced that table meanwhile.
final class ArmSlots: Sendable {
    /// By `GatewayMetrics.classes`.
    let requests: [Int]
    let duration: Int
    let ttft: Int
    let interToken: Int
    let inputTokens: Int
    let outputTokens: Int

    init(requests: [Int], duration: Int, ttft: Int, interToken: Int, inputTokens: Int, outputTokens: Int) {
        self.requests = requests
        self.duration = duration
        self.ttft = ttft
        self.interToken = interToken
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}
