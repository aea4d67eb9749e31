public import Glibc

/// One run of bytes waiting to be written, and what keeps it alive.
public struct OutputChunk: ~Copyable {
    /// The buffer the bytes live in, released once they are written; nil for bytes whose
    /// lifetime the appender guarantees (static strings, a request body the exchange owns).
    @usableFromInline var owner: ByteBuffer?
    @usableFromInline var start: UnsafeRawPointer
    @usableFromInline var count: Int
    /// Bytes in the queue's arena (framing), which later framing may extend in place.
    @usableFromInline var isArena: Bool

    @usableFromInline
    init(owner: consuming ByteBuffer?, start: UnsafeRawPointer, count: Int, isArena: Bool = false) {
        self.owner = owner
        self.start = start
        self.count = count
        self.isArena = isArena
    }
}

/// A connection's write queue: gathered into one `sendmsg` per flush (swift-nio's
/// PendingWritesManager idea). Body bytes are queued where they were read, never copied; small
/// framing (chunk sizes, CRLFs) goes to a per-queue arena block that goes back to the pool
/// whenever the queue drains, so a connection that waits (a long SSE stream between events, an
/// idle keep-alive) holds no block: taking one again is a free-list pop.
public struct OutputQueue: ~Copyable {
    /// Starts small (a response is typically a head and a body) and grows when a read brings
    /// many chunks; a connection keeps what it grew to.
    @usableFromInline var chunks = Ring<OutputChunk>(capacity: 4)
    /// The arena block that owns framing bytes; its cursor is kept apart (`arenaBase`,
    /// `arenaUsed`) so appending framing never has to borrow through the optional.
    @usableFromInline var arena: ByteBuffer?
    @usableFromInline var arenaBase: UnsafeMutableRawPointer?
    @usableFromInline var arenaCapacity = 0
    @usableFromInline var arenaUsed = 0
    @usableFromInline unowned(unsafe) let pool: BufferPool
    /// Bytes queued and not yet written.
    @usableFromInline var _pendingBytes = 0
    @inlinable public var pendingBytes: Int { _pendingBytes }

    /// iovecs per sendmsg; Linux allows 1024, but a proxy rarely has more than a few chunks.
    @usableFromInline static let maxIOVecs = 64

    public init(pool: BufferPool) { self.pool = pool }

    @inlinable public var isEmpty: Bool { chunks.isEmpty }
    @inlinable public var chunkCount: Int { chunks.count }

    /// Queues the readable bytes of `buffer`; the queue owns the buffer until they are written.
    public mutating func append(_ buffer: consuming ByteBuffer) {
        let n = buffer.readableBytes
        let p = UnsafeRawPointer(buffer.base + buffer.readerIndex)
        if n == 0 { return }  // dropping it returns it to the pool
        _pendingBytes += n
        chunks.append(OutputChunk(owner: buffer, start: p, count: n))
    }

    /// Queues `buffer`'s bytes `start..<end` (block offsets); the queue owns the buffer.
    public mutating func append(_ buffer: consuming ByteBuffer, from start: Int, to end: Int) {
        precondition(0 <= start && start <= end && end <= buffer.capacity)
        let p = UnsafeRawPointer(buffer.base + start)
        _pendingBytes += end - start
        chunks.append(OutputChunk(owner: buffer, start: p, count: end - start))
    }

    /// Queues bytes owned by someone else, who guarantees they stay valid and unchanged until
    /// the queue has written them or was cleared.
    @inlinable
    public mutating func append(borrowing bytes: UnsafeRawBufferPointer) {
        guard let p = bytes.baseAddress, bytes.count > 0 else { return }
        _pendingBytes += bytes.count
        chunks.append(OutputChunk(owner: nil, start: p, count: bytes.count))
    }

