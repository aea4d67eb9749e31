import Foundation
import Glibc
import SluiceIO
@testable import SluiceTracing
import Synchronization

let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The Python with `opentelemetry-proto` that .ci/setup installs (`SLUICE_PYTHON`, else the
/// project's `.venv`). Without it the decoding tests are disabled; CI always has it.
enum Python {
    static var path: String? {
        if let p = ProcessInfo.processInfo.environment["SLUICE_PYTHON"], FileManager.default.isExecutableFile(atPath: p) { return p }
        let venv = repo.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : nil
    }
    static var available: Bool { path != nil }
    static let receiver = repo.appendingPathComponent("Tests/integration/otlp_receiver.py").path

    /// Runs the receiver script with `args`; returns stdout (throws on a non-zero exit).
    static func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path!)
        p.arguments = [receiver] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            throw DecodeFailure(message: String(decoding: errData, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes an ExportTraceServiceRequest with opentelemetry-proto; one dict per span.
    static func decode(_ body: [UInt8]) throws -> [[String: Any]] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID().uuidString).bin")
        try Data(body).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try run(["--decode", file.path]).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }
}

struct DecodeFailure: Error, CustomStringConvertible { var message: String; var description: String { message } }

/// The receiver script as a subprocess: an OTLP/HTTP collector on a free loopback port that
/// writes each decoded span as a JSON line.
final class ReceiverProcess {
    let process = Process()
    let port: UInt16
    let out: URL

    init(status: Int = 200) throws {
        let dir = FileManager.default.temporaryDirectory
        let id = UUID().uuidString
        let portFile = dir.appendingPathComponent("otlp-port-\(id)")
        out = dir.appendingPathComponent("otlp-spans-\(id).jsonl")
        process.executableURL = URL(fileURLWithPath: Python.path!)
        process.arguments = [Python.receiver, "--port-file", portFile.path, "--out", out.path, "--status", String(status)]
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let p = UInt16(text) {
                port = p
                try? FileManager.default.removeItem(at: portFile)
                return
            }
            if !process.isRunning { break }
            usleep(20_000)
        }
        process.terminate()
        throw DecodeFailure(message: "the OTLP receiver did not start (is opentelemetry-proto installed? bash .ci/setup)")
    }

    var spans: [[String: Any]] {
        guard let text = try? String(contentsOf: out, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func waitSpans(_ n: Int, seconds: Double = 10) -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(seconds)
        var s = spans
        while s.count < n && Date() < deadline {
            usleep(20_000)
            s = spans
        }
        return s
    }

    func stop() {
        process.terminate()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: out)
    }
}

/// An event loop on its own thread, standing in for a worker.
final class TestLoop: @unchecked Sendable {
    let loop: EventLoop
    let thread: pthread_t

    init() throws {
        let l = try EventLoop(index: 0)
        loop = l
        thread = Threads.spawn(name: "test-worker") { l.run() }
    }

    /// Runs `body` on the loop and waits for it.
    func sync<T>(_ body: @escaping () -> T) -> T {
        let box = ResultBox<T>()
        let unchecked = UncheckedSendable(body)
        loop.execute {
            box.value = unchecked.value()
            box.done.store(true, ordering: .releasing)
        }
        while !box.done.load(ordering: .acquiring) { usleep(500) }
        return box.value!
    }

    func stop() {
        loop.stop()
        Threads.join(thread)
    }
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
    let done = Atomic<Bool>(false)
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

func collector(port: UInt16, configure: (inout TracingConfiguration) -> Void = { _ in }) -> TracingConfiguration {
    var c = TracingConfiguration(address: SocketAddress("127.0.0.1:\(port)")!, authority: "127.0.0.1:\(port)")
    c.sampleRatio = 1
    c.exportInterval = .milliseconds(50)
    configure(&c)
    return c
}

func eventually(_ seconds: Double = 5, _ cond: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if cond() { return true }
        usleep(10_000)
    }
    return cond()
}
