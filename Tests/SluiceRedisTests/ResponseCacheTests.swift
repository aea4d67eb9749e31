import SluiceBase
import Testing
@testable import SluiceRedis

@Suite struct ResponseCacheKeysTests {
    let request = b(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#)

    @Test func keyShape() {
        let key = String(decoding: ResponseCacheKeys.key(scope: .tenant("team-a"), model: "llama", request: request), as: UTF8.self)
        #expect(key.hasPrefix("sluice:cache:v1:t.team-a:"))
        let hex = key.dropFirst("sluice:cache:v1:t.team-a:".count)
        #expect(hex.count == 64 && hex.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        let shared = String(decoding: ResponseCacheKeys.key(scope: .shared, model: "llama", request: request), as: UTF8.self)
        #expect(shared.hasPrefix("sluice:cache:v1:shared:"))
        #expect(shared.dropFirst("sluice:cache:v1:shared:".count) == hex)  // same request, other scope
    }

    @Test func keyIsSHA256OfLengthPrefixedModelAndRequest() {
        var input: [UInt8] = [5, 0, 0, 0, 0, 0, 0, 0] + b("llama")
        input += request
        let expected = "sluice:cache:v1:shared:" + Hex.string(SHA256.hash(input))
        #expect(ResponseCacheKeys.key(scope: .shared, model: "llama", request: request) == b(expected))
    }

    @Test func scopesNeverShareKeys() {
        let scopes: [CacheScope] = [.shared, .tenant("shared"), .tenant("a"), .tenant("b"), .tenant("a:b"),
                                    .tenant("a%3Ab"), .tenant(""), .tenant("*"), .tenant("é")]
        var seen = Set<[UInt8]>()
        var prefixes = Set<[UInt8]>()
        for s in scopes {
            #expect(seen.insert(ResponseCacheKeys.key(scope: s, model: b("m"), request: request)).inserted)
            #expect(prefixes.insert(ResponseCacheKeys.scopePrefix(s)).inserted)
        }
        // No scope prefix is a prefix of another's (a prefix scan of one never reaches another).
        for p in prefixes { for q in prefixes where p != q { #expect(!q.starts(with: p)) } }
        #expect(ResponseCacheKeys.scopePrefix(.tenant("a:b*")) == b("sluice:cache:v1:t.a%3Ab%2A:"))
    }

    @Test func modelAndRequestCannotShiftIntoEachOther() {
        let a = ResponseCacheKeys.key(scope: .shared, model: b("ab"), request: b("c"))
        let c = ResponseCacheKeys.key(scope: .shared, model: b("a"), request: b("bc"))
        #expect(a != c)
        #expect(ResponseCacheKeys.key(scope: .shared, model: b("m"), request: b("x"))
            != ResponseCacheKeys.key(scope: .shared, model: b("m"), request: b("y")))
    }
}

@Suite struct ResponseCacheEntryTests {
    static let entries: [ResponseCacheEntry] = [
        ResponseCacheEntry(status: 200, contentType: b("application/json"), isStream: false, storedAt: 1_700_000_000,
                           body: b(#"{"id":"x","choices":[]}"#)),
        ResponseCacheEntry(status: 200, contentType: b("text/event-stream"), isStream: true, storedAt: 0,
                           body: b("data: {\"a\":1}\n\ndata: [DONE]\n\n")),
        ResponseCacheEntry(status: 203, contentType: [], isStream: false, storedAt: -1, body: []),
        ResponseCacheEntry(status: 999, contentType: [UInt8](repeating: 0x61, count: 300), isStream: true,
                           storedAt: Int64.max, body: (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }),
    ]

    @Test(arguments: entries)
    func roundTrips(_ e: ResponseCacheEntry) {
        let bytes = e.encoded()
        #expect(bytes.count == ResponseCacheEntry.headerCount(contentTypeCount: e.contentType.count) + e.body.count)
        #expect(ResponseCacheEntry(decoding: bytes) == e)
        let layout = bytes.withUnsafeBytes { ResponseCacheEntry.layout(of: $0) }
        #expect(layout.map { Array(bytes[$0.body]) } == e.body)
        #expect(layout.map { Array(bytes[$0.contentType]) } == e.contentType)
    }

    @Test func headerThenBodyAppendedLaterEqualsEncoded() {
        let e = Self.entries[1]
        var out: [UInt8] = []
        ResponseCacheEntry.appendHeader(status: 200, contentType: e.contentType, isStream: true, storedAt: 0, to: &out)
        out += e.body.prefix(5)
        out += e.body.dropFirst(5)
        #expect(out == e.encoded())
    }

    @Test func exactLayout() {
        let e = ResponseCacheEntry(status: 200, contentType: b("a/b"), isStream: true, storedAt: 0x0102, body: b("xy"))
        #expect(e.encoded() == b("SLC") + [1, 1, 0, 200, 0, 3] + b("a/b") + [0, 0, 0, 0, 0, 0, 1, 2] + b("xy"))
    }

    @Test func rejectsForeignAndTruncatedValues() {
        let good = Self.entries[0].encoded()
        for n in 0..<ResponseCacheEntry.headerCount(contentTypeCount: 16) {
            #expect(ResponseCacheEntry(decoding: Array(good.prefix(n))) == nil, "prefix \(n)")
        }
        var badMagic = good; badMagic[0] = UInt8(ascii: "X")
        var badVersion = good; badVersion[3] = 2
        var badFlags = good; badFlags[4] = 2
        var badStatus = good; badStatus[5] = 0; badStatus[6] = 99
        for bad in [badMagic, badVersion, badFlags, badStatus, b("plain text value")] {
            #expect(ResponseCacheEntry(decoding: bad) == nil)
        }
    }
}
