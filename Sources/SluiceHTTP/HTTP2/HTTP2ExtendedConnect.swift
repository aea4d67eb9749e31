import Glibc

/// What a stream's pseudo-headers ask for, decided once its header block is complete (RFC 9113
/// §8.5, RFC 8441 §4). Pure: the codec passes the `:method` and `:protocol` it read.
///
/// - `request`: an ordinary request/response (any method but CONNECT).
/// - `websocket`: extended CONNECT with `:protocol websocket` — the stream becomes a byte pipe in
///   both directions (a WebSocket tunnelled over HTTP/2). The codec rebuilds its head as the
///   HTTP/1.1 upgrade RFC 8441 §5 maps it to (`GET :path`, `Upgrade: websocket`, a fresh
///   `Sec-WebSocket-Key`), so the gateway runs it through the same pipeline as an HTTP/1.1 upgrade.
/// - `plainConnect`: CONNECT without `:protocol` (a TCP tunnel to `:authority`): refused, 405.
/// - `unsupportedProtocol`: extended CONNECT for anything but `websocket`: refused, 400.
public enum HTTP2RequestKind: Equatable, Sendable {
    case request
    case websocket
    case plainConnect
    case unsupportedProtocol

    public static func classify(method: UnsafeRawBufferPointer, protocol proto: UnsafeRawBufferPointer) -> HTTP2RequestKind {
        let isConnect = ASCIIBytes.equal(method, "CONNECT")
        if proto.isEmpty { return isConnect ? .plainConnect : .request }
        // `:protocol` on another method is malformed (nghttp2 resets such a stream before us).
        guard isConnect else { return .unsupportedProtocol }
        // The protocol token is compared case-insensitively, as HTTP/1.1's Upgrade values are.
        return ASCIIBytes.equalCaseInsensitive(proto, "websocket") ? .websocket : .unsupportedProtocol
    }

    /// The answer to a stream refused for its kind (nil for the kinds that are served).
    public var refusal: (status: Int, message: String)? {
        switch self {
        case .request, .websocket: nil
        case .plainConnect: (405, "CONNECT is not supported by this gateway.")
        case .unsupportedProtocol: (400, "Extended CONNECT is served for :protocol websocket only.")
        }
    }

    /// A `Sec-WebSocket-Key` (RFC 6455 §4.1: 16 random bytes, base64: 24 characters) made of
    /// `random`, for the upgrade the gateway sends upstream in the client's name (an HTTP/2
    /// client sends none: RFC 8441 §5 drops it with the 101's Accept).
    public static func webSocketKey(_ random: (UInt64, UInt64)) -> [UInt8] {
        var raw = [UInt8](repeating: 0, count: 16)
        for k in 0..<8 {
            raw[k] = UInt8(truncatingIfNeeded: random.0 >> UInt64(56 - 8 * k))
            raw[8 + k] = UInt8(truncatingIfNeeded: random.1 >> UInt64(56 - 8 * k))
        }
        return base64(raw)
    }

    static func base64(_ bytes: [UInt8]) -> [UInt8] {
        let table: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        let t = table.utf8Start
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(t[Int(v >> 18 & 63)])
            out.append(t[Int(v >> 12 & 63)])
            out.append(i + 1 < bytes.count ? t[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? t[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return out
    }
}

/// Byte comparisons for the few pseudo-header values the codec decides on.
enum ASCIIBytes {
    static func equal(_ b: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        b.count == s.utf8CodeUnitCount && (b.isEmpty || memcmp(b.baseAddress!, s.utf8Start, b.count) == 0)
    }

    static func equalCaseInsensitive(_ b: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        guard b.count == s.utf8CodeUnitCount else { return false }
        for i in 0..<b.count {
            var c = b[i]
            if c >= 65 && c <= 90 { c |= 0x20 }
            if c != s.utf8Start[i] { return false }
        }
        return true
    }
}
