/// Why a choice stopped (`finish_reason`). Values other than the known ones are `.other`.
public enum FinishReason: Sendable, Equatable, Hashable {
    case stop, length, toolCalls, contentFilter, functionCall, abort, other

    /// The reason named by the raw (unescaped) string contents `bytes`.
    public init(_ bytes: UnsafeRawBufferPointer) {
        switch bytes.count {
        case 4 where Bytes.equal(bytes, "stop"): self = .stop
        case 5 where Bytes.equal(bytes, "abort"): self = .abort
        case 6 where Bytes.equal(bytes, "length"): self = .length
        case 10 where Bytes.equal(bytes, "tool_calls"): self = .toolCalls
        case 13 where Bytes.equal(bytes, "function_call"): self = .functionCall
        case 14 where Bytes.equal(bytes, "content_filter"): self = .contentFilter
        default: self = .other
        }
    }
}
