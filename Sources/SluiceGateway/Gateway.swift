import Glibc
public import SluiceIO
import Synchronization

/// The gateway: N worker loops serving the configured listeners.
///
/// `start` returns once every worker listens; `stop(grace:)` drains them (stop accepting, let
/// in-flight requests finish up to the grace period) and joins the threads.
public final class Gateway: @unchecked Sendable {
    public let settings: GatewaySettings
    /// Endpoint state shared by workers and the control loop, kept across reloads.
    public let registry = EndpointRegistry()
    private let group: WorkerGroup
    private let workers = Mutex<[Worker?]>([])
    private let drainedCount = Atomic<Int>(0)
    private let startedCount = Atomic<Int>(0)
    private let startError = Mutex<SyscallError?>(nil)
    private var control: ControlPlane!
    private let draining = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)

    /// The settings in force (a reload replaces them).
    public var currentSettings: GatewaySettings { settings }

    /// The admin listener's port, when one is configured.
    public var adminPort: UInt16? { control?.adminPort }

    public init(settings: GatewaySettings) throws(SyscallError) {
        self.settings = settings
        let n = settings.workers > 0 ? settings.workers : Threads.availableCPUs
        group = try WorkerGroup(count: n)
        workers.withLock { $0 = Array(repeating: nil, count: n) }
    }

    public var workerCount: Int { group.loops.count }

    /// Starts the workers and waits until each listens (or one failed to bind).
    public func start() throws(SyscallError) {
        let shared = settings.pools.map { _ in SharedCounter() }
        let settings = self.settings
        group.start(name: "sluice-worker") { [self] loop in
            let w = Worker(loop: loop, settings: settings, shared: shared, registry: registry) { [self] in
                drainedCount.add(1, ordering: .acquiringAndReleasing)
            }
            do throws(SyscallError) {
                try w.start()
                // Unmanaged hand-off: the worker lives on its loop's thread; the group only
                // keeps it to reach it later through loop.execute.
                workers.withLock { $0[loop.index] = w }
            } catch {
                startError.withLock { $0 = error }
            }
            startedCount.add(1, ordering: .acquiringAndReleasing)
        }
        while startedCount.load(ordering: .acquiring) < group.loops.count { usleep(1000) }
        if let e = startError.withLock({ $0 }) {
            group.stop()
            group.join()
            throw e
        }
        control = try ControlPlane(gateway: self)
        do {
            try control.start(adminAddress: settings.admin)
        } catch {
            stop(grace: .zero)
            throw error
        }
        started.store(true, ordering: .releasing)
    }

    /// Ready to take traffic: started, not draining, and every pool has an admitted endpoint.
    public func readiness() -> (Bool, String) {
        if !started.load(ordering: .acquiring) { return (false, "starting") }
        if draining.load(ordering: .acquiring) { return (false, "draining") }
        let now = Instant.now()
        for p in currentSettings.pools where !p.endpoints.contains(where: { registry.runtime(for: $0).isAdmitted(at: now) }) {
            return (false, "pool '\(p.name)' has no healthy endpoint")
        }
        return (true, "")
    }

    /// Connections accepted by each worker so far (read on the worker threads).
    public func acceptedPerWorker() -> [Int] {
        let ws = workers.withLock { $0 }
        return ws.enumerated().map { i, w in
            guard let w else { return 0 }
            let box = Mutex<Int>(0)
            let done = Atomic<Bool>(false)
            let worker = w
            group.loops[i].execute {
                box.withLock { $0 = worker.accepted }
                done.store(true, ordering: .releasing)
            }
            while !done.load(ordering: .acquiring) { usleep(200) }
            return box.withLock { $0 }
        }
    }

    /// Graceful stop: stop accepting, wait up to `grace` for in-flight requests, close the
    /// rest, stop the loops and join their threads.
    public func stop(grace: Duration) {
        // Readiness turns false first, so a load balancer stops sending.
        draining.store(true, ordering: .releasing)
        let ws = workers.withLock { $0 }
        for (i, w) in ws.enumerated() {
            guard let w else { drainedCount.add(1, ordering: .relaxed); continue }
            let worker = w
            group.loops[i].execute { worker.beginDrain() }
        }
        let deadline = Instant.now() + grace
        while drainedCount.load(ordering: .acquiring) < ws.count && Instant.now() < deadline { usleep(2000) }
        for (i, w) in ws.enumerated() {
            guard let w else { continue }
            let worker = w
            group.loops[i].execute { worker.closeAll() }
        }
        group.stop()
        group.join()
        workers.withLock { $0 = [] }
        control?.stop()
        control = nil
    }
}
