import SluiceSettings
import Glibc
import SluiceGateway
import SluiceIO
import SluiceSim
import Synchronization

/// `sluice demo`: three simulated vLLM servers and the gateway in front of them, on loopback.
/// Prints what to try; Ctrl-C stops everything.
enum Demo: Command {
    static let valued: Set<String> = ["port", "servers", "sim-port", "admin"]

    static let usage = """
        usage: sluice demo [--port N] [--servers K] [--sim-port N] [--admin ADDR]

        Starts K simulated vLLM servers with a LoRA adapter, and Sluice in front of them on
        127.0.0.1:N with its admin listener and dashboard. Prints what to try; Ctrl-C stops
        everything.

          --port N       the gateway's port (default 8080)
          --servers K    simulated servers (default 3)
          --sim-port N   the first simulated server's port; the others follow (default 18001)
          --admin ADDR   admin listener and dashboard (default 127.0.0.1:<port + 1010>)
          -h, --help     print this
        """

    static func run(_ o: Options) throws -> Int32 {
        let port = try o.int("port", default: 8080)
        let servers = try o.int("servers", default: 3)
        let simPort = try o.int("sim-port", default: 18001)
        guard (1...64).contains(servers) else { throw UsageError("--servers must be between 1 and 64") }
        guard (1...65535).contains(port), (1...(65536 - servers)).contains(simPort) else { throw UsageError("--port/--sim-port out of range") }
        let adminText = o.value("admin") ?? "127.0.0.1:\(port + 1010)"
        guard let adminAddress = SocketAddress(adminText) else { throw UsageError("--admin: '\(adminText)' is not host:port") }
        let signals = [Signals.interrupt, Signals.terminate, Signals.hangup]
        Signals.block(signals)

        // The simulated servers share one event loop thread (they are light).
        let simLoop = try EventLoop()
        let simThread = Threads.spawn(name: "sluice-sims") { simLoop.run() }
        var endpoints: [GatewaySettings.Endpoint] = []
        for i in 0..<servers {
            var s = SimOptions()
            s.port = UInt16(simPort + i)
            s.model = "tiny-llama"
            s.loras = ["sql-lora"]
            s.seed = UInt64(i + 1)
            s.maxLoras = 2
            let opts = s
            let ok = Atomic<Int>(0)
            let failure = Mutex<String>("")
            simLoop.execute {
                do {
                    let sim = try SimServer.start(options: opts, loop: simLoop)
                    _ = Unmanaged.passRetained(sim)  // lives as long as the demo
                    ok.store(1, ordering: .releasing)
                } catch {
                    failure.withLock { $0 = "\(error)" }
                    ok.store(2, ordering: .releasing)
                }
            }
            while ok.load(ordering: .acquiring) == 0 { usleep(500) }
            if ok.load(ordering: .acquiring) == 2 {
                throw DemoError(description: "simulated server \(i + 1) (\(failure.withLock { $0 })); --port and --servers move the ports")
            }
            endpoints.append(GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(s.port)")!, authority: "127.0.0.1:\(s.port)"))
        }

        var settings = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!)], workers: 0,
                                       pools: [.init(name: "default", endpoints: endpoints)])
        settings.admin = adminAddress
        settings.timeouts.drainDelay = .zero
        var ab = GatewaySettings.Model(name: "tiny-ab")
        ab.split = [("tiny-llama", 3), ("sql", 1)]
        settings.models = [GatewaySettings.Model(name: "tiny-llama", pool: "default"),
                           GatewaySettings.Model(name: "sql", pool: "default", adapter: "sql-lora"), ab]
        let gateway = try Gateway(settings: settings)
        try gateway.start()
        let base = "http://127.0.0.1:\(port)"
        // A wildcard admin address is reached on loopback from here.
        let adminHost: String
        switch adminAddress {
        case .v4: adminHost = adminAddress.host == "0.0.0.0" ? "127.0.0.1" : adminAddress.host
        case .v6: adminHost = adminAddress.host == "::" ? "[::1]" : "[\(adminAddress.host)]"
        }
        let admin = "http://\(adminHost):\(gateway.adminPort ?? adminAddress.port)"
        print("""
            Sluice demo: \(servers) simulated vLLM servers (127.0.0.1:\(simPort)-\(simPort + servers - 1), model tiny-llama,
            LoRA adapter sql-lora) behind Sluice on \(base); admin on \(admin).

            Dashboard: \(admin)/

              curl -s \(base)/v1/models
              curl -s \(base)/v1/chat/completions -H 'Content-Type: application/json' \\
                -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'
              curl -sN \(base)/v1/chat/completions -H 'Content-Type: application/json' \\
                -d '{"model":"sql","messages":[{"role":"user","content":"List tables"}],"stream":true}'
              curl -s \(base)/v1/chat/completions -H 'Content-Type: application/json' \\
                -d '{"model":"tiny-ab","messages":[{"role":"user","content":"Hi"}]}' -D - -o /dev/null | grep x-sluice-arm
              curl -s --http2-prior-knowledge \(base)/v1/models
              curl -s \(admin)/metrics
              curl -s \(admin)/admin/stats

            Ctrl-C stops the demo.
            """)
        // Piped or redirected, stdout is fully buffered: without this, nothing shows until exit.
        fflush(nil)  // every output stream (stdout is a global var Swift 6 will not touch)
        _ = Signals.wait(signals)
        log("stopping the demo")
        gateway.stop(grace: .seconds(5))
        simLoop.stop()
        Threads.join(simThread)
        return 0
    }
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
}
