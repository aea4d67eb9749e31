import Glibc

/// A worker's pool of byte blocks in a few size classes.
///
/// Thread-confined: a pool and every ``ByteBuffer`` taken from it belong to one event loop's
/// thread. Taking and returning a block is a stack pop/push; memory is only allocated when the
/// free list of a class is empty.
///
/// How much stays free follows demand. Each class keeps a floor of blocks however long they sit
/// unused (``classFloor``); above it the classes of mapped blocks (64 KiB and up) keep every
/// returned block up to ``spareLimit`` bytes, so a steady load of large requests (150
/// connections each sending a 220 KB prompt) is served from the pool instead of faulting fresh
/// pages in for every body. Spare blocks that stayed unused since the last ``trim()`` are given
/// back, half of them each time, coldest first (the event loop trims once a second while there
/// are any), so the memory of a burst goes back to the system within seconds of the burst. The same idea as a malloc decaying its dirty pages
/// (jemalloc's `dirty_decay_ms`); a fixed cap per class either pinned a burst's memory forever
/// or, at the old fixed cap (16 blocks of 256 KiB), had 150 connections sending 220 KB prompts
/// page-fault 5-10 times per request.
public final class BufferPool {
    /// Block sizes of the pooled classes (4 KiB × 4^c); larger requests are allocated exactly
    /// and freed on release. The 4 KiB class holds what is small and may wait long: a typical
    /// API request while its response has not started, a rewritten request head, a response
    /// head, framing. Thousands of requests queued at busy model servers then pin 4 KiB each.
    public static let classSizes: [Int] = (0..<classCount).map { classSize($0) }
    /// Free blocks of each class kept however long they are unused.
    static let classFloor: [Int] = [1024, 512, 64, 16, 4, 2]
    @usableFromInline static let classCount = 6
    /// Blocks from this size up are mapped from the kernel (mmap) and unmapped when let go, so
    /// letting go returns their memory; a malloc arena returns memory only from its top.
    static let mapThreshold = 64 << 10
    /// The first class kept beyond its floor: the mapped ones, whose fresh blocks fault their
    /// pages in. Smaller blocks past the floor go back to malloc, which serves them again from
    /// memory it already has (kept as spare, 9,500 streams' 4 KiB request blocks held 30-40 MB
    /// that the next workload could not reuse).
    static let firstSpareClass = sizeClass(for: mapThreshold)

    @inline(__always) @usableFromInline
    static func classSize(_ c: Int) -> Int { 4096 << (2 * c) }

    /// Bytes of free blocks kept above the floors (`limits.spare_buffer_bytes`); 0 keeps the
    /// floors only. Lowering it takes effect at the next ``trim()``.
    public var spareLimit: Int = 64 << 20
    /// Bytes of free blocks above the floors now.
    public private(set) var spareBytes = 0

    // Free lists and counters live in slabs allocated up front, one slot per floor block (only
    // the mapped classes hold more, and their stacks double when they do): taking and returning
    // a block touches two integers and one slot, with no array uniqueness checks on the way.
    /// Each class's free blocks, coldest first (the top of the stack was used last).
    private let stacks: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutableRawPointer>>
    private let stackCapacity: UnsafeMutablePointer<Int>
    /// Free blocks per class.
    private let freeCount: UnsafeMutablePointer<Int>
    /// The fewest free blocks each class had since the last trim: that many sat unused all along.
    private let leastFree: UnsafeMutablePointer<Int>
    /// Blocks handed out, by class (the last slot counts unpooled blocks).
    private let handedOut: UnsafeMutablePointer<Int>

    /// Blocks currently handed out, by class (the last slot counts unpooled blocks).
    public var outstanding: [Int] { (0...Self.classCount).map { handedOut[$0] } }
    /// Allocations made because a free list was empty (a test and benchmark signal).
    public private(set) var allocations: Int = 0
    /// Bytes in blocks handed out and not yet returned (exported as a metric: what open
    /// connections and requests hold right now).
    public private(set) var outstandingBytes: Int = 0

    /// Bytes in free blocks kept for reuse.
    public var freeBytes: Int {
        var n = 0
        for c in 0..<Self.classCount { n += freeCount[c] * Self.classSize(c) }
        return n
    }

    /// Free blocks of each class now (tests).
    public var freeBlocks: [Int] { (0..<Self.classCount).map { freeCount[$0] } }

