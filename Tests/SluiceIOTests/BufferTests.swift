import Glibc
import Synchronization
import Testing
@testable import SluiceIO

@Suite struct BufferPoolTests {
    @Test func buffersReturnToTheirPool() {
        let pool = BufferPool()
        do {
            var a = pool.take()
            a.append("hello")
            #expect(a.readableBytes == 5)
            #expect(pool.outstandingTotal == 1)
        }
        #expect(pool.outstandingTotal == 0)
        // A second take reuses the freed block: no new allocation.
        let before = pool.allocations
        do { _ = pool.take() }
        #expect(pool.allocations == before)
    }

    @Test(arguments: [0, 1, 4 << 10, (4 << 10) + 1, 16 << 10, (16 << 10) + 1, 64 << 10, 300 << 10, 5 << 20])
    func sizeClassesRoundUp(_ n: Int) {
        let pool = BufferPool()
        let b = pool.take(minimumCapacity: n)
        #expect(b.capacity >= n)
        if let c = BufferPool.classSizes.first(where: { $0 >= n }) { #expect(b.capacity == c) }
    }

    @Test func sizeClassIsTheFirstClassThatFits() {
        var capacities = Array(0...70_000)
        for size in BufferPool.classSizes { capacities += [size - 1, size, size + 1] }
        for shift in 0..<40 { capacities += [(1 << shift) - 1, 1 << shift, (1 << shift) + 1] }
        for n in capacities {
            let expected = BufferPool.classSizes.firstIndex { $0 >= n } ?? BufferPool.classSizes.count
            #expect(BufferPool.sizeClass(for: n) == expected, "capacity \(n)")
        }
    }

    @Test func smallClassesKeepTheirFloorOnly() {
        let pool = BufferPool()
        var held = (0..<1100).map { _ in pool.takeBlock(minimumCapacity: 100) }
        #expect(pool.outstandingTotal == 1100 && pool.outstanding[0] == 1100)
        for (base, capacity) in held { pool.recycle(base, capacity: capacity) }
        // 1,024 small blocks are kept; the rest went back to malloc, which reuses them.
        #expect(pool.outstandingTotal == 0)
        #expect(pool.freeBlocks[0] == 1024 && pool.spareBytes == 0)
        #expect(pool.freeBytes == 1024 * 4096)
        let before = pool.allocations
        held = (0..<1024).map { _ in pool.takeBlock(minimumCapacity: 4096) }
        #expect(pool.allocations == before, "all 1,024 come from the free list")
        held.append(pool.takeBlock(minimumCapacity: 1))
        #expect(pool.allocations == before + 1)
        for (base, capacity) in held { pool.recycle(base, capacity: capacity) }
        #expect(pool.outstandingTotal == 0)
    }

    static let big = 256 << 10  // class 3: a floor of 16

    @Test func mappedClassesKeepTheFloorAndSpareUpToTheLimit() {
        let pool = BufferPool()
        pool.spareLimit = 10 * Self.big
        var held = (0..<40).map { _ in pool.takeBlock(minimumCapacity: Self.big) }
        for (base, capacity) in held { pool.recycle(base, capacity: capacity) }
        // The floor of 16 and 10 spare ones are kept; the rest were unmapped.
        #expect(pool.freeBlocks[3] == 26 && pool.spareBytes == 10 * Self.big)
        let before = pool.allocations
        held = (0..<26).map { _ in pool.takeBlock(minimumCapacity: Self.big) }
        #expect(pool.allocations == before, "all 26 come from the free list")
        #expect(pool.spareBytes == 0)
        held.append(pool.takeBlock(minimumCapacity: Self.big))
        #expect(pool.allocations == before + 1)
        for (base, capacity) in held { pool.recycle(base, capacity: capacity) }
        #expect(pool.outstandingTotal == 0 && pool.freeBlocks[3] == 26)
    }

    /// Takes `n` blocks of `size` and returns them in the order taken; returns their addresses.
    @discardableResult
    func cycle(_ pool: BufferPool, _ n: Int, size: Int) -> [UnsafeMutableRawPointer] {
        let held = (0..<n).map { _ in pool.takeBlock(minimumCapacity: size) }
        for (base, capacity) in held { pool.recycle(base, capacity: capacity) }
        return held.map(\.0)
    }

    @Test func trimGivesBackHalfOfWhatSatUnusedEachTime() {
        let pool = BufferPool()
        cycle(pool, 16 + 40, size: Self.big)
        #expect(pool.spareBytes == 40 * Self.big)
        // The first trim sees blocks that were in use since the pool began: nothing sat unused
        // through a whole period yet. Then half of the idle spare goes each time, rounded up.
        var released: [Int] = []
        for _ in 0..<8 { released.append(pool.trim() / Self.big) }
        #expect(released == [0, 20, 10, 5, 3, 1, 1, 0])
        #expect(pool.spareBytes == 0 && pool.freeBlocks[3] == 16, "the floor stays")
    }

    @Test func blocksUsedSinceTheLastTrimAreKept() {
        let pool = BufferPool()
        cycle(pool, 16 + 40, size: Self.big)
        pool.trim()
        // 30 of the 56 free blocks are taken and returned: 26 sat unused, 10 of them spare.
        cycle(pool, 30, size: Self.big)
        #expect(pool.trim() == 5 * Self.big)
        // A load that uses every spare block between trims keeps them all.
        for _ in 0..<3 {
            cycle(pool, 51, size: Self.big)
            #expect(pool.trim() == 0)
        }
        #expect(pool.freeBlocks[3] == 51)
    }

    @Test func trimLetsTheColdestBlocksGo() {
        let pool = BufferPool()
        let order = cycle(pool, 16 + 40, size: Self.big)  // returned in this order: order[0] is coldest
        pool.trim()
        #expect(pool.trim() == 20 * Self.big)
        let kept = Set((0..<36).map { _ in pool.takeBlock(minimumCapacity: Self.big).0 })
        let given = Set(order[..<20])
        #expect(kept.count == 36 && kept.intersection(given).isEmpty, "the 20 returned first are the ones given back")
        for p in kept { pool.recycle(p, capacity: Self.big) }
    }

    @Test func aLowerLimitIsMetAtTheNextTrimLargestBlocksFirst() {
        let pool = BufferPool()
        let small = 64 << 10  // class 2: a floor of 64
        cycle(pool, 16 + 20, size: Self.big)
        cycle(pool, 64 + 40, size: small)
        #expect(pool.spareBytes == 20 * Self.big + 40 * small)
        pool.spareLimit = 2 * Self.big + 40 * small
        #expect(pool.trim() == 18 * Self.big)
        #expect(pool.freeBlocks[3] == 18 && pool.freeBlocks[2] == 104)
        pool.spareLimit = 0
        pool.trim()
        #expect(pool.spareBytes == 0 && pool.freeBlocks[3] == 16 && pool.freeBlocks[2] == 64)
    }

    /// Large blocks are mapped from the kernel, so trimming them lowers the process's resident
    /// memory (a malloc arena would keep what is not at its top).
    @Test func trimmedLargeBlocksLeaveResidentMemory() throws {
        func residentBytes() -> Int {
            guard let f = fopen("/proc/self/statm", "r") else { return -1 }
            defer { fclose(f) }
            var size = 0, resident = 0
            _ = withUnsafeMutablePointer(to: &size) { s in withUnsafeMutablePointer(to: &resident) { r in
                withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) } } }
            return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        // Were the blocks malloc'ed, this would make glibc serve them from its arena (freeing a
        // mapped chunk raises its mmap threshold), and the small allocations between them would
        // keep the arena from shrinking: the test fails then.
        free(malloc(1 << 20))
        let pool = BufferPool()
        var pins: [UnsafeMutableRawPointer?] = []
        let blocks = (0..<(4 + 64)).map { _ in
            defer { pins.append(malloc(64)) }
            return pool.takeBlock(minimumCapacity: 1 << 20)
        }
        defer { for p in pins { free(p) } }
        for (base, capacity) in blocks { memset(base, 1, capacity) }  // touch every page
        for (base, capacity) in blocks { pool.recycle(base, capacity: capacity) }
        let before = residentBytes()
        pool.spareLimit = 0
        #expect(pool.trim() == 64 << 20)
        let after = residentBytes()
        // Other tests run alongside and allocate too: most of the 64 MiB must be gone.
        #expect(before - after > 48 << 20, "resident \(before >> 20) MiB -> \(after >> 20) MiB")
    }

