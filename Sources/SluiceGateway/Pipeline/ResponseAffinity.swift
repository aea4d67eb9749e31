import SluiceIO
import SluiceLLM
import SluiceRedis
import SluiceRouting
import SluiceSettings
import Synchronization

/// Which endpoint holds which stored response (Responses API): vLLM keeps a response in the
/// memory of the server that produced it, so a follow-up (`previous_response_id`), a retrieve
/// (`GET /v1/responses/{id}`) or a cancel must reach that server. Shared by the workers (one
/// short lock per lookup or insertion; only Responses API requests take it), bounded
/// (`responses.max_ids`, oldest dropped first) and expiring (`responses.ttl`). With `redis:`
/// configured every id is also written to Redis (`sluice:resp:{id}` → authority, with the same
/// TTL), and an id this replica does not know is looked up there, so every replica routes a
/// follow-up to the right server whichever replica saw the response made.
package final class ResponseAffinity: Sendable {
    private let map: Mutex<ExpiringMap<ResponseID, String>>

    package init(capacity: Int = GatewaySettings.Responses().maxIDs, ttl: Duration = GatewaySettings.Responses().ttl) {
        map = Mutex(ExpiringMap(capacity: max(1, capacity), ttlNanos: UInt64(max(0, ttl.nanoseconds))))
    }

    /// The endpoint (authority) that made `id`, if this replica knows it.
    func endpoint(of id: ResponseID, now: Instant) -> String? {
        let t = UInt64(max(0, now.nanoseconds))
        return map.withLock { $0.value(id, now: t) }
    }

    /// Remembers that `endpoint` made `id` (and tells Redis, when there is one).
    func record(_ id: ResponseID, endpoint: String, now: Instant, redis: RedisClient?, ttl: Duration) {
        let t = UInt64(max(0, now.nanoseconds))
        map.withLock { $0.insert(id, endpoint, now: t) }
        redis?.set(Self.redisKey(id), Array(endpoint.utf8), expireAfter: ttl) { _ in }
    }

    /// Learned from Redis (another replica recorded it): kept locally too.
    func learn(_ id: ResponseID, endpoint: String, now: Instant) {
        let t = UInt64(max(0, now.nanoseconds))
        map.withLock { $0.insert(id, endpoint, now: t) }
    }

    var count: Int { map.withLock { $0.count } }

    static func redisKey(_ id: ResponseID) -> [UInt8] {
        Array("sluice:resp:".utf8) + id.bytes
    }
}
