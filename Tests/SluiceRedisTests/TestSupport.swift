import Foundation
import Glibc
import Synchronization
@testable import SluiceIO
@testable import SluiceRedis

/// An event loop running on its own thread for a test.
final class LoopThread: Sendable {
    let loop: EventLoop
    private let thread: Mutex<pthread_t?>

    init() throws {
        let loop = try EventLoop()
        self.loop = loop
        thread = Mutex(Threads.spawn(name: "redis-test") { loop.run() })
    }

    func stop() {
        loop.stop()
        if let t = thread.withLock({ t -> pthread_t? in let x = t; t = nil; return x }) { Threads.join(t) }
    }

    /// Runs `body` on the loop and waits (up to `timeout`) until it calls `done`.
    func run<T: Sendable>(timeout: Double = 5, _ body: @escaping @Sendable (_ done: @escaping @Sendable (T) -> Void) -> Void) -> T? {
        let box = Mutex<T?>(nil)
        let finished = Atomic<Bool>(false)
        loop.execute {
            body { value in
                box.withLock { $0 = value }
                finished.store(true, ordering: .releasing)
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while !finished.load(ordering: .acquiring) {
            if Date() > deadline { return nil }
            usleep(500)
        }
        return box.withLock { $0 }
    }

    /// Runs `body` on the loop and returns its value.
    func sync<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T? {
        run { done in done(body()) }
    }
}

/// Waits until `condition` holds, polling; false on timeout.
func eventually(timeout: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline { return false }
        usleep(2000)
    }
    return true
}

/// A redis-server process owned by one test: started on a free loopback port, stopped by PID.
final class RedisServer: @unchecked Sendable {
    let port: UInt16
    let extraArguments: [String]
    private var process: Process?

    init(_ extraArguments: [String] = []) throws {
        port = try Self.freePort()
        self.extraArguments = extraArguments
        try start()
    }

    deinit { stop() }

    var pid: Int32? { process?.processIdentifier }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        p.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--enable-debug-command", "yes", "--loglevel", "warning"] + extraArguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        guard eventually(timeout: 10, { Self.accepts(port: port) }) else {
            stop()
            throw TestError("redis-server did not start on port \(port)")
        }
    }

    /// Kills the server (SIGKILL: no goodbye on the sockets, like a crash) and reaps it.
    func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func url(password: String? = nil, user: String? = nil, db: Int = 0) -> RedisURL {
        RedisURL(host: "127.0.0.1", port: port, database: db, username: user, password: password)
    }

    func configuration(password: String? = nil, user: String? = nil, db: Int = 0,
                       timeout: Duration = .seconds(2), connections: Int = 1) -> RedisConfiguration
    {
        var c = RedisConfiguration(url: url(password: password, user: user, db: db),
                                   address: .v4(host: UInt32(0x7F00_0001).bigEndian, port: port))
        c.commandTimeout = timeout
        c.reconnectBaseDelay = .milliseconds(20)
        c.reconnectMaxDelay = .milliseconds(200)
        c.connectionsPerLoop = connections
        return c
    }

    static func accepts(port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0
    }

    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        sin.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sin) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw TestError("no free port") }
        return UInt16(bigEndian: sin.sin_port)
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// UTF-8 bytes of `s`.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Holds a client used from the loop (tests hand it across threads; it is only touched on the loop).
extension RedisClient {
    /// Sends `args` and waits for the reply (test thread).
    func call(_ lt: LoopThread, _ args: String..., timeout: Double = 5) -> Result<RedisValue, RedisError>? {
        let cmd = RedisCommand(args.map { Array($0.utf8) })
        return lt.run(timeout: timeout) { done in self.send(cmd) { done($0) } }
    }
}
