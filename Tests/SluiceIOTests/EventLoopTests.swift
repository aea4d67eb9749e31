import Glibc
import Synchronization
import Testing
@testable import SluiceIO

/// Runs a loop on its own thread for the duration of `body`.
func withRunningLoop<R>(_ body: (EventLoop) throws -> R) throws -> R {
    let loop = try EventLoop()
    let t = Threads.spawn(name: "test-loop") { loop.run() }
    defer {
        loop.stop()
        Threads.join(t)
    }
    return try body(loop)
}

/// A one-shot latch for tests.
final class Latch: Sendable {
    private let done = Atomic<Bool>(false)
    func open() { done.store(true, ordering: .releasing) }
    func wait(seconds: Double = 5) -> Bool {
        let deadline = Instant.now() + .milliseconds(Int64(seconds * 1000))
        while !done.load(ordering: .acquiring) {
            if Instant.now() > deadline { return false }
            usleep(1000)
        }
        return true
    }
}

@Suite struct TimerHeapTests {
    @Test func popsInDeadlineOrderAndCancels() {
        var heap = TimerHeap()
        let deadlines: [UInt64] = [50, 10, 40, 30, 20, 60, 5]
        var timers: [Timer] = []
        for d in deadlines {
            let t = Timer {}
            t.deadline = Instant(nanoseconds: d)
            heap.insert(t)
            timers.append(t)
        }
        heap.remove(timers[2])  // 40
        #expect(!timers[2].isArmed)
        var order: [UInt64] = []
        while !heap.isEmpty { order.append(heap.popEarliest().deadline.nanoseconds) }
        #expect(order == [5, 10, 20, 30, 50, 60])
    }

    /// Random inserts and removals (seeded): every pop is the smallest remaining key, every
    /// index a timer holds points at its own entry, and removed timers are never popped.
    @Test(arguments: [1, 7, 42])
    func randomInsertsAndRemovalsKeepTheHeapOrdered(seed: UInt64) {
        var rng = seed
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        var heap = TimerHeap()
        var live: [Timer] = []
        for _ in 0..<2000 {
            if live.isEmpty || next() % 3 != 0 {
                let t = Timer {}
                t.deadline = Instant(nanoseconds: next() % 1000)
                heap.insert(t)
                live.append(t)
            } else {
                let t = live.remove(at: Int(next() % UInt64(live.count)))
                heap.remove(t)
                #expect(!t.isArmed)
            }
        }
        for t in live { #expect(heap.key(of: t) == t.deadline.nanoseconds) }
        #expect(heap.count == live.count)
        var popped: [UInt64] = []
        while !heap.isEmpty { popped.append(heap.popEarliest().deadline.nanoseconds) }
        #expect(popped == live.map(\.deadline.nanoseconds).sorted())
        #expect(live.allSatisfy { !$0.isArmed })
    }
}

@Suite(.serialized) struct EventLoopTests {
    @Test func executeRunsTasksFromOtherThreadsOnTheLoop() throws {
        try withRunningLoop { loop in
            let count = Atomic<Int>(0)
            let latch = Latch()
            for _ in 0..<1000 {
                loop.execute {
                    #expect(loop.isInLoop)
                    if count.add(1, ordering: .relaxed).newValue == 1000 { latch.open() }
                }
            }
            #expect(latch.wait())
            #expect(count.load(ordering: .relaxed) == 1000)
        }
    }

    @Test func timersFireInOrderAndCancelledOnesDoNot() throws {
        try withRunningLoop { loop in
            let latch = Latch()
            let fired = Mutex<[Int]>([])
            loop.execute {
                let cancelled = Timer { fired.withLock { $0.append(-1) } }
                for (i, ms) in [30, 10, 20].enumerated() {
                    let t = Timer {
                        fired.withLock { $0.append(i) }
                        if i == 0 { latch.open() }
                    }
                    loop.schedule(t, after: .milliseconds(Int64(ms)))
                }
                loop.schedule(cancelled, after: .milliseconds(15))
                loop.cancel(cancelled)
            }
            #expect(latch.wait())
            #expect(fired.withLock { $0 } == [1, 2, 0])
        }
    }

