import Foundation
import Glibc
import Synchronization
import Testing
@testable import SluiceIO
@testable import SluiceRedis

extension RedisIntegrationTests {
    @Suite struct RateLimiterTests {
        typealias Connection = RedisIntegrationTests.ConnectionTests

        static func check(_ lt: LoopThread, _ limiter: RateLimiter, _ checks: [RateLimitCheck]) -> RateLimitDecision? {
            let r: Result<RateLimitDecision, RedisError>? = lt.run { done in limiter.check(checks) { done($0) } }
            return try? r?.get()
        }

        @Test func admitsBurstThenDeniesThenRefills() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Connection.connectedClient(server.configuration())
            defer { Connection.shutdown(lt, client) }
            let limiter = RateLimiter(client: client)
            // 5 requests per 2.5 s: one unit every 500 ms, bucket of 5.
            let limit = RateLimit(limit: 5, period: .milliseconds(2500))
            let key = RateLimitKeys.key(limitName: "requests", tenant: "team-a")
            let one = [RateLimitCheck(key: key, limit: limit, cost: 1)]
            var remaining: [Int] = []
            for _ in 0..<5 {
                let d = try #require(Self.check(lt, limiter, one))
                #expect(d.allowed)
                remaining.append(d.results[0].remaining)
                #expect(d.results[0].limit == 5)
            }
            #expect(remaining == [4, 3, 2, 1, 0])
            let denied = try #require(Self.check(lt, limiter, one))
            #expect(!denied.allowed)
            #expect(denied.results[0].remaining == 0)
            let retry = try #require(denied.results[0].retryAfter)
            #expect(retry > .zero && retry <= .milliseconds(500))
            #expect(denied.results[0].resetAfter > .milliseconds(2000) && denied.results[0].resetAfter <= .milliseconds(2500))
            #expect(denied.retryAfterSeconds == 1)
            // A denial charges nothing: the wait does not grow.
            let again = try #require(Self.check(lt, limiter, one))
            #expect(!again.allowed && again.results[0].retryAfter! <= retry)
            // After one interval exactly one more fits.
            usleep(UInt32(retry.nanoseconds / 1000) + 30_000)
            #expect(Self.check(lt, limiter, one)?.allowed == true)
            #expect(Self.check(lt, limiter, one)?.allowed == false)
            // The key is namespaced and expires once the bucket would be full.
            let pttl = client.call(lt, "PTTL", String(decoding: key, as: UTF8.self)).flatMap { try? $0.get().int }
            #expect(pttl.map { $0 > 0 && $0 <= 2500 } == true)
        }

        @Test func allLimitsOrNothingAndTokenSettlement() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Connection.connectedClient(server.configuration())
            defer { Connection.shutdown(lt, client) }
            let limiter = RateLimiter(client: client)
            let rpm = RateLimit(limit: 10, period: .seconds(3600))
            let tpm = RateLimit(limit: 100, period: .seconds(3600))
            let rk = RateLimitKeys.key(limitName: "requests", tenant: "t")
            let tk = RateLimitKeys.key(limitName: "tokens", tenant: "t")
            func request(_ tokens: Int) -> [RateLimitCheck] {
                [RateLimitCheck(key: rk, limit: rpm, cost: 1), RateLimitCheck(key: tk, limit: tpm, cost: tokens)]
            }
            let first = try #require(Self.check(lt, limiter, request(60)))
            #expect(first.allowed && first.results.map(\.remaining) == [9, 40])
            // Tokens deny the second request; its request unit is not charged either.
            let second = try #require(Self.check(lt, limiter, request(60)))
            #expect(!second.allowed)
            #expect(second.results.map(\.allowed) == [true, false])
            #expect(second.results.map(\.remaining) == [9, 40])
            // The first used only 10 tokens: refund 50, and the second now fits.
            let settled: Result<RateLimitResult, RedisError>? = lt.run { done in
                limiter.reconcile(key: tk, limit: tpm, delta: -50) { done($0) }
            }
            #expect((try? settled?.get())?.remaining == 90)
            let third = try #require(Self.check(lt, limiter, request(60)))
            #expect(third.allowed && third.results.map(\.remaining) == [8, 30])
            // Usage above the estimate is charged too, even into debt.
            let over: Result<RateLimitResult, RedisError>? = lt.run { done in
                limiter.reconcile(key: tk, limit: tpm, delta: 80) { done($0) }
            }
            #expect((try? over?.get())?.remaining == 0)
            let fourth = try #require(Self.check(lt, limiter, request(1)))
            #expect(!fourth.allowed && fourth.results[1].retryAfter! > .seconds(60 * 30))
            // A cost above the burst can never fit: no retry hint.
            let huge = try #require(Self.check(lt, limiter, [RateLimitCheck(key: tk, limit: tpm, cost: 101)]))
            #expect(!huge.allowed && huge.results[0].retryAfter == nil && huge.retryAfterSeconds == nil)
        }

        @Test func worksAfterScriptFlush() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let (lt, client) = try Connection.connectedClient(server.configuration())
            defer { Connection.shutdown(lt, client) }
            let limiter = RateLimiter(client: client)
            let check = [RateLimitCheck(key: RateLimitKeys.key(limitName: "r", tenant: "x"), limit: .perMinute(3), cost: 1)]
            #expect(Self.check(lt, limiter, check)?.allowed == true)
            #expect(client.call(lt, "SCRIPT", "FLUSH") == .success(.status("OK")))
            #expect(Self.check(lt, limiter, check)?.results[0].remaining == 1)
        }

        /// Two loops, each with its own client and connections, hammer one limit at once; the
        /// total admitted is exactly the limit.
        @Test func concurrentChecksNeverOverAdmit() throws {
            let server = try RedisServer()
            defer { server.stop() }
            let limit = RateLimit(limit: 50, period: .seconds(3600))
            let key = RateLimitKeys.key(limitName: "requests", tenant: "shared-tenant")
            var loops: [(LoopThread, RedisClient)] = []
            for _ in 0..<2 { loops.append(try Connection.connectedClient(server.configuration(connections: 2))) }
            defer { for (lt, c) in loops { Connection.shutdown(lt, c) } }
            let admitted = Atomic<Int>(0)
            let finished = Atomic<Int>(0)
            for (lt, client) in loops {
                lt.loop.execute {
                    let limiter = RateLimiter(client: client)
                    for _ in 0..<120 {
                        limiter.check(key: key, limit: limit, cost: 1) { r in
                            if case .success(let res) = r, res.allowed { admitted.add(1, ordering: .relaxed) }
                            finished.add(1, ordering: .relaxed)
                        }
                    }
                }
            }
            #expect(eventually(timeout: 10) { finished.load(ordering: .relaxed) == 240 })
            #expect(admitted.load(ordering: .relaxed) == 50)
        }
    }
}