    @Test func theLoopTrimsWhileThereIsSpareAndThenStops() throws {
        let loop = try EventLoop()
        loop.poolTrimInterval = .milliseconds(20)
        let t = Threads.spawn(name: "test-loop") { loop.run() }
        defer { loop.stop(); Threads.join(t) }
        let state = Mutex<(spare: Int, timers: Int)>((-1, -1))
        func probe(_ body: @escaping @Sendable (EventLoop) -> Void = { _ in }) -> (spare: Int, timers: Int) {
            let latch = Latch()
            loop.execute {
                body(loop)
                state.withLock { $0 = (loop.bufferPool.spareBytes, loop.armedTimers) }
                latch.open()
            }
            #expect(latch.wait())
            return state.withLock { $0 }
        }
        let burst = probe { loop in
            let held = (0..<(16 + 40)).map { _ in loop.bufferPool.takeBlock(minimumCapacity: 256 << 10) }
            for (base, capacity) in held { loop.bufferPool.recycle(base, capacity: capacity) }
        }
        #expect(burst.spare == 40 * (256 << 10))
        // Halving 40 blocks takes 7 trims after the first: well under a second at 20 ms.
        let deadline = Instant.now() + .seconds(5)
        var now = probe()
        while now.spare > 0 && Instant.now() < deadline {
            usleep(20_000)
            now = probe()
        }
        #expect(now.spare == 0)
        usleep(100_000)
        #expect(probe().timers == 0, "no trim timer is left armed on an idle loop")
    }