    /// Re-arming later leaves the heap entry in place (lazy), yet the timer fires at its new
    /// deadline and not at the old one; re-arming earlier and cancelling after a push take
    /// effect at once.
    @Test func rearmedTimersFireAtTheirLatestDeadline() throws {
        try withRunningLoop { loop in
            let latch = Latch()
            let fired = Mutex<[(Int, UInt64)]>([])
            nonisolated(unsafe) var keep: [Timer] = []
            let start = Mutex<UInt64>(0)
            loop.execute {
                start.withLock { $0 = loop.now.nanoseconds }
                func record(_ i: Int) -> Timer {
                    Timer { fired.withLock { $0.append((i, loop.now.nanoseconds)) }; if i == 3 { latch.open() } }
                }
                let pushed = record(0), pulled = record(1), cancelled = record(2), last = record(3)
                keep = [pushed, pulled, cancelled, last]
                loop.schedule(pushed, after: .milliseconds(10))
                loop.schedule(pushed, after: .milliseconds(60))      // later: lazy
                loop.schedule(pulled, after: .milliseconds(200))
                loop.schedule(pulled, after: .milliseconds(20))      // earlier: moves now
                loop.schedule(cancelled, after: .milliseconds(5))
                loop.schedule(cancelled, after: .milliseconds(30))   // later, then cancelled
                loop.cancel(cancelled)
                loop.schedule(last, after: .milliseconds(100))
                #expect(loop.armedTimers == 3)
            }
            #expect(latch.wait())
            let got = fired.withLock { $0 }
            let t0 = start.withLock { $0 }
            #expect(got.map(\.0) == [1, 0, 3], "order \(got.map(\.0))")
            if got.count == 3 {
                #expect(got[1].1 - t0 >= 60_000_000, "the pushed timer fired at \((got[1].1 - t0) / 1_000_000) ms")
                #expect(got[0].1 - t0 < 200_000_000)
            }
            _ = keep
        }
    }

    /// Deactivated timers never fire, re-arming one for a later time reuses its heap entry
    /// (stop/re-arm cycles, as per request, leave the heap as it was), the entry is dropped
    /// when its time comes, and cancel removes it at once.
    @Test func deactivatedTimersStayQueuedButNeverFire() throws {
        try withRunningLoop { loop in
            let latch = Latch()
            let fired = Mutex<[Int]>([])
            nonisolated(unsafe) var keep: [Timer] = []
            let counts = Mutex<[Int]>([])
            loop.execute {
                func record(_ i: Int) -> Timer { Timer { fired.withLock { $0.append(i) }; if i == 3 { latch.open() } } }
                let cycled = record(0), stopped = record(1), cancelled = record(2), last = record(3)
                keep = [cycled, stopped, cancelled, last]
                loop.schedule(cycled, after: .milliseconds(10))
                for k in 0..<100 {
                    loop.deactivate(cycled)
                    #expect(!cycled.isArmed)
                    loop.schedule(cycled, after: .milliseconds(Int64(10 + k)))
                }
                counts.withLock { $0.append(loop.armedTimers) }      // 1: one entry for 101 arms
                loop.schedule(stopped, after: .milliseconds(5))
                loop.deactivate(stopped)                              // stays queued, never fires
                loop.schedule(cancelled, after: .milliseconds(5))
                loop.cancel(cancelled)                                // gone at once
                counts.withLock { $0.append(loop.armedTimers) }      // 2
                loop.schedule(last, after: .milliseconds(150))
            }
            #expect(latch.wait())
            #expect(fired.withLock { $0 } == [0, 3])
            #expect(counts.withLock { $0 } == [1, 2])
            // Everything fired or was dropped: the heap is empty.
            let left = Mutex(-1)
            let done = Latch()
            loop.execute { left.withLock { $0 = loop.armedTimers }; done.open() }
            #expect(done.wait())
            #expect(left.withLock { $0 } == 0)
            _ = keep
        }
    }

