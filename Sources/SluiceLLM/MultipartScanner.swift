import Glibc

/// Why a `multipart/form-data` body could not be read.
public enum MultipartError: Sendable, Equatable {
    /// The body ended before the first boundary.
    case noBoundary
    /// A part's header section is longer than the scanner's `maxHeaderBytes`.
    case headersTooLarge
    /// A header line without a colon, or a boundary line followed by other than CRLF or `--`.
    case malformed
    /// The body ended inside a part (no close delimiter `--boundary--`).
    case truncated
}

/// One part of a `multipart/form-data` body (RFC 7578), as offsets into the body.
public struct MultipartPart: Sendable, Equatable {
    /// The part's header section (without the blank line that ends it).
    public var headers: ByteRange
    /// `Content-Disposition`'s `name` (without quotes, escapes kept); nil without one.
    public var name: ByteRange?
    /// `Content-Disposition`'s `filename`: present for file parts.
    public var filename: ByteRange?
    /// The `Content-Type` field value.
    public var contentType: ByteRange?
    /// The part's content: from after its blank line to before the CRLF of the next delimiter.
    public var value: ByteRange

    public var isFile: Bool { filename != nil }

    public init(headers: ByteRange, name: ByteRange? = nil, filename: ByteRange? = nil, contentType: ByteRange? = nil, value: ByteRange) {
        self.headers = headers
        self.name = name
        self.filename = filename
        self.contentType = contentType
        self.value = value
    }
}

/// A resumable, allocation-free reader of `multipart/form-data` bodies: finds each part's name
/// and content range without copying anything, a file part included (the search for the next
/// delimiter is a `memchr` scan).
///
/// Streaming: call ``next(_:isComplete:)`` with the body received so far, the same buffer each
/// time, only ever longer (the gateway grows one buffer to the announced length). A part is
/// reported once its closing delimiter has arrived; until then the scanner answers `.needMore`
/// and remembers how far it searched, so each byte is searched about once however the body
/// arrives. Offsets in what it reports index that buffer. The `model` field of an audio upload
/// (the OpenAI SDK sends form fields before the file) is therefore known long before the file
/// has arrived.
///
/// ```
/// preamble ──"--boundary" CRLF──▶ headers ──CRLF CRLF──▶ value ──CRLF "--boundary" CRLF──▶ headers …
///                                                              └──CRLF "--boundary--"──▶ end
/// ```
public struct MultipartScanner: Sendable {
    public enum Step: Sendable, Equatable {
        /// A complete part; call again for the next.
        case part(MultipartPart)
        /// Nothing more can be reported until more of the body is there.
        case needMore
        /// The close delimiter was read (anything after it, the epilogue, is ignored).
        case end
        case malformed(MultipartError)
    }

    /// RFC 2046: a boundary is 1 to 70 characters.
    public static let maxBoundaryBytes = 70

    public let maxHeaderBytes: Int
    /// `CRLF "--" boundary`, inline (no allocation), and its length.
    var delimiter: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    let delimiterCount: Int

    enum State: Sendable, Equatable {
        case preamble
        /// At the bytes after a boundary: `--` (close) or padding and CRLF.
        case afterBoundary
        case headers
        case value(MultipartPart)
        case done
        case failed(MultipartError)
    }

    var state = State.preamble
    /// Where the current element (delimiter, headers, value) starts.
    var mark = 0
    /// Where the next search may start (what was searched already).
    var searchFrom = 0

    /// A scanner for `boundary` (the parameter's value, without quotes); nil when it is empty or
    /// longer than 70 bytes.
    public init?(boundary: UnsafeRawBufferPointer, maxHeaderBytes: Int = 8 << 10) {
        guard boundary.count >= 1, boundary.count <= Self.maxBoundaryBytes else { return nil }
        self.maxHeaderBytes = maxHeaderBytes
        delimiterCount = boundary.count + 4
        withUnsafeMutableBytes(of: &delimiter) { d in
            d[0] = 13
            d[1] = 10
            d[2] = UInt8(ascii: "-")
            d[3] = UInt8(ascii: "-")
            for i in 0..<boundary.count { d[4 + i] = boundary[i] }
        }
    }

