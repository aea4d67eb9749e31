import SluiceIO

/// An error Sluice answers itself, in OpenAI's shape:
/// `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
///
/// It knows which side failed (the client's request or an upstream) so the status and `type`
/// follow: 4xx are `invalid_request_error`, 5xx `server_error` (504 uses code `timeout`).
struct ErrorResponse {
    var status: Int
    var message: String
    var type: String
    var param: String?
    var code: String?

    static func client(_ status: Int, _ message: String, param: String? = nil, code: String? = nil) -> ErrorResponse {
        ErrorResponse(status: status, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func badGateway(_ message: String) -> ErrorResponse {
        ErrorResponse(status: 502, message: message, type: "server_error", param: nil, code: "bad_gateway")
    }

    static func gatewayTimeout(_ message: String) -> ErrorResponse {
        ErrorResponse(status: 504, message: message, type: "server_error", param: nil, code: "timeout")
    }

    static func unavailable(_ message: String) -> ErrorResponse {
        ErrorResponse(status: 503, message: message, type: "server_error", param: nil, code: "service_unavailable")
    }

    /// The JSON body.
    func body() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        out += #"{"error":{"message":"#.utf8
        JSON.appendString(message, to: &out)
        out += #","type":"#.utf8
        JSON.appendString(type, to: &out)
        out += #","param":"#.utf8
        if let p = param { JSON.appendString(p, to: &out) } else { out += "null".utf8 }
        out += #","code":"#.utf8
        if let c = code { JSON.appendString(c, to: &out) } else { out += "null".utf8 }
        out += "}}".utf8
        return out
    }
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
enum StatusText {
    static func reason(_ status: Int) -> StaticString {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 417: "Expectation Failed"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Unknown"
        }
    }
}
