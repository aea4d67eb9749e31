import SluiceBase
import SluiceHTTP
import SluiceLLM
import SluiceRouting
import SluiceSettings

/// Authenticate: who is asking. With `auth` configured, the tenant of the request's API key
/// (`Authorization: Bearer …`, compared as SHA-256), or a 401. Without it, when Redis scopes
/// cache entries and limits: `key-` and a hash prefix of the key sent (so keys never share
/// entries or buckets), or `anonymous`. The key itself is never kept or logged.
enum AuthenticatePhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        let g = x.ctx.generation  // read in place: a copy of the settings would retain every field
        guard g.value.auth != nil || g.value.redis != nil || g.value.kvIsolation else { return .next }
        var action = PhaseAction.next
        x.client.withRequest { r in
            let authorization = r.header(named: "authorization")
            // Anthropic's SDKs send the key as `x-api-key`; accepted on every path.
            let apiKey = authorization == nil ? r.header(named: "x-api-key") : nil
            switch tenant(auth: g.value.auth, authorization: authorization, apiKey: apiKey) {
            case .success(let t):
                x.ctx.tenant = t
                if let auth = g.value.auth, !auth.priorities.isEmpty, let token = authorization.flatMap(bearerToken) ?? apiKey.flatMap(trimmed) {
                    var h = SHA256()
                    h.update(token)
                    x.ctx.queue.keyPriority = auth.priorities[h.finalize()]
                }
            case .failure(let e): action = .respond(LocalResponse(e))
            }
        }
        if g.value.kvIsolation, case .next = action { isolate(x) }
        return action
    }

    /// `tenancy.kv_isolation`: the prompt's prefix blocks are keyed by tenant too (the
    /// chained hashes re-mixed with the tenant's, so no block of one tenant matches another's).
    static func isolate(_ x: Exchange) {
        guard let blocks = x.ctx.features?.prefixBlocks, blocks > 0 else { return }
        let key = ModelTable.hash(Array(x.ctx.tenant.utf8))
        let h = x.worker.inspectScratch.prefixHashes
        for i in 0..<blocks { h[i] = SplitMix64.mix(h[i] ^ key) }
    }

    static func tenant(auth: GatewaySettings.Auth?, authorization: UnsafeRawBufferPointer?,
                       apiKey: UnsafeRawBufferPointer? = nil) -> Result<String, OpenAIError> {
        let token = authorization.flatMap(bearerToken) ?? apiKey.flatMap(trimmed)
        guard let auth else {
            guard let token else { return .success("anonymous") }
            var h = SHA256()
            h.update(token)
            return .success("key-" + Hex.string(Array(h.finalize()[0..<8])))
        }
        guard let token else {
            var e = OpenAIError.invalidAPIKey("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY) or in an x-api-key header.")
            e.headers = [.init("WWW-Authenticate", "Bearer")]
            return .failure(e)
        }
        var h = SHA256()
        h.update(token)
        guard let tenant = auth.keys[h.finalize()] else {
            var e = OpenAIError.invalidAPIKey()
            e.headers = [.init("WWW-Authenticate", "Bearer error=\"invalid_token\"")]
            return .failure(e)
        }
        return .success(tenant)
    }

    /// An `x-api-key` value without surrounding blanks; nil when empty.
    static func trimmed(_ v: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var s = 0, e = v.count
        while s < e && (v[s] == 32 || v[s] == 9) { s += 1 }
        while e > s && (v[e - 1] == 32 || v[e - 1] == 9) { e -= 1 }
        return s < e ? UnsafeRawBufferPointer(rebasing: v[s..<e]) : nil
    }

    /// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1).
    static func bearerToken(_ v: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard v.count > 7, ASCIICase.equal(v, ByteRange(0, 7), "bearer ") else { return nil }
        var s = 7, e = v.count
        while s < e && (v[s] == 32 || v[s] == 9) { s += 1 }
        while e > s && (v[e - 1] == 32 || v[e - 1] == 9) { e -= 1 }
        return s < e ? UnsafeRawBufferPointer(rebasing: v[s..<e]) : nil
    }
}
