import Glibc
import CSluiceLinux
import Synchronization

/// Something that owns a file descriptor registered with an ``EventLoop``.
public protocol EventHandler: AnyObject {
    /// Called on the loop's thread with the epoll event bits (``EventLoop/Events``).
    func handleEvent(_ events: UInt32)
}

/// A file descriptor's registration. The generation makes stale events harmless: an event
/// queued for a descriptor that was closed (and perhaps reused by a new connection) within the
/// same `epoll_wait` batch carries the old generation and is dropped.
public struct Registration: Equatable, Sendable {
    public let fd: Int32
    @usableFromInline let slot: UInt32
    @usableFromInline let generation: UInt32

    @inlinable var token: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

/// One epoll event loop, run by one thread. Sluice runs one per worker (each with its own
/// listener, upstream pools and buffer pool) plus one for control work (telemetry, reloads,
/// signals, admin).
///
/// Thread confinement: everything except ``execute(_:)``, ``stop()`` and ``isInLoop`` must be
/// called on the loop's thread. Handlers run on it, so they need no locks for their own state.
///
/// Descriptors are registered edge-triggered for input and output once (nginx's model): no
/// `epoll_ctl` per state change. Handlers read until `wouldBlock` or a short read, and write
/// until the queue drains or the socket is full, remembering readiness themselves.
public final class EventLoop: @unchecked Sendable {
    public enum Events {
        public static let readable = CSLUICE_EPOLLIN
        public static let writable = CSLUICE_EPOLLOUT
        public static let error = CSLUICE_EPOLLERR
        public static let hangup = CSLUICE_EPOLLHUP
        public static let readHangup = CSLUICE_EPOLLRDHUP
        public static let edgeTriggered = CSLUICE_EPOLLET
        /// What connections register for.
        public static let connection = readable | writable | readHangup | edgeTriggered
    }

    @usableFromInline
    struct Slot {
        var generation: UInt32 = 0
        var handler: (any EventHandler)?
    }

    private let epfd: Int32
    private let wakeFD: Int32
    @usableFromInline var slots: ContiguousArray<Slot> = []
    private var freeSlots: [UInt32] = []
    private var timers = TimerHeap()
    private var deferred: [() -> Void] = []
    private var running = false
    private let stopRequested = Atomic<Bool>(false)
    private let wakePending = Atomic<Bool>(false)
    private let tasks = Mutex<[@Sendable () -> Void]>([])
    private var thread: pthread_t?

    /// The time at the start of the current loop iteration.
    public private(set) var now = Instant.now()
    /// Index of this loop among its group (worker number), for metric shards and logs.
    public let index: Int
    /// The worker's buffer pool.
    public let bufferPool = BufferPool()
    /// How often the pool gives back spare blocks that went unused (see ``BufferPool/trim()``);
    /// armed only while it holds any, so an idle loop is not woken for it.
    public var poolTrimInterval: Duration = .seconds(1)
    private lazy var poolTrim = Timer { [unowned self] in self.bufferPool.trim() }
    /// Iterations run so far (tests and lag metrics).
    public private(set) var iterations: UInt64 = 0
    /// The longest time one iteration spent handling events and timers (event-loop lag).
    public var maxBusy: Duration { .nanoseconds(Int64(truncatingIfNeeded: maxBusyNanos)) }
    /// Kept in integer nanoseconds: compared every iteration, and the standard library's
    /// Duration comparison is a call.
    private var maxBusyNanos: UInt64 = 0

    public init(index: Int = 0) throws(SyscallError) {
        self.index = index
        epfd = try Sys.epollCreate()
        wakeFD = try Sys.eventfd()
        slots.reserveCapacity(1024)
        // Slot 0 is the wake-up eventfd; its handler is the loop itself (handled inline).
        slots.append(Slot(generation: 0, handler: nil))
        try Sys.epollControl(epfd, EPOLL_CTL_ADD, wakeFD, Events.readable, 0)
    }

    deinit {
        Sys.close(wakeFD)
        Sys.close(epfd)
    }

