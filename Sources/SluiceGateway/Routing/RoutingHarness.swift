import SluiceIO
import SluiceSettings
public import SluiceRouting

/// One routing decision at a time without a network: a worker and a pool of `endpoints` fake
/// endpoints whose telemetry the caller sets. For table-driven tests of the router and for the
/// decision micro-benchmark (`Benchmarks/routing-decision`), which is why it is SPI-public.
@_spi(Benchmarks) public final class RoutingHarness {
    let loop: EventLoop
    let worker: Worker
    private var features: RequestFeatures?
    private var adapter: String?

    public init(endpoints count: Int, policy: RoutingPolicy = .default, profile: RoutingProfile = .standard(),
                adapterModel: String? = nil, seed: UInt64 = 1) throws {
        loop = try EventLoop()
        let endpoints = (0..<count).map { i -> GatewaySettings.Endpoint in
            let a = "10.\(i / 256 % 256).\(i % 256).1:8000"
            return GatewaySettings.Endpoint(address: SocketAddress(a)!, authority: a)
        }
        var pool = GatewaySettings.Pool(name: "bench", endpoints: endpoints)
        pool.routing = policy
        pool.profile = profile
        var s = GatewaySettings(listen: [], workers: 1, pools: [pool])
        s.models = [GatewaySettings.Model(name: "tiny", pool: "bench")]
        if let a = adapterModel { s.models.append(GatewaySettings.Model(name: a, pool: "bench", adapter: a)) }
        worker = Worker(loop: loop, settings: s, shared: ["bench": SharedPool()], registry: EndpointRegistry(),
                        connections: SharedCounter(), metrics: GatewayMetrics(), prefixIndex: PrefixIndex(),
                        adapterLoader: AdapterLoader(control: loop), accessLog: nil) {}
        worker.random = SplitMix64(seed: seed)
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
        let blocks = features?.prefixBlocks ?? 0
        let hashes = UnsafeBufferPointer(rebasing: worker.inspectScratch.prefixHashes[0..<blocks])
        guard let (ep, reason) = Router.pick(pool: pool, scored: features != nil, adapter: adapter, prefixHashes: hashes, index: worker.prefixIndex,
                                             excluding: nil, now: loop.now, staleness: worker.settings.telemetry.staleness,
                                             scratch: worker.routerScratch, random: &worker.random) else { return nil }
        if commit && blocks > 0 { worker.prefixIndex.record(hashes, endpoint: ep.runtime.id) }
        return (ep.index, reason.rawValue)
    }

    /// The round-robin pick (the cheapest decision: the benchmark's baseline).
    public func roundRobin() -> Int? { pool.pick(excluding: nil, now: loop.now)?.index }
}
