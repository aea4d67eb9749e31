/// Which OpenAI endpoint a body was sent to; it decides where the prompt text lives.
public enum OpenAIEndpoint: Sendable, Equatable {
    /// `/v1/chat/completions`: `messages[].role` and `messages[].content` (string or text parts).
    case chatCompletions
    /// `/v1/completions`: `prompt` (string, array of strings, or token IDs).
    case completions
    /// `/v1/embeddings`: `input` (same shapes as `prompt`).
    case embeddings

    /// The endpoint for a request path, ignoring a query string; nil for other paths.
    public init?(path: UnsafeRawBufferPointer) {
        var n = path.count
        if let q = path.firstIndex(of: UInt8(ascii: "?")) { n = q }
        let p = UnsafeRawBufferPointer(rebasing: path[0..<n])
        // Compared as StaticString bytes: a String's UTF8View comparison costs more than the
        // whole request scan on a small body.
        if Self.equals(p, "/v1/chat/completions") { self = .chatCompletions }
        else if Self.equals(p, "/v1/completions") { self = .completions }
        else if Self.equals(p, "/v1/embeddings") { self = .embeddings }
        else { return nil }
    }

    @inline(__always)
    static func equals(_ p: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        guard p.count == s.utf8CodeUnitCount else { return false }
        for i in 0..<p.count where p[i] != s.utf8Start[i] { return false }
        return true
    }
}