    /// True on the thread that is running this loop.
    public var isInLoop: Bool {
        guard let t = thread else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    // MARK: registration

    /// Registers `fd` for `events`, dispatching to `handler`. The loop keeps the handler alive
    /// until ``deregister(_:)``.
    public func register(_ fd: Int32, events: UInt32 = Events.connection, handler: any EventHandler) throws(SyscallError) -> Registration {
        let slot: UInt32
        if let s = freeSlots.popLast() {
            slot = s
        } else {
            slot = UInt32(slots.count)
            slots.append(Slot())
        }
        slots[Int(slot)].handler = handler
        let reg = Registration(fd: fd, slot: slot, generation: slots[Int(slot)].generation)
        do {
            try Sys.epollControl(epfd, EPOLL_CTL_ADD, fd, events, reg.token)
        } catch {
            release(slot)
            throw error
        }
        return reg
    }

    /// Changes the interest set of a registration (e.g. a listener pausing accepts).
    public func modify(_ reg: Registration, events: UInt32) throws(SyscallError) {
        try Sys.epollControl(epfd, EPOLL_CTL_MOD, reg.fd, events, reg.token)
    }

    /// Stops delivering events for `reg` and drops the loop's reference to its handler. Call it
    /// before closing the descriptor.
    public func deregister(_ reg: Registration) {
        precondition(slots[Int(reg.slot)].generation == reg.generation, "double deregister")
        // ENOENT/EBADF would mean the fd was already closed: a bug, trapped in Sys.
        _ = try? Sys.epollControl(epfd, EPOLL_CTL_DEL, reg.fd, 0, 0)
        release(reg.slot)
    }

    private func release(_ slot: UInt32) {
        slots[Int(slot)].handler = nil
        slots[Int(slot)].generation &+= 1
        freeSlots.append(slot)
    }

    /// Registered descriptors (excluding the loop's own).
    public var registrationCount: Int { slots.count - 1 - freeSlots.count }

    // MARK: timers

    /// Arms `timer` to fire at `deadline` (moving it if armed).
    public func schedule(_ timer: Timer, at deadline: Instant) {
        timer.active = true
        if timer.isQueued {
            // Later than it is queued for: only the timer's deadline moves (see Timer).
            if deadline.nanoseconds >= timers.key(of: timer) {
                timer.deadline = deadline
                return
            }
            timers.remove(timer)
        }
        timer.deadline = deadline
        timers.insert(timer)
    }

    /// Arms `timer` to fire `delay` from the start of this iteration.
    public func schedule(_ timer: Timer, after delay: Duration) {
        schedule(timer, at: now + delay)
    }

    /// Stops `timer` and removes its heap entry: for owners going away.
    public func cancel(_ timer: Timer) {
        timer.active = false
        if timer.isQueued { timers.remove(timer) }
    }

    /// Stops `timer` without touching the heap: its entry is dropped when its time comes, and
    /// arming it again for a time no earlier than that entry is free. For timers stopped and
    /// re-armed per request; an owner going away should ``cancel(_:)`` instead, so dead
    /// entries do not pile up.
    public func deactivate(_ timer: Timer) {
        timer.active = false
    }

    /// Entries in the timer heap (armed timers, and deactivated ones not yet dropped).
    public var armedTimers: Int { timers.count }

    // MARK: tasks

    /// Runs `task` on the loop's thread soon. Callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        tasks.withLock { $0.append(task) }
        wake()
    }

    /// Runs `body` at the end of the current iteration, after all events were handled (on the
    /// loop's thread only). Useful to batch work triggered by several events.
    public func deferUntilEndOfIteration(_ body: @escaping () -> Void) {
        deferred.append(body)
    }

