import SluiceHTTP
import SluiceIO
import SluiceLLM

/// What the inspect phase learned from an OpenAI request body: enough for routing, metrics and
/// the relay, kept as plain values (the body itself stays where it was read). Trivially
/// copyable on purpose — no references — so handing it from phase to phase is a plain copy
/// with no reference counting.
struct RequestFeatures {
    var endpoint: OpenAIEndpoint
    var scanned: ScannedRequest
    /// The client asked for a stream.
    var stream: Bool { scanned.stream == true }
    /// Sluice added `stream_options.include_usage` upstream, so the usage-only chunk must be
    /// kept from the client.
    var injectedUsage = false
    /// Chained prefix block hashes (in the worker's scratch buffer, valid until the next inspect).
    var prefixBlocks = 0
}

/// Per-worker scratch space for the inspect phase, allocated once.
final class InspectScratch {
    let segments = UnsafeMutableBufferPointer<PromptSegment>.allocate(capacity: 1024)
    let prefixHashes = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: 256)
    deinit {
        segments.deallocate()
        prefixHashes.deallocate()
    }
}

extension Worker {
    /// The inspect phase: for the OpenAI inference endpoints (POST /v1/chat/completions,
    /// /v1/completions, /v1/embeddings) the body is scanned in place and validated strictly —
    /// malformed JSON or a wrong shape is a 400 naming the problem, before any model server is
    /// bothered. Other requests pass through uninspected (nil).
    func inspect(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) throws(OpenAIError) -> RequestFeatures? {
        guard method == .post, let endpoint = OpenAIEndpoint(path: path) else { return nil }
        let scanned: ScannedRequest
        do {
            scanned = try RequestScanner().scan(body, endpoint: endpoint, segments: inspectScratch.segments)
        } catch {
            throw error.openAIError
        }
        var f = RequestFeatures(endpoint: endpoint, scanned: scanned)
        let segments = UnsafeBufferPointer(rebasing: inspectScratch.segments[0..<min(scanned.segmentCount, inspectScratch.segments.count)])
        let seed = PrefixHasher.mixSeed(0x5EED, UnsafeRawBufferPointer(rebasing: body[Int(scanned.model.start)..<Int(scanned.model.end)]))
        f.prefixBlocks = PrefixHasher.hashPrompt(body: body, segments: segments, seed: seed, into: inspectScratch.prefixHashes)
        return f
    }

