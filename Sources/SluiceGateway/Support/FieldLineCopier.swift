import SluiceHTTP
import SluiceIO

/// Copies header lines into the next hop's head in as few copies as possible: lines that sit
/// back to back in the source, each ending in exactly CRLF, go over as one run. A typical head
/// keeps almost all its fields, so a dozen small copies become one or two.
struct FieldLineCopier {
    /// The pending run in the source (`start == end`: none).
    private var start = 0
    private var end = 0

    /// Queues `field`'s line (`name: value` as received, then CRLF).
    @inline(__always)
    mutating func add(_ field: HeaderField, from source: UnsafeRawBufferPointer, to head: inout ByteBuffer) {
        let s = Int(field.name.start), e = Int(field.value.end)
        let endsInCRLF = e + 1 < source.count && source[e] == 13 && source[e + 1] == 10
        if end > start && s == end && endsInCRLF {
            end = e + 2
            return
        }
        flush(from: source, to: &head)
        if endsInCRLF {
            start = s
            end = e + 2
        } else {
            // Trailing whitespace (or a bare LF) after the value: copy the trimmed line.
            head.append(UnsafeRawBufferPointer(rebasing: source[s..<e]))
            head.append("\r\n")
        }
    }

    /// Copies the pending run; call before appending anything else to `head`.
    mutating func flush(from source: UnsafeRawBufferPointer, to head: inout ByteBuffer) {
        guard end > start else { return }
        head.append(UnsafeRawBufferPointer(rebasing: source[start..<end]))
        start = 0
        end = 0
    }
}
