import SluiceSettings
import SluiceHTTP
import SluiceIO
import SluiceRouting
import SluiceLLM
import SluiceRedis

/// One request on its way through the gateway: forward to an endpoint of the pool, relay the
/// response, retry once on a connection failure before any response byte, time out.
///
/// Thread-confined to the worker. The downstream side (an HTTP/1.1 connection today, an HTTP/2
/// stream later) is reached through ``ClientConnection``'s exchange methods.
final class Exchange {
    enum Phase { case admitting, connecting, waiting, relaying, done }

    unowned(unsafe) let client: any Downstream
    unowned(unsafe) let worker: Worker
    /// The worker's loop, held here so that reaching it costs no retain of the worker's field.
    unowned(unsafe) let loop: EventLoop
    let pool: UpstreamPool
    let method: HTTPMethod
    /// The settings the request started with: a reload during the request does not change
    /// its timeouts or retries.
    let generation: SettingsGeneration
    var settings: GatewaySettings { _read { yield generation.value } }
    private(set) var endpoint: UpstreamPool.Endpoint?
    private(set) var upstream: UpstreamConnection?
    private var attempts = 0
    var phase = Phase.connecting
    /// True once the response head went to the client: from then on an upstream failure can
    /// only cut the client's connection.
    private(set) var responseStarted = false
    /// The phase and request deadlines' timer, from the worker's spares; given back (and nil)
    /// once the exchange is done.
    private var timer: ExchangeTimer?
    private let requestDeadline: Instant
    private var phaseDeadline = Instant(nanoseconds: .max)
    private var lastActivity: Instant
    private var upstreamStatus = 0
    let startedAt: Instant
    /// What the inspect phase found (nil for requests that are not OpenAI inference calls).
    let features: RequestFeatures?
    /// The split arm the model resolved to (reported in `x-sluice-arm`).
    var arm: String?
    /// The LoRA adapter the model resolved to, if any.
    var adapter: LoRATarget?
    /// Why the endpoint was chosen.
    var routeReason = RouteReason.roundRobin
    /// The request's id (for the access log) and the model the client named.
    var requestID = ""
    var clientModel: String?
    private var endpointName: String?
    /// Watches the response for tokens and usage (inspected requests with a 2xx answer).
    private(set) var observer: ResponseObserver?

    // Admission (rate limits, response cache); see Admission.swift.
    var ticket: AdmissionTicket?
    var admissionsPending = 0
    var limitResult: Result<RateLimitDecision, RedisError>?
    var cacheResult: Result<[UInt8]?, RedisError>?
    var limitOutcome: LimitOutcome?
    var cacheOutcome: CacheOutcome?
    /// Limits were charged by the local limiter (Redis was unreachable at admission).
    var chargedLocally = false
    /// The response as it will be stored in the cache (entry header, then body bytes).
    var capture: [UInt8]?
    var captureHeaderBytes = 0
    /// Prefix hashes kept across an asynchronous admission (the worker's scratch space is
    /// reused by the requests inspected meanwhile).
    private var savedPrefixHashes: [UInt64]?
    /// An on-demand adapter load was tried for this request (at most once).
    private var loadedAdapter = false
    /// Fields added to the response head (rate-limit state, cache result).
    /// (The same type as an error's fields: both are written by the downstream's head writer.)
    var responseHeaders: [OpenAIError.Header] = []
    /// Response body bytes relayed to the client (the access log's `bytes`).
    var bodyBytes = 0
    /// When the last attempt's request went to its endpoint (nil: never forwarded).
    private var upstreamStartedAt: Instant?

    init(client: any Downstream, worker: Worker, pool: UpstreamPool, method: HTTPMethod, features: RequestFeatures? = nil) {
        self.features = features
        self.client = client
        self.worker = worker
        self.loop = worker.loop
        self.pool = pool
        self.method = method
        self.generation = worker.generation
        let now = loop.now
        lastActivity = now
        startedAt = now
        let t = generation.value.timeouts.request
        requestDeadline = t.isPositive ? now + t : Instant(nanoseconds: .max)
        let spare = worker.spareExchangeTimers.popLast() ?? ExchangeTimer()
        timer = spare
        spare.exchange = self
    }

