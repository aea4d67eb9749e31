import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceSettings
import SluiceTracing

/// Forward: the request goes to the leased endpoint. The first time, the body is rewritten if
/// it must change (the model name, usage asked for) — the one place the gateway copies a body.
/// The head is written by the one encoder (``UpstreamRequestEncoder``) from the exchange's own
/// settings, the body borrowed from where it was received; then the exchange waits for the
/// upstream (connect, first byte) under its deadlines.
enum ForwardPhase: RequestPhase {
    static func run(_ x: Exchange) -> PhaseAction {
        guard let ep = x.ctx.attempt.lease?.endpoint, let pool = x.pool else { return .next }
        // A sampled request's shadow copy (issue 26), from the body as the client sent it.
        if x.ctx.attempt.number == 1, let plan = x.ctx.target.shadow, let sp = x.ctx.target.shadowPool {
            x.ctx.target.shadow = nil
            x.worker.shadows.copy(x, plan: plan, pool: sp)
        }
        if x.ctx.attempt.number == 1, x.ctx.features != nil, needsRewrite(x), var f = x.ctx.features {
            let model = x.ctx.target.upstreamModel
            let metered = x.ctx.admission.ticket?.isMetered == true
            let proxy = x.settings.proxy
            let salt = x.settings.kvIsolation && takesSalt(f.endpoint) ? cacheSalt(x.ctx.tenant) : nil
            var rewritten: ByteBuffer? = nil
            x.client.withRequest { r in
                rewritten = rewrittenBody(r.body, &f, model: model, metered: metered, salt: salt, proxy: proxy, pool: x.loop.bufferPool)
            }
            x.ctx.features = f
            if let b = rewritten.take() { x.client.setUpstreamBody(b) }
        }
        if x.ctx.upgrade && !x.ctx.tunnelSlot {
            guard x.worker.acquireTunnelSlot() else {
                x.worker.metrics.add(x.worker.tunnelSlots["refused"]!)
                return .respond(LocalResponse(.unavailable("Too many realtime sessions (realtime.max_connections is \(x.settings.realtime.maxConnections)); try again shortly.")))
            }
            x.ctx.tunnelSlot = true
        }
        let conn: any Upstream
        do {
            conn = try pool.checkout(ep)
        } catch {
            x.upstreamFailedImmediately()
            return .wait
        }
        x.ctx.attempt.upstream = conn
        let now = x.loop.now
        x.ctx.attempt.sentAt = now
        // Its uncached prompt queues for prefill there from now (the cost model's counters).
        x.ctx.attempt.lease?.sent(at: now)
        x.worker.metrics.add(ep.requestsSlot)
        let authority = ep.config.authority
        let proxy = x.settings.proxy
        // Traced: the attempt's client span, whose id the model server gets as its parent.
        var trace: (TraceContext, UInt64)? = nil
        if let t = x.ctx.trace {
            let id = x.worker.spans.newSpanID()
            t.attemptSpanID = id
            t.attemptStart = now
            t.attemptEndpoint = x.ctx.attempt.endpointName
            trace = (t.context, id)
        }
        let upgrade = x.ctx.upgrade
        x.forwarded(on: conn)
        conn.send(x, method: x.ctx.method) { out in
            x.client.withRequest { r in
                UpstreamRequestEncoder.encode(r, proxy: proxy, endpointAuthority: authority, trace: trace, into: &out, pool: x.loop.bufferPool, upgrade: upgrade)
            }
        }
        return .wait
    }

    /// Whether ``rewrittenBody`` would change anything (read in place: no copy of the scan).
    @inline(__always)
    static func needsRewrite(_ x: Exchange) -> Bool {
        let endpoint = x.ctx.features!.endpoint
        if x.ctx.target.upstreamModel != nil || (x.settings.kvIsolation && takesSalt(endpoint)) { return true }
        let wantUsage = (x.settings.proxy.requestUsage || x.ctx.admission.ticket?.isMetered == true)
            && x.ctx.features!.scanned.stream == true && asksUsage(endpoint)
        return wantUsage && x.ctx.features!.scanned.includeUsage != true
    }

