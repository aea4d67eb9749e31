import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRouting
import SluiceSettings

/// One request on its way through the gateway: runs the ``Pipeline``'s phases over its
/// ``RequestContext``, forwards to an endpoint, relays the response (observing it), retries on
/// another endpoint before any response byte, times out, and ends with settle and record.
///
/// ```
///            ┌────────── retry (before any response byte) ─────────┐
///            ▼                                                      │
/// pipeline(i) ──forward──▶ connecting ──connected──▶ waiting ──head──▶ relaying ──end──▶ done
///   │    ▲  wait/resume        │ timeout/failure        │                │ cut
///   └────┴── respond ──────────┴────────────────────────┴────────────────┴──────────────▶ done
/// ```
/// Thread-confined to the worker. The client side (an HTTP/1.1 connection or an HTTP/2 stream)
/// is reached through ``Downstream``, the model server through its ``UpstreamConnection``.
final class Exchange {
    enum Stage: Equatable {
        /// Running (or waiting in) a request phase.
        case pipeline(Pipeline.Phase)
        case connecting, waiting, relaying, done
    }

    unowned(unsafe) let client: any Downstream
    unowned(unsafe) let worker: Worker
    /// The worker's loop, held here so that reaching it costs no retain of the worker's field.
    unowned(unsafe) let loop: EventLoop
    var ctx: RequestContext
    private(set) var stage = Stage.pipeline(.inspect)
    var settings: GatewaySettings { _read { yield ctx.generation.value } }
    var pool: UpstreamPool? { ctx.target.pool }
    /// The request's id as logged: the client's `X-Request-Id` or Sluice's (set by the
    /// downstream when the access log is on; copied, since the request's bytes go back to the
    /// pool before the line is written).
    var logRequestID: String?

    /// The phase and request deadlines' timer, from the worker's spares; given back (and nil)
    /// once the exchange is done.
    private var timer: ExchangeTimer?
    private let requestDeadline: Instant
    private var phaseDeadline = Instant(nanoseconds: .max)
    private var lastActivity: Instant
    /// A 5xx or 429 is being read and dropped before the request falls back (issue 26).
    private var discarding: ModelFamilies.FallbackReason?