    /// A descriptor closed and reused inside one epoll batch must not receive the old
    /// registration's events: the generation in the event data tells them apart.
    @Test func staleEventsDoNotReachAReusedSlot() throws {
        final class Recorder: EventHandler {
            var events = 0
            func handleEvent(_ events: UInt32) { self.events += 1 }
        }
        let loop = try EventLoop()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let old = Recorder()
        let reg = try loop.register(fds[0], events: EventLoop.Events.readable, handler: old)
        loop.deregister(reg)
        let new = Recorder()
        let reg2 = try loop.register(fds[0], events: EventLoop.Events.readable, handler: new)
        #expect(reg2.slot == reg.slot)
        #expect(reg2.generation != reg.generation)
        #expect(reg2.token != reg.token)
        loop.deregister(reg2)
        #expect(loop.registrationCount == 0)
    }
}

@Suite(.serialized) struct SocketTests {
    @Test(arguments: ["127.0.0.1:8080", "[::1]:443", "localhost:80", "0.0.0.0:0"])
    func splitsHostAndPort(_ text: String) {
        #expect(SocketAddress.split(text) != nil)
    }

    @Test(arguments: ["127.0.0.1", "127.0.0.1:99999", ":80x", "[::1:80", ""])
    func rejectsBadAddresses(_ text: String) {
        #expect(SocketAddress.split(text) == nil)
    }

    /// Two loops with SO_REUSEPORT listeners on one port both accept connections.
    @Test func reusePortListenersOnLoopbackAcceptAndEcho() throws {
        let latch = Latch()
        let accepted = Atomic<Int>(0)
        let loop = try EventLoop()
        let t = Threads.spawn(name: "echo") { loop.run() }
        defer { loop.stop(); Threads.join(t) }
        let portBox = Mutex<UInt16>(0)
        loop.execute {
            let l = try! Listener(address: SocketAddress("127.0.0.1:0")!, loop: loop) { fd in
                accepted.add(1, ordering: .relaxed)
                // Echo synchronously for this small test.
                var buf = [UInt8](repeating: 0, count: 16)
                var got = 0
                while got == 0 {
                    got = read(fd, &buf, 16)
                    if got < 0 { got = 0; usleep(1000) }
                }
                _ = write(fd, buf, got)
                close(fd)
            }
            portBox.withLock { $0 = l.address.port }
            latch.open()
            _ = Unmanaged.passRetained(l)  // keep it alive for the test's duration
        }
        #expect(latch.wait())
        let port = portBox.withLock { $0 }
        #expect(port != 0)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        SocketAddress("127.0.0.1:\(port)")!.withSockAddr { sa, len in
            #expect(Glibc.connect(fd, sa, len) == 0)
        }
        #expect(write(fd, "ping", 4) == 4)
        var buf = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buf, 16)
        #expect(String(decoding: buf[0..<max(n, 0)], as: UTF8.self) == "ping")
        #expect(accepted.load(ordering: .relaxed) == 1)
    }
}

@Suite struct CPUQuotaTests {
    @Test(arguments: [("200000 100000", 2), ("150000 100000\n", 2), ("50000 100000", 1), ("400000 100000", 4)])
    func quotaRoundsUp(_ line: String, _ cpus: Int) {
        #expect(Threads.cgroupCPUQuota(line) == cpus)
    }

    @Test(arguments: ["max 100000", "", "garbage", "0 100000"])
    func noQuota(_ line: String) {
        #expect(Threads.cgroupCPUQuota(line) == nil)
    }

    @Test func availableCPUsIsPositive() { #expect(Threads.availableCPUs >= 1) }
}
