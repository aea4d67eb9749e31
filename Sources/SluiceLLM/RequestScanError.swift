/// Why a request body was rejected, and where.
///
/// Contract: `offset` is the byte offset in the body where the problem was detected (for a type
/// error, the first byte of the offending value; for a missing field, the closing brace). Every
/// kind maps to HTTP 400 `invalid_request_error`; ``message`` and ``param`` give the OpenAI-style
/// text (off the hot path, so they build `String`s).
public struct RequestScanError: Error, Sendable, Equatable, CustomStringConvertible {
    /// JSON syntax problems (RFC 8259), named after what the scanner expected.
    public enum Syntax: Sendable, Equatable {
        case unexpectedEnd
        case expectedValue
        case expectedCommaOrObjectEnd
        case expectedCommaOrArrayEnd
        case expectedColon
        case expectedKey
        case invalidLiteral
        case invalidNumber
        case leadingZero
        case invalidEscape
        /// A `\u` escape with bad hex digits or an unpaired surrogate.
        case invalidUnicodeEscape
        case controlCharacterInString
        case invalidUTF8
        case tooDeep
        case trailingData
    }

    /// The JSON type a field needed (for the message).
    public enum Expected: Sendable, Equatable {
        case string, boolean, number, integer, object, array
        /// A string, an array of strings, or token IDs (`prompt`, `input`).
        case promptLike
        /// A string, an array of content parts, or null (a message's `content`).
        case contentLike
        /// An array of non-negative integers (`tokens`).
        case tokenIDs
    }

    /// The request fields the scanner type-checks. `param` is the OpenAI `param` value.
    public enum Field: Sendable, Equatable {
        case model, stream, streamOptions, includeUsage, temperature, seed, n, maxTokens
        case maxCompletionTokens, user, messages, message, role, content, contentPart, text
        case prompt, input
        // Anthropic Messages
        case system, block, metadata, userID
        // Responses API
        case instructions, maxOutputTokens, previousResponseID, store, background, item
        // rerank / score / detokenize
        case query, documents, text1, text2, queries, items, data1, data2, tokens

        public var param: String {
            switch self {
            case .system: "system"
            case .block: "content"
            case .metadata: "metadata"
            case .userID: "metadata.user_id"
            case .instructions: "instructions"
            case .maxOutputTokens: "max_output_tokens"
            case .previousResponseID: "previous_response_id"
            case .store: "store"
            case .background: "background"
            case .item: "input"
            case .query: "query"
            case .documents: "documents"
            case .text1: "text_1"
            case .text2: "text_2"
            case .queries: "queries"
            case .items: "items"
            case .data1: "data_1"
            case .data2: "data_2"
            case .tokens: "tokens"
            case .model: "model"
            case .stream: "stream"
            case .streamOptions: "stream_options"
            case .includeUsage: "stream_options.include_usage"
            case .temperature: "temperature"
            case .seed: "seed"
            case .n: "n"
            case .maxTokens: "max_tokens"
            case .maxCompletionTokens: "max_completion_tokens"
            case .user: "user"
            case .messages, .message: "messages"
            case .role: "messages.role"
            case .content: "messages.content"
            case .contentPart, .text: "messages.content"
            case .prompt: "prompt"
            case .input: "input"
            }
        }
    }

    public enum Kind: Sendable, Equatable {
        case syntax(Syntax)
        /// The body is valid JSON but not an object.
        case notAnObject
        case wrongType(Field, expected: Expected)
        /// An integer field whose value does not fit (e.g. `seed` beyond Int64).
        case outOfRange(Field)
        /// An integer outside what the field allows (`max_tokens` and `n` must be positive).
        case notInRange(Field, min: Int64, max: Int64)
        /// `model` is absent (the gateway answers 400 with param "model").
        case missingModel
        /// Another required field is absent (Anthropic's `max_tokens`).
        case missingField(Field)
        /// A `multipart/form-data` body that cannot be read.
        case malformedMultipart(MultipartError)
    }

