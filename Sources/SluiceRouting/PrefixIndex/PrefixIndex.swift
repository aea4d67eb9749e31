import Synchronization

/// An approximate index of which endpoints were sent which prompt-prefix blocks (vLLM caches
/// what it prefilled there), shared by all workers so that every worker decides alike. Each
/// block hash keeps up to ``ownersPerBlock`` endpoints, the least recently sent one replaced
/// first: a prefix that load spread over several endpoints is known on each of them, so the
/// scorers can balance among them without a miss.
///
/// Not every block is kept: all of the first 16 (1 KiB of prompt at 64-byte blocks), then every
/// 4th (``isKept(_:)``). A block's hash chains every block before it, so a kept block stands for
/// the whole prefix up to it and skipping the others only coarsens a match, by at most 3 blocks
/// past the first 16. A long prompt's 256 blocks then cost 76 records and lookups instead of 256
/// (about a third of the user-space work of proxying a 220 KB prompt went into this index), and
/// the same capacity holds three times as many long prompts.
///
/// Bounded: 16 shards, each a map with clock-style eviction of its least recently touched
/// entries once full. Locks are short and spread over shards by hash: a lookup locks a shard
/// per block; recording a prompt locks each shard once for the blocks of it that fall there.
public final class PrefixIndex: @unchecked Sendable {  // shards: each behind its own Mutex, never reallocated
    public static let ownersPerBlock = 4

    /// The endpoints holding one block (-1: free slot) and when each was last sent it.
    struct Owners: Sendable {
        var ids = SIMD4<Int32>(repeating: -1)
        var ticks = SIMD4<UInt32>(repeating: 0)
        var touched: UInt32 = 0

        func slot(of id: Int32) -> Int? {
            for s in 0..<4 where ids[s] == id { return s }
            return nil
        }

        /// `id` was sent the block at `now`: refreshed if it is an owner, else it takes a free
        /// slot or the one of the owner sent it longest ago (ticks compared as distances from now).
        mutating func record(_ id: Int32, at now: UInt32) {
            var slot = self.slot(of: id) ?? self.slot(of: -1)
            if slot == nil {
                var oldest = 0
                for t in 1..<4 where now &- ticks[t] > now &- ticks[oldest] { oldest = t }
                slot = oldest
            }
            ids[slot!] = id
            ticks[slot!] = now
            touched = now
        }
    }

    /// A block hash as a dictionary key. Block hashes are already uniform 64-bit values, so the
    /// key skips SipHash (~90 instructions a lookup: most of the index's cost for a long prompt,
    /// whose 256 blocks are looked up and recorded) for SplitMix's finaliser of the value XOR the
    /// dictionary's per-process random seed. Prompt text is the tenants', and PrefixHasher is not
    /// secret: without the seed in the mix, crafted prompts could aim their blocks at one bucket
    /// of the shared index.
    struct BlockKey: Hashable, Sendable {
        let value: UInt64
        init(_ value: UInt64) { self.value = value }
        func hash(into hasher: inout Hasher) { hasher.combine(value) }
        func _rawHashValue(seed: Int) -> Int {
            Int(truncatingIfNeeded: SplitMix64.mix(value ^ UInt64(bitPattern: Int64(seed))))
        }
    }

    struct Shard: Sendable {
        var owners: [BlockKey: Owners] = [:]
        var tick: UInt32 = 0
    }

    /// The 16 shards, in one allocation: reaching one is pointer arithmetic, with none of the
    /// reference counting an array of boxes costs per block looked up (~100 instructions per
    /// block for 256 blocks of a long prompt, looked up and recorded).
    private let shards: UnsafeMutablePointer<Mutex<Shard>>
    public let capacityPerShard: Int

    public init(capacityBlocks: Int = 1 << 20) {
        capacityPerShard = max(64, capacityBlocks / 16)
        shards = .allocate(capacity: 16)
        for i in 0..<16 { (shards + i).initialize(to: Mutex(Shard())) }
    }

    deinit {
        shards.deinitialize(count: 16)
        shards.deallocate()
    }

    @inline(__always) private static func shardIndex(_ h: UInt64) -> Int { Int(truncatingIfNeeded: h >> 60) }

    /// Whether the index keeps block `i` of a prompt: the first 16, then every 4th.
    @inline(__always) static func isKept(_ i: Int) -> Bool { i < 16 || i & 3 == 3 }

    /// The first kept block at or after `i`.
    @inline(__always) static func nextKept(_ i: Int) -> Int { i < 16 ? i : i | 3 }