    private func wake() {
        if !wakePending.exchange(true, ordering: .acquiringAndReleasing) {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    private func drainTasks() {
        var counter: UInt64 = 0
        _ = Glibc.read(wakeFD, &counter, 8)
        // Reset before taking the tasks: a task queued after this store wakes us again, one
        // queued before it is in the batch we take below.
        wakePending.store(false, ordering: .sequentiallyConsistent)
        let batch = tasks.withLock { t -> [@Sendable () -> Void] in
            let b = t
            t.removeAll(keepingCapacity: true)
            return b
        }
        for task in batch { task() }
    }

    // MARK: running

    /// Asks the loop to return from ``run()``. Callable from any thread.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        wake()
    }

    /// Runs the loop on the calling thread until ``stop()``.
    public func run() {
        thread = pthread_self()
        running = true
        let maxEvents = 256
        let eventSize = csluice_epoll_event_size()
        let events = UnsafeMutableRawPointer.allocate(byteCount: maxEvents * eventSize, alignment: 8)
        defer {
            events.deallocate()
            running = false
        }
        now = Instant.now()
        while !stopRequested.load(ordering: .acquiring) {
            let timeout = epollTimeout()
            let n = epoll_wait(epfd, events.assumingMemoryBound(to: epoll_event.self), Int32(maxEvents), timeout)
            now = Instant.now()
            let started = now
            iterations &+= 1
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                fatalError("epoll_wait: \(SyscallError("epoll_wait", errno: e))")
            }
            var i = 0
            while i < Int(n) {
                let ev = (events + i * eventSize).assumingMemoryBound(to: epoll_event.self)
                let bits = csluice_epoll_event_events(ev)
                let token = csluice_epoll_event_data(ev)
                i += 1
                let slot = Int(truncatingIfNeeded: token & 0xFFFF_FFFF)
                if slot == 0 {
                    drainTasks()
                    continue
                }
                let s = slots[slot]
                guard s.generation == UInt32(truncatingIfNeeded: token >> 32), let handler = s.handler else {
                    continue  // stale: the registration went away earlier in this batch
                }
                handler.handleEvent(bits)
            }
            runTimers()
            runDeferred()
            if bufferPool.spareBytes > 0 && !poolTrim.active { schedule(poolTrim, after: poolTrimInterval) }
            let busy = Instant.now().nanoseconds &- started.nanoseconds
            if busy > maxBusyNanos { maxBusyNanos = busy }
        }
    }

    // MARK: a clock turned by hand (tests)

    /// For tests of state machines that live on a loop but need no socket: the loop is never
    /// `run()`; the test moves its clock and runs what is then due (tasks, timers, deferred
    /// work) on its own thread.
    @_spi(Testing) public func advance(to instant: Instant) {
        now = instant
        runPending()
    }

    /// Runs queued tasks, due timers and deferred work until none is left (tests).
    @_spi(Testing) public func runPending() {
        repeat {
            drainTasks()
            runTimers()
            runDeferred()
        } while tasks.withLock({ !$0.isEmpty }) || !deferred.isEmpty
    }

    /// Resets ``maxBusy`` and returns what it was (the lag gauge reads it periodically).
    public func takeMaxBusy() -> Duration {
        let m = maxBusy
        maxBusyNanos = 0
        return m
    }

    private func epollTimeout() -> Int32 {
        if !deferred.isEmpty { return 0 }
        guard let first = timers.earliestKey else { return -1 }
        let current = Instant.now().nanoseconds
        if first <= current { return 0 }
        let ns = first - current
        // Round up so a timer never fires early; cap to keep the value in range.
        return Int32(min((ns + 999_999) / 1_000_000, 3_600_000))
    }

    private func runTimers() {
        // Timers armed by an action for "now" run in the next iteration, so a zero-delay
        // re-arm cannot starve the loop.
        let limit = now.nanoseconds
        while let first = timers.earliestKey, first <= limit {
            let t = timers.popEarliest()
            if !t.active { continue }  // deactivated: dropped now
            if t.deadline.nanoseconds > limit {
                // Pushed back while queued: queue it again for its real deadline.
                timers.insert(t)
                continue
            }
            t.active = false
            t.fire()
        }
    }

    private func runDeferred() {
        while !deferred.isEmpty {
            let batch = deferred
            deferred.removeAll(keepingCapacity: true)
            for body in batch { body() }
        }
    }
}
