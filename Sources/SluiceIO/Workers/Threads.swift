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

    /// CPUs this process may use: the affinity mask (taskset, cpusets), further limited by a
    /// cgroup v2 CPU quota (`cpu.max`, what a Kubernetes CPU limit sets), rounded up.
    public static var availableCPUs: Int {
        let affinity = max(1, Int(csluice_available_cpus()))
        guard let quota = cgroupCPUQuota(readFile("/sys/fs/cgroup/cpu.max")) else { return affinity }
        return max(1, min(affinity, quota))
    }

    /// CPUs allowed by a cgroup v2 `cpu.max` line (`"200000 100000"` → 2, `"150000 100000"` → 2,
    /// `"max 100000"` → nil).
    public static func cgroupCPUQuota(_ line: String?) -> Int? {
        guard let parts = line?.split(whereSeparator: { $0 == " " || $0 == "\n" }), parts.count >= 2,
              let quota = Int(parts[0]), let period = Int(parts[1]), period > 0, quota > 0 else { return nil }
        return (quota + period - 1) / period
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

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
