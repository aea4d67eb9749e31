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

    /// For each endpoint id in `0..<count`, how many leading blocks of `hashes` it owns
    /// (the contiguous prefix: block i counts only if blocks 0..<i were found on the same endpoint).
    func match(_ hashes: UnsafeBufferPointer<UInt64>, endpointIDs: [Int]) -> [Int: Int] {
        var result: [Int: Int] = [:]
        var current: Int? = nil
        for (i, h) in hashes.enumerated() {
            let e = shards[shard(h)].lock.withLock { $0.owner[h]?.endpoint }
            guard let e, endpointIDs.contains(e) else { break }
            if i == 0 { current = e } else if current != e { break }
            result[e, default: 0] += 1
        }
        return result
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