    @Test func reserveKeepsContentAndRebases() {
        let pool = BufferPool()
        var b = pool.take()
        for i in 0..<1000 { b.append(UInt8(i & 0xff)) }
        b.readerIndex = 10
        b.reserve(writable: 100_000)
        #expect(b.readerIndex == 0)
        #expect(b.readableBytes == 990)
        #expect(b.readable[0] == 10)
        #expect(b.readable[989] == UInt8(999 & 0xff))
        #expect(b.writableBytes >= 100_000)
        _ = consume b
        #expect(pool.outstandingTotal == 0)
    }

    @Test(arguments: [0, 1, 9, 10, 255, 4096, 123_456_789, Int(Int32.max)])
    func decimalAndHex(_ v: Int) {
        let pool = BufferPool()
        var b = pool.take()
        b.appendDecimal(v)
        b.append(" ")
        b.appendHex(v)
        let text = String(decoding: b.readable, as: UTF8.self)
        #expect(text == "\(v) \(String(v, radix: 16))")
    }

    @Test func decimalsOfEveryMagnitudeAndSign() {
        var values: [Int] = [0, Int.max, Int.min, Int.min + 1, -1]
        var p = 1
        for _ in 0..<18 { values += [p - 1, p, p + 1, -(p - 1), -p, -(p + 1)]; p *= 10 }
        var x: UInt64 = 99
        for _ in 0..<2000 { x = x &* 6364136223846793005 &+ 1442695040888963407; values.append(Int(bitPattern: UInt(x)) >> Int(x % 64)) }
        var out = [UInt8](repeating: 0, count: 32)
        for v in values {
            let n = out.withUnsafeMutableBytes { ASCII.writeDecimal(v, to: $0.baseAddress!) }
            #expect(String(decoding: out[0..<n], as: UTF8.self) == String(v))
        }
    }

    @Test func hex64IsSixteenLowercaseDigits() {
        let pool = BufferPool()
        var values: [UInt64] = [0, 1, 9, 10, 15, 16, 0xABCD_EF01_2345_6789, 0xFEDC_BA98_7654_3210, .max, 1 << 63, 0x0F0F_0F0F_0F0F_0F0F, 0xA0A0_A0A0_A0A0_A0A0]
        var x: UInt64 = 0x1234_5678
        for _ in 0..<2000 { x = x &* 6364136223846793005 &+ 1442695040888963407; values.append(x) }
        // Every nibble value at every position.
        for k in 0..<16 { for n in 0..<16 { values.append(UInt64(n) << (4 * k)) } }
        for v in values {
            var b = pool.take()
            b.append("<")  // an unaligned start
            b.appendHex64(v)
            let hex = String(v, radix: 16)
            #expect(String(decoding: b.readable, as: UTF8.self) == "<" + String(repeating: "0", count: 16 - hex.count) + hex)
        }
    }

    @Test func appendCopiesEveryLengthAtEveryAlignment() {
        let pool = BufferPool()
        let source = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for offset in 0..<8 {
            for n in 0...40 {
                var b = pool.take()
                for _ in 0..<offset { b.append(UInt8(0xEE)) }
                source.withUnsafeBytes { b.append(UnsafeRawBufferPointer(rebasing: $0[3..<(3 + n)])) }
                b.append(UInt8(0xDD))
                #expect(Array(b.readable) == Array(repeating: 0xEE, count: offset) + Array(source[3..<(3 + n)]) + [0xDD], "length \(n) at \(offset)")
            }
        }
    }
}

