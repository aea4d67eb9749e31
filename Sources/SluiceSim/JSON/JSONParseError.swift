/// Where and why a body is not JSON, worded like Python's `json` module (what vLLM's error
/// body quotes): "Expecting value", "Expecting ',' delimiter", ...
public struct JSONParseError: Error, Sendable, Equatable {
    /// Byte offset of the problem.
    public var offset: Int
    public var message: String

    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }
}
