import SluiceSettings
import SluiceConfig
import Glibc
import SluiceGateway
import SluiceHTTP
import SluiceIO

/// `sluice serve`: runs the gateway until SIGINT/SIGTERM (graceful stop, exit 0); SIGHUP reloads
/// the config file.
///
/// Without a config file, flags describe a single pool:
///   sluice serve --listen 127.0.0.1:8080 --endpoint http://127.0.0.1:8000 [--endpoint ...]
///                [--workers N] [--admin 127.0.0.1:9090] [--drain-delay 5s] [--grace 30s]
enum Serve: Command {
    static let valued: Set<String> = ["config", "listen", "endpoint", "workers", "admin", "drain-delay", "grace", "upstream-ca"]

    static let usage = """
        usage: sluice serve --config FILE
               sluice serve --endpoint URL [--endpoint URL]... [--listen ADDR] [--workers N]
                            [--admin ADDR] [--drain-delay D] [--grace D] [--upstream-ca FILE]

        Runs the gateway until SIGINT or SIGTERM (graceful stop, exit 0). With --config, the
        YAML file is reloaded when it changes and on SIGHUP; docs/configuration.md lists every key.
        Without a file, the flags describe one pool.

          --config FILE        the config file (YAML)
          --endpoint URL       a model server, http://host:port or https://host:port (repeatable)
          --listen ADDR        where clients connect (default 127.0.0.1:8080)
          --workers N          worker threads (default 0: one per available CPU)
          --admin ADDR         admin listener: /metrics, /healthz, /readyz, the dashboard at /
                               (default: none with flags)
          --drain-delay D      after SIGTERM, keep accepting this long (default 5s)
          --grace D            wait this long for in-flight requests on stop (default 30s)
          --upstream-ca FILE   CA bundle for https:// endpoints (default: the system store)
          -h, --help           print this
        """

    static func run(_ o: Options) throws -> Int32 {
        let source: SettingsSource
        if let path = o.value("config") {
            source = .file(path)
        } else if !o.all("endpoint").isEmpty {
            source = .flags(try settingsFromFlags(o))
        } else {
            throw UsageError("serve needs --config FILE (or --endpoint URL [--listen ADDR])")
        }
        let settings = try source.load()

        // Signals are handled by this thread with sigwait; block them before any thread starts.
        let signals = [Signals.interrupt, Signals.terminate, Signals.hangup]
        Signals.block(signals)
        let gateway = try Gateway(settings: settings)
        try gateway.start()
        if case .file(let path) = source { gateway.configSource.withLock { $0 = (path, fileDigest(path)) } }
        for l in settings.listen { log("listening on \(l.address)\(l.tls != nil ? " (TLS)" : "")") }
        if let a = settings.admin { log("admin on \(a)") }
        log("\(gateway.workerCount) worker(s); pools: " + settings.pools.map { "\($0.name) (\($0.dns.map { "dns \($0.host):\($0.port)" } ?? "\($0.endpoints.count) endpoints"))" }.joined(separator: ", "))
        let watcher = source.watch(gateway)
        while true {
            let sig = Signals.wait(signals)
            if sig == Signals.hangup {
                watcher?.reloadNow()
                continue
            }
            log("stopping: draining in-flight requests (grace \(gateway.currentSettings.timeouts.grace))")
            gateway.stop(grace: gateway.currentSettings.timeouts.grace)
            log("stopped")
            return 0
        }
    }

    static func settingsFromFlags(_ o: Options) throws -> GatewaySettings {
        let listen = o.value("listen") ?? "127.0.0.1:8080"
        guard let address = SocketAddress(listen) else { throw UsageError("--listen: '\(listen)' is not host:port") }
        var endpoints: [GatewaySettings.Endpoint] = []
        for url in o.all("endpoint") {
            guard let e = parseEndpointURL(url, caFile: o.value("upstream-ca")) else {
                throw UsageError("--endpoint: '\(url)' is not http(s)://host:port")
            }
            endpoints.append(e)
        }
        var s = GatewaySettings(listen: [.init(address: address)], workers: try o.int("workers", default: 0),
                                pools: [.init(name: "default", endpoints: endpoints)])
        if let d = o.value("drain-delay") { s.timeouts.drainDelay = try parseDuration(d, flag: "drain-delay") }
        if let g = o.value("grace") { s.timeouts.grace = try parseDuration(g, flag: "grace") }
        if let a = o.value("admin") {
            guard let addr = SocketAddress(a) else { throw UsageError("--admin: '\(a)' is not host:port") }
            s.admin = addr
        }
        return s
    }
}


/// Where the settings come from, and how to reload them.
enum SettingsSource {
    case file(String)
    case flags(GatewaySettings)

    func load() throws -> GatewaySettings {
        switch self {
        case .flags(let s): return s
        case .file(let path): return try ConfigLoader.load(path: path)
        }
    }

    func watch(_ gateway: Gateway) -> ConfigReloader? {
        guard case .file(let path) = self else { return nil }
        return ConfigReloader(path: path, gateway: gateway, load: { try ConfigLoader.load(path: path) }) { result in
            switch result {
            case .success(let generation):
                gateway.configSource.withLock { $0 = (path, fileDigest(path)) }
                log("config reloaded from \(path) (generation \(generation))")
            case .failure(let error):
                log("config reload failed, keeping the previous config:\n\(error)")
                gateway.noteReloadFailure("\(error)")
            }
        }
    }
}

/// `250ms`, `10s`, `5m`, `1h`.
func parseDuration(_ text: String, flag: String) throws(UsageError) -> Duration {
    let units: [(String, Int64)] = [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
    for (suffix, ns) in units where text.hasSuffix(suffix) {
        if let n = Int64(text.dropLast(suffix.count)), n >= 0 { return .nanoseconds(n * ns) }
    }
    throw UsageError("--\(flag): '\(text)' is not a duration like 250ms, 10s, 5m")
}

/// A short digest of a file's bytes (FNV-1a 64), to tell config versions apart in /admin/config.
func fileDigest(_ path: String) -> String {
    guard let text = readWholeFile(path) else { return "" }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