    deinit {
        // Every path ends in finish(), which stops and returns the timer; this is the guard
        // against a path that does not (the queued timer must not outlive its exchange).
        if let t = timer { loop.cancel(t) }
    }

    // MARK: forwarding

    func start() {
        worker.activeExchanges += 1
        if let t = ticket {
            if let blocks = features?.prefixBlocks, blocks > 0 {
                savedPrefixHashes = Array(worker.inspectScratch.prefixHashes[0..<blocks])
            }
            admit(t)
        } else {
            attempt(excluding: nil)
        }
    }

    /// Admission passed: on to the pool.
    func forward() {
        phase = .connecting
        attempt(excluding: nil)
    }

    private func attempt(excluding: Int?) {
        attempts += 1
        // The first attempt routes with the request's prefix hashes (still in the worker's
        // scratch space); a retry (they may be overwritten by then) routes by load and adapter,
        // avoiding the endpoint that failed.
        if attempts == 1, let saved = savedPrefixHashes {
            saved.withUnsafeBufferPointer { h in
                _ = UnsafeMutableBufferPointer(rebasing: worker.inspectScratch.prefixHashes[0..<h.count]).initialize(fromContentsOf: h)
            }
        }
        let scored = features != nil
        let hashes = scored && attempts == 1
            ? UnsafeBufferPointer(rebasing: worker.inspectScratch.prefixHashes[0..<features!.prefixBlocks])
            : UnsafeBufferPointer(start: nil, count: 0)
        let picked = Router.pick(pool: pool, scored: scored, adapter: adapter?.name, prefixHashes: hashes,
                                 index: worker.prefixIndex, excluding: excluding, now: loop.now,
                                 staleness: settings.telemetry.staleness, scratch: worker.routerScratch,
                                 random: &worker.random)
        guard let (ep, reason) = picked else {
            if attempts == 1, !loadedAdapter, let a = adapter, let path = a.path,
               let target = Router.loadTarget(pool: pool, adapter: a.name, now: loop.now) {
                waitForAdapter(a.name, path: path, on: target)
                return
            }
            fail(adapter != nil
                 ? .unavailable("No endpoint of pool '\(pool.name)' can serve adapter '\(adapter!.name)'.")
                 : .unavailable("No endpoints are available in pool '\(pool.name)'."))
            return
        }
        routeReason = reason
        endpointName = ep.config.authority
        // Commit: the chosen endpoint now has these prefix blocks (vLLM will cache them there).
        if hashes.count > 0 { worker.prefixIndex.record(hashes, endpoint: ep.runtime.id) }
        endpoint = ep
        let conn: UpstreamConnection
        do {
            conn = try pool.checkout(ep)
        } catch {
            upstreamFailedImmediately()
            return
        }
        upstream = conn
        upstreamStartedAt = loop.now
        ep.runtime.inflight.add(1, ordering: .relaxed)
        worker.metrics.add(ep.requestsSlot)
        let authority = ep.config.authority
        client.withRequest { r in
            UpstreamRequestEncoder.encode(r, proxy: settings.proxy, endpointAuthority: authority, into: &conn.out, pool: loop.bufferPool)
        }
        phase = conn.state == .connecting || conn.state == .handshaking ? .connecting : .waiting
        let t = settings.timeouts
        arm(phase == .connecting ? t.upstreamConnect : t.upstreamFirstByte)
        conn.begin(self, requestMethod: method)
    }

    /// No endpoint has the adapter registered: have it loaded on `target` (or join a load of it
    /// already in flight), then route again.
    private func waitForAdapter(_ adapter: String, path: String, on target: UpstreamPool.Endpoint) {
        loadedAdapter = true
        if savedPrefixHashes == nil, let blocks = features?.prefixBlocks, blocks > 0 {
            savedPrefixHashes = Array(worker.inspectScratch.prefixHashes[0..<blocks])
        }
        phase = .admitting
        worker.adapterLoader.load(adapter: adapter, path: path, endpoint: target.config, runtime: target.runtime,
                                  loop: loop) { [self] ok in
            guard phase == .admitting else { return }  // the client left meanwhile
            guard ok else {
                fail(.unavailable("Loading LoRA adapter '\(adapter)' failed; try again shortly."))
                return
            }
            phase = .connecting
            attempts = 0
            attempt(excluding: nil)
        }
    }

