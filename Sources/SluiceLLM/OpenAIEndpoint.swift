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
        if p.elementsEqual("/v1/chat/completions".utf8) { self = .chatCompletions }
        else if p.elementsEqual("/v1/completions".utf8) { self = .completions }
        else if p.elementsEqual("/v1/embeddings".utf8) { self = .embeddings }
        else { return nil }
    }
}
