import Testing
@testable import SluiceRedis

@Suite struct RedisURLTests {
    struct Valid: Sendable, CustomTestStringConvertible {
        let text: String
        let host: String
        let port: UInt16
        let db: Int
        let user: String?
        let password: String?
        let redacted: String
        var testDescription: String { text }
    }

    static let valid: [Valid] = [
        Valid(text: "redis://localhost", host: "localhost", port: 6379, db: 0, user: nil, password: nil,
              redacted: "redis://localhost:6379"),
        Valid(text: "redis://127.0.0.1:6380", host: "127.0.0.1", port: 6380, db: 0, user: nil, password: nil,
              redacted: "redis://127.0.0.1:6380"),
        Valid(text: "REDIS://h:1/", host: "h", port: 1, db: 0, user: nil, password: nil,
              redacted: "redis://h:1"),
        Valid(text: "redis://h/15", host: "h", port: 6379, db: 15, user: nil, password: nil,
              redacted: "redis://h:6379/15"),
        Valid(text: "redis://:s3cret@h", host: "h", port: 6379, db: 0, user: nil, password: "s3cret",
              redacted: "redis://:***@h:6379"),
        Valid(text: "redis://alice:s3cret@cache.internal:7000/2", host: "cache.internal", port: 7000, db: 2,
              user: "alice", password: "s3cret", redacted: "redis://alice:***@cache.internal:7000/2"),
        Valid(text: "redis://al%3Aice:p%40ss%2Fw%25rd@h", host: "h", port: 6379, db: 0, user: "al:ice",
              password: "p@ss/w%rd", redacted: "redis://al%3Aice:***@h:6379"),
        Valid(text: "redis://u:p@ss@h:1", host: "h", port: 1, db: 0, user: "u", password: "p@ss",
              redacted: "redis://u:***@h:1"),
        Valid(text: "redis://:@h", host: "h", port: 6379, db: 0, user: nil, password: "",
              redacted: "redis://:***@h:6379"),
        Valid(text: "redis://[::1]:6390/1", host: "::1", port: 6390, db: 1, user: nil, password: nil,
              redacted: "redis://[::1]:6390/1"),
        Valid(text: "redis://:pw@[fe80::1]", host: "fe80::1", port: 6379, db: 0, user: nil, password: "pw",
              redacted: "redis://:***@[fe80::1]:6379"),
        Valid(text: "redis://:%C3%A9t%C3%A9@h", host: "h", port: 6379, db: 0, user: nil, password: "été",
              redacted: "redis://:***@h:6379"),
        Valid(text: "redis://h:65535/2147483647", host: "h", port: 65535, db: 2_147_483_647, user: nil,
              password: nil, redacted: "redis://h:65535/2147483647"),
    ]

    @Test(arguments: valid)
    func parses(_ v: Valid) throws {
        let url = try RedisURL(parsing: v.text)
        #expect(url.host == v.host)
        #expect(url.port == v.port)
        #expect(url.database == v.db)
        #expect(url.username == v.user)
        #expect(url.password == v.password)
        #expect(url.description == v.redacted)
        // Secrets never appear in any rendering.
        if let pw = v.password, !pw.isEmpty {
            #expect(!url.description.contains(pw))
            #expect(!String(reflecting: url).contains(pw))
            #expect(!"\(url)".contains(pw))
            var dumped = ""
            dump(url, to: &dumped)
            #expect(!dumped.contains(pw))
        }
        // The redacted form parses back to the same place (password aside).
        let back = try RedisURL(parsing: url.description.replacingOccurrences(":***@", with: ":x@"))
        #expect(back.host == url.host && back.port == url.port && back.database == url.database
            && back.username == url.username)
    }

    static let invalid: [(String, RedisURL.ParseError)] = [
        ("http://h", .notARedisURL),
        ("redis:/h", .notARedisURL),
        ("", .notARedisURL),
        ("rediss://h", .unsupportedScheme),
        ("redis://", .emptyHost),
        ("redis://:pw@", .emptyHost),
        ("redis://:6379", .emptyHost),
        ("redis://h:0", .invalidPort),
        ("redis://h:65536", .invalidPort),
        ("redis://h:", .invalidPort),
        ("redis://h:12a", .invalidPort),
        ("redis://h/x", .invalidDatabase),
        ("redis://h/-1", .invalidDatabase),
        ("redis://h/99999999999", .invalidDatabase),
        ("redis://h/1/2", .invalidDatabase),
        ("redis://:p%zz@h", .invalidPercentEncoding),
        ("redis://:p%4@h", .invalidPercentEncoding),
        ("redis://:p%ff@h", .invalidPercentEncoding),
        ("redis://alice@h", .usernameWithoutPassword),
        ("redis://h?db=1", .unsupportedQueryOrFragment),
        ("redis://h#x", .unsupportedQueryOrFragment),
        ("redis://[::1", .invalidHost),
        ("redis://[::1]x", .invalidHost),
        ("redis://::1:6379", .invalidHost),
        ("redis://h h", .invalidHost),
        ("redis://[]:1", .emptyHost),
        ("redis://fe80::1", .invalidHost),
    ]

    @Test(arguments: invalid)
    func rejects(_ text: String, _ expected: RedisURL.ParseError) {
        #expect(throws: expected) { try RedisURL(parsing: text) }
    }

    @Test func errorsNeverEchoTheInput() {
        for (text, _) in Self.invalid {
            do {
                _ = try RedisURL(parsing: text)
            } catch {
                #expect(!error.description.contains("h h"))
                #expect(!error.description.contains("p%zz"))
            }
        }
        let e = RedisURL.ParseError.invalidPercentEncoding
        #expect(!"\(e)".contains("%"))
    }

    @Test func configurationDescriptionIsRedacted() throws {
        let url = try RedisURL(parsing: "redis://bob:hunter2@127.0.0.1:6400/1")
        let c = try RedisConfiguration(resolving: url)
        #expect(!c.description.contains("hunter2"))
        #expect(c.description.contains("127.0.0.1:6400"))
    }
}

extension String {
    func replacingOccurrences(_ a: String, with b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
