import Foundation
import Glibc
import Synchronization
import Testing
@testable import SluiceIO
@testable import SluiceRedis

/// Loopback scenarios against real redis-server processes, one behaviour each. Serialized: they
/// measure timeouts, and the machine is small.
@Suite(.serialized) struct RedisIntegrationTests {}

extension RedisIntegrationTests {
    @Suite struct ConnectionTests {
        /// Starts a client on a fresh loop and waits until it is connected.
        static func connectedClient(_ config: RedisConfiguration) throws -> (LoopThread, RedisClient) {
            let lt = try LoopThread()
            let client = RedisClient(loop: lt.loop, configuration: config)
            lt.loop.execute { client.start() }
            guard eventually({ lt.sync { client.isConnected } == true }) else {
                let err = lt.sync { client.connections.first?.lastError ?? nil } ?? nil
                lt.loop.execute { client.close() }
                lt.stop()
                throw TestError("client did not connect: \(err ?? "?")")
            }
            return (lt, client)
        }

        static func shutdown(_ lt: LoopThread, _ client: RedisClient) {
            _ = lt.sync { client.close() }
            lt.stop()
        }

        @Test func pipelinesAThousandCommandsMatchedFirstInFirstOut() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration())
            defer { Self.shutdown(lt, client) }
            let conn = client.connections[0]
            // All 1,000 are sent in one loop iteration, so they are written back to back (one
            // or a few writes) before any reply arrives; replies must come back in order.
            let result: ([Int], [Bool], Int)? = lt.run(timeout: 10) { done in
                var order: [Int] = []
                var matched: [Bool] = []
                for i in 0..<1000 {
                    // Every 100th carries 40 KB, so replies straddle reads of the 16 KB buffer.
                    let payload = i % 100 == 0 ? [UInt8](repeating: UInt8(i % 251), count: 40_000) + b("#\(i)") : b("v\(i)")
                    conn.send([b("ECHO"), payload]) { r in
                        order.append(i)
                        matched.append(r == .success(.bulk(payload)))
                        if order.count == 1000 { done((order, matched, conn.stats.commands)) }
                    }
                }
                #expect(conn.pendingCount == 1000)
            }
            let (order, matched, sent) = try #require(result)
            #expect(order == Array(0..<1000))
            #expect(matched.allSatisfy { $0 })
            #expect(sent == 1000)
        }

        @Test func getSetWithExpiryAndDel() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration())
            defer { Self.shutdown(lt, client) }
            let value = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let set: Result<Void, RedisError>? = lt.run { done in client.set(b("k"), value, expireAfter: .milliseconds(150)) { done($0) } }
            #expect((try? set?.get()) != nil)
            let got: Result<[UInt8]?, RedisError>? = lt.run { done in client.get(b("k")) { done($0) } }
            #expect(got == .success(value))
            #expect(client.call(lt, "PTTL", "k").flatMap { try? $0.get().int }.map { $0 > 0 && $0 <= 150 } == true)
            usleep(250_000)
            let expired: Result<[UInt8]?, RedisError>? = lt.run { done in client.get(b("k")) { done($0) } }
            #expect(expired == .success(nil))
            _ = client.call(lt, "SET", "a", "1")
            _ = client.call(lt, "SET", "b", "2")
            let deleted: Result<Int, RedisError>? = lt.run { done in client.del([b("a"), b("b"), b("c")]) { done($0) } }
            #expect(deleted == .success(2))
            // Error replies are values on the raw API and failures on the typed one.
            #expect(client.call(lt, "LPUSH", "a", "x") == .success(.integer(1)))
            let wrongType: Result<[UInt8]?, RedisError>? = lt.run { done in client.get(b("a")) { done($0) } }
            guard case .failure(.server(let m))? = wrongType else { Issue.record("expected WRONGTYPE"); return }
            #expect(m.hasPrefix("WRONGTYPE"))
            #expect(client.call(lt, "NOSUCHCOMMAND").map { (try? $0.get())?.errorMessage?.hasPrefix("ERR") } == true)
        }

        @Test func authenticatesWithPasswordAndSelectsDatabase() throws {
            let server = try RedisServer(["--requirepass", "s3cret pass"])
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration(password: "s3cret pass", db: 3))
            defer { Self.shutdown(lt, client) }
            #expect(client.call(lt, "SET", "where", "db3") == .success(.status("OK")))
            #expect(client.call(lt, "CLIENT", "INFO").flatMap { try? $0.get().bytes }
                .map { String(decoding: $0, as: UTF8.self).contains(" db=3 ") } == true)
            // A second client on db 0 does not see the key; one on db 3 does.
            let (lt0, db0) = try Self.connectedClient(server.configuration(password: "s3cret pass", db: 0))
            defer { Self.shutdown(lt0, db0) }
            #expect(db0.call(lt0, "GET", "where") == .success(.bulk(nil)))
            #expect(db0.call(lt0, "SELECT", "3") == .success(.status("OK")))
            #expect(db0.call(lt0, "GET", "where") == .success(.bulk(b("db3"))))
        }

        @Test func authenticatesWithUsernameAndPassword() throws {
            let server = try RedisServer(["--user", "alice", "on", ">w0nderland", "~*", "&*", "+@all"])
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration(password: "w0nderland", user: "alice"))
            defer { Self.shutdown(lt, client) }
            #expect(client.call(lt, "ACL", "WHOAMI") == .success(.bulk(b("alice"))))
        }

        @Test func wrongPasswordNeverConnectsAndFailsFast() throws {
            let server = try RedisServer(["--requirepass", "right"])
            defer { server.stop() }
            let lt = try LoopThread()
            let client = RedisClient(loop: lt.loop, configuration: server.configuration(password: "hunter2-wrong"))
            defer { Self.shutdown(lt, client) }
            // Sent before the first connection completes: queued behind AUTH, failed with it.
            let first: Result<RedisValue, RedisError>? = lt.run { done in
                client.start()
                client.send(RedisCommand([b("PING")])) { done($0) }
            }
            #expect(first == .failure(.connectionLost))
            #expect(eventually { (lt.sync { client.connections[0].stats.failures } ?? 0) >= 2 })
            let error = lt.sync { client.connections[0].lastError } ?? nil
            #expect(error?.contains("WRONGPASS") == true)
            #expect(error?.contains("hunter2") == false)  // the password is never echoed
            #expect(client.call(lt, "PING") == .failure(.unavailable))
            #expect(lt.sync { client.isConnected } == false)
        }

        @Test func commandTimeoutResetsTheConnectionWhichRecovers() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration(timeout: .milliseconds(100)))
            defer { Self.shutdown(lt, client) }
            let started = Date()
            let results: [Result<RedisValue, RedisError>]? = lt.run(timeout: 5) { done in
                var got: [Result<RedisValue, RedisError>] = []
                for args in [["DEBUG", "SLEEP", "0.3"], ["PING"]] {
                    client.send(RedisCommand(args.map { b($0) })) { r in
                        got.append(r)
                        if got.count == 2 { done(got) }
                    }
                }
            }
            let elapsed = Date().timeIntervalSince(started)
            // The sleeper times out; the command behind it was on the same connection, which
            // was closed (its reply could not be trusted to line up any more).
            #expect(results == [.failure(.timeout), .failure(.connectionLost)])
            // (The results above prove it fired before the 300 ms reply; no upper bound on a busy box.)
            #expect(elapsed >= 0.09, "timed out after \(elapsed) s")
            #expect(lt.sync { client.connections[0].stats.timeouts } == 1)
            // The connection comes back by itself once the server is responsive.
            #expect(eventually { client.call(lt, "PING", timeout: 1) == .success(.status("PONG")) })
            #expect((lt.sync { client.connections[0].stats.connects } ?? 0) >= 2)
        }

        @Test func idleCloseByTheServerReconnectsAtOnce() throws {
            let server = try RedisServer(["--timeout", "1"])
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration())
            defer { Self.shutdown(lt, client) }
            // Redis drops idle clients after 1 s (checked by its cron); we reconnect at once.
            #expect(eventually(timeout: 5) { (lt.sync { client.connections[0].stats.connects } ?? 0) >= 2 })
            #expect(lt.sync { client.connections[0].stats.idleCloses } == 1)
            #expect(lt.sync { client.connections[0].acceptsCommands } == true)
            #expect(client.call(lt, "PING") == .success(.status("PONG")))
        }

        @Test func boundsPendingCommands() throws {
            let server = try RedisServer()
            defer { server.stop() }
            var config = server.configuration()
            config.maxPendingCommands = 5
            let (lt, client) = try Self.connectedClient(config)
            defer { Self.shutdown(lt, client) }
            let results: [Result<RedisValue, RedisError>]? = lt.run { done in
                var got = [Result<RedisValue, RedisError>?](repeating: nil, count: 8)
                var n = 0
                for i in 0..<8 {
                    client.send(RedisCommand([b("PING")])) { r in
                        got[i] = r
                        n += 1
                        if n == 8 { done(got.map { $0! }) }
                    }
                }
            }
            #expect(results.map { Array($0.prefix(5)) } == Array(repeating: .success(.status("PONG")), count: 5))
            #expect(results.map { Array($0.suffix(3)) } == Array(repeating: .failure(.overloaded), count: 3))
        }

        @Test func reconnectsAfterRestartAndFailsFastWhileDown() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration(connections: 2))
            defer { Self.shutdown(lt, client) }
            #expect(client.call(lt, "SET", "k", "before") == .success(.status("OK")))

            server.stop()  // SIGKILL: the connections see EOF/reset
            // (An idle connection's first reconnect is immediate; once it is refused, commands
            // are no longer accepted.)
            #expect(eventually { lt.sync { client.connections.allSatisfy { !$0.acceptsCommands } } == true })
            // While down, commands fail at once with .unavailable: nothing queues.
            let started = Date()
            let failures: Int? = lt.run { done in
                var n = 0
                for _ in 0..<100 {
                    client.send(RedisCommand([b("GET"), b("k")])) { r in
                        if r == .failure(.unavailable) { n += 1 }
                        if n == 100 { done(n) }
                    }
                }
            }
            #expect(failures == 100)
            #expect(Date().timeIntervalSince(started) < 0.1)
            #expect(lt.sync { client.connections.map(\.pendingCount) } == [0, 0])

            try server.start()  // same port
            #expect(eventually(timeout: 5) { lt.sync { client.connections.allSatisfy(\.isReady) } == true })
            #expect(client.call(lt, "SET", "k", "after") == .success(.status("OK")))
            #expect(client.call(lt, "GET", "k") == .success(.bulk(b("after"))))
            #expect((lt.sync { client.connections[0].stats.connects } ?? 0) >= 2)
        }

        @Test func scriptsFallBackToEvalOnNoscript() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration())
            defer { Self.shutdown(lt, client) }
            let script = RedisScript("return {KEYS[1], ARGV[1], 7}")
            #expect(client.call(lt, "SCRIPT", "EXISTS", script.sha1) == .success(.array([.integer(0)])))
            let r: Result<RedisValue, RedisError>? = lt.run { done in
                var call = script.call(keyCount: 1)
                call.append(b("key"))
                call.append(b("arg"))
                client.evaluate(call, script: script) { done($0) }
            }
            #expect(r == .success(.array([.bulk(b("key")), .bulk(b("arg")), .integer(7)])))
            // The EVAL fallback cached it: the next EVALSHA goes straight through.
            #expect(client.call(lt, "SCRIPT", "EXISTS", script.sha1) == .success(.array([.integer(1)])))
            // Our SHA-1 is Redis's name for the script.
            let loaded: Result<String, RedisError>? = lt.run { done in client.scriptLoad(RateLimiter.script) { done($0) } }
            #expect(loaded == .success(RateLimiter.script.sha1))
        }

        @Test func storesAndReadsCacheEntriesPerScope() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Self.connectedClient(server.configuration())
            defer { Self.shutdown(lt, client) }
            let request = b(#"{"model":"m","prompt":"hi","temperature":0}"#)
            let entry = ResponseCacheEntry(status: 200, contentType: b("text/event-stream"), isStream: true,
                                           storedAt: 1, body: b("data: {\"x\":1}\r\n\r\ndata: [DONE]\r\n\r\n"))
            let keyA = ResponseCacheKeys.key(scope: .tenant("a"), model: "m", request: request)
            let keyB = ResponseCacheKeys.key(scope: .tenant("b"), model: "m", request: request)
            let stored: Result<Void, RedisError>? = lt.run { done in client.set(keyA, entry.encoded(), expireAfter: .seconds(10)) { done($0) } }
            #expect((try? stored?.get()) != nil)
            let hit: Result<[UInt8]?, RedisError>? = lt.run { done in client.get(keyA) { done($0) } }
            #expect(hit.flatMap { try? $0.get() }.flatMap { ResponseCacheEntry(decoding: $0) } == entry)
            let other: Result<[UInt8]?, RedisError>? = lt.run { done in client.get(keyB) { done($0) } }
            #expect(other == .success(nil))
        }
    }
}