    public init() {
        stacks = .allocate(capacity: Self.classCount)
        stackCapacity = .allocate(capacity: Self.classCount)
        freeCount = .allocate(capacity: Self.classCount)
        freeCount.initialize(repeating: 0, count: Self.classCount)
        leastFree = .allocate(capacity: Self.classCount)
        leastFree.initialize(repeating: 0, count: Self.classCount)
        handedOut = .allocate(capacity: Self.classCount + 1)
        handedOut.initialize(repeating: 0, count: Self.classCount + 1)
        for c in 0..<Self.classCount {
            stackCapacity[c] = Self.classFloor[c]
            stacks[c] = .allocate(capacity: stackCapacity[c])
        }
    }

    deinit {
        for c in 0..<Self.classCount {
            for i in 0..<freeCount[c] { Self.deallocate(stacks[c][i], Self.classSize(c)) }
            stacks[c].deallocate()
        }
        stacks.deallocate()
        stackCapacity.deallocate()
        freeCount.deallocate()
        leastFree.deallocate()
        handedOut.deallocate()
    }

    /// The default block size (the smallest class).
    @inlinable
    public var blockSize: Int { Self.classSize(0) }

    /// The smallest class holding `capacity` bytes, or `classCount` when none does.
    @inline(__always) @usableFromInline
    static func sizeClass(for capacity: Int) -> Int {
        if capacity <= 4096 { return 0 }
        // Classes grow by 4x: the class is half the bit length of (capacity - 1) / 4 KiB,
        // rounded up.
        let bits = Int.bitWidth - ((capacity - 1) >> 12).leadingZeroBitCount
        return min((bits + 1) >> 1, classCount)
    }

    /// A buffer with at least `minimumCapacity` bytes (rounded up to its size class), empty.
    public func take(minimumCapacity: Int = 0) -> ByteBuffer {
        let (base, capacity) = takeBlock(minimumCapacity: minimumCapacity)
        return ByteBuffer(base: base, capacity: capacity, pool: self)
    }

    /// A block of at least `minimumCapacity` bytes, counted as handed out.
    @usableFromInline
    func takeBlock(minimumCapacity: Int) -> (UnsafeMutableRawPointer, Int) {
        let c = Self.sizeClass(for: minimumCapacity)
        handedOut[c] += 1
        if c == Self.classCount {
            allocations += 1
            outstandingBytes += minimumCapacity
            return (Self.allocate(minimumCapacity), minimumCapacity)
        }
        let size = Self.classSize(c)
        outstandingBytes += size
        let n = freeCount[c]
        if n > 0 {
            freeCount[c] = n - 1
            if n > Self.classFloor[c] { spareBytes -= size }
            if n - 1 < leastFree[c] { leastFree[c] = n - 1 }
            return (stacks[c][n - 1], size)
        }
        allocations += 1
        return (Self.allocate(size), size)
    }

    @usableFromInline
    func recycle(_ base: UnsafeMutableRawPointer, capacity: Int) {
        let c = Self.sizeClass(for: capacity)
        handedOut[c] -= 1
        outstandingBytes -= capacity
        if c < Self.classCount && capacity == Self.classSize(c) {
            let n = freeCount[c]
            if n < Self.classFloor[c] || (c >= Self.firstSpareClass && spareBytes + capacity <= spareLimit) {
                if n >= Self.classFloor[c] { spareBytes += capacity }
                if n == stackCapacity[c] { growStack(c) }
                stacks[c][n] = base
                freeCount[c] = n + 1
                return
            }
        }
        Self.deallocate(base, capacity)
    }

