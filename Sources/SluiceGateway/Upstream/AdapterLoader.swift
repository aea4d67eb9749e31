import SluiceSettings
import SluiceHTTP
package import SluiceIO
import Synchronization

/// On-demand LoRA loading: when no endpoint of a pool has a requested adapter registered and
/// the model names its `adapter_path`, Sluice registers it on one endpoint with vLLM's
/// `POST /v1/load_lora_adapter {"lora_name","lora_path"}` and then routes there.
///
/// At most one load per adapter is in flight in the whole process: the first request that
/// needs it starts the load; requests that need it meanwhile (on any worker) wait for that same
/// load. The HTTP call runs on the control loop, never on a worker; waiters are resumed on their
/// own loops. A success is written into the endpoint's telemetry at once, so routing sees the
/// adapter before the next `/v1/models` scrape.
///
/// vLLM needs `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` for this. Plain-HTTP endpoints only (the
/// control-plane client does not speak TLS).
package final class AdapterLoader: @unchecked Sendable {
    /// A waiting request: resumed with the outcome on `loop`.
    struct Waiter: @unchecked Sendable {
        let loop: EventLoop
        let done: (Bool) -> Void
    }

    private let control: EventLoop
    /// Adapters being loaded, with their waiters.
    private let loading = Mutex<[String: [Waiter]]>([:])
    /// Control-loop confined.
    private var clients: [String: HTTPClient] = [:]
    /// Loads started (for tests and metrics): successful and failed.
    let started = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    var timeout: Duration = .seconds(60)
    /// Replaces the HTTP call (tests: no model server): (adapter, path, endpoint, runtime,
    /// done) on the control loop; `done(ok)` must be called once.
    var post: ((String, String, GatewaySettings.Endpoint, EndpointRuntime, @escaping (Bool) -> Void) -> Void)?

    package init(control: EventLoop) { self.control = control }

    /// Loads `adapter` from `path` on `endpoint` unless a load of it is already in flight (then
    /// waits for that one). `done(success)` runs on `loop`, never inside this call.
    func load(adapter: String, path: String, endpoint: GatewaySettings.Endpoint, runtime: EndpointRuntime,
              loop: EventLoop, done: @escaping (Bool) -> Void) {
        let waiter = Waiter(loop: loop, done: done)
        let first = loading.withLock { map -> Bool in
            if map[adapter] != nil {
                map[adapter]!.append(waiter)
                return false
            }
            map[adapter] = [waiter]
            return true
        }
        guard first else { return }
        started.add(1, ordering: .relaxed)
        control.execute { [self] in
            if let post {
                post(adapter, path, endpoint, runtime) { ok in self.finished(adapter, ok) }
            } else {
                post(adapter: adapter, path: path, endpoint: endpoint, runtime: runtime)
            }
        }
    }

    /// Resumes every request waiting for `adapter` on its own loop.
    private func finished(_ adapter: String, _ ok: Bool) {
        if !ok { failed.add(1, ordering: .relaxed) }
        let waiters = loading.withLock { $0.removeValue(forKey: adapter) } ?? []
        for w in waiters { w.loop.execute { w.done(ok) } }
    }

    private func post(adapter: String, path: String, endpoint: GatewaySettings.Endpoint, runtime: EndpointRuntime) {
        let client: HTTPClient
        if let c = clients[endpoint.authority], c.address == endpoint.address { client = c } else {
            client = HTTPClient(address: endpoint.address, host: endpoint.authority, loop: control)
            clients[endpoint.authority] = client
        }
        var body: [UInt8] = Array("{\"lora_name\":".utf8)
        JSON.appendString(adapter, to: &body)
        body += Array(",\"lora_path\":".utf8)
        JSON.appendString(path, to: &body)
        body.append(UInt8(ascii: "}"))
        client.send(method: "POST", path: "/v1/load_lora_adapter", headers: [("Content-Type", "application/json")],
                    body: body, timeout: timeout) { [self] result in
            var ok = false
            var why = ""
            switch result {
            case .success(let r):
                // 200, or 400 because it is already registered there (another Sluice replica
                // loaded it first): either way the endpoint can serve it now.
                let text = String(decoding: r.body.prefix(300), as: UTF8.self)
                ok = r.status == 200 || (r.status == 400 && text.contains("already"))
                why = "status \(r.status): \(text)"
            case .failure(let e):
                why = "\(e)"
            }
            if ok {
                let now = control.now
                runtime.updateTelemetry { t in
                    if !t.adaptersLoaded.contains(adapter) { t.adaptersLoaded.append(adapter) }
                    t.adaptersChangedAt = now
                }
                log("loaded LoRA adapter '\(adapter)' on \(endpoint.authority)")
            } else {
                log("loading LoRA adapter '\(adapter)' on \(endpoint.authority) failed: \(why)")
            }
            finished(adapter, ok)
        }
    }

    /// Closes the control-plane connections (on the control loop).
    func close() {
        for c in clients.values { c.close() }
        clients.removeAll()
    }
}
