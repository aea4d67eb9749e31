import SluiceIO
import SluiceLLM

/// Watches a response as it is relayed, in place: time to first token, inter-token gaps,
/// usage and finish reason, from the SSE events of a stream or the JSON of a whole response.
/// When Sluice injected `include_usage`, it also removes the usage-only event from what the
/// client sees. An upstream read can end inside an event (a stream that piled up in the socket
/// is cut wherever the read buffer ends): while stripping, the open event's bytes are held
/// back (``held``, at most the scanner's `maxEventBytes`) and relayed before the next read's
/// once the event turns out not to be the usage one (``release``).
struct ResponseObserver {
    var sse: SSEScanner?
    var strip: Bool
    var firstTokenAt: Instant?
    var lastTokenAt: Instant?
    var tokenEvents = 0
    var usage: Usage?
    /// Usage merged over events (Anthropic reports input and output in two events).
    var tally = UsageTally()
    var finishReason: FinishReason?
    /// The API's answers are read in this dialect (OpenAI, Anthropic, the Responses API).
    let dialect: ResponseDialect
    /// Responses API answers only: the id of the response the server stored, once seen (boxed:
    /// the observer of every other request stays small, and it is copied on its way).
    var stored: StoredResponse?

    final class StoredResponse {
        var id: ResponseID?
        /// ``id`` was remembered for its endpoint.
        var recorded = false
    }

    /// While stripping: the open event's bytes from earlier reads, not relayed yet.
    var held: [UInt8] = []
    /// Bytes to relay before this read's: a held event that completed and is not the usage one.
    var release: [UInt8] = []

    var responseID: ResponseID? { stored?.id }
    /// The stream's `data: [DONE]` went by: the client has the whole answer, even if it hangs
    /// up before the end of the HTTP body (OpenAI's SDKs do).
    var sawDone = false
    /// Non-streaming JSON: bytes seen so far when the body spans reads (copied only then), up
    /// to ``jsonKeepLimit``; past it only the last ``jsonTailBytes`` are kept (`jsonOverflowed`)
    /// and read by ``ResponseScanner/scanTail(_:)``, so a huge answer is never held whole.
    var json: [UInt8] = []
    var jsonOverflowed = false
    static let jsonKeepLimit = 1 << 20
    static let jsonTailBytes = 64 << 10
    /// The announced length of a non-streaming body (its Content-Length), if any.
    let jsonLength: Int?

    init(eventStream: Bool, strip: Bool, contentLength: Int?, dialect: ResponseDialect = .openAI) {
        self.dialect = dialect
        if dialect == .responses { stored = StoredResponse() }
        sse = eventStream ? SSEScanner(dialect: dialect) : nil
        self.strip = strip && eventStream
        jsonLength = contentLength
    }

    /// Observes the payload `ranges` of `buffer` (block offsets), removing stripped bytes from
    /// `ranges`. `now` is the arrival time.
    mutating func observe(_ buffer: borrowing ByteBuffer, _ ranges: inout [(Int, Int)], now: Instant) {
        if sse != nil {
            observeEvents(buffer, &ranges, now: now)
        } else {
            for r in ranges { observeJSON(buffer, r.0, r.1, now: now) }
        }
    }

    /// JSON body bytes `start..<end` of `buffer` (nothing in them is ever rewritten).
    mutating func observeJSON(_ buffer: borrowing ByteBuffer, _ start: Int, _ end: Int, now: Instant) {
        if json.isEmpty && !jsonOverflowed, let n = jsonLength, end - start == n {
            // The whole JSON body arrived in one read (the usual case): scan it in place.
            scanJSON(buffer.bytes(start, end), now: now)
            return
        }
        let bytes = buffer.bytes(start, end)
        if !jsonOverflowed && json.count + bytes.count <= Self.jsonKeepLimit {
            json.append(contentsOf: bytes)
            return
        }
        // Too large to keep whole: keep a sliding tail (compacted once it doubles).
        jsonOverflowed = true
        if bytes.count >= Self.jsonTailBytes {
            json.removeAll(keepingCapacity: true)
            json.append(contentsOf: bytes[(bytes.count - Self.jsonTailBytes)...])
        } else {
            json.append(contentsOf: bytes)
            if json.count > 2 * Self.jsonTailBytes { json.removeFirst(json.count - Self.jsonTailBytes) }
        }
    }

    /// At the end of a non-streaming response: read usage from the JSON body.
    mutating func finishJSON(now: Instant) {
        guard sse == nil, !json.isEmpty else { return }
        let body = json
        json = []
        if jsonOverflowed {
            let r = body.withUnsafeBytes { ResponseScanner.scanTail($0) }
            usage = r.usage
            finishReason = r.finishReason
            firstTokenAt = firstTokenAt ?? now
            return
        }
        body.withUnsafeBytes { scanJSON($0, now: now) }
    }

