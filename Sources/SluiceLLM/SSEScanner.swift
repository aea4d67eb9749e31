internal import CSluiceSIMD

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
/// ``ResponseScanner`` in the scanner's ``dialect`` (`event:` lines, which Anthropic and the
/// Responses API send, are delimited and not read: their data repeats the type).
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
    /// How each event's payload is read (Anthropic and Responses API streams have their own).
    public let dialect: ResponseDialect
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
    /// The open event's `data:` lines as ``next(_:from:)`` delimited them: how many, and the value
    /// of the last one (absolute offsets; meaningful when there is exactly one). Used when the
    /// event lies within one chunk, so that its bytes are not scanned for lines a second time; an
    /// event that spans chunks is read from its copy by ``inspect(_:_:)``.
    var dataLines = 0
    var dataValue = ByteRange(start: 0, end: 0)
    /// Responses API streams: the id of the response (``ScannedResponse/responseID`` of the
    /// latest event that carried one, `response.created` first); nil in other dialects, or when
    /// longer than ``ResponseID/capacity``.
    public private(set) var responseID: ResponseID?

    public init(maxEventBytes: Int = 64 << 10, dialect: ResponseDialect = .openAI) {
        self.maxEventBytes = maxEventBytes
        self.dialect = dialect
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
                let lineStart = i
                i = Self.lineEnd(base, from: i + 1, end: n)
                if atLineStart, let v = Self.dataValue(base, lineStart, i) {
                    dataLines += 1
                    dataValue = ByteRange(start: streamOffset + v.start, end: streamOffset + v.end)
                }
                atLineStart = false
                sawField = true
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
            // Every line of the event was delimited in this chunk: its data lines are known.
            e.dataLines = dataLines
            let value = dataLines == 1
                ? UnsafeRawBufferPointer(rebasing: chunk[(dataValue.start - streamOffset)..<(dataValue.end - streamOffset)])
                : UnsafeRawBufferPointer(start: nil, count: 0)
            if let id = Self.read(value, dialect, &e) { responseID = id }
        } else if pendingOverflow || pending.count + end > maxEventBytes {
            e.inspected = false
        } else {
            pending.append(contentsOf: chunk[0..<end])
            if let id = pending.withUnsafeBytes({ Self.inspect($0, dialect, &e) }) { responseID = id }
        }
        pending.removeAll(keepingCapacity: true)
        pendingOverflow = false
        dataLines = 0
        eventStart = streamOffset + end
        atLineStart = true
        sawField = false
        return e
    }

    /// The offset of the first CR or LF in `from..<end` of `base`, or `end`, sixteen bytes a step
    /// (a vLLM event is one `data:` line of a few hundred bytes).
    @inline(__always)
    static func lineEnd(_ base: UnsafePointer<UInt8>, from: Int, end n: Int) -> Int {
        csluice_line_end(base, from, n)
    }

    /// The value of line `start..<end` of `base` if it is a `data` field (`data`, or `data:` and
    /// the value, less one optional space after the colon).
    @inline(__always)
    static func dataValue(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> ByteRange? {
        guard end - start >= 4 && base[start] == UInt8(ascii: "d") && base[start + 1] == UInt8(ascii: "a")
            && base[start + 2] == UInt8(ascii: "t") && base[start + 3] == UInt8(ascii: "a")
            && (end - start == 4 || base[start + 4] == UInt8(ascii: ":"))
        else { return nil }
        var v = min(start + 5, end)
        if v < end && base[v] == 0x20 { v += 1 }
        return ByteRange(start: v, end: end)
    }

    /// Reads the fields of one complete event (`bytes` from its first byte to past its blank line)
    /// that arrived in pieces: its lines are found again in the copy.
    static func inspect(_ bytes: UnsafeRawBufferPointer, _ dialect: ResponseDialect, _ e: inout SSEEvent) -> ResponseID? {
        var data = ByteRange(start: 0, end: 0)
        var i = 0
        let n = bytes.count
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
        while i < n {
            // One line: i..<lineEnd.
            let lineEnd = Self.lineEnd(base, from: i, end: n)
            if let v = dataValue(base, i, lineEnd) {
                data = v
                e.dataLines += 1
            }
            i = lineEnd + 1
        }
        return read(data.bytes(in: bytes), dialect, &e)
    }

    /// Reads the event's `payload`, the value of its one `data:` line (with `e.dataLines` already
    /// counted: any other count leaves it unread).
    static func read(_ payload: UnsafeRawBufferPointer, _ dialect: ResponseDialect, _ e: inout SSEEvent) -> ResponseID? {
        guard e.dataLines == 1 else {
            // Several data lines would have to be joined with "\n" to be read; servers do not send them.
            e.inspected = e.dataLines == 0
            return nil
        }
        if Bytes.equal(payload, "[DONE]") {
            e.isDone = true
        } else if dialect == .openAI {
            if let r = ResponseScanner.scan(payload) { e.payload = r } else { e.isMalformed = true }
        } else if var r = ResponseScanner.scan(payload, dialect: dialect) {
            let id = r.responseID.flatMap { ResponseID($0.bytes(in: payload)) }
            r.responseID = nil
            e.payload = r
            return id
        } else {
            e.isMalformed = true
        }
        return nil
    }
}
