import Foundation
import Glibc
import SluiceIO
@testable import SluiceSim
import Synchronization
import Testing

/// A SimServer on its own loop thread, for tests.
final class RunningSim: @unchecked Sendable {
    let loop: EventLoop
    private let thread: pthread_t
    private(set) var server: SimServer!
    let port: UInt16

    init(_ configure: (inout SimOptions) -> Void = { _ in }) throws {
        var o = SimOptions()
        o.port = 0
        o.model = "tiny-llama"
        o.loras = ["a1=/opt/vllm-cpu/models/lora-a1"]
        o.maxLoras = 2
        o.timeScale = 0.2
        configure(&o)
        let options = o
        let loop = try EventLoop()
        self.loop = loop
        let box = Mutex<UInt16>(0)
        nonisolated(unsafe) var made: SimServer?
        thread = Threads.spawn(name: "sim-test") { loop.run() }
        loop.execute {
            let s = try! SimServer.start(options: options, loop: loop)
            made = s
            box.withLock { $0 = s.port }
        }
        while box.withLock({ $0 }) == 0 { usleep(200) }
        port = box.withLock { $0 }
        server = made
    }

    /// Runs `body` on the loop with the server and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (SimServer) -> T) -> T {
        let result = Mutex<T?>(nil)
        nonisolated(unsafe) let s = server!
        loop.execute { let v = body(s); result.withLock { $0 = v } }
        while true {
            if let v = result.withLock({ $0 }) { return v }
            usleep(200)
        }
    }

    func stop() {
        nonisolated(unsafe) let s = server!
        loop.execute { s.close() }
        loop.stop()
        Threads.join(thread)
    }
}

/// A blocking HTTP/1.1 client on a raw socket.
final class RawClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw SimServerError("connect failed") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ method: String, _ path: String, body: String? = nil) {
        var req = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        if let b = body { req += "Content-Type: application/json\r\nContent-Length: \(b.utf8.count)\r\n" }
        req += "\r\n" + (body ?? "")
        let bytes = Array(req.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            precondition(n > 0)
            off += n
        }
    }

    /// Sends a request with its own fields and a byte body (multipart uploads, upgrades).
    func send(_ method: String, _ path: String, headers: [(String, String)], body: [UInt8] = []) {
        var req = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        for (k, v) in headers { req += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { req += "Content-Length: \(body.count)\r\n" }
        sendBytes(Array((req + "\r\n").utf8) + body)
    }

    func sendBytes(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            precondition(n > 0)
            off += n
        }
    }

    /// The next `n` bytes (after a head: WebSocket frames).
    func read(_ n: Int) -> [UInt8]? { readBytes(n) }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    private func readLine() -> String? {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[0..<i], as: UTF8.self)
                buffer.removeFirst(i + 1)
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            if !fill() { return nil }
        }
    }

    private func readBytes(_ n: Int) -> [UInt8]? {
        while buffer.count < n { if !fill() { return nil } }
        let out = Array(buffer[0..<n])
        buffer.removeFirst(n)
        return out
    }

    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var chunks: [String] = []
    }

    /// Reads the status line and headers.
    func readHead() -> (Int, [String: String])? {
        guard let status = readLine() else { return nil }
        let parts = status.split(separator: " ")
        var headers: [String: String] = [:]
        while let l = readLine(), !l.isEmpty {
            let c = l.firstIndex(of: ":")!
            headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)
        }
        return (Int(parts[1])!, headers)
    }

    /// Reads the next chunk of a chunked body (nil at the end).
    func readChunk() -> [UInt8]? {
        guard let sizeLine = readLine(), let size = Int(sizeLine, radix: 16) else { return nil }
        if size == 0 { _ = readLine(); return nil }
        let data = readBytes(size)
        _ = readLine()
        return data
    }

    func readResponse() -> Response? {
        guard let (status, headers) = readHead() else { return nil }
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var body: [UInt8] = []
            var chunks: [String] = []
            while let c = readChunk() {
                body += c
                chunks.append(String(decoding: c, as: UTF8.self))
            }
            return Response(status: status, headers: headers, body: body, chunks: chunks)
        }
        let n = Int(headers["content-length"] ?? "0")!
        return Response(status: status, headers: headers, body: readBytes(n) ?? [])
    }

    func request(_ method: String, _ path: String, body: String? = nil) -> Response {
        send(method, path, body: body)
        return readResponse()!
    }
}

