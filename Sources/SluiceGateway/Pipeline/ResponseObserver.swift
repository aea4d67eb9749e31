import SluiceIO
import SluiceLLM

/// Watches a response as it is relayed, in place: time to first token, inter-token gaps,
/// usage and finish reason, from the SSE events of a stream or the JSON of a whole response.
/// When Sluice injected `include_usage`, it also removes the usage-only event from what the
/// client sees (if that event lies within one upstream read — vLLM sends each event as its own
/// chunk; an event split across reads is relayed unchanged rather than cut).
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
        // Built only once an event is stripped (rare: the one usage-only event Sluice asked
        // for), so relaying events allocates nothing.
        var kept: [(Int, Int)]? = nil
        for (index, r) in ranges.enumerated() {
            let chunk = buffer.bytes(r.0, r.1)
            let base = sse!.streamOffset
            var pos = 0
            var keepFrom = r.0
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
                if strip && e.isUsageOnly && e.start >= base {
                    // Drop this event's bytes: keep what came before it in this range (the
                    // ranges before this one are kept whole).
                    if kept == nil { kept = Array(ranges[..<index]) }
                    let s = r.0 + (e.start - base), end = r.0 + (e.end - base)
                    if s > keepFrom { kept!.append((keepFrom, s)) }
                    keepFrom = end
                }
            }
            if kept != nil && keepFrom < r.1 { kept!.append((keepFrom, r.1)) }
        }
        if let s = stored, s.id == nil, let id = sse!.responseID { s.id = id }
        if let kept { ranges = kept }
    }
}