    private func growStack(_ c: Int) {
        let grown = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: 2 * stackCapacity[c])
        grown.moveInitialize(from: stacks[c], count: freeCount[c])
        stacks[c].deallocate()
        stacks[c] = grown
        stackCapacity[c] *= 2
    }

    /// Gives back the spare blocks that sat unused since the last trim (half of them, rounded
    /// up, coldest first), and then any spare bytes over ``spareLimit`` (largest blocks first).
    /// Returns the bytes given back.
    @discardableResult
    public func trim() -> Int {
        var released = 0
        for c in 0..<Self.classCount {
            let idle = min(leastFree[c], freeCount[c]) - Self.classFloor[c]
            if idle > 0 { released += release((idle + 1) / 2, of: c) }
        }
        var c = Self.classCount - 1
        while spareBytes > spareLimit && c >= 0 {
            let size = Self.classSize(c)
            let over = (spareBytes - spareLimit + size - 1) / size
            released += release(min(over, max(0, freeCount[c] - Self.classFloor[c])), of: c)
            c -= 1
        }
        for c in 0..<Self.classCount { leastFree[c] = freeCount[c] }
        return released
    }

    /// Frees the `n` coldest free blocks of class `c` (the bottom of its stack).
    private func release(_ n: Int, of c: Int) -> Int {
        if n <= 0 { return 0 }
        let size = Self.classSize(c)
        let stack = stacks[c]
        for i in 0..<n { Self.deallocate(stack[i], size) }
        UnsafeMutableRawPointer(stack).copyMemory(from: stack + n, byteCount: (freeCount[c] - n) * MemoryLayout<UnsafeMutableRawPointer>.stride)
        freeCount[c] -= n
        spareBytes -= n * size
        return n * size
    }

    static func allocate(_ n: Int) -> UnsafeMutableRawPointer {
        if n >= mapThreshold {
            let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else { fatalError("out of memory mapping \(n) bytes") }
            return p
        }
        guard let p = malloc(n) else { fatalError("out of memory allocating \(n) bytes") }
        return p
    }

    static func deallocate(_ p: UnsafeMutableRawPointer, _ n: Int) {
        if n >= mapThreshold { munmap(p, n) } else { Glibc.free(p) }
    }

    /// Blocks handed out and not yet returned.
    public var outstandingTotal: Int {
        var n = 0
        for c in 0...Self.classCount { n += handedOut[c] }
        return n
    }
}

/// A block of bytes with one owner at a time: readable bytes are `readerIndex..<writerIndex`,
/// writable space is `writerIndex..<capacity`. Dropping it returns the block to its pool.
///
/// Non-copyable, so handing a buffer from a reader to a writer's queue (`consume`) is explicit
/// and the block can never be returned twice or used after it went back.
public struct ByteBuffer: ~Copyable {
    public private(set) var base: UnsafeMutableRawPointer
    public private(set) var capacity: Int
    public var readerIndex: Int = 0
    public var writerIndex: Int = 0
    /// The pool outlives every buffer it hands out (both belong to one worker), so no
    /// reference count is paid here. Unmanaged rather than `unowned(unsafe)`: reading an
    /// unowned(unsafe) field into a call still retains and releases it (measured: ~20
    /// retain/release pairs per proxied request across take, reserve and deinit).
    @usableFromInline
    let poolRef: Unmanaged<BufferPool>

    init(base: UnsafeMutableRawPointer, capacity: Int, pool: BufferPool) {
        self.base = base
        self.capacity = capacity
        self.poolRef = Unmanaged.passUnretained(pool)
    }

    init(base: UnsafeMutableRawPointer, capacity: Int, poolRef: Unmanaged<BufferPool>) {
        self.base = base
        self.capacity = capacity
        self.poolRef = poolRef
    }

    deinit { if capacity > 0 { poolRef._withUnsafeGuaranteedRef { $0.recycle(base, capacity: capacity) } } }

    /// A buffer that holds no block yet (capacity 0). Connections keep one while idle so that
    /// 10,000 idle connections pin no memory; the first `reserve` takes a block.
    public init(emptyIn pool: BufferPool) {
        self.base = ByteBuffer.emptyBase
        self.capacity = 0
        self.poolRef = Unmanaged.passUnretained(pool)
    }