/// ../shared/vllm-reference/, found from the repository root (CI keeps ../shared beside the
/// repository); the scratch-package and symlinked layouts are resolved too.
enum Reference {
    static let directory: URL = {
        var candidates: [URL] = []
        for file in [URL(fileURLWithPath: #filePath), URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()] {
            let repoRoot = file.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            candidates.append(repoRoot.deletingLastPathComponent().appendingPathComponent("shared/vllm-reference"))
        }
        candidates.append(URL(fileURLWithPath: "/work/shared/vllm-reference"))
        for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("models.json").path) {
            return c
        }
        fatalError("vllm-reference not found; looked in \(candidates.map(\.path))")
    }()

    static func text(_ name: String) -> String {
        try! String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
    }

    /// The body of a captured HTTP exchange (after the blank line).
    static func body(_ name: String) -> String {
        let t = text(name)
        if let r = t.range(of: "\r\n\r\n") { return String(t[r.upperBound...]) }
        return t
    }

    /// Sections of lora-load-unload-and-errors.txt keyed by their `### title`.
    static func loraSections() -> [(title: String, status: Int?, body: String)] {
        var out: [(String, Int?, String)] = []
        let parts = text("lora-load-unload-and-errors.txt").components(separatedBy: "### ").dropFirst()
        for p in parts {
            let nl = p.firstIndex(of: "\n")!
            let title = String(p[..<nl])
            let rest = String(p[p.index(after: nl)...])
            if rest.hasPrefix("HTTP/1.1 ") {
                let status = Int(rest.dropFirst(9).prefix(3))!
                let body = rest.range(of: "\r\n\r\n").map { String(rest[$0.upperBound...]) } ?? ""
                out.append((title, status, body.trimmingCharacters(in: .newlines)))
            } else {
                out.append((title, nil, rest.trimmingCharacters(in: .newlines)))
            }
        }
        return out
    }

    static func section(_ prefix: String) -> (status: Int?, body: String) {
        let s = loraSections().first { $0.title.hasPrefix(prefix) }!
        return (s.status, s.body)
    }
}

/// The shape of a JSON value: object keys (in order), element shapes, scalar kinds.
indirect enum Shape: Equatable, CustomStringConvertible {
    case object([(String, Shape)])
    case array([Shape])
    case string, number, bool, null

    static func == (a: Shape, b: Shape) -> Bool { a.description == b.description }

    init(_ v: Any) {
        switch v {
        case is NSNull: self = .null
        case let n as NSNumber: self = String(cString: n.objCType) == "c" ? .bool : .number
        case is String: self = .string
        case let a as [Any]: self = .array(a.map(Shape.init))
        case let d as [String: Any]: self = .object(d.keys.sorted().map { ($0, Shape(d[$0]!)) })
        default: fatalError()
        }
    }

    init(json: String) {
        self.init(try! JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed]))
    }

    /// Arrays are described by their first element (lists of like things).
    var description: String {
        switch self {
        case .object(let m): return "{" + m.map { "\($0.0):\($0.1)" }.joined(separator: ",") + "}"
        case .array(let a): return "[" + (a.first.map { $0.description } ?? "") + "]"
        case .string: return "s"
        case .number: return "n"
        case .bool: return "b"
        case .null: return "null"
        }
    }
}

/// Key order of a JSON object's text (JSONSerialization loses it).
func topLevelKeyOrder(_ json: String) -> [String] {
    var keys: [String] = []
    var depth = 0
    var inString = false
    var escape = false
    var current = ""
    var lastString = ""
    for c in json {
        if inString {
            if escape { escape = false; current.append(c); continue }
            if c == "\\" { escape = true; continue }
            if c == "\"" { inString = false; lastString = current; continue }
            current.append(c)
            continue
        }
        switch c {
        case "\"": inString = true; current = ""
        case "{", "[": depth += 1
        case "}", "]": depth -= 1
        case ":": if depth == 1 { keys.append(lastString) }
        default: break
        }
    }
    return keys
}