    private func upstreamFailedImmediately() {
        // connect() itself failed (e.g. no route): same as a refused connection.
        let failed = endpoint?.index
        if let ep = endpoint { recordFailure(ep) }
        endpoint = nil
        retryOrFail(excluding: failed, .badGateway("Could not connect to an upstream model server."))
    }

    private func arm(_ d: Duration) {
        phaseDeadline = d.isPositive ? loop.now + d : Instant(nanoseconds: .max)
        let deadline = min(phaseDeadline, requestDeadline)
        // Only move the timer earlier; a later deadline is picked up when it fires.
        if deadline.nanoseconds != .max, let timer, !timer.isArmed || timer.deadline > deadline {
            loop.schedule(timer, at: deadline)
        }
    }

    fileprivate func timerFired() {
        guard phase != .done, let timer else { return }
        let now = loop.now
        if phase == .relaying && now < requestDeadline {
            // Idle timeout measured from the last byte; re-arm lazily instead of per read.
            let idle = settings.timeouts.upstreamIdle
            let due = lastActivity + idle
            if idle.isPositive && due > now {
                loop.schedule(timer, at: min(due, requestDeadline))
                return
            }
        }
        if phaseDeadline > now && requestDeadline > now {
            loop.schedule(timer, at: min(phaseDeadline, requestDeadline))
            return
        }
        let what: String = switch phase {
        case .connecting: "Timed out connecting to the upstream model server."
        case .waiting: "Timed out waiting for the upstream model server to respond."
        default: "The upstream model server stopped sending."
        }
        releaseUpstream(abort: true)
        if responseStarted {
            finalStatus = 504
            finish()
            endCutStream("The upstream model server stopped sending.")
        } else {
            fail(.gatewayTimeout(what))
        }
    }

    // MARK: upstream events

    func upstreamConnected() {
        phase = .waiting
        arm(settings.timeouts.upstreamFirstByte)
    }

    func upstreamActivity() {
        lastActivity = loop.now
    }

    func upstreamResponseHead(_ head: HTTPHead, _ bytes: UnsafeRawBufferPointer) {
        upstreamStatus = head.status
        if features != nil, (200..<300).contains(head.status) {
            let eventStream = head.first(.contentType).map { ct in
                let v = bytes.slice(ct.value)
                return v.count >= 17 && ASCIICase.equal(v, ByteRange(0, 17), "text/event-stream")
            } ?? false
            var length: Int? = nil
            if case .length(let n) = head.framing { length = n }
            observer = ResponseObserver(eventStream: eventStream, strip: features!.injectedUsage, contentLength: length)
            if ticket?.cacheStore == true { beginCapture(status: head.status, contentType: head.first(.contentType).map { bytes.slice($0.value) }) }
        }
        if settings.proxy.routeHeader {
            responseHeaders.append(.init("x-sluice-route", "\(routeReason.rawValue); endpoint=\(endpointName ?? "-")"))
        }
        phase = .relaying
        responseStarted = true
        arm(settings.timeouts.upstreamIdle)
        client.writeResponseHead(head, bytes, exchange: self)
        // An upstream may answer before it read the whole body (a 413, say); then its queue
        // still borrows the request bytes and they stay until the exchange ends.
        if upstream?.out.isEmpty == true { client.releaseRequest() }
    }