    @inline(__always) private func shard(_ h: UInt64) -> UnsafeMutablePointer<Mutex<Shard>> {
        shards + Self.shardIndex(h)
    }

    private func owners(_ h: UInt64) -> Owners? { shard(h).pointee.withLock { $0.owners[BlockKey(h)] } }

    /// Sets each candidate's `prefixBlocks` to the length of the run of leading blocks of
    /// `hashes` recorded for it, to the last kept block of the run (0 for the others).
    /// Allocation-free: one shard lock per kept block looked up, and the lookup stops at the
    /// first one no remaining candidate holds.
    public func match(_ hashes: UnsafeBufferPointer<UInt64>, into c: UnsafeMutableBufferPointer<Candidate>, count: Int) {
        for k in 0..<count { c[k].prefixBlocks = 0 }
        guard let h0 = hashes.first, let first = owners(h0) else { return }
        // Candidates (positions) still matching, one per owner slot of the first block.
        var alive = SIMD4<Int32>(repeating: -1)
        var remaining = 0
        for s in 0..<4 where first.ids[s] >= 0 {
            for k in 0..<count where c[k].id == Int(first.ids[s]) {
                alive[s] = Int32(k)
                remaining += 1
                break
            }
        }
        // Blocks known to match for the candidates still alive.
        var matched = 1
        var i = Self.nextKept(1)
        while i < hashes.count && remaining > 0 {
            let o = owners(hashes[i])
            for s in 0..<4 where alive[s] >= 0 {
                let k = Int(alive[s])
                if o?.slot(of: Int32(truncatingIfNeeded: c[k].id)) == nil {
                    c[k].prefixBlocks = matched
                    alive[s] = -1
                    remaining -= 1
                }
            }
            matched = i + 1
            i = Self.nextKept(i + 1)
        }
        for s in 0..<4 where alive[s] >= 0 { c[Int(alive[s])].prefixBlocks = matched }
    }

    /// Records that `endpoint` was sent these blocks: one dictionary access per kept block, the
    /// owners changed in place, each shard locked once (``withShardsLocked``).
    public func record(_ hashes: UnsafeBufferPointer<UInt64>, endpoint: Int) {
        let id = Int32(truncatingIfNeeded: endpoint)
        let capacity = capacityPerShard
        withShardsLocked(hashes) { sh, positions in
            for p in positions {
                sh.tick &+= 1
                let now = sh.tick
                sh.owners[BlockKey(hashes[Int(p)]), default: Owners()].record(id, at: now)
                if sh.owners.count > capacity {
                    // Evict the least recently touched eighth in one go, so eviction is amortised.
                    let keep = UInt32(capacity - capacity / 8)
                    sh.owners = sh.owners.filter { now &- $0.value.touched < keep }
                }
            }
        }
    }

    /// Calls `body` once for each shard holding any of the kept blocks of `hashes`, with the shard
    /// locked and the positions in `hashes` of its kept blocks, in their order: one lock per shard instead of one per
    /// block (a long prompt's 256 blocks fall in all 16 shards, and taking and releasing a lock
    /// per block cost more than the dictionary work). The blocks are grouped by a counting sort
    /// of their positions, on the stack.
    private func withShardsLocked(_ hashes: UnsafeBufferPointer<UInt64>, _ body: (inout Shard, UnsafeBufferPointer<Int32>) -> Void) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: hashes.count) { order in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 33) { counts in
                // bound[s]..<bound[s + 1]: shard s's run of `order`; cursor[s]: where its next goes.
                let bound = UnsafeMutableBufferPointer(rebasing: counts[0..<17])
                let cursor = UnsafeMutableBufferPointer(rebasing: counts[17..<33])
                bound.initialize(repeating: 0)
                for (k, h) in hashes.enumerated() where Self.isKept(k) { bound[Self.shardIndex(h) + 1] += 1 }
                for s in 1...16 { bound[s] += bound[s - 1] }
                for s in 0..<16 { cursor[s] = bound[s] }
                for (k, h) in hashes.enumerated() where Self.isKept(k) {
                    let s = Self.shardIndex(h)
                    order[cursor[s]] = Int32(truncatingIfNeeded: k)
                    cursor[s] += 1
                }
                for s in 0..<16 where bound[s] < bound[s + 1] {
                    let positions = UnsafeBufferPointer(rebasing: order[bound[s]..<bound[s + 1]])
                    (shards + s).pointee.withLock { body(&$0, positions) }
                }
            }
        }
    }

    /// Blocks indexed (for tests and the admin view).
    public var count: Int { (0..<16).reduce(0) { n, i in n + (shards + i).pointee.withLock { $0.owners.count } } }
}
