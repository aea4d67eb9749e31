import SluiceHTTP
import SluiceIO
import SluiceLLM
import SluiceRedis

/// Observe: the response as it is relayed, read in place — time to first token, token gaps,
/// usage and finish reason (``ResponseObserver``), the usage chunk Sluice asked for kept from
/// the client, and a copy for the cache while the response may be stored. Called per upstream
/// read, so it is three entry points rather than one `run`.
enum ObservePhase {
    /// The response head arrived.
    static func begin(_ x: Exchange, _ head: HTTPHead, _ bytes: UnsafeRawBufferPointer) {
        guard x.ctx.features != nil, (200..<300).contains(head.status) else { return }
        let contentType = head.first(.contentType).map { bytes.slice($0.value) }
        let eventStream = contentType.map { v in v.count >= 17 && ASCIICase.equal(v, ByteRange(0, 17), "text/event-stream") } ?? false
        var length: Int? = nil
        if case .length(let n) = head.framing { length = n }
        x.ctx.response.observer = ResponseObserver(eventStream: eventStream, strip: x.ctx.features!.injectedUsage, contentLength: length,
                                                   dialect: ResponseDialect(x.ctx.features!.traits.stream))
        if x.ctx.admission.ticket?.cacheStore == true { beginCapture(x, status: head.status, contentType: contentType) }
    }

    /// Response body bytes: the whole readable part of `buffer`, or the payload `ranges`.
    static func relay(_ x: Exchange, _ buffer: consuming ByteBuffer, ranges: [(Int, Int)]?) {
        guard x.ctx.response.observer != nil else {
            if let rs = ranges { for r in rs { x.ctx.response.bodyBytes += r.1 - r.0 } } else { x.ctx.response.bodyBytes += buffer.readableBytes }
            x.client.writeResponseBody(buffer, ranges: ranges)
            return
        }
        let previous = x.ctx.response.observer!.lastTokenAt
        let hadFirstToken = x.ctx.response.observer!.firstTokenAt != nil
        let now = x.loop.now
        if ranges == nil && x.ctx.response.observer!.sse == nil {
            // A JSON body as read (the common non-streaming case): scanned in place, relayed
            // whole, no range list built.
            x.ctx.response.observer!.observeJSON(buffer, buffer.readerIndex, buffer.writerIndex, now: now)
            if x.ctx.response.capture != nil { captureBody(x, buffer, [(buffer.readerIndex, buffer.writerIndex)]) }
            x.ctx.response.bodyBytes += buffer.readableBytes
            x.client.writeResponseBody(buffer, ranges: nil)
        } else {
            var rs = ranges ?? [(buffer.readerIndex, buffer.writerIndex)]
            x.ctx.response.observer!.observe(buffer, &rs, now: now)
            if !x.ctx.response.observer!.release.isEmpty {
                // An event held back from earlier reads (not the usage one): it goes first.
                relayCopy(x, x.ctx.response.observer!.release)
                x.ctx.response.observer!.release.removeAll()
            }
            if x.ctx.response.capture != nil { captureBody(x, buffer, rs) }
            for r in rs { x.ctx.response.bodyBytes += r.1 - r.0 }
            x.client.writeResponseBody(buffer, ranges: rs)
        }
        if let p = previous, let last = x.ctx.response.observer!.lastTokenAt, last > p, let pool = x.pool {
            x.worker.metrics.observe(pool.slots.interToken, GatewayMetrics.tokenGapBuckets, last.seconds(since: p))
            if let a = x.ctx.target.armSlots { x.worker.metrics.observe(a.interToken, GatewayMetrics.tokenGapBuckets, last.seconds(since: p)) }
        }
        if let s = x.ctx.response.observer!.stored, s.id != nil, !s.recorded { recordResponseID(x, s) }
        if !hadFirstToken && x.ctx.response.observer!.firstTokenAt != nil { firstToken(x, at: now) }
    }

    /// Bytes the observer held back, relayed now (copied into a pool block).
    private static func relayCopy(_ x: Exchange, _ bytes: [UInt8]) {
        var b = x.loop.bufferPool.take(minimumCapacity: bytes.count)
        bytes.withUnsafeBytes { b.append($0) }
        if x.ctx.response.capture != nil { captureBody(x, b, [(b.readerIndex, b.writerIndex)]) }
        x.ctx.response.bodyBytes += bytes.count
        x.client.writeResponseBody(b, ranges: nil)
    }