    public var offset: Int
    public var kind: Kind

    @inlinable
    public init(offset: Int, kind: Kind) {
        self.offset = offset
        self.kind = kind
    }

    @inlinable
    static func syntax(_ s: Syntax, at offset: Int) -> RequestScanError {
        RequestScanError(offset: offset, kind: .syntax(s))
    }

    /// True for malformed JSON (as opposed to well-formed JSON with a bad field).
    public var isSyntaxError: Bool {
        switch kind {
        case .syntax: true
        default: false
        }
    }

    /// The OpenAI `param` for this error, if it concerns one field.
    public var param: String? {
        switch kind {
        case .syntax, .notAnObject, .malformedMultipart: nil
        case .wrongType(let f, _), .outOfRange(let f), .notInRange(let f, _, _): f.param
        case .missingModel: "model"
        case .missingField(let f): f.param
        }
    }

    /// The error message as OpenAI-compatible servers word it, e.g.
    /// `Invalid JSON at byte 17: expected ',' or '}'`.
    public var message: String {
        switch kind {
        case .syntax(let s):
            return "Invalid JSON at byte \(offset): \(Self.describe(s))"
        case .notAnObject:
            return "Invalid request at byte \(offset): the body must be a JSON object"
        case .wrongType(let field, let expected):
            return "\"\(Self.name(field))\" must be \(Self.describe(expected))"
        case .outOfRange(let field):
            return "\"\(Self.name(field))\" is out of range"
        case .notInRange(let field, let min, let max):
            return "\"\(Self.name(field))\" must be an integer from \(min) to \(max)"
        case .missingModel:
            return "You must provide a model parameter."
        case .missingField(let field):
            return "\"\(Self.name(field))\" is required"
        case .malformedMultipart(let e):
            switch e {
            case .noBoundary: return "Invalid multipart/form-data body: no boundary"
            case .headersTooLarge: return "Invalid multipart/form-data body: part headers too large"
            case .malformed: return "Invalid multipart/form-data body at byte \(offset)"
            case .truncated: return "Invalid multipart/form-data body: it ends inside a part"
            }
        }
    }

    public var description: String { message }

    /// The 400 body a client gets for this error.
    public var openAIError: OpenAIError { .invalidRequest(message, param: param) }

    static func name(_ f: Field) -> String {
        switch f {
        case .message: "messages[]"
        case .role: "role"
        case .content: "content"
        case .contentPart: "content[]"
        case .text: "text"
        case .block: "content[]"
        case .item: "input[]"
        default: f.param
        }
    }

    static func describe(_ e: Expected) -> String {
        switch e {
        case .string: "a string"
        case .boolean: "a boolean"
        case .number: "a number"
        case .integer: "an integer"
        case .object: "an object"
        case .array: "an array"
        case .promptLike: "a string, an array of strings, or an array of token IDs"
        case .contentLike: "a string, an array of content parts, or null"
        case .tokenIDs: "an array of token IDs"
        }
    }

    static func describe(_ s: Syntax) -> String {
        switch s {
        case .unexpectedEnd: "unexpected end of input"
        case .expectedValue: "expected a value"
        case .expectedCommaOrObjectEnd: "expected ',' or '}'"
        case .expectedCommaOrArrayEnd: "expected ',' or ']'"
        case .expectedColon: "expected ':'"
        case .expectedKey: "expected a string key"
        case .invalidLiteral: "invalid literal"
        case .invalidNumber: "invalid number"
        case .leadingZero: "leading zeros are not allowed"
        case .invalidEscape: "invalid escape sequence"
        case .invalidUnicodeEscape: "invalid \\u escape (bad hex digits or unpaired surrogate)"
        case .controlCharacterInString: "unescaped control character in string"
        case .invalidUTF8: "invalid UTF-8"
        case .tooDeep: "nesting too deep"
        case .trailingData: "unexpected data after the JSON value"
        }
    }
}
