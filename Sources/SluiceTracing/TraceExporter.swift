import SluiceIO
import SluiceHTTP
import Glibc
public import Synchronization

/// Exports spans to an OpenTelemetry collector (OTLP/HTTP, protobuf) from its own thread.
///
/// Workers never wait for it: each worker's ``SpanRecorder`` encodes spans as they are recorded
/// and hands them over once per loop iteration under a short lock (``enqueue(_:spans:)``). The
/// queue is bounded (`maxQueueSize` spans across all workers); what does not fit is dropped and
/// counted. The thread posts a batch when `maxBatchSize` spans wait or every `exportInterval`,
/// one request at a time with a timeout and no retry: a failed export drops its spans and
/// counts them (a collector that is down costs a connect attempt per interval, nothing more).
///
/// Off (no `tracing` section) no thread runs; a reload can switch it on, off or elsewhere.
public final class TraceExporter: @unchecked Sendable {
    /// Counters for `/metrics` (relaxed atomics: read by scrapes, written here and by workers).
    public let exportedSpans = Atomic<Int>(0)
    public let droppedQueueFull = Atomic<Int>(0)
    public let droppedExportFailed = Atomic<Int>(0)
    public let failedExports = Atomic<Int>(0)
    public let exports = Atomic<Int>(0)

    /// Bumped by every configuration change; recorders compare it to re-read the settings.
    let generation = Atomic<Int>(0)
    let configuration = Mutex<TracingConfiguration?>(nil)

    private struct Queue {
        /// Workers' encoded spans, owned here (deallocated once exported or dropped).
        var chunks: [SpanChunk] = []
        var spans = 0
        var limit = 0
        var batch = 0
        /// A wake-up is already queued on the exporter's loop.
        var wakePending = false
        /// A post is in flight: its completion takes the next batch, so workers need not wake
        /// the exporter meanwhile (a wake per worker loop iteration while the queue stays above
        /// a batch cost a context switch each).
        var posting = false
    }
    private let queue = Mutex(Queue())

    /// The exporter thread's loop and thread (nil while off); `loop` is read by workers' hand-offs.
    private let running = Mutex<(loop: EventLoop, thread: pthread_t)?>(nil)

    // Exporter-thread state (touched only on its loop).
    private var client: HTTPClient?
    private var clientTarget: (SocketAddress, String)?
    private var timer: Timer?
    private var inFlight = false
    private var resource: [UInt8] = []
    private var scope: [UInt8] = []
    /// The export request being built or sent, kept for the next one (the client lets go of
    /// it once written, so it is reused without a copy).
    private var requestBuffer: [UInt8] = []
    private var current: TracingConfiguration?
    private var flushWaiters: [@Sendable () -> Void] = []

    public let version: String
    let hostName: String

