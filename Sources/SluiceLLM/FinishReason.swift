/// Why a choice stopped (`finish_reason`). Values other than the known ones are `.other`.
public enum FinishReason: Sendable, Equatable, Hashable {
    case stop, length, toolCalls, contentFilter, functionCall, abort, other

    /// The reason named by the raw (unescaped) string contents `bytes`.
    public init(_ bytes: UnsafeRawBufferPointer) {
        switch bytes.count {
        case 4 where bytes.elementsEqual("stop".utf8): self = .stop
        case 5 where bytes.elementsEqual("abort".utf8): self = .abort
        case 6 where bytes.elementsEqual("length".utf8): self = .length
        case 10 where bytes.elementsEqual("tool_calls".utf8): self = .toolCalls
        case 13 where bytes.elementsEqual("function_call".utf8): self = .functionCall
        case 14 where bytes.elementsEqual("content_filter".utf8): self = .contentFilter
        default: self = .other
        }
    }
}