    init(client: any Downstream, worker: Worker, method: HTTPMethod, requestID: UInt64) {
        self.client = client
        self.worker = worker
        self.loop = worker.loop
        let now = loop.now
        ctx = RequestContext(generation: worker.generation, method: method, requestID: requestID, startedAt: now)
        lastActivity = now
        let t = ctx.generation.value.timeouts.request
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

    var responseStarted: Bool { ctx.response.started }

    // MARK: the pipeline

    /// Runs the request phases from the first.
    func start() {
        TraceSpans.begin(self)
        apply(Pipeline.Phase.inspect.run(self), at: .inspect)
    }

    /// A phase's I/O completed: carry on as if the phase had returned `action`.
    func resume(_ action: PhaseAction) {
        guard case .pipeline(let phase) = stage else { return }  // the client left meanwhile
        apply(action, at: phase)
    }

    private func apply(_ action: PhaseAction, at phase: Pipeline.Phase) {
        var p = phase
        var a = action
        while true {
            switch a {
            case .next:
                // Only these phases stamp the trace (each look at it is a retain and a release).
                if p == .admit || p == .queue || p == .route, let t = ctx.trace { t.passed(p, at: loop.now) }
                // The forward phase is the last: past it the upstream drives the exchange.
                guard let n = Pipeline.Phase(rawValue: p.rawValue + 1) else { return }
                p = n
            case .again:
                break
            case .retry:
                p = .route
            case .wait:
                return
            case .respond(let r):
                respond(r)
                return
            }
            stage = .pipeline(p)
            a = p.run(self)
        }
    }

    /// Sluice answers (an error, a local endpoint, the cache).
    func respond(_ response: LocalResponse) {
        guard stage != .done else { return }
        let r = response.shaped(ctx.errorShape)
        ctx.response.finalStatus = r.status
        ctx.response.bodyBytes = r.body.count
        finish()
        client.writeLocal(r, exchange: self)
    }

    func fail(_ error: ErrorResponse) { respond(LocalResponse(error)) }

    // MARK: forwarding (called by the forward phase)

    /// The attempt's request is queued on `conn`: wait for the connection, then the response.
    func forwarded(on conn: any Upstream) {
        stage = conn.isConnecting ? .connecting : .waiting
        let t = settings.timeouts
        arm(stage == .connecting ? t.upstreamConnect : t.upstreamFirstByte)
    }

    /// Waits in its pool's queue at most `ttl` (then QueuePhase.expired).
    func waitInQueue(until ttl: Duration) {
        arm(ttl)
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
        guard stage != .done, let timer else { return }
        let now = loop.now
        if stage == .relaying && now < requestDeadline {
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
        if stage == .pipeline(.queue) {
            QueuePhase.expired(self)
            return
        }
        let what: String = switch stage {
        case .connecting: "Timed out connecting to the upstream model server."
        case .waiting: "Timed out waiting for the upstream model server to respond."
        case .pipeline: "Timed out before the request could be forwarded."
        default: "The upstream model server stopped sending."
        }
        if stage != .pipeline(.queue) { endAttemptSpan("timed out") }
        releaseUpstream(abort: true)
        if ctx.response.started {
            ctx.response.finalStatus = 504
            finish()
            endCutStream("The upstream model server stopped sending.")
        } else {
            fail(.gatewayTimeout(what))
        }
    }

    // MARK: upstream events

    func upstreamConnected() {
        stage = .waiting
        arm(settings.timeouts.upstreamFirstByte)
    }

    func upstreamActivity() {
        lastActivity = loop.now
    }

    func upstreamResponseHead(_ head: HTTPHead, _ bytes: UnsafeRawBufferPointer) {
        // A 5xx or 429 before anything went to the client: the next model of the fallback
        // chain, if any (issue 26). The answer is read and dropped (the connection is
        // mid-parse here and stays usable); its end moves the request on (``fallBack()``).
        if ctx.target.fallbackChain != nil, let reason = FallbackPhase.reason(forStatus: head.status), FallbackPhase.canAdvance(self) {
            if head.status >= 500, let ep = ctx.attempt.lease?.endpoint { recordFailure(ep) }
            discarding = reason
            ctx.response.upstreamStatus = head.status
            stage = .relaying
            arm(settings.timeouts.upstreamIdle)
            return
        }
        ctx.response.upstreamStatus = head.status
        ObservePhase.begin(self, head, bytes)
        if settings.proxy.routeHeader {
            ctx.response.headers.append(.init("x-sluice-route", "\(ctx.attempt.routeReason.rawValue); endpoint=\(ctx.attempt.endpointName ?? "-")"))
        }
        stage = .relaying
        ctx.response.started = true
        arm(settings.timeouts.upstreamIdle)
        client.writeResponseHead(head, bytes, exchange: self)
        // An upstream may answer before it read the whole body (a 413, say); then its queue
        // still borrows the request bytes and they stay until the exchange ends.
        if ctx.attempt.upstream?.requestSent == true { client.releaseRequest() }
    }

    /// The model server switched protocols (a WebSocket upgrade the gateway asked for): the
    /// exchange ends (recorded with status 101) and a ``Tunnel`` joins the two connections,
    /// holding the lease and the tunnel slot. The server's pending bytes start with the 101
    /// head, forwarded as the server wrote it.
    func upstreamUpgraded(_ server: consuming TunnelEnd) {
        ctx.attempt.upstream = nil
        // A 101 is a healthy answer: passive health's run of failures ends here, as with any
        // other answer below 500 (without it, an endpoint serving only WebSockets between
        // failures would be ejected on failures that were never consecutive).
        ctx.attempt.lease?.endpoint.runtime.recordSuccess()
        if let h2 = client as? HTTP2Downstream {
            // A WebSocket over HTTP/2 (RFC 8441): the stream's `:status 200` and a
            // ``StreamTunnel``; the connection's other streams carry on.
            ctx.response.upstreamStatus = 101
            ctx.tunnelSlot = false  // the tunnel gives it back
            let lease = ctx.attempt.lease.take()
            if h2.openTunnel(server: server, lease: lease, slots: worker.tunnels) {
                ctx.response.started = true
                ctx.response.finalStatus = 200
                finish()
                h2.releaseRequest()  // after the record phase read the path
            } else {
                worker.tunnels.value.add(-1, ordering: .relaxed)
                fail(.badGateway("The model server's switching-protocols answer could not be read again."))
            }
            return
        }
        guard var c = client.takeOverForTunnel() else {
            server.transport.close()
            fail(.badGateway("The model server switched protocols on a connection that cannot be tunnelled."))
            return
        }
        ctx.response.upstreamStatus = 101
        ctx.response.finalStatus = 101
        ctx.response.started = true
        ctx.tunnelSlot = false  // the tunnel gives it back
        let lease = ctx.attempt.lease.take()
        let w = worker
        let serverTransport = server.transport
        let clientTransport = c.transport
        let t = Tunnel(worker: w, client: clientTransport, server: serverTransport, toClient: server.pending.take(), toServer: c.pending.take(),
                       lease: lease, slots: w.tunnels)
        w.adoptTunnel(t, replacing: client)
        finish()
        do throws(SyscallError) {
            try t.start()
        } catch {
            t.abort()
        }
    }

    /// Hands response body bytes to the client: the whole readable part of `buffer`, or the
    /// payload `ranges` (block offsets) of a chunked body.
    func relay(_ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        if discarding != nil { return }  // the dropped answer of a model that fell back
        ObservePhase.relay(self, buffer, ranges: ranges)
        if client.isBackpressured { ctx.attempt.upstream?.pauseReading() }
    }

    /// The client's queue drained below its low-water mark.
    func clientDrained() {
        ctx.attempt.upstream?.resumeReading()
    }

    /// The dropped answer ended (or broke off): on to the next model of the chain.
    private func fallBack() {
        guard let reason = discarding else { return }
        discarding = nil
        endAttemptSpan("the model server answered \(ctx.response.upstreamStatus); fell back")
        ctx.attempt.upstream = nil
        ctx.attempt.lease = nil
        if FallbackPhase.advance(self, reason) {
            stage = .pipeline(.queue)
            apply(.again, at: .queue)
        } else {
            fail(.badGateway("The upstream model server failed and no fallback model could take the request."))
        }
    }

    func upstreamComplete() {
        if discarding != nil { return fallBack() }
        ObservePhase.end(self)
        ctx.response.completed = true
        ctx.response.finalStatus = ctx.response.upstreamStatus
        endAttemptSpan(ctx.response.upstreamStatus >= 500 ? "the model server answered \(ctx.response.upstreamStatus)" : nil)
        ctx.attempt.upstream = nil
        if let ep = ctx.attempt.lease?.endpoint {
            let status = ctx.response.upstreamStatus
            if status >= 500 && status != 501 && status != 505 { recordFailure(ep) } else { ep.runtime.recordSuccess() }
        }
        ctx.attempt.lease = nil
        finish()
        client.exchangeCompleted()
    }

    func upstreamFailed(beforeResponse: Bool, connectError: Bool) {
        if discarding != nil {
            releaseUpstream(abort: false)
            return fallBack()
        }
        endAttemptSpan(connectError ? "could not connect" : "the connection closed")
        let failed = ctx.attempt.lease?.endpoint.index
        if let ep = ctx.attempt.lease?.endpoint { recordFailure(ep) }
        let reused = ctx.attempt.upstream?.isReused ?? false
        releaseUpstream(abort: false)
        if ctx.response.started {
            ctx.response.finalStatus = 502
            finish()
            endCutStream("The upstream model server closed the stream before it finished.")
            return
        }
        // Nothing was received: safe to try another endpoint when the connection never
        // reached the server, or when a reused keep-alive connection turned out to be closed
        // (the classic keep-alive race), or the method is idempotent.
        if beforeResponse && (connectError || reused || ctx.method.isIdempotent) {
            retryOrFail(excluding: failed, .badGateway(connectError
                ? "Could not connect to an upstream model server."
                : "The upstream model server closed the connection."))
        } else {
            fail(.badGateway("The upstream model server closed the connection before responding."))
        }
    }

    /// connect() itself failed (e.g. no route): the same as a refused connection.
    func upstreamFailedImmediately() {
        endAttemptSpan("could not connect")
        let failed = ctx.attempt.lease?.endpoint.index
        if let ep = ctx.attempt.lease?.endpoint { recordFailure(ep) }
        ctx.attempt.lease = nil
        retryOrFail(excluding: failed, .badGateway("Could not connect to an upstream model server."))
    }

    func upstreamProtocolError(responseStarted started: Bool) {
        if discarding != nil {
            releaseUpstream(abort: false)
            return fallBack()
        }
        endAttemptSpan("invalid HTTP response")
        releaseUpstream(abort: false)
        if started {
            ctx.response.finalStatus = 502
            finish()
            client.exchangeAborted()
        } else {
            fail(.badGateway("The upstream model server sent an invalid HTTP response."))
        }
    }

    /// A response cut off after its head went out: an event stream ends with an error event
    /// (OpenAI's SDKs raise it as an APIError), anything else is cut.
    private func endCutStream(_ message: String) {
        guard ctx.response.observer?.sse != nil else { return client.exchangeAborted() }
        let e = OpenAIError(status: 502, message: message, type: "server_error", code: "upstream_error")
        switch ctx.errorShape {
        case .anthropic:
            // Anthropic's stream error event (its SDKs raise it as an APIError).
            client.exchangeEndedWithError(event: Array("event: error\ndata: ".utf8) + AnthropicError(e).render() + Array("\n\n".utf8))
        default:
            if ctx.features?.traits.stream == .responses {
                // The Responses API's `error` event.
                var event = Array("event: error\ndata: {\"type\":\"error\",\"code\":\"upstream_error\",\"message\":".utf8)
                JSON.appendString(message, to: &event)
                event += Array(",\"param\":null}\n\n".utf8)
                client.exchangeEndedWithError(event: event)
            } else {
                client.exchangeEndedWithError(event: Array("data: ".utf8) + e.render() + Array("\n\n".utf8))
            }
        }
    }

    /// Passive health: the data path's failures count towards ejecting the endpoint.
    private func recordFailure(_ ep: UpstreamPool.Endpoint) {
        worker.metrics.add(ep.errorsSlot)
        let h = settings.health
        ep.runtime.recordFailure(at: loop.now, threshold: h.unhealthyThreshold, base: h.ejectBase, maxBackoff: h.maxEject)
    }

    private func retryOrFail(excluding failed: Int?, _ error: ErrorResponse) {
        if let pool, ctx.attempt.number <= settings.upstream.retries && pool.endpoints.count > 0 {
            worker.metrics.add(pool.slots.retries)
            ctx.attempt.excluded = failed
            stage = .pipeline(.route)
            apply(.retry, at: .route)
        } else if FallbackPhase.advance(self, .connectError) {
            // No retry left: the next model of the fallback chain (issue 26).
            stage = .pipeline(.queue)
            apply(.again, at: .queue)
        } else {
            fail(error)
        }
    }

    // MARK: ending

    /// The client went away: stop the upstream request at once (a model server keeps
    /// generating for a client that is gone).
    func clientAborted() {
        guard stage != .done else { return }
        // A client that leaves after `[DONE]` got everything: a completed request, not an abort.
        ctx.response.finalStatus = ctx.response.observer?.sawDone == true ? ctx.response.upstreamStatus : 0
        endAttemptSpan(ctx.response.finalStatus == 0 ? "the client went away" : nil)
        releaseUpstream(abort: true)
        finish()
    }

    private func releaseUpstream(abort: Bool) {
        if let u = ctx.attempt.upstream {
            ctx.attempt.upstream = nil
            u.close(reset: abort)
        }
        ctx.attempt.lease = nil
    }

    /// The current attempt's client span ends (tracing on, an attempt open).
    private func endAttemptSpan(_ error: String?) {
        ctx.trace?.endAttempt(at: loop.now, number: ctx.attempt.number, status: ctx.response.upstreamStatus, error: error)
    }

    /// Ends the exchange once: settle and record, the lease and the timer given back.
    private func finish() {
        guard stage != .done else { return }
        stage = .done
        endAttemptSpan(nil)  // anything still open (answered while an attempt was pending)
        if ctx.queue.id != nil { QueuePhase.leave(self) }
        if ctx.tunnelSlot {
            ctx.tunnelSlot = false
            worker.tunnels.value.add(-1, ordering: .relaxed)
        }
        ctx.attempt.lease = nil
        Pipeline.end(self)
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
