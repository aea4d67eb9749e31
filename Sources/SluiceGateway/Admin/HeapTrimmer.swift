import SluiceIO

/// Gives heap memory back to the system after a spike. glibc keeps what is freed for reuse, so
/// a gateway that once held 10,000 streams stays at that size (tens of MB) after they end,
/// which is what a container's memory metrics, limits and eviction see. Every `interval` the
/// control loop reads how much of the heap is free; when that grew by `limits.heap_trim_bytes`
/// or more over the lowest it has been since the last trim (memory freed and not reused since),
/// it trims: the free pages go back, and the next spike faults fresh ones in.
///
/// On the control loop, not a worker: reading the heap's free bytes and trimming lock each
/// arena while they walk it (microseconds to milliseconds), every few seconds at most.
/// Large I/O buffers are not the heap's: the buffer pools map and unmap those themselves.
final class HeapTrimmer {
    unowned let gateway: Gateway
    unowned let loop: EventLoop
    let interval: Duration = .seconds(5)
    /// The lowest free-heap bytes seen since the last trim (or the start: a spike that comes and
    /// goes before the first look is measured from there).
    private var low = 0
    private var timer: Timer?
    /// Trims so far (`sluice_heap_trims`, read on this loop).
    private(set) var trims = 0

    init(gateway: Gateway, loop: EventLoop) {
        self.gateway = gateway
        self.loop = loop
    }

    func start() {
        low = Heap.freeBytes
        let t = Timer { [unowned self] in self.tick() }
        timer = t
        loop.schedule(t, after: interval)
    }

    func stop() {
        if let t = timer { loop.cancel(t) }
        timer = nil
    }

    private func tick() {
        let threshold = gateway.currentSettings.limits.heapTrimBytes
        if threshold > 0 {
            let free = Heap.freeBytes
            low = min(low, free)
            if free - low >= threshold {
                Heap.trim()
                trims += 1
                // Trimming returns pages, and shrinks the free bytes only by what was at the
                // top of the main heap: the new baseline is what is free now.
                low = Heap.freeBytes
            }
        }
        if let t = timer { loop.schedule(t, after: interval) }
    }
}
