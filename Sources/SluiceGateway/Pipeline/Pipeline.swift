import SluiceHTTP
import SluiceIO
import SluiceLLM

/// What a phase tells the pipeline to do next (Envoy's filter status, Pingora's phase results).
enum PhaseAction {
    /// On to the next phase.
    case next
    /// Sluice answers the request itself (an error, a local endpoint, a cache hit); the
    /// pipeline ends with the settle and record phases.
    case respond(LocalResponse)
    /// The phase started I/O (Redis, an adapter load, the upstream); its completion hands
    /// the pipeline its action (``Exchange/resume(_:)``).
    case wait
    /// Run the current phase again (after an adapter was loaded, say).
    case again
    /// Try another endpoint: back to the route phase (only before any response byte).
    case retry
}

/// One step of a request, a small type with one method. It reads and writes the exchange's
/// ``RequestContext`` and returns what comes next; a phase that waits for I/O returns `.wait`
/// and resumes the pipeline from its completion. A new phase is one file and one case in
/// ``Pipeline/Phase``.
protocol RequestPhase: Sendable {
    static func run(_ x: Exchange) -> PhaseAction
}

/// A response Sluice writes itself: an OpenAI-shaped error, a local endpoint's answer, a cached
/// response. Protocol-neutral: each downstream writes it in its own framing.
struct LocalResponse {
    var status: Int
    var contentType: [UInt8]
    var body: [UInt8]
    /// Extra fields (rate-limit state, `Retry-After`, `x-sluice-cache`, `Age`, …).
    var headers: [OpenAIError.Header] = []
    /// Close the connection after this answer (an HTTP/1.1 client that sent something the
    /// connection cannot recover from).
    var close = false
    /// The error this answer renders, kept so that the exchange can word it in the shape of
    /// the path it answers (Anthropic's on `/v1/messages`, KServe's on `/v2/...`). Boxed: a
    /// `LocalResponse` travels inside every ``PhaseAction``, which is copied between phases,
    /// so its size is on the hot path (the unboxed error cost ~500 instructions a request).
    var error: ErrorBox?

    final class ErrorBox {
        let error: OpenAIError
        init(_ e: OpenAIError) { error = e }
    }

    init(status: Int, contentType: String, body: [UInt8], headers: [OpenAIError.Header] = []) {
        self.status = status
        self.contentType = Array(contentType.utf8)
        self.body = body
        self.headers = headers
    }

    init(_ e: OpenAIError) {
        self.init(status: e.status, contentType: "application/json", body: e.render(), headers: e.headers)
        error = ErrorBox(e)
    }

    /// The same answer with its error (if it is one) worded in `shape`.
    func shaped(_ shape: ErrorShape) -> LocalResponse {
        guard shape != .openAI, let e = error else { return self }
        var r = self
        r.body = shape.render(e.error)
        return r
    }
}

/// The order of a request's phases (../shared/DESIGN.md "the request pipeline"):
///
/// ```
/// inspect → authenticate → resolve → admit → queue → route → forward ─┬─ response ─▶ observe
///                                                    ▲                 │      (per chunk)
///                                                    └──── retry ──────┘   then settle → record
/// ```
/// Request phases run in order until one answers, waits or forwards; the response is observed
/// as it is relayed; settle and record run once at the end, whatever the ending.
enum Pipeline {
    /// The request phases, in order. A new phase is one file, one case here and one line in
    /// `run` (a switch rather than an array of types: the calls are then direct).
    enum Phase: Int, CaseIterable {
        case inspect, authenticate, resolve, admit, queue, route, forward

        @inline(__always)
        func run(_ x: Exchange) -> PhaseAction {
            switch self {
            case .inspect: InspectPhase.run(x)
            case .authenticate: AuthenticatePhase.run(x)
            case .resolve: ResolvePhase.run(x)
            case .admit: AdmitPhase.run(x)
            case .queue: QueuePhase.run(x)
            case .route: RoutePhase.run(x)
            case .forward: ForwardPhase.run(x)
            }
        }
    }

    /// Run once when the exchange ends.
    static func end(_ x: Exchange) {
        SettlePhase.run(x)
        RecordPhase.run(x)
        TraceSpans.end(x)
    }
}
