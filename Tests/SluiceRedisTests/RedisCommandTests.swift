import Foundation
import SluiceBase
import Testing
@testable import SluiceRedis

@Suite struct RedisCommandTests {
    @Test func encodesArraysOfBulkStrings() {
        var cmd = RedisCommand("SET")
        cmd.append(b("key"))
        cmd.append([UInt8]())
        cmd.append("PX")
        cmd.append(60000)
        cmd.append(-42)
        cmd.append(0)
        cmd.append([0, 13, 10, 255])
        let expected = "*8\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n$2\r\nPX\r\n$5\r\n60000\r\n$3\r\n-42\r\n$1\r\n0\r\n$4\r\n"
        #expect(cmd.encoded == b(expected) + [0, 13, 10, 255, 13, 10])
        #expect(cmd.encodedCount == cmd.encoded.count)
        #expect(cmd.argumentCount == 8)
    }

    @Test(arguments: [0, 1, 9, 10, 99, 100, 12345, Int.max, Int.min, -1, -10])
    func decimalArgumentsMatchSwiftFormatting(_ n: Int) {
        var cmd = RedisCommand("X")
        cmd.append(n)
        let text = String(n)
        #expect(cmd.encoded == b("*2\r\n$1\r\nX\r\n$\(text.utf8.count)\r\n\(text)\r\n"))
    }

    @Test func rawArgumentsEqualBuilder() {
        var built = RedisCommand("GET")
        built.append(b("k"))
        #expect(RedisCommand([b("GET"), b("k")]) == built)
        // Long argument: multi-digit length header.
        let big = [UInt8](repeating: 7, count: 12_345)
        let c = RedisCommand([b("SET"), b("k"), big])
        #expect(c.encoded.prefix(26) == b("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12345").prefix(26))
        #expect(c.encodedCount == c.encoded.count)
    }

    @Test func scriptCallsAndTheirEvalFallback() {
        let script = RedisScript("return 1")
        var call = script.call(keyCount: 1)
        call.append(b("key"))
        call.append(b("arg"))
        let eval = script.evalFallback(for: call)
        #expect(eval == RedisCommand([b("EVAL"), b("return 1"), b("1"), b("key"), b("arg")]))
        #expect(call == RedisCommand([b("EVALSHA"), b(script.sha1), b("1"), b("key"), b("arg")]))
        #expect(RedisScript("return 2").evalFallback(for: call) == nil)
    }

    // SHA-1 (script names) against FIPS 180 vectors.
    @Test func sha1Vectors() {
        #expect(Hex.string(SHA1.hash([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(Hex.string(SHA1.hash(b("abc"))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Hex.string(SHA1.hash(b("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
            == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
    }

    @Test(arguments: [
        (1, Duration.milliseconds(50)), (2, .milliseconds(100)), (3, .milliseconds(200)),
        (7, .milliseconds(3200)), (8, .seconds(5)), (40, .seconds(5)), (0, .milliseconds(50)),
    ])
    func reconnectBackoffDoublesToTheCap(_ failures: Int, _ expected: Duration) {
        let d = RedisConnection.reconnectDelay(failures: failures, base: .milliseconds(50), max: .seconds(5), jitter: 1)
        #expect(d == expected)
        let half = RedisConnection.reconnectDelay(failures: failures, base: .milliseconds(50), max: .seconds(5), jitter: 0.5)
        #expect(half == .nanoseconds(expected.nanoseconds / 2))
    }
}

@Suite struct RedisReplyReaderTests {
    static let stream = b("+OK\r\n-ERR bad\r\n:42\r\n:-7\r\n$5\r\nhe\r\no\r\n$-1\r\n$0\r\n\r\n*3\r\n$1\r\na\r\n*1\r\n:1\r\n$-1\r\n*0\r\n*-1\r\n")
    static let values: [RedisValue] = [
        .status("OK"), .error("ERR bad"), .integer(42), .integer(-7), .bulk(b("he\r\no")), .bulk(nil),
        .bulk([]), .array([.bulk(b("a")), .array([.integer(1)]), .bulk(nil)]), .array([]), .bulk(nil),
    ]

    /// Replies come out whole and in order however the bytes are split.
    @Test func parsesRepliesSplitAtEveryOffset() {
        for cut in 0...Self.stream.count {
            let reader = RedisReplyReader()
            var got: [RedisValue] = []
            for part in [Array(Self.stream[..<cut]), Array(Self.stream[cut...])] {
                #expect(part.withUnsafeBytes { reader.feed($0) })
                while case .reply(let v) = reader.next() { got.append(v) }
            }
            #expect(got == Self.values, "cut at \(cut)")
        }
    }

    @Test func reportsProtocolErrors() {
        let reader = RedisReplyReader()
        _ = b("?what\r\n").withUnsafeBytes { reader.feed($0) }
        guard case .protocolError = reader.next() else {
            Issue.record("expected a protocol error")
            return
        }
    }
}