/// SSE events of a stream body: the payload after `data: ` of each event.
func sseEvents(_ body: String) -> [String] {
    body.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { e in
        #expect(e.hasPrefix("data: "), "event \(e) does not start with data: ")
        #expect(!e.dropFirst(6).contains("\n"))
        return String(e.dropFirst(6))
    }
}

/// Prometheus text: family → (type, label-name sets of its samples).
func metricFamilies(_ text: String) -> [String: (type: String, labels: Set<[String]>)] {
    var out: [String: (String, Set<[String]>)] = [:]
    var typeOf: [String: String] = [:]
    for line in text.split(separator: "\n") {
        if line.hasPrefix("# TYPE ") {
            let p = line.split(separator: " ")
            typeOf[String(p[2])] = String(p[3])
            out[String(p[2])] = (String(p[3]), [])
            continue
        }
        if line.hasPrefix("#") { continue }
        let nameEnd = line.firstIndex { $0 == "{" || $0 == " " }!
        let name = String(line[..<nameEnd])
        var labels: [String] = []
        if line[nameEnd] == "{" {
            let close = line.lastIndex(of: "}")!
            let inner = line[line.index(after: nameEnd)..<close]
            // label="value" pairs; values here contain no escaped quotes.
            var rest = Substring(inner)
            while let eq = rest.firstIndex(of: "=") {
                labels.append(String(rest[..<eq]).trimmingCharacters(in: CharacterSet(charactersIn: ",")))
                let q1 = rest.index(after: eq)
                let q2 = rest[rest.index(after: q1)...].firstIndex(of: "\"")!
                rest = rest[rest.index(after: q2)...]
            }
        }
        // A sample belongs to the family whose TYPE line names it, or to the histogram it is a part of.
        var family = name
        if typeOf[family] == nil {
            for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) {
                family = String(name.dropLast(suffix.count))
            }
        }
        if out[family] != nil { out[family]!.1.insert(labels.filter { $0 != "le" }.sorted()) }
    }
    return out.mapValues { (type: $0.0, labels: $0.1) }
}

/// The value of the sample `name{labels}` (labels given as a sorted `k="v",...` string).
func metricValue(_ text: String, _ name: String, _ labels: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
        guard let sp = line.lastIndex(of: " ") else { continue }
        let head = line[..<sp]
        if labels.isEmpty ? head == name : head == "\(name){\(labels)}" { return Double(line[line.index(after: sp)...]) }
    }
    return nil
}

/// An exchange of a capture in Tests/vllm-captures/ (recorded from a real vLLM 0.32 CPU server
/// by Tests/vllm-captures/capture.py), found by its `### title` line: status and body.
enum Capture {
    static let directory: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("vllm-captures")

    static func exchange(_ file: String, _ title: String) -> (status: Int, body: String) {
        let text = try! String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
        let start = text.range(of: "### \(title)\n")!.upperBound
        let afterRequest = text[start...].firstIndex(of: "\n").map { text.index(after: $0) }!
        let rest = text[afterRequest...]
        let status = Int(rest.split(separator: " ")[1])!
        let headEnd = rest.range(of: "\r\n\r\n")!.upperBound
        var body = String(rest[headEnd...])
        if let next = body.range(of: "\n### ") { body = String(body[..<next.lowerBound]) } else if body.hasSuffix("\n") { body.removeLast() }
        return (status, body)
    }

    static func body(_ file: String, _ title: String) -> String { exchange(file, title).body }
}

/// Named SSE events (`event: X` + `data: …`): (name, data) pairs.
func namedEvents(_ body: String) -> [(name: String, data: String)] {
    body.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { e in
        let lines = e.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[0].hasPrefix("event: ") && lines[1].hasPrefix("data: "), "event \(e)")
        return (String(lines[0].dropFirst(7)), String(lines.last!.dropFirst(6)))
    }
}
