import SluiceGateway
import SluiceIO
import SluiceLLM
import SluiceSettings
public import SluiceRouting
import Synchronization

/// One routing decision at a time without a network: a worker and a pool of `endpoints` fake
/// endpoints whose telemetry the caller sets. For table-driven tests of the router and for the
/// decision micro-benchmark (`Benchmarks/routing-decision`), which is why it is public (it is
/// test support: the `sluice` binary never links it).
public final class RoutingHarness {
    let loop: EventLoop
    let worker: Worker
    private var features: RequestFeatures?
    private var adapter: String?
    /// Flow control (its defaults) as the route phase passes it (false: off, as in the
    /// micro-benchmark): an endpoint without room is passed over while another has some.
    public var flowControl = false
    /// The settings' telemetry staleness, read once: `Worker.settings` is a `_read` coroutine,
    /// which called from another module allocates its frame (1,000 bytes a decision in the
    /// micro-benchmark; inside the gateway it is inlined).
    private let staleness: Duration

    /// `profile` nil: the policy's own (the cost model for `default`, the weighted profile for `weighted`).
    public init(endpoints count: Int, policy: RoutingPolicy = .default, profile: RoutingProfile? = nil,
                adapterModel: String? = nil, seed: UInt64 = 1) throws {
        loop = try EventLoop()
        let endpoints = (0..<count).map { i -> GatewaySettings.Endpoint in
            let a = "10.\(i / 256 % 256).\(i % 256).1:8000"
            return GatewaySettings.Endpoint(address: SocketAddress(a)!, authority: a)
        }
        var pool = GatewaySettings.Pool(name: "bench", endpoints: endpoints)
        pool.routing = policy
        pool.profile = profile ?? (policy == .weighted ? .weighted() : .costModel())
        var s = GatewaySettings(listen: [], workers: 1, pools: [pool])
        s.models = [GatewaySettings.Model(name: "tiny", pool: "bench")]
        if let a = adapterModel { s.models.append(GatewaySettings.Model(name: a, pool: "bench", adapter: a)) }
        worker = Worker(loop: loop, settings: s, shared: ["bench": SharedPool()], registry: EndpointRegistry(),
                        connections: SharedCounter(), metrics: GatewayMetrics(), prefixIndex: PrefixIndex(),
                        adapterLoader: AdapterLoader(control: loop), accessLog: nil) {}
        worker.random = SplitMix64(seed: seed)
        staleness = s.telemetry.staleness
    }

    var pool: UpstreamPool { worker.pools[0] }

    /// The endpoint's scraped state, as of `age` ago.
    public func setTelemetry(_ i: Int, waiting: Int = 0, running: Int = 0, kvUse: Double = 0, adapters: [String] = [],
                             adaptersRunning: [String] = [], maxLoras: Int = 0, age: Duration = .zero) {
        let at = Instant(nanoseconds: loop.now.nanoseconds &- UInt64(max(0, age.nanoseconds)))
        pool.endpoints[i].runtime.updateTelemetry { t in
            t.scrapedAt = at
            t.waiting = waiting
            t.running = running
            t.kvUse = kvUse
            t.adaptersLoaded = adapters
            t.adaptersRunning = adaptersRunning
            t.maxLoras = maxLoras
        }
    }

    /// Requests the gateway itself has in flight to endpoint `i`.
    public func setInflight(_ i: Int, _ n: Int) { pool.endpoints[i].runtime.inflight.store(n, ordering: .relaxed) }

    /// The endpoint's lease counters: requests sent without a first token and their uncached
    /// tokens, requests decoding (as the request path reports them).
    public func setLease(_ i: Int, pendingRequests: Int = 0, pendingTokens: Int = 0, decoding: Int = 0) {
        let rt = pool.endpoints[i].runtime
        rt.pendingRequests.store(pendingRequests, ordering: .relaxed)
        rt.pendingTokens.store(pendingTokens, ordering: .relaxed)
        rt.decodingNow.store(decoding, ordering: .relaxed)
        rt.leaseReported.store(true, ordering: .relaxed)
    }

    /// Reports a request sent to endpoint `i` as the request path's lease would.
    public func prefillStarted(_ i: Int, tokens: Int) { pool.endpoints[i].runtime.prefillStarted(tokens: tokens) }

    /// The concurrency flow control learned for endpoint `i` (with ``flowControl`` on and
    /// `maxWaiting` 0, the endpoint is full once this many are in flight there).
    public func setCapacity(_ i: Int, _ n: Int) { pool.endpoints[i].runtime.learnedCapacity.store(n, ordering: .relaxed) }

    public func eject(_ i: Int) { pool.endpoints[i].runtime.ejectedUntil.store(.max, ordering: .relaxed) }

    /// Inspects `body` (a chat completion request for `tiny` or the adapter model) as the
    /// gateway would; the next ``decide()`` routes it. False if the body is rejected.
    @discardableResult
    public func prepare(_ body: [UInt8]) -> Bool {
        let f: RequestFeatures? = Self.chatPath.withUnsafeBytes { path in
            body.withUnsafeBytes { b in (try? InspectPhase.inspect(method: .post, path: path, body: b, scratch: worker.inspectScratch)) ?? nil }
        }
        guard let features = f else { return false }
        let model = body.withUnsafeBytes { b in String(decoding: b[Int(features.scanned.model.start)..<Int(features.scanned.model.end)], as: UTF8.self) }
        adapter = model != "tiny" ? model : nil
        self.features = features
        return true
    }

    private static let chatPath = Array("/v1/chat/completions".utf8)

    /// One decision for the prepared request: the endpoint's index and the reason. With
    /// `commit`, the endpoint is recorded as holding the prompt's prefix blocks (as a forwarded
    /// request would).
    public func decide(commit: Bool = false) -> (endpoint: Int, reason: String)? {
        decideWithPrediction(commit: commit).map { ($0.endpoint, $0.reason) }
    }

    /// ``decide(commit:)`` with the cost model's prediction there (seconds; nil when the policy
    /// does not predict) and the uncached prompt tokens it expects. With `send`, the request is
    /// also reported to the endpoint's lease counters as sent (`prefillStarted`).
    public func decideWithPrediction(commit: Bool = false, send: Bool = false)
        -> (endpoint: Int, reason: String, predictedTTFT: Double?, uncachedTokens: Int)? {
        let blocks = features?.prefixBlocks ?? 0
        let hashes = UnsafeBufferPointer(rebasing: worker.inspectScratch.prefixHashes[0..<blocks])
        let prompt = features.map { TokenReservation.promptTokens($0.scanned) } ?? 0
        guard let d = Router.route(pool: pool, scored: features != nil, adapter: adapter, prefixHashes: hashes, promptTokens: prompt,
                                   index: worker.prefixIndex, excluding: nil, now: loop.now,
                                   staleness: staleness, flow: flowControl ? GatewaySettings.FlowControl() : nil, scratch: worker.routerScratch,
                                   random: &worker.random) else { return nil }
        if commit && blocks > 0 { worker.prefixIndex.record(hashes, endpoint: d.endpoint.runtime.id) }
        if send { d.endpoint.runtime.prefillStarted(tokens: d.uncachedTokens) }
        return (d.endpoint.index, d.reason.rawValue, d.predictedTTFT, d.uncachedTokens)
    }

    /// The round-robin pick (the cheapest decision: the benchmark's baseline).
    public func roundRobin() -> Int? { pool.pick(excluding: nil, now: loop.now)?.index }
}