@Suite struct OutputQueueTests {
    func drain(_ q: inout OutputQueue) -> [UInt8] {
        var out: [UInt8] = []
        let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 64)
        defer { iov.deallocate() }
        while !q.isEmpty {
            let n = q.gather(into: iov, max: 64)
            var total = 0
            for i in 0..<n {
                out += UnsafeRawBufferPointer(start: iov[i].iov_base, count: iov[i].iov_len)
                total += iov[i].iov_len
            }
            q.consume(total)
        }
        return out
    }

    @Test func gathersOwnedBorrowedAndFramingInOrder() {
        let pool = BufferPool()
        var q = OutputQueue(pool: pool)
        var owned = pool.take()
        owned.append("owned")
        let borrowed: StaticString = "borrowed"
        q.appendChunkHeader(5)
        q.append(owned)
        q.append(borrowed)
        q.appendCopy(UnsafeRawBufferPointer(start: ("\r\n" as StaticString).utf8Start, count: 2))
        #expect(q.pendingBytes == 3 + 5 + 8 + 2)
        #expect(String(decoding: drain(&q), as: UTF8.self) == "5\r\nownedborrowed\r\n")
        #expect(q.pendingBytes == 0)
        let held = q.holdsArena
        #expect(!held, "a drained queue gives its arena back")
        #expect(pool.outstandingTotal == 0)
    }

    @Test func partialConsumeKeepsTheRest() {
        let pool = BufferPool()
        var q = OutputQueue(pool: pool)
        var b = pool.take()
        b.append("abcdefghij")
        q.append(b)
        q.consume(3)
        #expect(q.pendingBytes == 7)
        #expect(String(decoding: drain(&q), as: UTF8.self) == "defghij")
        #expect(pool.outstandingTotal == 0)
    }

    @Test func arenaIsHeldOnlyWhileFramingWaits() {
        let pool = BufferPool()
        var q = OutputQueue(pool: pool)
        var held = q.holdsArena
        #expect(!held)
        q.appendChunkHeader(0x1a)
        held = q.holdsArena
        #expect(held && pool.outstandingTotal == 1)
        q.consume(2)  // "1a" written, "\r\n" still queued in the arena
        held = q.holdsArena
        let pending = q.pendingBytes
        #expect(held && pending == 2)
        q.consume(2)
        held = q.holdsArena
        #expect(!held && pool.outstandingTotal == 0)
        // The next framing takes a block again, from the free list (no new allocation).
        let allocations = pool.allocations
        q.appendChunkHeader(1)
        held = q.holdsArena
        #expect(held && pool.allocations == allocations)
        q.removeAll()
        held = q.holdsArena
        #expect(!held && pool.outstandingTotal == 0)
    }

    @Test func arenaRetiresWhenFull() {
        let pool = BufferPool()
        var q = OutputQueue(pool: pool)
        var expected = ""
        // Enough chunk headers to overflow one arena block several times.
        for i in 0..<20_000 {
            q.appendChunkHeader(i)
            expected += String(i, radix: 16) + "\r\n"
        }
        #expect(q.pendingBytes == expected.utf8.count)
        #expect(String(decoding: drain(&q), as: UTF8.self) == expected)
        let held = q.holdsArena
        #expect(!held, "a drained queue gives its arena back")
        #expect(pool.outstandingTotal == 0)
    }

    @Test func flushWritesThroughASocketPair() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let pool = BufferPool()
        var q = OutputQueue(pool: pool)
        q.append("hello, ")
        q.append("world")
        #expect(try q.flush(to: fds[0]))
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fds[1], &buf, 64)
        #expect(String(decoding: buf[0..<n], as: UTF8.self) == "hello, world")
    }
}

@Suite struct RingTests {
    @Test func growsAndKeepsFIFOOrder() {
        var r = Ring<Int>(capacity: 2)
        var expected: [Int] = []
        var got: [Int] = []
        for i in 0..<100 {
            r.append(i); expected.append(i)
            if i % 3 == 0, let x = r.removeFirst() { got.append(x) }
        }
        while let x = r.removeFirst() { got.append(x) }
        #expect(got == expected)
        let empty = r.isEmpty
        #expect(empty)
    }
}
