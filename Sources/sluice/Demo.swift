import SluiceSettings
import Glibc
import SluiceGateway
import SluiceIO
import SluiceSim
import Synchronization

/// `sluice demo`: three simulated vLLM servers and the gateway in front of them, on loopback.
/// Prints what to try; Ctrl-C stops everything.
enum Demo {
    static func run(_ o: Options) throws -> Int32 {
        let port = try o.int("port", default: 8080)
        let servers = try o.int("servers", default: 3)
        let signals = [Signals.interrupt, Signals.terminate, Signals.hangup]
        Signals.block(signals)

        // The simulated servers share one event loop thread (they are light).
        let simLoop = try EventLoop()
        let simThread = Threads.spawn(name: "sluice-sims") { simLoop.run() }
        var endpoints: [GatewaySettings.Endpoint] = []
        for i in 0..<servers {
            var s = SimOptions()
            s.port = UInt16(18001 + i)
            s.model = "tiny-llama"
            s.loras = ["sql-lora"]
            s.seed = UInt64(i + 1)
            s.maxLoras = 2
            let opts = s
            let ok = Atomic<Int>(0)
            simLoop.execute {
                if let sim = try? SimServer.start(options: opts, loop: simLoop) {
                    _ = Unmanaged.passRetained(sim)  // lives as long as the demo
                    ok.store(1, ordering: .releasing)
                } else {
                    ok.store(2, ordering: .releasing)
                }
            }
            while ok.load(ordering: .acquiring) == 0 { usleep(500) }
            if ok.load(ordering: .acquiring) == 2 { throw UsageError("port \(s.port) is busy: cannot start a simulated server") }
            endpoints.append(GatewaySettings.Endpoint(address: SocketAddress("127.0.0.1:\(s.port)")!, authority: "127.0.0.1:\(s.port)"))
        }

        var settings = GatewaySettings(listen: [.init(address: SocketAddress("127.0.0.1:\(port)")!)], workers: 0,
                                       pools: [.init(name: "default", endpoints: endpoints)])
        settings.admin = SocketAddress("127.0.0.1:\(port + 1010)")
        settings.timeouts.drainDelay = .zero
        settings.models = [GatewaySettings.Model(name: "tiny-llama", pool: "default"),
                           GatewaySettings.Model(name: "sql", pool: "default", adapter: "sql-lora")]
        let gateway = try Gateway(settings: settings)
        try gateway.start()
        let base = "http://127.0.0.1:\(port)"
        print("""
            Sluice demo: \(servers) simulated vLLM servers (127.0.0.1:18001-\(18000 + servers), model tiny-llama,
            LoRA adapter sql-lora) behind Sluice on \(base); admin on http://127.0.0.1:\(port + 1010).

              curl -s \(base)/v1/models
              curl -s \(base)/v1/chat/completions -H 'Content-Type: application/json' \\
                -d '{"model":"tiny-llama","messages":[{"role":"user","content":"Hello!"}],"max_tokens":8}'
              curl -sN \(base)/v1/chat/completions -H 'Content-Type: application/json' \\
                -d '{"model":"sql","messages":[{"role":"user","content":"List tables"}],"stream":true}'
              curl -s --http2-prior-knowledge \(base)/v1/models
              curl -s http://127.0.0.1:\(port + 1010)/metrics
              curl -s http://127.0.0.1:\(port + 1010)/admin/endpoints

            Ctrl-C stops the demo.
            """)
        _ = Signals.wait(signals)
        log("stopping the demo")
        gateway.stop(grace: .seconds(5))
        simLoop.stop()
        Threads.join(simThread)
        return 0
    }
}
