import Synchronization

/// An approximate index of which endpoints were sent which prompt-prefix blocks (vLLM caches
/// what it prefilled there), shared by all workers so that every worker decides alike. Each
/// block hash keeps up to ``ownersPerBlock`` endpoints, the least recently sent one replaced
/// first: a prefix that load spread over several endpoints is known on each of them, so the
/// scorers can balance among them without a miss.
///
/// Bounded: 16 shards, each a map with clock-style eviction of its least recently touched
/// entries once full. Shards are locked only to look up or record one block (a dictionary
/// operation): short, and spread over shards by hash.
public final class PrefixIndex: Sendable {
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
    }

    struct Shard: Sendable {
        var owners: [UInt64: Owners] = [:]
        var tick: UInt32 = 0
    }

    final class Box: Sendable { let lock = Mutex(Shard()) }
    private let shards: [Box]
    public let capacityPerShard: Int

    public init(capacityBlocks: Int = 1 << 20) {
        capacityPerShard = max(64, capacityBlocks / 16)
        shards = (0..<16).map { _ in Box() }
    }

    @inline(__always) private func shard(_ h: UInt64) -> Box { shards[Int(truncatingIfNeeded: (h >> 60) & 15)] }

    private func owners(_ h: UInt64) -> Owners? { shard(h).lock.withLock { $0.owners[h] } }

    /// Sets each candidate's `prefixBlocks` to the length of the run of leading blocks of
    /// `hashes` recorded for it (0 for the others). Allocation-free: one shard lock per block
    /// looked up, and the lookup stops at the first block no remaining candidate holds.
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
        var i = 1
        while i < hashes.count && remaining > 0 {
            let o = owners(hashes[i])
            for s in 0..<4 where alive[s] >= 0 {
                let k = Int(alive[s])
                if o?.slot(of: Int32(truncatingIfNeeded: c[k].id)) == nil {
                    c[k].prefixBlocks = i
                    alive[s] = -1
                    remaining -= 1
                }
            }
            i += 1
        }
        for s in 0..<4 where alive[s] >= 0 { c[Int(alive[s])].prefixBlocks = i }
    }

    /// Records that `endpoint` was sent these blocks.
    public func record(_ hashes: UnsafeBufferPointer<UInt64>, endpoint: Int) {
        let id = Int32(truncatingIfNeeded: endpoint)
        for h in hashes {
            shard(h).lock.withLock { s in
                s.tick &+= 1
                let now = s.tick
                var o = s.owners[h] ?? Owners()
                var slot = o.slot(of: id) ?? o.slot(of: -1)
                if slot == nil {
                    // Replace the owner sent this block longest ago (ticks compared as distances from now).
                    var oldest = 0
                    for t in 1..<4 where now &- o.ticks[t] > now &- o.ticks[oldest] { oldest = t }
                    slot = oldest
                }
                o.ids[slot!] = id
                o.ticks[slot!] = now
                o.touched = now
                s.owners[h] = o
                if s.owners.count > capacityPerShard {
                    // Evict the least recently touched eighth in one go, so eviction is amortised.
                    let keep = UInt32(capacityPerShard - capacityPerShard / 8)
                    s.owners = s.owners.filter { now &- $0.value.touched < keep }
                }
            }
        }
    }

    /// Blocks indexed (for tests and the admin view).
    public var count: Int { shards.reduce(0) { n, b in n + b.lock.withLock { $0.owners.count } } }
}
