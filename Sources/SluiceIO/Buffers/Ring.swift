/// A growable FIFO ring that can hold non-copyable elements (stdlib `Array` cannot).
///
/// Used for write queues of ``ByteBuffer``s. Thread-confined like everything it holds.
public struct Ring<Element: ~Copyable>: ~Copyable {
    @usableFromInline var storage: UnsafeMutablePointer<Element>
    @usableFromInline var capacity: Int
    @usableFromInline var head = 0
    @usableFromInline var _count = 0
    @inlinable public var count: Int { _count }

    public init(capacity: Int = 8) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit {
        var i = 0
        while i < count {
            (storage + ((head + i) & (capacity - 1))).deinitialize(count: 1)
            i += 1
        }
        storage.deallocate()
    }

    @inlinable public var isEmpty: Bool { count == 0 }

    @inlinable
    public mutating func append(_ element: consuming Element) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: element)
        _count += 1
    }

    @inlinable
    public mutating func removeFirst() -> Element? {
        if count == 0 { return nil }
        let e = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        _count -= 1
        return e
    }

    /// Drops every element.
    public mutating func removeAll() {
        while count > 0 { _ = removeFirst() }
        head = 0
    }

    /// Pointer to the element at `index` (0 = first), valid until the ring is mutated.
    @inlinable
    public func pointer(at index: Int) -> UnsafeMutablePointer<Element> {
        precondition(index >= 0 && index < count)
        return storage + ((head + index) & (capacity - 1))
    }

    @usableFromInline
    mutating func grow() {
        let newCapacity = capacity * 2
        let fresh = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        var i = 0
        while i < count {
            (fresh + i).moveInitialize(from: storage + ((head + i) & (capacity - 1)), count: 1)
            i += 1
        }
        storage.deallocate()
        storage = fresh
        capacity = newCapacity
        head = 0
    }
}
