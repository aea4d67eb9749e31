/// A parsed `redis://` URL: `redis://[user[:password]@]host[:port][/db]`, also
/// `redis://:password@host` (password only, the pre-ACL `AUTH password` form).
///
/// Contract:
/// - The scheme is `redis` (case-insensitive). `rediss://` (TLS) is rejected as unsupported rather
///   than silently connecting in clear text.
/// - User and password are percent-decoded (so `p%40ss` is `p@ss`); the host may be a name, an
///   IPv4 literal or a bracketed IPv6 literal (`[::1]`). The port defaults to 6379, the database to 0.
/// - A query or fragment is an error: options we would ignore are worse than a refusal.
/// - A username without a password is an error (AUTH needs a password; ignoring it would hide a
///   config mistake).
/// - `description`, `debugDescription` and the reflection mirror all redact the password, and no
///   ``ParseError`` ever repeats any part of the input: secrets never reach logs.
public struct RedisURL: Equatable, Sendable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    public var username: String?
    public var password: String?
    /// The host without brackets: `127.0.0.1`, `::1`, `redis.internal`.
    public var host: String
    public var port: UInt16
    public var database: Int

    public static let defaultPort: UInt16 = 6379

    public init(host: String, port: UInt16 = RedisURL.defaultPort, database: Int = 0,
                username: String? = nil, password: String? = nil)
    {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
    }

    /// Why a URL was refused. Never carries input text (it could be a password).
    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case notARedisURL
        case unsupportedScheme
        case emptyHost
        case invalidHost
        case invalidPort
        case invalidDatabase
        case invalidPercentEncoding
        case usernameWithoutPassword
        case unsupportedQueryOrFragment

        public var description: String {
            switch self {
            case .notARedisURL: return "not a redis:// URL"
            case .unsupportedScheme: return "unsupported scheme (only redis:// is supported; no TLS)"
            case .emptyHost: return "the URL has no host"
            case .invalidHost: return "the host is malformed"
            case .invalidPort: return "the port must be a number from 1 to 65535"
            case .invalidDatabase: return "the database must be a non-negative number after '/'"
            case .invalidPercentEncoding: return "malformed percent-encoding in the user or password"
            case .usernameWithoutPassword: return "a username needs a password (redis://user:password@host)"
            case .unsupportedQueryOrFragment: return "query parameters and fragments are not supported"
            }
        }
    }

    /// Parses `text`; see the type's contract.
    public init(parsing text: String) throws(ParseError) {
        let bytes = Array(text.utf8)
        let prefix = Array("redis://".utf8)
        func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b | 0x20 : b }
        if bytes.count >= 9, Array(bytes[0..<9]).map(lower) == Array("rediss://".utf8) {
            throw .unsupportedScheme
        }
        guard bytes.count >= prefix.count, Array(bytes[0..<prefix.count]).map(lower) == prefix else {
            throw .notARedisURL
        }
        var rest = bytes[prefix.count...]
        if rest.contains(UInt8(ascii: "?")) || rest.contains(UInt8(ascii: "#")) {
            throw .unsupportedQueryOrFragment
        }
        // Authority ends at the first '/'. The userinfo ends at the last '@' of the authority, so
        // an unencoded '@' in a password still parses (common in hand-written configs).
        let slash = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
        let authority = rest[rest.startIndex..<slash]
        let path = rest[slash...]
        rest = authority
        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: UInt8(ascii: "@")) {
            let userinfo = authority[authority.startIndex..<at]
            rest = authority[(at + 1)...]
            if let colon = userinfo.firstIndex(of: UInt8(ascii: ":")) {
                let u = try Self.percentDecode(userinfo[userinfo.startIndex..<colon])
                let p = try Self.percentDecode(userinfo[(colon + 1)...])
                username = u.isEmpty ? nil : u
                password = p
            } else {
                let u = try Self.percentDecode(userinfo)
                if !u.isEmpty { throw .usernameWithoutPassword }
            }
        }
        // host[:port], host may be [v6]
        var host: ArraySlice<UInt8>
        var portText: ArraySlice<UInt8>?
        if rest.first == UInt8(ascii: "[") {
            guard let close = rest.firstIndex(of: UInt8(ascii: "]")) else { throw .invalidHost }
            host = rest[(rest.startIndex + 1)..<close]
            let after = rest[(close + 1)...]
            if !after.isEmpty {
                guard after.first == UInt8(ascii: ":") else { throw .invalidHost }
                portText = after.dropFirst()
            }
            if host.isEmpty { throw .emptyHost }
        } else {
            // More than one colon: an IPv6 literal without brackets, ambiguous with the port.
            if rest.lazy.filter({ $0 == UInt8(ascii: ":") }).count > 1 { throw .invalidHost }
            if let colon = rest.firstIndex(of: UInt8(ascii: ":")) {
                host = rest[rest.startIndex..<colon]
                portText = rest[(colon + 1)...]
            } else {
                host = rest
            }
            if host.isEmpty { throw .emptyHost }
        }
        for b in host where b <= 0x20 || b == 0x7F || b == UInt8(ascii: "%") || b == UInt8(ascii: "@") {
            throw .invalidHost
        }
        var port = Self.defaultPort
        if let p = portText {
            guard let n = Self.decimal(p), n >= 1, n <= 65535 else { throw .invalidPort }
            port = UInt16(n)
        }
        var database = 0
        if path.count > 1 {
            guard let n = Self.decimal(path.dropFirst()), n <= Int(Int32.max) else { throw .invalidDatabase }
            database = n
        }
        self.init(host: String(decoding: host, as: UTF8.self), port: port, database: database,
                  username: username, password: password)
    }

    /// A decimal number of at most 10 digits, nil otherwise.
    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int? {
        if digits.isEmpty || digits.count > 10 { return nil }
        var n = 0
        for d in digits {
            guard d >= 48 && d <= 57 else { return nil }
            n = n * 10 + Int(d - 48)
        }
        return n
    }

    private static func percentDecode(_ s: ArraySlice<UInt8>) throws(ParseError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = s.startIndex
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 65...70: return b - 55
            case 97...102: return b - 87
            default: return nil
            }
        }
        while i < s.endIndex {
            let b = s[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < s.endIndex,
                      let h = hex(s[i + 1]), let l = hex(s[i + 2]) else { throw .invalidPercentEncoding }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b)
                i += 1
            }
        }
        // Invalid UTF-8 would be repaired silently by String(decoding:), changing the secret.
        guard let text = String(validating: out, as: UTF8.self) else { throw .invalidPercentEncoding }
        return text
    }

    private static func percentEncodeUser(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let unreserved = (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~")
            if unreserved {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let digits = Array("0123456789ABCDEF".utf8)
                out += "%"
                out.unicodeScalars.append(Unicode.Scalar(digits[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(digits[Int(b & 15)]))
            }
        }
        return out
    }

    /// The URL with the password replaced by `***`: safe to log.
    public var description: String {
        var s = "redis://"
        if let username { s += Self.percentEncodeUser(username) }
        if password != nil { s += ":***" }
        if username != nil || password != nil { s += "@" }
        s += host.contains(":") ? "[\(host)]" : host
        s += ":\(port)"
        if database != 0 { s += "/\(database)" }
        return s
    }

    public var debugDescription: String { description }

    /// Reflection (`dump`, debuggers) shows the redacted form too.
    public var customMirror: Mirror {
        Mirror(self, children: ["url": description], displayStyle: .struct)
    }
}
