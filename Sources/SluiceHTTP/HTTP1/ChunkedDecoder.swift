/// An incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
///
/// Feed it the bytes of a message body as they arrive, in any split; it reports the payload
/// ranges in place and where the message ends. Chunk extensions are skipped (bounded by
/// `maxExtensionBytes` per chunk); trailer fields are read and dropped (bounded by
/// `maxTrailerBytes`). The whole framing of a message is bounded by its reader (a request's
/// counts against `limits.max_body_bytes`).
///
/// ```
///  size ──CRLF──▶ data(n) ──CRLF──▶ size ... size=0 ──CRLF──▶ trailers ──CRLF──▶ done
///    └─ ';' ext ─┘
/// ```
public struct ChunkedDecoder: Sendable {
    public enum Event: Equatable, Sendable {
        /// Payload bytes `start..<end` of the input; continue from `end`.
        case data(start: Int, end: Int)
        /// All input consumed; more is needed.
        case needMore
        /// The message ends at `end` (offset in the input; bytes after it belong to the next message).
        case done(end: Int)
        case error(HTTPParseError)
    }

    enum State: Equatable, Sendable {
        case size(value: Int, digits: Int)
        case extensions(Int)
        case sizeLF(Int)
        case data(Int)
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerLine
        case trailerLF(empty: Bool)
        case done
    }

    var state: State = .size(value: 0, digits: 0)
    var trailerBytes = 0
    var extensionBytes = 0
    public var maxTrailerBytes = 16 << 10
    /// Chunk extensions carry nothing anyone uses (RFC 9112 §7.1.1); longer ones are an error.
    public var maxExtensionBytes = 4 << 10
    public var isDone: Bool { state == .done }

    public init() {}

    public mutating func reset() {
        state = .size(value: 0, digits: 0)
        trailerBytes = 0
        extensionBytes = 0
    }

    /// Decodes from `bytes[from...]` up to the next event.
    public mutating func next(_ bytes: UnsafeRawBufferPointer, from: Int) -> Event {
        var i = from
        let n = bytes.count
        while i < n {
            let c = bytes[i]
            switch state {
            case .size(let v, let d):
                if let h = Self.hex(c) {
                    // 15 hex digits would already be 2^60; refuse before overflow.
                    if d == 15 { return .error(.badChunk("chunk size too large")) }
                    state = .size(value: v << 4 | h, digits: d + 1)
                } else if d == 0 {
                    return .error(.badChunk("missing chunk size"))
                } else if c == 13 {
                    state = .sizeLF(v)
                } else if c == UInt8(ascii: ";") || c == 32 || c == 9 {
                    state = .extensions(v)
                    extensionBytes = 0
                } else {
                    return .error(.badChunk("invalid chunk size"))
                }
                i += 1
            case .extensions(let v):
                if c == 13 { state = .sizeLF(v) }
                else if c == 10 || !CharacterClass.isFieldValue(c) { return .error(.badChunk("invalid chunk extension")) }
                i += 1
                extensionBytes += 1
                if extensionBytes > maxExtensionBytes { return .error(.badChunk("chunk extension too long")) }
            case .sizeLF(let v):
                guard c == 10 else { return .error(.badChunk("bare CR")) }
                i += 1
                state = v == 0 ? .trailerLineStart : .data(v)
            case .data(let left):
                let take = min(left, n - i)
                state = take == left ? .dataCR : .data(left - take)
                return .data(start: i, end: i + take)
            case .dataCR:
                guard c == 13 else { return .error(.badChunk("missing CRLF after chunk data")) }
                state = .dataLF
                i += 1
            case .dataLF:
                guard c == 10 else { return .error(.badChunk("missing CRLF after chunk data")) }
                state = .size(value: 0, digits: 0)
                i += 1
            case .trailerLineStart:
                if c == 13 { state = .trailerLF(empty: true) }
                else if c == 10 { return .error(.badChunk("bare LF")) }
                else { state = .trailerLine }
                i += 1
                trailerBytes += 1
            case .trailerLine:
                if c == 13 { state = .trailerLF(empty: false) }
                else if c == 10 || !CharacterClass.isFieldValue(c) { return .error(.badChunk("invalid trailer")) }
                i += 1
                trailerBytes += 1
                if trailerBytes > maxTrailerBytes { return .error(.badChunk("trailers too large")) }
            case .trailerLF(let empty):
                guard c == 10 else { return .error(.badChunk("bare CR")) }
                i += 1
                if empty {
                    state = .done
                    return .done(end: i)
                }
                state = .trailerLineStart
            case .done:
                return .done(end: i)
            }
        }
        return .needMore
    }

    @inline(__always)
    static func hex(_ c: UInt8) -> Int? {
        switch c {
        case 48...57: Int(c - 48)
        case 97...102: Int(c - 87)
        case 65...70: Int(c - 55)
        default: nil
        }
    }

    /// Outcome of decoding a whole chunked body held in one buffer.
    public enum Whole: Equatable, Sendable {
        /// The payload, and where the message ends in the input.
        case complete(payload: [UInt8], end: Int)
        case incomplete
        case invalid
    }

    /// Decodes the chunked body starting at `from` when all of it is in `bytes` (the control
    /// plane's simple client and server buffer whole messages; the proxy uses ``next(_:from:)``).
    public static func decodeWhole(_ bytes: UnsafeRawBufferPointer, from: Int) -> Whole {
        var d = ChunkedDecoder()
        var payload: [UInt8] = []
        var pos = from
        while true {
            switch d.next(bytes, from: pos) {
            case .data(let s, let e):
                payload += bytes[s..<e]
                pos = e
            case .needMore: return .incomplete
            case .done(let end): return .complete(payload: payload, end: end)
            case .error: return .invalid
            }
        }
    }
}