    @usableFromInline nonisolated(unsafe) static let emptyBase = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 16)

    /// Whether a block is held.
    @inlinable public var isAllocated: Bool { capacity > 0 }

    /// Moves the block (and indices) out, leaving this buffer empty and unallocated: how a
    /// connection hands the bytes it read to another owner without copying.
    public mutating func take() -> ByteBuffer {
        var out = ByteBuffer(base: base, capacity: capacity, poolRef: poolRef)
        out.readerIndex = readerIndex
        out.writerIndex = writerIndex
        base = ByteBuffer.emptyBase
        capacity = 0
        readerIndex = 0
        writerIndex = 0
        return out
    }

    /// Returns the block to the pool, keeping an empty buffer.
    public mutating func release() {
        if capacity > 0 { poolRef._withUnsafeGuaranteedRef { $0.recycle(base, capacity: capacity) } }
        base = ByteBuffer.emptyBase
        capacity = 0
        readerIndex = 0
        writerIndex = 0
    }

    @inlinable public var readableBytes: Int { writerIndex - readerIndex }
    @inlinable public var writableBytes: Int { capacity - writerIndex }
    @inlinable public var isEmpty: Bool { readerIndex == writerIndex }

    /// The readable bytes, valid until the buffer is mutated or dropped.
    @inlinable
    public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readerIndex, count: writerIndex - readerIndex)
    }

    /// The writable tail, valid until the buffer is mutated or dropped.
    @inlinable
    public var writable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + writerIndex, count: capacity - writerIndex)
    }

    /// Bytes `range` of the whole block (not relative to `readerIndex`).
    @inlinable
    public func bytes(_ start: Int, _ end: Int) -> UnsafeRawBufferPointer {
        precondition(0 <= start && start <= end && end <= capacity)
        return UnsafeRawBufferPointer(start: base + start, count: end - start)
    }

    @inlinable
    public mutating func clear() {
        readerIndex = 0
        writerIndex = 0
    }

    /// Appends bytes, growing if needed.
    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        if n > writableBytes { reserve(writable: n) }
        if let src = bytes.baseAddress {
            let dst = base + writerIndex
            // Heads are built from many short pieces: up to 16 bytes are copied with two
            // (overlapping) loads and stores instead of a call to memcpy.
            if n >= 8 && n <= 16 {
                let head = src.loadUnaligned(as: UInt64.self), tail = src.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
                dst.storeBytes(of: head, as: UInt64.self)
                dst.storeBytes(of: tail, toByteOffset: n - 8, as: UInt64.self)
            } else if n >= 4 && n < 8 {
                let head = src.loadUnaligned(as: UInt32.self), tail = src.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
                dst.storeBytes(of: head, as: UInt32.self)
                dst.storeBytes(of: tail, toByteOffset: n - 4, as: UInt32.self)
            } else if n < 4 {
                for i in 0..<n { dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self) }
            } else {
                dst.copyMemory(from: src, byteCount: n)
            }
        }
        writerIndex += n
    }

    @inlinable
    public mutating func append(_ byte: UInt8) {
        if writableBytes < 1 { reserve(writable: 1) }
        base.storeBytes(of: byte, toByteOffset: writerIndex, as: UInt8.self)
        writerIndex += 1
    }

    @inlinable
    public mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inlinable
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        for b in bytes { append(b) }
    }

    /// Appends a decimal integer.
    @inlinable
    public mutating func appendDecimal(_ value: Int) {
        if writableBytes < 20 { reserve(writable: 20) }
        writerIndex += ASCII.writeDecimal(value, to: base + writerIndex)
    }

    /// Appends a hexadecimal integer (lowercase, no prefix), as chunked framing wants.
    @inlinable
    public mutating func appendHex(_ value: Int) {
        if writableBytes < 16 { reserve(writable: 16) }
        writerIndex += ASCII.writeHex(value, to: base + writerIndex)
    }

    /// `value` as exactly 16 lowercase hex digits (request and trace ids).
    public mutating func appendHex64(_ value: UInt64) {
        if writableBytes < 16 { reserve(writable: 16) }
        ASCII.writeHex64(value, to: base + writerIndex)
        writerIndex += 16
    }

    /// Moves the readable bytes to the front of the block, making room at the tail.
    @inlinable
    public mutating func compact() {
        if readerIndex == 0 { return }
        let n = readableBytes
        if n > 0 { base.copyMemory(from: base + readerIndex, byteCount: n) }
        readerIndex = 0
        writerIndex = n
    }

    /// Ensures at least `writable` bytes of tail room, compacting first and then moving to a
    /// bigger block from the pool. Readable bytes keep their content; indices are rebased to 0
    /// when the block changes or is compacted.
    public mutating func reserve(writable needed: Int) {
        if writableBytes >= needed { return }
        if readerIndex > 0 && capacity - readableBytes >= needed {
            compact()
            return
        }
        let n = readableBytes
        var target = max(capacity * 2, BufferPool.classSizes[0])
        while target - n < needed { target *= 2 }
        // Borrow a block of the right class from the pool, then swap it in.
        let (block, size) = poolRef._withUnsafeGuaranteedRef { $0.takeBlock(minimumCapacity: target) }
        var bigger = ByteBuffer(base: block, capacity: size, poolRef: poolRef)
        if n > 0 { bigger.base.copyMemory(from: base + readerIndex, byteCount: n) }
        swap(&base, &bigger.base)
        swap(&capacity, &bigger.capacity)
        readerIndex = 0
        writerIndex = n
        // `bigger` now holds the old block and returns it to the pool when dropped.
    }
}