    /// The request body for the upstream when it must differ from the client's: the `model`
    /// replaced by the resolved upstream name, and/or usage asked for on a stream whose client
    /// did not ask (`"stream_options":{"include_usage":true}` added, or the client's `false` or
    /// `null` turned to `true`) when `proxy.request_usage` is on or token limits apply — metering
    /// must not depend on what the client chose; the extra chunk is kept from the client.
    /// Written into a pool buffer (the one place the gateway copies a body: it must change);
    /// nil when nothing changes. Sets `injectedUsage` on `f`.
    func rewrittenBody(_ body: UnsafeRawBufferPointer, _ f: inout RequestFeatures, model: [UInt8]?, metered: Bool = false) -> ByteBuffer? {
        // Edits as (offset, bytes to drop, bytes to insert), applied in offset order.
        var edits: [(at: Int, drop: Int, insert: [UInt8])] = []
        if let model {
            edits.append((Int(f.scanned.model.start), f.scanned.model.end - f.scanned.model.start, model))
        }
        let wantUsage = (settings.proxy.requestUsage || metered) && f.stream && f.endpoint != .embeddings
        if wantUsage, f.scanned.includeUsage != true, let literal = f.scanned.includeUsageValue {
            // `"include_usage": false` (or null): the value becomes true.
            edits.append((literal.start, literal.count, Array("true".utf8)))
            f.injectedUsage = true
        } else if wantUsage, f.scanned.includeUsage == nil {
            if let value = f.scanned.streamOptionsValue {
                let open = Int(value.start)
                if body[open] == UInt8(ascii: "{") {
                    var k = open + 1
                    while k < Int(value.end) && (body[k] == 32 || body[k] == 9 || body[k] == 10 || body[k] == 13) { k += 1 }
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
        var out = loop.bufferPool.take(minimumCapacity: body.count + 128)
        var pos = 0
        for e in edits {
            out.append(UnsafeRawBufferPointer(rebasing: body[pos..<e.at]))
            e.insert.withUnsafeBytes { out.append($0) }
            pos = e.at + e.drop
        }
        out.append(UnsafeRawBufferPointer(rebasing: body[pos...]))
        return out
    }

    /// What to do with a request: answer it here, reject it, or forward it (to which pool, with
    /// what body). Shared by HTTP/1.1 and HTTP/2.
    enum Plan {
        case local(status: Int, contentType: String, body: [UInt8])
        case reject(OpenAIError)
        /// `rewritten` (the caller's buffer) holds the body to send when it had to change;
        /// `ticket` says what admission must do first (rate limits, cache), if anything. What
        /// inspection found is in `Worker.inspected` (moved into the exchange by the caller).
        case forward(pool: UpstreamPool, arm: String?, adapter: LoRATarget?, ticket: AdmissionTicket?)
    }

    /// Inspect, then resolve the model (when `models:` is configured).
    func plan(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
              headerNamed: (String) -> UnsafeRawBufferPointer?, requestID: () -> String, rewritten: inout ByteBuffer) -> Plan {
        let started = loop.now
        let plan = makePlan(method: method, path: path, body: body, headerNamed: headerNamed, rewritten: &rewritten)
        // Requests Sluice answers itself are counted and logged here; forwarded ones when they
        // complete (Exchange.record).
        let status: Int
        if case .forward = plan {} else { inspected = nil }
        switch plan {
        case .reject(let e): status = e.status
        case .local(let s, _, _): status = s
        case .forward: return plan
        }
        metrics.add(localSlots.requests[GatewayMetrics.classIndex(status)])
        if accessLog != nil {
            let (sec, ns) = WallClock.now()
            var line = AccessLogLine(unixNanos: sec * 1_000_000_000 + ns)
            line.field("request_id", requestID())
            line.field("method", String(describing: method))
            let p = Bytes.prefix(path, before: UInt8(ascii: "?"))
            line.field("path", String(decoding: p.prefix(200), as: UTF8.self))
            line.field("status", status)
            line.field("duration_ms", loop.now.seconds(since: started) * 1000)
            line.field("route_reason", "answered_by_gateway")
            log(line.finish())
        }
        return plan
    }

    private func makePlan(method: HTTPMethod, path: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                          headerNamed: (String) -> UnsafeRawBufferPointer?, rewritten: inout ByteBuffer) -> Plan {
        // What inspection finds is built and amended in place in `inspected` (a few hundred
        // bytes: not copied from phase to phase).
        do {
            inspected = try inspect(method: method, path: path, body: body)
        } catch {
            inspected = nil
            return .reject(error)
        }
        // Who is asking (API key → tenant): needed for auth, and to scope cache and limits.
        var tenant = "anonymous"
        if settings.auth != nil || settings.redis != nil {
            switch self.tenant(headerNamed: headerNamed) {
            case .success(let t): tenant = t
            case .failure(let e): return .reject(e)
            }
        }
        let table = modelTable
        guard !table.isEmpty else {
            guard let pool = defaultPool else { return .reject(.unavailable("No pool is configured.")) }
            var ticket: AdmissionTicket? = nil
            if inspected != nil, settings.redis != nil {
                let name = JSONString.decode(body, inspected!.scanned.model)
                ticket = admissionTicket(tenant: tenant, features: inspected!, clientModel: name, target: pool.name + "/" + name,
                                         body: body, headerNamed: headerNamed)
            }
            if inspected != nil, let b = rewrittenBody(body, &inspected!, model: nil, metered: ticket?.isMetered == true) { rewritten = b }
            return .forward(pool: pool, arm: nil, adapter: nil, ticket: ticket)
        }
        guard inspected != nil else {
            let p = Bytes.prefix(path, before: UInt8(ascii: "?"))
            if method == .get && p.elementsEqual("/v1/models".utf8) {
                return .local(status: 200, contentType: "application/json", body: table.modelList(created: loadedAt))
            }
            if method == .get && p.elementsEqual("/health".utf8) {
                return .local(status: 200, contentType: "text/plain", body: [])
            }
            return .reject(.client(404, "Unknown request path; this gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.",
                                   code: "not_found"))
        }
        let model = inspected!.scanned.model, modelEscaped = inspected!.scanned.modelEscaped, user = inspected!.scanned.user
        let raw = UnsafeRawBufferPointer(rebasing: body[Int(model.start)..<Int(model.end)])
        var decoded: [UInt8] = []
        if modelEscaped { decoded = Array(JSONString.decode(body, model).utf8) }
        let resolved = decoded.withUnsafeBytes { d -> ResolvedTarget? in
            let name = modelEscaped ? d : raw
            return table.resolve(name, stickyKey: { sticky in
                switch sticky {
                case .none: return nil
                case .user:
                    guard let u = user else { return nil }
                    return ModelTable.hash(UnsafeRawBufferPointer(rebasing: body[Int(u.start)..<Int(u.end)]))
                case .header(let name):
                    return headerNamed(name).map { ModelTable.hash($0) }
                }
            }, random: { self.nextRandom() })
        }
        guard let t = resolved else {
            let name = modelEscaped ? String(decoding: decoded, as: UTF8.self) : String(decoding: raw, as: UTF8.self)
            return .reject(.modelNotFound(name))
        }
        var ticket: AdmissionTicket? = nil
        if settings.redis != nil {
            let name = modelEscaped ? String(decoding: decoded, as: UTF8.self) : String(decoding: raw, as: UTF8.self)
            ticket = admissionTicket(tenant: tenant, features: inspected!, clientModel: name,
                                     target: pools[t.pool].name + "/" + String(decoding: t.upstreamModel, as: UTF8.self),
                                     body: body, headerNamed: headerNamed)
        }
        if let b = rewrittenBody(body, &inspected!, model: t.rewriteModel || modelEscaped ? t.upstreamModel : nil,
                                 metered: ticket?.isMetered == true) { rewritten = b }
        if t.metricSlot >= 0 { metrics.add(t.metricSlot) }
        return .forward(pool: pools[t.pool], arm: t.arm, adapter: t.adapter, ticket: ticket)
    }
}
