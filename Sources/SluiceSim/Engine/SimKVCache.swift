/// The KV cache as vLLM's block pool manages it: `numBlocks` fixed-size blocks, a reference
/// count per block, a hash → block index of full prompt blocks (the prefix cache), and one free
/// queue ordered by release time.
///
/// A block whose count drops to zero goes to the tail of the free queue but keeps its hash, so
/// it can still be hit; allocation takes the head of the queue (the least recently released
/// block) and evicts its hash then. So the cache is LRU over idle blocks, and "in use" means
/// referenced by a live sequence: `usage = 1 - free / total`, as `vllm:kv_cache_usage_perc`.
///
/// Invariant: a block is in the free queue iff its reference count is zero.
struct SimKVCache {
    let numBlocks: Int
    private var refCount: [Int32]
    private var hashOf: [UInt64?]
    // The free queue: a doubly linked list over block indices (-1 ends it).
    private var prev: [Int32]
    private var next: [Int32]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var freeCount = 0
    private var index: [UInt64: Int32] = [:]
    /// Cached blocks evicted so far.
    private(set) var evictions = 0

    init(numBlocks: Int) {
        self.numBlocks = numBlocks
        refCount = Array(repeating: 0, count: numBlocks)
        hashOf = Array(repeating: nil, count: numBlocks)
        prev = Array(repeating: -1, count: numBlocks)
        next = Array(repeating: -1, count: numBlocks)
        for b in 0..<numBlocks { append(Int32(b)) }
    }

    var usedBlocks: Int { numBlocks - freeCount }
    var usage: Double { numBlocks == 0 ? 0 : Double(usedBlocks) / Double(numBlocks) }
    /// Blocks holding a hash (cached, in use or idle).
    var cachedBlocks: Int { index.count }

    /// The block caching `hash`, if any.
    func lookup(_ hash: UInt64) -> Int32? { index[hash] }

    func isFree(_ b: Int32) -> Bool { refCount[Int(b)] == 0 }

    /// Takes a reference to a cached block (a prefix hit), taking it off the free queue.
    mutating func touch(_ b: Int32) {
        if refCount[Int(b)] == 0 { unlink(b) }
        refCount[Int(b)] += 1
    }

    /// A fresh block for new KV, evicting the least recently released cached block; nil when
    /// every block is referenced.
    mutating func allocate() -> Int32? {
        guard head >= 0 else { return nil }
        let b = head
        unlink(b)
        if let h = hashOf[Int(b)] {
            index.removeValue(forKey: h)
            hashOf[Int(b)] = nil
            evictions += 1
        }
        refCount[Int(b)] = 1
        return b
    }

    /// Drops one reference; an unreferenced block joins the tail of the free queue.
    mutating func release(_ b: Int32) {
        precondition(refCount[Int(b)] > 0, "release of a free block")
        refCount[Int(b)] -= 1
        if refCount[Int(b)] == 0 { append(b) }
    }

    /// Records that `b` now holds the full block whose chained hash is `hash`. A hash already
    /// cached in another block (two sequences computed the same prefix at once) is kept where
    /// it is, and `b` stays anonymous.
    mutating func register(_ b: Int32, hash: UInt64) {
        guard index[hash] == nil, hashOf[Int(b)] == nil else { return }
        index[hash] = b
        hashOf[Int(b)] = hash
    }

    private mutating func append(_ b: Int32) {
        prev[Int(b)] = tail
        next[Int(b)] = -1
        if tail >= 0 { next[Int(tail)] = b } else { head = b }
        tail = b
        freeCount += 1
    }

    private mutating func unlink(_ b: Int32) {
        let p = prev[Int(b)], n = next[Int(b)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        prev[Int(b)] = -1
        next[Int(b)] = -1
        freeCount -= 1
    }
}