    /// A scanner for the boundary of a `Content-Type` field value; nil when it is not
    /// `multipart/form-data` with a valid boundary.
    public init?(contentType: UnsafeRawBufferPointer, maxHeaderBytes: Int = 8 << 10) {
        guard let b = Self.boundary(contentType: contentType) else { return nil }
        self.init(boundary: b.bytes(in: contentType), maxHeaderBytes: maxHeaderBytes)
    }

    /// The `boundary` parameter of a `multipart/form-data` content type (quotes removed), as a
    /// range of `value`; nil for another media type or a missing, empty or over-long boundary.
    public static func boundary(contentType value: UnsafeRawBufferPointer) -> ByteRange? {
        var i = 0
        let n = value.count
        while i < n && isSpace(value[i]) { i += 1 }
        let type: StaticString = "multipart/form-data"
        let t = type.utf8CodeUnitCount
        guard n - i >= t, ASCIIBytes.equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: value[i..<(i + t)]), type) else { return nil }
        i += t
        // Parameters: `; name=value` or `; name="quoted"`.
        while i < n {
            while i < n && isSpace(value[i]) { i += 1 }
            guard i < n, value[i] == UInt8(ascii: ";") else { return nil }
            i += 1
            while i < n && isSpace(value[i]) { i += 1 }
            let nameStart = i
            while i < n && value[i] != UInt8(ascii: "=") && value[i] != UInt8(ascii: ";") && !isSpace(value[i]) { i += 1 }
            let name = UnsafeRawBufferPointer(rebasing: value[nameStart..<i])
            guard i < n, value[i] == UInt8(ascii: "=") else { return nil }
            i += 1
            var v: ByteRange
            if i < n && value[i] == UInt8(ascii: "\"") {
                let s = i + 1
                i = s
                while i < n && value[i] != UInt8(ascii: "\"") { i += 1 }
                guard i < n else { return nil }
                v = ByteRange(start: s, end: i)
                i += 1
            } else {
                let s = i
                while i < n && value[i] != UInt8(ascii: ";") && !isSpace(value[i]) { i += 1 }
                v = ByteRange(start: s, end: i)
            }
            if ASCIIBytes.equalsIgnoringCase(name, "boundary") {
                // Trailing spaces are not part of a boundary (RFC 2046 bchars end in a non-space).
                while v.count > 0 && value[v.end - 1] == UInt8(ascii: " ") { v.end -= 1 }
                return v.count >= 1 && v.count <= maxBoundaryBytes ? v : nil
            }
        }
        return nil
    }

    @inline(__always)
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// The next step over `body` (all of the body received so far). `isComplete`: nothing more
    /// will come, so a part still open is an error rather than `.needMore`.
    public mutating func next(_ body: UnsafeRawBufferPointer, isComplete: Bool) -> Step {
        while true {
            switch state {
            case .done:
                return .end
            case .failed(let e):
                return .malformed(e)
            case .preamble:
                // The first delimiter may open the body without its CRLF.
                let dash = delimiterCount - 2
                if body.count >= dash && withDelimiter({ Bytes.equal(body.baseAddress!, $0.baseAddress! + 2, dash) }) {
                    mark = dash
                    state = .afterBoundary
                    continue
                }
                if body.count < dash && body.count > 0 && withDelimiter({ Bytes.equal(body.baseAddress!, $0.baseAddress! + 2, body.count) }) {
                    return isComplete ? fail(.noBoundary) : .needMore
                }
                guard let at = search(body) else {
                    return isComplete ? fail(.noBoundary) : .needMore
                }
                mark = at + delimiterCount
                state = .afterBoundary
            case .afterBoundary:
                var i = mark
                guard i + 2 <= body.count else { return isComplete ? fail(.truncated) : .needMore }
                if body[i] == UInt8(ascii: "-") && body[i + 1] == UInt8(ascii: "-") {
                    state = .done
                    return .end
                }
                while i < body.count && Self.isSpace(body[i]) { i += 1 }
                guard i + 2 <= body.count else { return isComplete ? fail(.truncated) : .needMore }
                guard body[i] == 13 && body[i + 1] == 10 else { return fail(.malformed) }
                mark = i + 2
                searchFrom = mark
                state = .headers
            case .headers:
                // An empty header section is just the CRLF that ends it.
                if body.count >= mark + 2 && body[mark] == 13 && body[mark + 1] == 10 {
                    beginValue(MultipartPart(headers: ByteRange(start: mark, end: mark), value: ByteRange(start: mark + 2, end: mark + 2)))
                    continue
                }
                guard let end = find(body, "\r\n\r\n", from: max(mark, searchFrom)) else {
                    if body.count - mark > maxHeaderBytes { return fail(.headersTooLarge) }
                    searchFrom = max(mark, body.count - 3)
                    return isComplete ? fail(.truncated) : .needMore
                }
                if end - mark > maxHeaderBytes { return fail(.headersTooLarge) }
                guard var part = parseHeaders(body, ByteRange(start: mark, end: end)) else { return fail(.malformed) }
                part.value = ByteRange(start: end + 4, end: end + 4)
                beginValue(part)
            case .value(var part):
                guard let at = search(body) else {
                    return isComplete ? fail(.truncated) : .needMore
                }
                // Found: the bytes after it say whether another part follows; wait for them.
                searchFrom = at
                guard at + delimiterCount + 2 <= body.count else { return isComplete ? fail(.truncated) : .needMore }
                part.value.end = at
                mark = at + delimiterCount
                state = .afterBoundary
                return .part(part)
            }
        }
    }

    mutating func beginValue(_ part: MultipartPart) {
        mark = part.value.start
        searchFrom = mark
        state = .value(part)
    }

    mutating func fail(_ e: MultipartError) -> Step {
        state = .failed(e)
        return .malformed(e)
    }

    func withDelimiter<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: delimiter) { body(UnsafeRawBufferPointer(rebasing: $0[0..<delimiterCount])) }
    }

    /// The offset of the next full delimiter (`CRLF--boundary`) at or after `searchFrom`; when
    /// there is none, `searchFrom` moves to where a delimiter could still begin.
    mutating func search(_ body: UnsafeRawBufferPointer) -> Int? {
        let from = max(searchFrom, 0)
        let found: Int? = withDelimiter { d in Self.find(d, in: body, from: from) }
        if found == nil { searchFrom = max(from, body.count - (delimiterCount - 1)) }
        return found
    }

    func find(_ body: UnsafeRawBufferPointer, _ needle: StaticString, from: Int) -> Int? {
        Self.find(UnsafeRawBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount), in: body, from: from)
    }

    /// The offset of the first `needle` in `body` at or after `from`: candidates by `memchr` on
    /// its first byte (CR, about one byte in 256 of binary data), then a compare. (glibc's
    /// `memmem` needs `_GNU_SOURCE`, which the Glibc module does not define.)
    static func find(_ needle: UnsafeRawBufferPointer, in body: UnsafeRawBufferPointer, from: Int) -> Int? {
        let n = needle.count
        guard n > 0, from >= 0, body.count - from >= n, let base = body.baseAddress, let nb = needle.baseAddress else { return nil }
        let first = Int32(needle[0])
        var i = from
        let last = body.count - n
        while i <= last {
            guard let p = memchr(base + i, first, last - i + 1) else { return nil }
            let at = UnsafeRawPointer(p) - base
            if Bytes.equal(base + at, nb, n) { return at }
            i = at + 1
        }
        return nil
    }

    /// Reads `Content-Disposition` (its `name` and `filename`) and `Content-Type` from a part's
    /// header lines; nil when a line has no colon.
    func parseHeaders(_ body: UnsafeRawBufferPointer, _ range: ByteRange) -> MultipartPart? {
        var part = MultipartPart(headers: range, value: ByteRange.empty)
        var i = range.start
        while i < range.end {
            var lineEnd = i
            while lineEnd + 1 < range.end && !(body[lineEnd] == 13 && body[lineEnd + 1] == 10) { lineEnd += 1 }
            if lineEnd + 1 >= range.end { lineEnd = range.end }
            var colon = i
            while colon < lineEnd && body[colon] != UInt8(ascii: ":") { colon += 1 }
            guard colon < lineEnd, colon > i else { return nil }
            let name = UnsafeRawBufferPointer(rebasing: body[i..<colon])
            var v = colon + 1
            while v < lineEnd && Self.isSpace(body[v]) { v += 1 }
            var vEnd = lineEnd
            while vEnd > v && Self.isSpace(body[vEnd - 1]) { vEnd -= 1 }
            if ASCIIBytes.equalsIgnoringCase(name, "content-disposition") {
                dispositionParameters(body, ByteRange(start: v, end: vEnd), into: &part)
            } else if ASCIIBytes.equalsIgnoringCase(name, "content-type") {
                part.contentType = ByteRange(start: v, end: vEnd)
            }
            i = lineEnd + 2
        }
        return part
    }

    /// `form-data; name="x"; filename="y"`: quoted values end at an unescaped quote.
    func dispositionParameters(_ body: UnsafeRawBufferPointer, _ r: ByteRange, into part: inout MultipartPart) {
        var i = r.start
        while i < r.end && body[i] != UInt8(ascii: ";") { i += 1 }
        while i < r.end {
            i += 1  // past ';'
            while i < r.end && Self.isSpace(body[i]) { i += 1 }
            let nameStart = i
            while i < r.end && body[i] != UInt8(ascii: "=") && body[i] != UInt8(ascii: ";") { i += 1 }
            var nameEnd = i
            while nameEnd > nameStart && Self.isSpace(body[nameEnd - 1]) { nameEnd -= 1 }
            let pname = UnsafeRawBufferPointer(rebasing: body[nameStart..<nameEnd])
            guard i < r.end, body[i] == UInt8(ascii: "=") else { continue }
            i += 1
            while i < r.end && Self.isSpace(body[i]) { i += 1 }
            var value: ByteRange
            if i < r.end && body[i] == UInt8(ascii: "\"") {
                let s = i + 1
                i = s
                while i < r.end && body[i] != UInt8(ascii: "\"") {
                    if body[i] == UInt8(ascii: "\\") && i + 1 < r.end { i += 1 }
                    i += 1
                }
                value = ByteRange(start: s, end: min(i, r.end))
                if i < r.end { i += 1 }
                while i < r.end && body[i] != UInt8(ascii: ";") { i += 1 }
            } else {
                let s = i
                while i < r.end && body[i] != UInt8(ascii: ";") { i += 1 }
                var e = i
                while e > s && Self.isSpace(body[e - 1]) { e -= 1 }
                value = ByteRange(start: s, end: e)
            }
            if ASCIIBytes.equalsIgnoringCase(pname, "name") { part.name = value }
            else if ASCIIBytes.equalsIgnoringCase(pname, "filename") { part.filename = value }
        }
    }
}

/// Case-insensitive ASCII comparison (header and parameter names).
enum ASCIIBytes {
    @inline(__always)
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard bytes.count == n else { return false }
        let l = literal.utf8Start
        for i in 0..<n {
            var b = bytes[i]
            if b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") { b |= 0x20 }
            if b != l[i] { return false }
        }
        return true
    }
}
