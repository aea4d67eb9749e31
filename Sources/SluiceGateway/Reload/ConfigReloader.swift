import Glibc
import SluiceIO
public import SluiceSettings
public import Synchronization

/// Hot reload: watches the config file (inotify on its directory, so editor renames and the
/// Kubernetes ConfigMap `..data` swap are seen) and reloads on change or on `reloadNow()`
/// (SIGHUP). The new file is loaded and validated off the request path (on the control loop);
/// if valid it is applied to every worker, otherwise the old config stays and the problems are
/// reported.
public final class ConfigReloader: @unchecked Sendable {
    public typealias Loader = @Sendable () throws -> GatewaySettings
    public typealias Report = @Sendable (Result<Int, any Error>) -> Void

    unowned let gateway: Gateway
    private let load: Loader
    private let report: Report
    private var watcher: FileWatcher?
    /// Watchers of the credential files the settings in force name (see
    /// `GatewaySettings.credentialFiles`), by path; on the control loop.
    private var credentialWatchers: [String: FileWatcher] = [:]
    /// Reloads attempted and failed (for metrics and tests).
    public let failures = Atomic<Int>(0)
    public let attempts = Atomic<Int>(0)

    /// Starts watching `path` on the gateway's control loop.
    public init(path: String, gateway: Gateway, load: @escaping Loader, report: @escaping Report) {
        self.gateway = gateway
        self.load = load
        self.report = report
        let loop = gateway.controlLoop
        let done = Atomic<Bool>(false)
        loop.execute { [self] in
            watcher = try? FileWatcher(path: path, loop: loop) { [unowned self] in self.reload() }
            watchCredentials(gateway.currentSettings)
            done.store(true, ordering: .releasing)
        }
        while !done.load(ordering: .acquiring) { usleep(200) }
    }

    /// Reloads now (from any thread).
    public func reloadNow() {
        gateway.controlLoop.execute { [self] in reload() }
    }

    private func reload() {
        attempts.add(1, ordering: .relaxed)
        do {
            let s = try load()
            try gateway.apply(s)
            watchCredentials(s)
            gateway.recordReload(failed: false)
            report(.success(gateway.generation))
        } catch {
            failures.add(1, ordering: .relaxed)
            gateway.recordReload(failed: true)
            report(.failure(error))
        }
    }

    /// Watches the credential files of `s` (and stops watching those it no longer names). A
    /// certificate rotated in place (cert-manager, a Secret volume's `..data` swap) then takes
    /// effect for new handshakes at once; connections in flight keep their context.
    private func watchCredentials(_ s: GatewaySettings) {
        let wanted = Set(s.credentialFiles)
        for (path, w) in credentialWatchers where !wanted.contains(path) {
            w.close()
            credentialWatchers[path] = nil
        }
        for path in wanted where credentialWatchers[path] == nil {
            credentialWatchers[path] = try? FileWatcher(path: path, loop: gateway.controlLoop) { [unowned self] in self.reload() }
        }
    }

    public func stop() {
        let loop = gateway.controlLoop
        loop.execute { [self] in
            watcher?.close()
            for w in credentialWatchers.values { w.close() }
            credentialWatchers.removeAll()
        }
    }
}