    /// Hands response body bytes to the client: the whole readable part of `buffer`, or the
    /// payload `ranges` (block offsets) of a chunked body.
    func relay(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        if observer != nil {
            let previous = observer!.lastTokenAt
            let now = loop.now
            if ranges == nil && observer!.sse == nil {
                // A JSON body as read (the common non-streaming case): scanned in place,
                // relayed whole, no range list built.
                observer!.observeJSON(buffer, buffer.readerIndex, buffer.writerIndex, now: now)
                if capture != nil { captureBody(buffer, [(buffer.readerIndex, buffer.writerIndex)]) }
                bodyBytes += buffer.readableBytes
                client.writeResponseBody(buffer, ranges: nil)
            } else {
                var rs = ranges ?? [(buffer.readerIndex, buffer.writerIndex)]
                observer!.observe(buffer, &rs, now: now)
                if capture != nil { captureBody(buffer, rs) }
                for r in rs { bodyBytes += r.1 - r.0 }
                client.writeResponseBody(buffer, ranges: rs)
            }
            if let p = previous, let last = observer!.lastTokenAt, last > p {
                worker.metrics.observe(pool.slots.interToken, GatewayMetrics.tokenGapBuckets, last.seconds(since: p))
            }
        } else {
            if let rs = ranges { for r in rs { bodyBytes += r.1 - r.0 } } else { bodyBytes += buffer.readableBytes }
            client.writeResponseBody(buffer, ranges: ranges)
        }
        if client.isBackpressured { upstream?.pauseReading() }
    }

    /// The client's queue drained below its low-water mark.
    func clientDrained() {
        upstream?.resumeReading()
    }

    func upstreamComplete() {
        observer?.finishJSON(now: loop.now)
        if capture != nil { endCapture() }
        finalStatus = upstreamStatus
        let ep = endpoint
        upstream = nil
        if let ep {
            ep.runtime.inflight.add(-1, ordering: .relaxed)
            if upstreamStatus >= 500 && upstreamStatus != 501 && upstreamStatus != 505 { recordFailure(ep) } else { ep.runtime.recordSuccess() }
        }
        endpoint = nil
        finish()
        client.exchangeCompleted()
    }

    func upstreamFailed(beforeResponse: Bool, connectError: Bool) {
        let failed = endpoint?.index
        if let ep = endpoint { recordFailure(ep) }
        let reused = upstream?.isReused ?? false
        releaseUpstream(abort: false)
        if responseStarted {
            finalStatus = 502
            finish()
            endCutStream("The upstream model server closed the stream before it finished.")
            return
        }
        // Nothing was received: safe to try another endpoint when the connection never
        // reached the server, or when a reused keep-alive connection turned out to be closed
        // (the classic keep-alive race).
        if beforeResponse && (connectError || reused || method.isIdempotent) {
            retryOrFail(excluding: failed, .badGateway(connectError
                ? "Could not connect to an upstream model server."
                : "The upstream model server closed the connection."))
        } else {
            fail(.badGateway("The upstream model server closed the connection before responding."))
        }
    }

    func upstreamProtocolError(responseStarted started: Bool) {
        releaseUpstream(abort: false)
        if started {
            finalStatus = 502
            finish()
            client.exchangeAborted()
        } else {
            fail(.badGateway("The upstream model server sent an invalid HTTP response."))
        }
    }

    /// A response cut off after its head went out: an event stream ends with an error event
    /// (OpenAI's SDKs raise it as an APIError), anything else is cut.
    private func endCutStream(_ message: String) {
        guard observer?.sse != nil else { return client.exchangeAborted() }
        let e = OpenAIError(status: 502, message: message, type: "server_error", code: "upstream_error")
        client.exchangeEndedWithError(event: Array("data: ".utf8) + e.render() + Array("\n\n".utf8))
    }

    /// Passive health: the data path's failures count towards ejecting the endpoint.
    private func recordFailure(_ ep: UpstreamPool.Endpoint) {
        worker.metrics.add(ep.errorsSlot)
        let h = settings.health
        ep.runtime.recordFailure(at: loop.now, threshold: h.unhealthyThreshold, base: h.ejectBase, maxBackoff: h.maxEject)
    }

    private func retryOrFail(excluding failed: Int?, _ error: ErrorResponse) {
        if attempts <= settings.upstream.retries && pool.endpoints.count > 0 {
            worker.metrics.add(pool.slots.retries)
            attempt(excluding: failed)
        } else {
            fail(error)
        }
    }

