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
        let p = Bytes.prefix(path, before: UInt8(ascii: "?"))
        // Compared as StaticString bytes: a String's UTF8View comparison costs more than the
        // whole request scan on a small body.
        if Bytes.equal(p, "/v1/chat/completions") { self = .chatCompletions }
        else if Bytes.equal(p, "/v1/completions") { self = .completions }
        else if Bytes.equal(p, "/v1/embeddings") { self = .embeddings }
        else { return nil }
    }
}