    @inlinable
    public mutating func append(_ s: StaticString) {
        append(borrowing: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Copies a few bytes (framing, a short header) into the queue's arena and queues them.
    public mutating func appendCopy(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count == 0 { return }
        let p = arenaSpace(bytes.count)
        p.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        queueArena(p, bytes.count)
    }

    /// Queues a chunked-encoding size line (`<hex>\r\n`).
    public mutating func appendChunkHeader(_ size: Int) {
        let p = arenaSpace(18)
        var n = ASCII.writeHex(size, to: p)
        p.storeBytes(of: 13, toByteOffset: n, as: UInt8.self)
        p.storeBytes(of: 10, toByteOffset: n + 1, as: UInt8.self)
        n += 2
        queueArena(p, n)
    }

    @usableFromInline
    mutating func arenaSpace(_ n: Int) -> UnsafeMutableRawPointer {
        precondition(n <= 4096, "arena copies are for framing, not bodies")
        if arenaBase == nil || arenaCapacity - arenaUsed < n {
            if arenaBase != nil {
                // Retire the full arena behind the chunks that point into it, so it is
                // released only after they are written.
                let old = arena.take()
                chunks.append(OutputChunk(owner: old, start: UnsafeRawPointer(bitPattern: 1)!, count: 0))
            }
            let fresh = pool.take()
            arenaBase = fresh.base
            arenaCapacity = fresh.capacity
            arenaUsed = 0
            arena = consume fresh
        }
        return arenaBase! + arenaUsed
    }

    @usableFromInline
    mutating func queueArena(_ p: UnsafeMutableRawPointer, _ n: Int) {
        arenaUsed += n
        _pendingBytes += n
        // Coalesce with the previous arena chunk when contiguous (e.g. CRLF + next size line).
        if chunks.count > 0 {
            let last = chunks.pointer(at: chunks.count - 1)
            if last.pointee.isArena && last.pointee.start + last.pointee.count == UnsafeRawPointer(p) {
                last.pointee.count += n
                return
            }
        }
        chunks.append(OutputChunk(owner: nil, start: UnsafeRawPointer(p), count: n, isArena: true))
    }

    /// Fills `iov` with up to `max` entries from the front of the queue; returns how many.
    public func gather(into iov: UnsafeMutablePointer<iovec>, max: Int) -> Int {
        var i = 0
        var k = 0
        while k < chunks.count && i < max {
            let c = chunks.pointer(at: k)
            if c.pointee.count > 0 {
                iov[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: c.pointee.start), iov_len: c.pointee.count)
                i += 1
            }
            k += 1
        }
        return i
    }

    /// Marks `n` bytes from the front as written, releasing buffers that are done.
    public mutating func consume(_ n: Int) {
        var left = n
        _pendingBytes -= n
        while !chunks.isEmpty {
            let c = chunks.pointer(at: 0)
            if c.pointee.count > left {
                c.pointee.start += left
                c.pointee.count -= left
                return
            }
            // Fully written (or a zero-length marker retiring an old arena).
            left -= c.pointee.count
            _ = chunks.removeFirst()
        }
        dropArena()
    }

    /// Writes as much as the socket accepts. Returns true when the queue is empty afterwards.
    public mutating func flush(to fd: Int32) throws(SyscallError) -> Bool {
        var iovs = (iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(),
                    iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec(), iovec())
        while !chunks.isEmpty {
            let result = try withUnsafeMutableBytes(of: &iovs) { (raw) throws(SyscallError) -> IOResult<Int> in
                let iov = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
                let count = gather(into: iov, max: 16)
                if count == 0 { return .processed(0) }
                return try Sys.sendmsg(fd, iov, Int32(count))
            }
            switch result {
            case .wouldBlock:
                return false
            case .processed(let n):
                consume(n)
            }
        }
        return true
    }

    /// Moves the first `n` bytes to the back of `other` without copying: whole chunks move
    /// with their owners; a split chunk's front goes over borrowed while this queue keeps the
    /// owner (so `other` must be written before this queue releases it — see ``retire(into:)``).
    /// Used for HTTP/2, where a stream's body waits in its own queue until flow control lets a
    /// DATA frame carry it into the connection's queue.
    public mutating func transfer(_ n: Int, to other: inout OutputQueue) {
        precondition(n <= _pendingBytes)
        var left = n
        while left > 0, !chunks.isEmpty {
            let c = chunks.pointer(at: 0)
            precondition(!c.pointee.isArena, "framing arenas cannot be transferred")
            if c.pointee.count <= left {
                left -= c.pointee.count
                _pendingBytes -= c.pointee.count
                other._pendingBytes += c.pointee.count
                other.chunks.append(chunks.removeFirst()!)
            } else {
                other.append(borrowing: UnsafeRawBufferPointer(start: c.pointee.start, count: left))
                c.pointee.start += left
                c.pointee.count -= left
                _pendingBytes -= left
                left = 0
            }
        }
    }

    /// Hands every buffer this queue owns to `other` as zero-length entries, so memory that
    /// `other` borrowed from them stays alive until `other` has written up to that point. The
    /// unsent bytes are dropped.
    public mutating func retire(into other: inout OutputQueue) {
        while var c = chunks.removeFirst() {
            c.count = 0
            c.isArena = false
            other.chunks.append(c)
        }
        _pendingBytes = 0
    }

    /// Drops everything queued (the connection is going away).
    public mutating func removeAll() {
        chunks.removeAll()
        _pendingBytes = 0
        dropArena()
    }

    /// Whether an arena block is held (only while framing waits to be written).
    public var holdsArena: Bool { arenaBase != nil }

    /// Returns the arena block to the pool; only called with nothing queued that points into it.
    @usableFromInline
    mutating func dropArena() {
        arena = nil
        arenaBase = nil
        arenaCapacity = 0
        arenaUsed = 0
    }
}