    public init(version: String = "0") {
        self.version = version
        var buf = [CChar](repeating: 0, count: 256)
        hostName = gethostname(&buf, buf.count) == 0 ? String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    deinit {
        queue.withLock { q in for chunk in q.chunks { chunk.bytes.deallocate() } }
    }

    public var isOn: Bool { configuration.withLock { $0 != nil } }

    /// Spans waiting now (tests, the dashboard).
    public var queuedSpans: Int { queue.withLock { $0.spans } }

    /// Applies a `tracing` section (nil: off). Starts or stops the thread as needed. From any
    /// thread but a worker's (it may join the exporter thread).
    public func configure(_ c: TracingConfiguration?) {
        let changed = configuration.withLock { old -> Bool in
            if old == c { return false }
            old = c
            return true
        }
        guard changed else { return }
        generation.add(1, ordering: .releasing)
        queue.withLock { q in
            q.limit = c?.maxQueueSize ?? 0
            q.batch = c?.maxBatchSize ?? 0
            if c == nil {
                for chunk in q.chunks { chunk.bytes.deallocate() }
                q.chunks.removeAll()
                q.spans = 0
            }
        }
        guard let c else {
            stopThread()
            return
        }
        let loop: EventLoop
        if let r = running.withLock({ $0 }) {
            loop = r.loop
        } else {
            do {
                loop = try EventLoop(index: -2)
            } catch {
                return  // no descriptors left: tracing stays quiet rather than fail the reload
            }
            let thread = Threads.spawn(name: "sluice-tracing") { loop.run() }
            running.withLock { $0 = (loop, thread) }
        }
        loop.execute { [self] in apply(c, loop: loop) }
    }

    /// On the exporter loop.
    private func apply(_ c: TracingConfiguration, loop: EventLoop) {
        current = c
        resource = OTLPEncoder.resource([("service.name", c.serviceName), ("service.version", version),
                                         ("host.name", hostName), ("telemetry.sdk.name", "sluice"), ("telemetry.sdk.language", "swift")])
        scope = OTLPEncoder.scope(version: version)
        if clientTarget.map({ $0.0 != c.address || $0.1 != c.authority }) ?? true {
            client?.close()
            let cl = HTTPClient(address: c.address, host: c.authority, loop: loop)
            cl.maxResponseBytes = 1 << 20
            client = cl
            clientTarget = (c.address, c.authority)
        }
        if let t = timer { loop.cancel(t) }
        let t = Timer { [weak self] in self?.tick(loop) }
        timer = t
        loop.schedule(t, after: c.exportInterval)
    }

    private func tick(_ loop: EventLoop) {
        guard let c = current, let t = timer else { return }
        export(loop)
        loop.schedule(t, after: c.exportInterval)
    }

    /// A worker's spans, handed over: the exporter deallocates `bytes` once they are exported
    /// or dropped.
    func enqueue(owned bytes: UnsafeMutableRawBufferPointer, spans: Int) {
        let chunk = SpanChunk(bytes: bytes, spans: spans)
        let wake = queue.withLock { q -> Bool in
            guard q.limit > 0, q.spans + spans <= q.limit else {
                // Full: dropped and counted (switched off meanwhile: nothing to count).
                if q.limit > 0 { droppedQueueFull.add(spans, ordering: .relaxed) }
                chunk.bytes.deallocate()
                return false
            }
            q.chunks.append(chunk)
            q.spans += spans
            if q.spans >= q.batch && !q.wakePending && !q.posting {
                q.wakePending = true
                return true
            }
            return false
        }
        if wake, let loop = running.withLock({ $0?.loop }) {
            loop.execute { [self] in
                queue.withLock { $0.wakePending = false }
                export(loop)
            }
        }
    }

    /// Posts up to one batch, unless a post is in flight (its completion posts the next).
    private func export(_ loop: EventLoop) {
        guard !inFlight, let c = current, let client else { return }
        let (chunks, count) = queue.withLock { q -> ([SpanChunk], Int) in
            var n = 0
            var k = 0
            while k < q.chunks.count, n == 0 || n + q.chunks[k].spans <= q.batch {
                n += q.chunks[k].spans
                k += 1
            }
            let taken = Array(q.chunks[..<k])
            q.chunks.removeFirst(k)
            q.spans -= n
            q.posting = n > 0
            return (taken, n)
        }
        guard count > 0 else {
            finishFlush()
            return
        }
        let spans = chunks.map { UnsafeRawBufferPointer($0.bytes) }
        requestBuffer.removeAll(keepingCapacity: true)
        client.writeHead(method: "POST", path: c.tracesPath, headers: [("Content-Type", "application/x-protobuf")],
                         contentLength: OTLPEncoder.requestLength(resource: resource, scope: scope, spans: spans), into: &requestBuffer)
        OTLPEncoder.appendRequest(resource: resource, scope: scope, spans: spans, to: &requestBuffer)
        for chunk in chunks { chunk.bytes.deallocate() }
        inFlight = true
        exports.add(1, ordering: .relaxed)
        client.send(request: requestBuffer, method: "POST", timeout: c.exportTimeout) { [self] result in
            inFlight = false
            queue.withLock { $0.posting = false }
            switch result {
            case .success(let r) where (200..<300).contains(r.status):
                exportedSpans.add(count, ordering: .relaxed)
            default:
                failedExports.add(1, ordering: .relaxed)
                droppedExportFailed.add(count, ordering: .relaxed)
            }
            let more = queue.withLock { $0.spans >= max(1, $0.batch) } || !flushWaiters.isEmpty
            if more { export(loop) }
        }
    }

    private func finishFlush() {
        let waiters = flushWaiters
        flushWaiters.removeAll()
        for w in waiters { w() }
    }

    /// Exports everything queued now and returns when done or after `timeout` (a graceful stop,
    /// tests). Spans still in workers' hands (this loop iteration's) are not included.
    public func flush(timeout: Duration = .seconds(5)) {
        guard let loop = running.withLock({ $0?.loop }) else { return }
        let done = Atomic<Bool>(false)
        loop.execute { [self] in
            flushWaiters.append { done.store(true, ordering: .releasing) }
            export(loop)
            if !inFlight { finishFlush() }
        }
        let deadline = Instant.now() + timeout
        while !done.load(ordering: .acquiring) && Instant.now() < deadline { usleep(1000) }
    }

    private func stopThread() {
        guard let r = running.withLock({ v -> (loop: EventLoop, thread: pthread_t)? in let r = v; v = nil; return r }) else { return }
        r.loop.execute { [self] in
            if let t = timer { r.loop.cancel(t) }
            timer = nil
            client?.close()
            client = nil
            clientTarget = nil
            current = nil
            finishFlush()
        }
        r.loop.stop()
        Threads.join(r.thread)
    }

    /// Flushes what is queued (bounded by the export timeout) and stops the thread.
    public func stop() {
        let timeout = configuration.withLock { $0?.exportTimeout } ?? .zero
        if timeout > .zero { flush(timeout: timeout) }
        configure(nil)
    }
}

/// A worker's encoded spans on their way to the exporter, which owns (and deallocates) them.
struct SpanChunk: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer
    let spans: Int
}
