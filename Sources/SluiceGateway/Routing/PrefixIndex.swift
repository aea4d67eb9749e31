import Synchronization

/// An approximate index of which endpoint was sent which prompt-prefix blocks, shared by all
/// workers so that every worker decides alike. Each block hash maps to the endpoint that last
/// received it (vLLM caches what it prefilled there). Bounded: 16 shards, each a map with
/// clock-style eviction of its oldest entries once full.
///
/// Shards are locked only to look up or record one request's blocks (a few dozen dictionary
/// operations): short, and spread over shards by hash.
final class PrefixIndex: Sendable {
    struct Shard: Sendable {
        var owner: [UInt64: (endpoint: Int, tick: UInt64)] = [:]
        var tick: UInt64 = 0
    }

    final class Box: Sendable { let lock = Mutex(Shard()) }
    private let shards: [Box]
    let capacityPerShard: Int

    init(capacityBlocks: Int = 1 << 20) {
        capacityPerShard = max(64, capacityBlocks / 16)
        shards = (0..<16).map { _ in Box() }
    }

    @inline(__always) private func shard(_ h: UInt64) -> Int { Int(truncatingIfNeeded: (h >> 60) & 15) }

    /// The endpoint that owns the longest run of leading blocks of `hashes`, and how many:
    /// block i counts only if blocks 0..<i were found on the same endpoint, so at most one
    /// endpoint matches. `accepts` says which endpoint ids may match (the candidates).
    /// Allocation-free: one shard lock per block looked up.
    func match(_ hashes: UnsafeBufferPointer<UInt64>, accepts: (Int) -> Bool) -> (endpoint: Int, blocks: Int)? {
        var owner = -1
        var blocks = 0
        for h in hashes {
            let e = shards[shard(h)].lock.withLock { $0.owner[h]?.endpoint ?? -1 }
            if e < 0 { break }
            if blocks == 0 {
                guard accepts(e) else { break }
                owner = e
            } else if e != owner {
                break
            }
            blocks += 1
        }
        return blocks > 0 ? (owner, blocks) : nil
    }

    /// Records that `endpoint` received these blocks.
    func record(_ hashes: UnsafeBufferPointer<UInt64>, endpoint: Int) {
        for h in hashes {
            shards[shard(h)].lock.withLock { s in
                s.tick &+= 1
                s.owner[h] = (endpoint, s.tick)
                if s.owner.count > capacityPerShard {
                    // Evict the oldest eighth in one go, so eviction is amortised.
                    let cut = s.tick &- UInt64(capacityPerShard - capacityPerShard / 8)
                    s.owner = s.owner.filter { $0.value.tick > cut }
                }
            }
        }
    }

    /// Forgets an endpoint (removed from the pool).
    func remove(endpoint: Int) {
        for s in shards { s.lock.withLock { $0.owner = $0.owner.filter { $0.value.endpoint != endpoint } } }
    }
}