    /// The response ended normally.
    static func end(_ x: Exchange) {
        guard x.ctx.response.observer != nil else { return }
        // An event still held (the stream ended without its closing blank line) goes as it came.
        if !x.ctx.response.observer!.held.isEmpty { relayCopy(x, x.ctx.response.observer!.takeHeldAtEnd()) }
        defer { if let s = x.ctx.response.observer?.stored, s.id != nil, !s.recorded { recordResponseID(x, s) } }
        let now = x.loop.now
        let hadFirstToken = x.ctx.response.observer!.firstTokenAt != nil
        x.ctx.response.observer!.finishJSON(now: now)
        if !hadFirstToken && x.ctx.response.observer!.firstTokenAt != nil { firstToken(x, at: now) }
        // A stream's decode (first to last token event) feeds the endpoint's step fit.
        if x.ctx.response.observer!.sse != nil, let first = x.ctx.response.observer!.firstTokenAt,
           let last = x.ctx.response.observer!.lastTokenAt {
            let events = x.ctx.response.observer!.tokenEvents
            x.ctx.attempt.lease?.decoded(firstAt: first, lastAt: last, events: events, at: now)
        }
    }

    /// The response's first token went by: the attempt's lease moves it from prefilling to
    /// decoding at its endpoint, and a stream's time to first token teaches the learner.
    private static func firstToken(_ x: Exchange, at now: Instant) {
        // Read into a local first: the lease's mutation must not overlap a read of the context.
        let stream = x.ctx.response.observer!.sse != nil
        x.ctx.attempt.lease?.firstToken(at: now, learn: stream)
    }

    /// A stored response was made (Responses API): remember which endpoint holds it, as soon as
    /// its id is seen (a stream's `response.created`), so a cancel can reach it mid-stream.
    static func recordResponseID(_ x: Exchange, _ s: ResponseObserver.StoredResponse) {
        s.recorded = true
        guard let f = x.ctx.features, f.traits.createsStoredResponse, f.scanned.store != false,
              let id = s.id, let ep = x.ctx.attempt.endpointName else { return }
        x.worker.responseAffinity.record(id, endpoint: ep, now: x.loop.now, redis: x.worker.redis, ttl: x.settings.responses.ttl)
    }

    // MARK: the cache copy

    /// Starts capturing the response if it may be stored.
    private static func beginCapture(_ x: Exchange, status: Int, contentType: UnsafeRawBufferPointer?) {
        guard let t = x.ctx.admission.ticket, t.cacheStore, t.cacheKey != nil, status == 200 else { return }
        var c: [UInt8] = []
        c.reserveCapacity(4096)
        let ct = contentType ?? UnsafeRawBufferPointer(start: nil, count: 0)
        ResponseCacheEntry.appendHeader(status: status, contentType: ct, isStream: x.ctx.features?.stream ?? false,
                                        storedAt: Int64(WallClock.now().seconds), to: &c)
        x.ctx.response.captureHeaderBytes = c.count
        x.ctx.response.capture = c
    }

    /// Response body bytes as the client gets them, up to `cache.max_entry_size`.
    private static func captureBody(_ x: Exchange, _ buffer: borrowing ByteBuffer, _ ranges: [(Int, Int)]) {
        for r in ranges {
            if x.ctx.response.capture!.count - x.ctx.response.captureHeaderBytes + (r.1 - r.0) > x.settings.cache.maxEntryBytes {
                x.ctx.response.capture = nil  // too large to store; relayed all the same
                return
            }
            x.ctx.response.capture!.append(contentsOf: buffer.bytes(r.0, r.1))
        }
    }
}

/// Settle: token limits charged with what the response really used (see
/// ``TokenReservation/charge(reserved:promptEstimate:usage:relayedTokens:)``), and a complete,
/// successful response stored in the cache.
enum SettlePhase {
    static func run(_ x: Exchange) {
        let capture = x.ctx.response.capture
        x.ctx.response.capture = nil
        guard let t = x.ctx.admission.ticket else { return }
        if !t.tokenLimitIndices.isEmpty {
            let used = TokenReservation.charge(reserved: t.tokenEstimate, promptEstimate: t.promptEstimate,
                                               usage: x.ctx.response.observer?.usage,
                                               relayedTokens: x.ctx.response.observer?.tokenEvents ?? 0)
            let delta = TokenReservation.saturatingAdd(used, -t.tokenEstimate)
            if delta != 0 {
                x.worker.settleLimits(t.tokenLimitIndices.map {
                    RateLimitCheck(key: t.limits[$0].key, limit: t.limits[$0].limit, cost: delta)
                }, locally: x.ctx.admission.chargedLocally)
            }
        }
        // Stored only when complete: a generation that reported why it finished (an embedding
        // has no reason) and a response that reached its end.
        guard let value = capture, let key = t.cacheKey, x.ctx.response.completed, x.ctx.response.finalStatus == 200,
              x.ctx.features?.traits.producesTokens == false || x.ctx.response.observer?.finishReason != nil,
              let redis = x.worker.redis else { return }
        let w = x.worker
        redis.set(key, value, expireAfter: x.settings.cache.ttl) { result in
            if case .failure = result { w.metrics.add(w.cacheSlots["store_error"]!) } else { w.metrics.add(w.cacheSlots["stored"]!) }
        }
    }
}