    /// The request body for the upstream when it must differ from the client's: the `model`
    /// replaced by the resolved upstream name, and/or usage asked for on a stream whose client
    /// did not ask (`"stream_options":{"include_usage":true}` added, or the client's `false` or
    /// `null` turned to `true`) when `proxy.request_usage` is on or token limits apply — metering
    /// must not depend on what the client chose; the extra chunk is kept from the client.
    /// Written into a pool buffer; nil when nothing changes. Sets `injectedUsage` on `f`.
    static func rewrittenBody(_ body: UnsafeRawBufferPointer, _ f: inout RequestFeatures, model: [UInt8]?, metered: Bool,
                              salt: [UInt8]? = nil, proxy: GatewaySettings.Proxy, pool: BufferPool) -> ByteBuffer? {
        // Edits as (offset, bytes to drop, bytes to insert), applied in offset order.
        var edits: [(at: Int, drop: Int, insert: [UInt8])] = []
        if let model {
            edits.append((f.scanned.model.start, f.scanned.model.count, model))
        }
        if let salt {
            // `tenancy.kv_isolation`: vLLM keys its prefix cache by `cache_salt` too, so no
            // tenant's cached prefix serves (or times) another's. Added last: JSON's last
            // duplicate key wins, so a client's own salt cannot undo it.
            var member = Array((f.scanned.memberCount > 0 ? ",\"cache_salt\":\"" : "\"cache_salt\":\"").utf8)
            member += salt
            member.append(UInt8(ascii: "\""))
            edits.append((f.scanned.closingBrace, 0, member))
        }
        let wantUsage = (proxy.requestUsage || metered) && f.stream && asksUsage(f.endpoint)
        if wantUsage, f.scanned.includeUsage != true, let literal = f.scanned.includeUsageValue {
            // `"include_usage": false` (or null): the value becomes true.
            edits.append((literal.start, literal.count, Array("true".utf8)))
            f.injectedUsage = true
        } else if wantUsage, f.scanned.includeUsage == nil {
            if let value = f.scanned.streamOptionsValue {
                let open = value.start
                if body[open] == UInt8(ascii: "{") {
                    var k = open + 1
                    while k < value.end && (body[k] == 32 || body[k] == 9 || body[k] == 10 || body[k] == 13) { k += 1 }
                    let empty = body[k] == UInt8(ascii: "}")
                    edits.append((open + 1, 0, Array((empty ? "\"include_usage\":true" : "\"include_usage\":true,").utf8)))
                    f.injectedUsage = true
                } else {
                    // `"stream_options": null`
                    edits.append((open, value.count, Array("{\"include_usage\":true}".utf8)))
                    f.injectedUsage = true
                }
            } else {
                let member = f.scanned.memberCount > 0 ? ",\"stream_options\":{\"include_usage\":true}" : "\"stream_options\":{\"include_usage\":true}"
                edits.append((f.scanned.closingBrace, 0, Array(member.utf8)))
                f.injectedUsage = true
            }
        }
        if edits.isEmpty { return nil }
        edits.sort { $0.at < $1.at }
        var out = pool.take(minimumCapacity: body.count + 128)
        var pos = 0
        for e in edits {
            out.append(UnsafeRawBufferPointer(rebasing: body[pos..<e.at]))
            e.insert.withUnsafeBytes { out.append($0) }
            pos = e.at + e.drop
        }
        out.append(UnsafeRawBufferPointer(rebasing: body[pos...]))
        return out
    }

    /// Streams of these endpoints report usage only when asked (`stream_options.include_usage`):
    /// OpenAI-shaped JSON streams. Anthropic and Responses API streams always carry it; a
    /// multipart body is not rewritten.
    @inline(__always)
    static func asksUsage(_ e: LLMEndpoint) -> Bool {
        e == .chatCompletions || e == .completions
    }

    /// Bodies vLLM reads `cache_salt` from (the prefix-caching generators and embeddings).
    @inline(__always)
    static func takesSalt(_ e: LLMEndpoint) -> Bool {
        e == .chatCompletions || e == .completions || e == .embeddings
    }

    /// The tenant's salt: a hash of its name (the model server never sees tenant names).
    static func cacheSalt(_ tenant: String) -> [UInt8] {
        Array(hex16(ModelTable.hash(Array(("sluice-tenant:" + tenant).utf8))).utf8)
    }
}
