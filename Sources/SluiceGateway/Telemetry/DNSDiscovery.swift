import SluiceSettings
import Glibc
import SluiceIO

/// Re-resolves the `dns:` pools (Kubernetes headless Services) on the control loop and hands the
/// addresses found to the gateway, which adds and removes endpoints without a reload; endpoints
/// that stay keep their health, load and connections (their state is keyed by address).
///
/// getaddrinfo blocks; it runs on the control loop (never a worker), and a slow resolver only
/// delays the admin listener and health checks for that long.
final class DNSDiscovery {
    unowned let gateway: Gateway
    unowned(unsafe) let loop: EventLoop
    private var timers: [String: Timer] = [:]

    init(gateway: Gateway, loop: EventLoop) {
        self.gateway = gateway
        self.loop = loop
    }

    /// (Re)starts resolving for the pools of `settings`.
    func configure(_ settings: GatewaySettings) {
        for t in timers.values { loop.cancel(t) }
        timers.removeAll()
        for pool in settings.pools {
            guard let dns = pool.dns else { continue }
            let name = pool.name
            let interval = pool.dnsInterval
            let timer = Timer { [unowned self] in
                self.resolve(pool: name, host: dns.host, port: dns.port)
                if let again = self.timers[name] { self.loop.schedule(again, after: interval) }
            }
            timers[name] = timer
            resolve(pool: name, host: dns.host, port: dns.port)
            loop.schedule(timer, after: interval)
        }
    }

    private func resolve(pool: String, host: String, port: UInt16) {
        guard let addresses = try? gateway.dnsResolver(host, port) else {
            // Resolution failed: keep the endpoints we had (a DNS hiccup must not empty a pool).
            return
        }
        var seen = Set<SocketAddress>()
        let endpoints = addresses.filter { seen.insert($0).inserted }.sorted { $0.description < $1.description }
            .map { GatewaySettings.Endpoint(address: $0, authority: $0.description) }
        if endpoints.isEmpty { return }
        gateway.updateDiscovered(pool: pool, endpoints)
    }

    func stop() {
        for t in timers.values { loop.cancel(t) }
        timers.removeAll()
    }
}
