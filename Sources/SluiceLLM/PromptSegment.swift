/// One piece of prompt text found in a request body, in the order a model would read it.
///
/// Contract: `range` is the raw contents of a JSON string in the body (between the quotes, escapes
/// not decoded; `escaped` says whether there are any). For chat requests every message contributes
/// a `.role` segment followed by its `.text` segments (the role is moved first even when the JSON
/// lists `content` before `role`); completions and embeddings contribute `.text` segments only.
public struct PromptSegment: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// A chat message's `role`; the hasher frames it so that roles and text cannot be confused.
        case role
        /// Prompt text: a message's `content` string or a content part's `text`, a `prompt` or an `input` string.
        case text
    }

    public var range: ByteRange
    public var kind: Kind
    public var escaped: Bool

    @inlinable
    public init(range: ByteRange, kind: Kind, escaped: Bool = false) {
        self.range = range
        self.kind = kind
        self.escaped = escaped
    }
}