    private mutating func scanJSON(_ body: UnsafeRawBufferPointer, now: Instant) {
        if let r = ResponseScanner.scan(body, dialect: dialect) {
            usage = r.usage
            finishReason = r.finishReason
            if let s = stored, let id = r.responseID { s.id = ResponseID(id.bytes(in: body)) }
            if r.hasToken { firstTokenAt = firstTokenAt ?? now }
        }
    }

    private mutating func observeEvents(_ buffer: borrowing ByteBuffer, _ ranges: inout [(Int, Int)], now: Instant) {
        // Built only once an event is stripped or held (rare: the one usage-only event Sluice
        // asked for, an event cut by a read), so relaying events allocates nothing.
        var kept: [(Int, Int)]? = nil
        let readStart = sse!.streamOffset
        // An event held from earlier reads: its bytes in this read are held too until it ends.
        var holding = !held.isEmpty
        for (index, r) in ranges.enumerated() {
            let chunk = buffer.bytes(r.0, r.1)
            let base = sse!.streamOffset
            var pos = 0
            var keepFrom = r.0
            if holding && kept == nil { kept = Array(ranges[..<index]) }
            while case .event(let e, let next) = sse!.next(chunk, from: pos) {
                pos = next
                if e.hasToken {
                    if firstTokenAt == nil { firstTokenAt = now }
                    lastTokenAt = now
                    tokenEvents += 1
                }
                if e.usage != nil {
                    tally.add(e.payload)
                    usage = tally.usage
                }
                if let f = e.finishReason { finishReason = f }
                if e.isDone { sawDone = true }
                if holding {
                    // The held event ended in this read: its bytes here are held as well
                    // (up to its end), then it is dropped if it is the usage one, else
                    // relayed ahead of this read.
                    holding = false
                    let end = r.0 + (e.end - base)
                    if strip && e.isUsageOnly {
                        held.removeAll()
                    } else {
                        release = held
                        held.removeAll()
                        release.append(contentsOf: buffer.bytes(keepFrom, end))
                    }
                    keepFrom = end
                } else if strip && e.isUsageOnly && e.start >= readStart {
                    // Drop this event's bytes: keep what came before it in this range (the
                    // ranges before this one are kept whole, or up to where it started).
                    if kept == nil { kept = Array(ranges[..<index]) }
                    let s = max(r.0, r.0 + (e.start - base)), end = r.0 + (e.end - base)
                    if e.start < base { Self.cut(&kept!, from: Self.bufferOffset(e.start, ranges, readStart)) }
                    if s > keepFrom { kept!.append((keepFrom, s)) }
                    keepFrom = end
                }
            }
            if holding {
                // Still open at the end of this range: hold all of it.
                if keepFrom < r.1 { held.append(contentsOf: buffer.bytes(keepFrom, r.1)) }
                keepFrom = r.1
            }
            if kept != nil && keepFrom < r.1 { kept!.append((keepFrom, r.1)) }
        }
        if strip && !holding && sse!.completeThrough < sse!.streamOffset && sse!.completeThrough >= readStart {
            // A new event is open at the end of this read: hold its bytes here back (they are
            // the tail of this read) until it ends — unless it is already longer than an event
            // may be, then it goes as it comes.
            let openFrom = sse!.completeThrough
            if sse!.streamOffset - openFrom <= sse!.maxEventBytes {
                var list = kept ?? ranges
                let c = Self.bufferOffset(openFrom, ranges, readStart)
                for r in ranges where r.1 > c { held.append(contentsOf: buffer.bytes(max(c, r.0), r.1)) }
                Self.cut(&list, from: c)
                kept = list
            }
        } else if holding && held.count > sse!.maxEventBytes {
            // Held longer than an event may be: let it go as it is (not stripped).
            release = held
            held.removeAll()
        }
        if let s = stored, s.id == nil, let id = sse!.responseID { s.id = id }
        if let kept { ranges = kept }
    }

    /// The buffer offset of stream offset `o` within this read's `ranges` (payload ranges in
    /// increasing buffer order; chunk framing lies between them), the read starting at stream
    /// offset `readStart`.
    private static func bufferOffset(_ o: Int, _ ranges: [(Int, Int)], _ readStart: Int) -> Int {
        var offset = readStart
        for r in ranges {
            if o < offset + (r.1 - r.0) { return r.0 + max(0, o - offset) }
            offset += r.1 - r.0
        }
        return ranges.last?.1 ?? 0
    }

    /// Removes from `list` (increasing buffer offsets) everything at or after `offset`.
    private static func cut(_ list: inout [(Int, Int)], from offset: Int) {
        while let last = list.last, last.1 > offset {
            list.removeLast()
            if last.0 < offset { list.append((last.0, offset)) }
        }
    }

    /// What is still held when the stream ends (an event without its closing blank line):
    /// relayed as it came.
    mutating func takeHeldAtEnd() -> [UInt8] {
        defer { held.removeAll() }
        return held
    }
}