    // MARK: ending

    /// The client went away: stop the upstream request at once (a model server keeps
    /// generating for a client that is gone).
    func clientAborted() {
        guard phase != .done else { return }
        // A client that leaves after `[DONE]` got everything: a completed request, not an abort.
        finalStatus = observer?.sawDone == true ? upstreamStatus : 0
        releaseUpstream(abort: true)
        finish()
    }

    private func releaseUpstream(abort: Bool) {
        if let u = upstream {
            upstream = nil
            if abort { u.abort() } else { u.close() }
        }
        if let ep = endpoint {
            ep.runtime.inflight.add(-1, ordering: .relaxed)
            endpoint = nil
        }
    }

    func fail(_ error: ErrorResponse) {
        finalStatus = error.status
        finish()
        client.exchangeFailed(error)
    }

    /// The status the client ended up with (0: the client went away), for metrics.
    var finalStatus = 0

    func finish() {
        guard phase != .done else { return }
        phase = .done
        capture = nil
        if ticket != nil { settleTokens() }
        record()
        if let t = timer {
            timer = nil
            t.exchange = nil
            if worker.spareExchangeTimers.count < 1024 {
                // Its heap entry stays for the next exchange to re-arm for free.
                loop.deactivate(t)
                worker.spareExchangeTimers.append(t)
            } else {
                loop.cancel(t)
            }
        }
        worker.activeExchanges -= 1
    }
}

/// An exchange's timer: fires into the exchange it currently serves (pooled per worker, so it
/// is re-pointed rather than re-allocated for each request).
final class ExchangeTimer: Timer {
    unowned(unsafe) var exchange: Exchange?

    override func fire() {
        exchange?.timerFired()
    }
}

extension Exchange {
    /// Request metrics, recorded once when the exchange ends (on the worker, no lock).
    fileprivate func record() {
        let m = worker.metrics
        let slots = pool.slots
        m.add(slots.requests[GatewayMetrics.classIndex(finalStatus)])
        m.add(slots.routes[routeReason.ordinal])
        let now = loop.now
        m.observe(slots.duration, GatewayMetrics.latencyBuckets, now.seconds(since: startedAt))
        if let u = upstreamStartedAt { m.observe(slots.upstreamDuration, GatewayMetrics.latencyBuckets, now.seconds(since: u)) }
        if observer != nil {
            // Read through the optional, not a copy of the observer (its buffers would be
            // retained and released).
            if let t = observer!.firstTokenAt { m.observe(slots.ttft, GatewayMetrics.latencyBuckets, t.seconds(since: startedAt)) }
            if let u = observer!.usage {
                m.add(slots.inputTokens, Double(u.promptTokens))
                m.add(slots.outputTokens, Double(u.completionTokens))
            }
        }
        if worker.accessLog != nil {
            let (sec, ns) = WallClock.now()
            var line = AccessLogLine(unixNanos: sec * 1_000_000_000 + ns)
            line.field("request_id", requestID)
            line.field("method", String(describing: method))
            line.field("endpoint_type", features.map { String(describing: $0.endpoint) })
            line.field("model", clientModel)
            line.field("arm", arm)
            line.field("pool", pool.name)
            line.field("endpoint", endpointName)
            line.field("status", finalStatus)
            line.field("bytes", bodyBytes)
            line.field("stream", features.map { $0.stream ? 1 : 0 })
            line.field("prompt_tokens", observer?.usage?.promptTokens)
            line.field("completion_tokens", observer?.usage?.completionTokens)
            line.field("ttft_ms", observer?.firstTokenAt.map { $0.seconds(since: startedAt) * 1000 })
            line.field("duration_ms", now.seconds(since: startedAt) * 1000)
            line.field("route_reason", routeReason.rawValue)
            line.field("attempts", attempts)
            if let t = ticket {
                line.field("tenant", t.tenant)
                line.field("cache", cacheOutcome?.rawValue)
                line.field("rate_limit", limitOutcome?.rawValue)
            }
            worker.log(line.finish())
        }
    }
}
