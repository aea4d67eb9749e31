/// An incremental scanner for a `text/event-stream` body fed in arbitrary chunks.
///
/// Feed each chunk until it reports `.needMore`, then feed the next chunk:
///
/// ```
/// var i = 0
/// while case .event(let e, let next) = scanner.next(chunk, from: i) {
///     // bytes up to `next` of this chunk complete event `e` (absolute range e.start..<e.end)
///     i = next
/// }
/// // the rest of the chunk belongs to an event still open; the scanner kept a copy of it
/// ```
///
/// Lines end with CRLF, LF or CR (a CR at the end of a chunk and an LF at the start of the next
/// are one line end); an event ends at a blank line. Offsets are absolute: the scanner counts the
/// bytes of all chunks it has been given (``streamOffset`` is that of the current chunk's first byte).
///
/// Inspection: an event wholly inside one chunk is inspected in place. The bytes of an event that
/// spans chunks are copied into an internal buffer, up to `maxEventBytes` (default 64 KiB); a larger
/// event is still delimited but reported with `inspected == false`. The buffer is allocated once,
/// on the first event that spans chunks, and reused; nothing else is allocated. Only events with one
/// `data:` line are inspected (what OpenAI-compatible servers send); the payload is read with
/// ``ResponseScanner``.
///
/// ```
///  line start ──byte──▶ in line ──CR/LF──▶ line start ──CR/LF (blank line)──▶ event complete
///      └─ CR/LF before any field: a leading blank line, absorbed into the next event
/// ```
public struct SSEScanner: Sendable {
    public enum Step: Sendable, Equatable {
        /// An event completed; it ends at `next` in the current chunk: continue from there.
        case event(SSEEvent, next: Int)
        /// The rest of the chunk was consumed; feed the next chunk (from 0).
        case needMore
    }

    public let maxEventBytes: Int
    /// Absolute offset of the current chunk's first byte.
    public private(set) var streamOffset = 0
    /// Absolute offset where the open event starts (= the end of the last complete event).
    public private(set) var eventStart = 0
    var lastWasCR = false
    var atLineStart = true
    var sawField = false
    /// Copy of the open event's bytes from earlier chunks (`eventStart..<streamOffset`), unless too big.
    var pending: [UInt8] = []
    var pendingOverflow = false

    public init(maxEventBytes: Int = 64 << 10) {
        self.maxEventBytes = maxEventBytes
    }

    /// Absolute offset up to which the stream consists of complete events.
    public var completeThrough: Int { eventStart }

    /// The bytes of the open event that arrived in earlier chunks (empty if it overflowed), e.g. to
    /// relay them once the caller knows the event is not to be stripped.
    public func withPendingBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try pending.withUnsafeBytes(body)
    }

    /// Scans `chunk` from `from` to the end of the next event, or to the end of the chunk.
    public mutating func next(_ chunk: UnsafeRawBufferPointer, from: Int) -> Step {
        let n = chunk.count
        guard n > from, let base = chunk.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            finishChunk(chunk, from: from)
            return .needMore
        }
        var i = from
        while i < n {
            let c = base[i]
            if c == 0x0A || c == 0x0D {
                let crlf = c == 0x0A && lastWasCR
                lastWasCR = c == 0x0D
                i += 1
                if crlf { continue }  // the LF of a CRLF: the line already ended at the CR
                if atLineStart {
                    if sawField { return .event(complete(chunk, end: i), next: i) }
                    // A blank line before any field: nothing to dispatch (SSE ignores it).
                } else {
                    atLineStart = true
                }
            } else {
                lastWasCR = false
                atLineStart = false
                sawField = true
                i = Self.lineEnd(base, from: i + 1, end: n)
            }
        }
        finishChunk(chunk, from: from)
        return .needMore
    }

    /// The chunk is used up: keep the open event's bytes from it, advance the stream offset.
    mutating func finishChunk(_ chunk: UnsafeRawBufferPointer, from: Int) {
        let startInChunk = max(eventStart - streamOffset, 0)
        let open = chunk.count - startInChunk
        if open > 0 && !pendingOverflow {
            if pending.count + open > maxEventBytes {
                pendingOverflow = true
                pending.removeAll(keepingCapacity: true)
            } else {
                if pending.capacity == 0 { pending.reserveCapacity(min(maxEventBytes, 4096)) }
                pending.append(contentsOf: chunk[startInChunk...])
            }
        }
        streamOffset += chunk.count
    }

    /// The event ending at `end` (in the chunk) is complete: inspect it and reset.
    mutating func complete(_ chunk: UnsafeRawBufferPointer, end: Int) -> SSEEvent {
        var e = SSEEvent(start: eventStart, end: streamOffset + end)
        if eventStart >= streamOffset {
            let bytes = UnsafeRawBufferPointer(rebasing: chunk[(eventStart - streamOffset)..<end])
            Self.inspect(bytes, &e)
        } else if pendingOverflow || pending.count + end > maxEventBytes {
            e.inspected = false
        } else {
            pending.append(contentsOf: chunk[0..<end])
            pending.withUnsafeBytes { Self.inspect($0, &e) }
        }
        pending.removeAll(keepingCapacity: true)
        pendingOverflow = false
        eventStart = streamOffset + end
        atLineStart = true
        sawField = false
        return e
    }

    /// The offset of the first CR or LF in `from..<end` of `base`, or `end`: eight bytes a step
    /// while there is none (a vLLM event is one `data:` line of a few hundred bytes, scanned once
    /// to delimit the event and once to read it).
    @inline(__always)
    static func lineEnd(_ base: UnsafePointer<UInt8>, from: Int, end n: Int) -> Int {
        var i = from
        while i &+ 8 <= n {
            let w = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
            if SWAR.hasByte(w, 0x0A) || SWAR.hasByte(w, 0x0D) { break }
            i &+= 8
        }
        while i < n && base[i] != 0x0A && base[i] != 0x0D { i += 1 }
        return i
    }

    /// Reads the fields of one complete event (`bytes` from its first byte to past its blank line).
    static func inspect(_ bytes: UnsafeRawBufferPointer, _ e: inout SSEEvent) {
        var data = ByteRange(start: 0, end: 0)
        var i = 0
        let n = bytes.count
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        while i < n {
            // One line: i..<lineEnd.
            let lineEnd = Self.lineEnd(base, from: i, end: n)
            if lineEnd - i >= 4 && bytes[i] == UInt8(ascii: "d") && bytes[i + 1] == UInt8(ascii: "a")
                && bytes[i + 2] == UInt8(ascii: "t") && bytes[i + 3] == UInt8(ascii: "a")
                && (lineEnd - i == 4 || bytes[i + 4] == UInt8(ascii: ":"))
            {
                var v = min(i + 5, lineEnd)
                if v < lineEnd && bytes[v] == 0x20 { v += 1 }  // one optional space after the colon
                data = ByteRange(start: v, end: lineEnd)
                e.dataLines += 1
            }
            i = lineEnd + 1
        }
        guard e.dataLines == 1 else {
            // Several data lines would have to be joined with "\n" to be read; servers do not send them.
            e.inspected = e.dataLines == 0
            return
        }
        let payload = data.bytes(in: bytes)
        if Bytes.equal(payload, "[DONE]") {
            e.isDone = true
        } else if let r = ResponseScanner.scan(payload) {
            e.payload = r
        } else {
            e.isMalformed = true
        }
    }
}
