/// A one-shot timer owned by one event loop. Create it once (per connection, say) and re-arm
/// it with ``EventLoop/schedule(_:at:)``; arming an armed timer moves it.
///
/// Moving an armed timer later is free: the heap keeps the entry where it is and, when that
/// earlier time comes, the loop sees the timer's own deadline has moved and queues it again
/// (nginx's lazy timer update does the same). Timeouts that are pushed back on activity (idle,
/// read, a request's phase deadlines) therefore cost no heap work per push. Moving a timer
/// earlier, or cancelling it, updates the heap at once. Deactivating it (``EventLoop/deactivate(_:)``)
/// does not: the entry stays queued and is dropped when its time comes, so a timer that is
/// stopped and re-armed for every request (a pooled connection's idle timeout, an exchange's
/// deadlines) costs no heap work per request at all.
///
/// Per-request owners subclass it and override ``fire()`` instead of passing a closure: one
/// allocation instead of two (the timer and the closure's context), and such timers can be
/// pooled and pointed at their next owner.
open class Timer {
    /// When the action runs (the heap entry may be earlier, see above).
    public internal(set) final var deadline = Instant(nanoseconds: 0)
    @usableFromInline final var heapIndex = -1
    /// Will fire: armed and neither fired, cancelled nor deactivated since.
    @usableFromInline final var active = false
    @usableFromInline final let action: (() -> Void)?

    /// `action` runs on the loop's thread when the deadline passes. Capture the owner
    /// `unowned` to avoid a cycle.
    public init(_ action: @escaping () -> Void) {
        self.action = action
    }

    /// For subclasses that override ``fire()``.
    public init() {
        self.action = nil
    }

    /// Runs on the loop's thread when the deadline passes.
    open func fire() {
        action?()
    }

    /// Will fire at ``deadline``.
    @inlinable public final var isArmed: Bool { active }
    /// Has an entry in the loop's heap (possibly a deactivated one waiting to be dropped).
    final var isQueued: Bool { heapIndex >= 0 }
}

/// A binary min-heap of timers keyed by the time each was queued for; each timer knows its
/// index so cancel is O(log n) with no stale entries left behind.
///
/// Entries hold the key inline (comparisons touch no timer object) and one retain of their
/// timer for as long as it is queued: sifting moves plain values, with no reference counting
/// per swap.
struct TimerHeap {
    struct Entry {
        var key: UInt64
        var timer: Unmanaged<Timer>
    }

    private(set) var items: ContiguousArray<Entry> = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    /// The earliest queued time, if any (a timer's own deadline may be later).
    var earliestKey: UInt64? { items.first?.key }

    /// Queues `t` for its current deadline.
    mutating func insert(_ t: Timer) {
        precondition(t.heapIndex < 0)
        let i = items.count
        t.heapIndex = i
        items.append(Entry(key: t.deadline.nanoseconds, timer: .passRetained(t)))
        siftUp(i)
    }

    /// The time `t` is queued for (it must be queued).
    func key(of t: Timer) -> UInt64 { items[t.heapIndex].key }

    mutating func remove(_ t: Timer) {
        let i = t.heapIndex
        precondition(i >= 0 && i < items.count && items[i].timer.toOpaque() == Unmanaged.passUnretained(t).toOpaque())
        removeEntry(at: i).release()
    }

    /// Removes the earliest entry and returns its timer (the heap's retain passes to the caller).
    mutating func popEarliest() -> Timer {
        removeEntry(at: 0).takeRetainedValue()
    }

    private mutating func removeEntry(at i: Int) -> Unmanaged<Timer> {
        let removed = items[i].timer
        let last = items.count - 1
        if i != last {
            items[i] = items[last]
            setIndex(i)
        }
        items.removeLast()
        removed._withUnsafeGuaranteedRef { $0.heapIndex = -1 }
        if i < items.count {
            siftDown(i)
            siftUp(i)
        }
        return removed
    }

    @inline(__always)
    private func setIndex(_ i: Int) {
        items[i].timer._withUnsafeGuaranteedRef { $0.heapIndex = i }
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        let e = items[i]
        while i > 0 {
            let parent = (i - 1) >> 1
            if items[parent].key <= e.key { break }
            items[i] = items[parent]
            setIndex(i)
            i = parent
        }
        items[i] = e
        setIndex(i)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let e = items[i]
        let n = items.count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var m = l
            let r = l + 1
            if r < n && items[r].key < items[l].key { m = r }
            if e.key <= items[m].key { break }
            items[i] = items[m]
            setIndex(i)
            i = m
        }
        items[i] = e
        setIndex(i)
    }
}
