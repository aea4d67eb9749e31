import SluiceHTTP
import SluiceIO
import SluiceLLM

/// An error Sluice answers itself, in OpenAI's shape
/// (`{"error":{"message","type","param","code"}}`): SluiceLLM's `OpenAIError`, with the
/// constructors the data path uses. 4xx are `invalid_request_error`, 5xx `server_error`.
typealias ErrorResponse = OpenAIError

extension OpenAIError {
    static func client(_ status: Int, _ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: status, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func unavailable(_ message: String) -> OpenAIError {
        OpenAIError(status: 503, message: message, type: "server_error", param: nil, code: "service_unavailable")
    }

    /// The JSON body.
    func body() -> [UInt8] { render() }
}

enum JSON {
    /// Appends `s` as a JSON string literal (RFC 8259 escaping).
    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(34)
        for b in s.utf8 {
            switch b {
            case 34: out += [92, 34]
            case 92: out += [92, 92]
            case 10: out += [92, 110]
            case 13: out += [92, 114]
            case 9: out += [92, 116]
            case 0..<32:
                out += [92, 117, 48, 48]
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out += [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(34)
    }
}

/// Reason phrases for the statuses Sluice produces itself.
/// Reason phrases for status lines (one table, in SluiceHTTP).
enum StatusText {
    @inline(__always)
    static func reason(_ status: Int) -> StaticString { HTTPStatus.reason(status) }
}
