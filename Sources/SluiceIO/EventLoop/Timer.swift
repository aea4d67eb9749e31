/// A one-shot timer owned by one event loop. Create it once (per connection, say) and re-arm
/// it with ``EventLoop/schedule(_:at:)``; arming an armed timer moves it.
///
/// For timeouts that are pushed back on every bit of activity (idle, read timeouts), prefer
/// keeping the deadline in the owner and re-arming from the action when the deadline moved:
/// the heap is then touched once per timeout period instead of once per read.
public final class Timer {
    public internal(set) var deadline = Instant(nanoseconds: 0)
    @usableFromInline var heapIndex = -1
    @usableFromInline let action: () -> Void

    /// `action` runs on the loop's thread when the deadline passes. Capture the owner
    /// `unowned` to avoid a cycle.
    public init(_ action: @escaping () -> Void) {
        self.action = action
    }

    @inlinable public var isArmed: Bool { heapIndex >= 0 }
}

/// A binary min-heap of timers keyed by deadline; each timer knows its index so cancel and
/// re-arm are O(log n) with no stale entries left behind.
struct TimerHeap {
    private(set) var items: ContiguousArray<Timer> = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var earliest: Timer? { items.first }

    mutating func insert(_ t: Timer) {
        precondition(t.heapIndex < 0)
        t.heapIndex = items.count
        items.append(t)
        siftUp(t.heapIndex)
    }

    mutating func remove(_ t: Timer) {
        let i = t.heapIndex
        precondition(i >= 0 && i < items.count && items[i] === t)
        let last = items.count - 1
        if i != last {
            items.swapAt(i, last)
            items[i].heapIndex = i
        }
        items.removeLast()
        t.heapIndex = -1
        if i < items.count {
            siftDown(i)
            siftUp(i)
        }
    }

    mutating func popEarliest() -> Timer {
        let t = items[0]
        remove(t)
        return t
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) >> 1
            if items[parent].deadline <= items[i].deadline { break }
            items.swapAt(parent, i)
            items[parent].heapIndex = parent
            items[i].heapIndex = i
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = items.count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var m = l
            let r = l + 1
            if r < n && items[r].deadline < items[l].deadline { m = r }
            if items[i].deadline <= items[m].deadline { break }
            items.swapAt(i, m)
            items[i].heapIndex = i
            items[m].heapIndex = m
            i = m
        }
    }
}
