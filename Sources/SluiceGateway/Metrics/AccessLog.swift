public import SluiceSettings
import Glibc
import SluiceIO
import Synchronization

/// The access log: one JSON line per request, written by its own thread so that a slow disk
/// never blocks a worker. Workers append finished lines to a shared queue (a short lock per
/// batch, taken at the end of a loop iteration); the writer thread drains it every 100 ms.
/// No prompt text, no API keys, no query strings: only what the line format lists.
public final class AccessLog: @unchecked Sendable {
    private let queue = Mutex<[UInt8]>([])
    private let fd: Int32
    private let stop = Atomic<Bool>(false)
    private var thread: pthread_t?
    /// Bytes dropped because the writer fell more than 8 MiB behind.
    let dropped = Atomic<Int>(0)

    public init?(_ target: AccessLogTarget) {
        switch target {
        case .off: return nil
        case .stdout: fd = 1
        case .file(let path):
            let f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if f < 0 { return nil }
            fd = f
        }
        thread = Threads.spawn(name: "sluice-accesslog") { [self] in run() }
    }

    func enqueue(_ lines: [UInt8]) {
        queue.withLock { q in
            if q.count + lines.count > 8 << 20 {
                dropped.add(lines.count, ordering: .relaxed)
                return
            }
            q += lines
        }
    }

    private func run() {
        while true {
            let stopping = stop.load(ordering: .acquiring)
            let batch = queue.withLock { q -> [UInt8] in
                let b = q
                q.removeAll(keepingCapacity: true)
                return b
            }
            var off = 0
            while off < batch.count {
                let n = batch[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                off += n
            }
            if stopping { return }
            usleep(100_000)
        }
    }

    public func close() {
        stop.store(true, ordering: .releasing)
        if let t = thread { Threads.join(t) }
        thread = nil
        if fd > 2 { Glibc.close(fd) }
    }
}

/// Builds one access log line (JSON, fixed field order) into a byte array.
struct AccessLogLine {
    private(set) var bytes: [UInt8] = []
    private var first = true

    init(unixNanos: Int) {
        bytes.reserveCapacity(320)
        bytes.append(123)
        field("time", Self.rfc3339(unixNanos))
    }

    private mutating func key(_ k: StaticString) {
        if !first { bytes.append(44) }
        first = false
        bytes.append(34)
        bytes += UnsafeBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount)
        bytes += [34, 58]
    }

    mutating func field(_ k: StaticString, _ v: String?) {
        key(k)
        if let v { JSON.appendString(v, to: &bytes) } else { bytes += "null".utf8 }
    }

    mutating func field(_ k: StaticString, _ v: Int?) {
        key(k)
        bytes += (v.map { String($0) } ?? "null").utf8
    }

    mutating func field(_ k: StaticString, _ v: Double?) {
        key(k)
        bytes += (v.map { String(($0 * 1000).rounded() / 1000) } ?? "null").utf8
    }

    mutating func finish() -> [UInt8] {
        bytes += [125, 10]
        return bytes
    }

    /// `2026-11-22T23:45:01.123Z`
    static func rfc3339(_ unixNanos: Int) -> String {
        var t = time_t(unixNanos / 1_000_000_000)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        let ms = (unixNanos / 1_000_000) % 1000
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ms), 3))Z"
    }
}
