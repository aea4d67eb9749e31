import Glibc
package import CSluiceLinux

/// Starting OS threads without Foundation.
public enum Threads {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts a joinable thread running `body`.
    package static func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            b.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        // Linux limits thread names to 15 bytes.
        _ = csluice_set_thread_name(tid, String(name.prefix(15)))
        return tid
    }

    package static func join(_ t: pthread_t) {
        _ = pthread_join(t, nil)
    }

    /// CPUs this process may use (respects taskset/cpusets).
    public static var availableCPUs: Int { max(1, Int(csluice_available_cpus())) }

    /// Pins the calling thread to `cpu`; false when not permitted.
    @discardableResult
    public static func pinCurrent(to cpu: Int) -> Bool { csluice_pin_current_thread(Int32(cpu)) == 0 }
}

/// N event loops, each on its own thread: the workers of a gateway, or a test's servers.
public final class WorkerGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private var threads: [pthread_t] = []

    public init(count: Int) throws(SyscallError) {
        var made: [EventLoop] = []
        for i in 0..<max(1, count) { made.append(try EventLoop(index: i)) }
        loops = made
    }

    /// Starts each loop on its own thread, after running `setup` on that thread first
    /// (listeners and per-worker state are created there, so they belong to it).
    public func start(name: String = "sluice-worker", _ setup: @escaping @Sendable (EventLoop) -> Void) {
        for loop in loops {
            let t = Threads.spawn(name: "\(name)-\(loop.index)") {
                setup(loop)
                loop.run()
            }
            threads.append(t)
        }
    }

    public func stop() { for l in loops { l.stop() } }

    public func join() {
        for t in threads { Threads.join(t) }
        threads.removeAll()
    }
}
