import Foundation
@testable import SluiceGateway
import SluiceHTTP
import Testing

/// What a long stream costs while it waits: 10,000 open SSE streams are a normal day for a
/// gateway in front of LLM servers, so between events a stream must hold no I/O buffer (not
/// its request, not framing scratch, not a read buffer).
@Suite struct MemoryTests {
    func buffers(_ gw: Gateway) -> (inUse: Int, free: Int) {
        let w = gw.metricSnapshots().workers
        return (w.reduce(0) { $0 + $1.buffersInUse }, w.reduce(0) { $0 + $1.buffersFree })
    }

    @Test func aStreamBetweenEventsHoldsNoBuffer() throws {
        let streamed = Counter()
        let up = try TestUpstream(standardHandler(streamed: streamed))
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        // Two streams: one with a request body (the bytes that were forwarded in place), one
        // without; the upstream re-frames each event as a chunk (framing in the queue's arena).
        let body = "{\"prompt\":\"" + String(repeating: "x", count: 2000) + "\"}"
        let a = try TestClient(port: port)
        a.send(request("POST", "/forever", body: body, headers: ["Content-Type: application/json"]))
        let b = try TestClient(port: port)
        b.send(request("GET", "/forever"))
        for c in [a, b] {
            while !String(decoding: c.buffered, as: UTF8.self).contains("data: {\"n\":2}") { #expect(c.fill()) }
        }
        // Events are 100 ms apart; the snapshot runs on the worker between them.
        let held = buffers(gw)
        #expect(held.inUse == 0, "bytes held by two waiting streams: \(held.inUse)")
        #expect(held.free > 0, "released blocks go back to the free list")
        // The streams are still alive and relaying.
        let before = streamed.load(ordering: .relaxed)
        #expect(eventually(2) { streamed.load(ordering: .relaxed) > before + 1 })
        #expect(a.fill() && b.fill())
    }

    @Test func aRequestWaitingForItsResponseHoldsOneSmallBlock() throws {
        let arrived = Counter()
        let standard = standardHandler()
        let up = try TestUpstream({ req, r in
            if req.path == "/hang" { arrived.store(1, ordering: .relaxed) }
            standard(req, r)
        })
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send(request("POST", "/hang", body: "{\"prompt\":\"hi\"}", headers: ["Content-Type: application/json"]))
        // The request stays in the block it was read into (a retry may need it) and nothing
        // else: the rewritten head went out and was released.
        #expect(eventually(2) { arrived.load(ordering: .relaxed) == 1 })
        let held = buffers(gw)
        #expect(held.inUse == 4 << 10, "bytes held by one request awaiting its response: \(held.inUse)")
    }
}

/// After a burst of large requests the worker keeps their blocks for reuse, up to
/// `limits.spare_buffer_bytes` beyond the floors, and gives back what then goes unused.
@Suite struct SpareBufferTests {
    @Test func aBurstsBlocksAreKeptUpToTheLimitAndThenGivenBack() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) { $0.limits.spareBufferBytes = 1 << 20 }
        defer { gw.stop(grace: .seconds(1)) }
        let block = 256 << 10, floor = 16 * block
        func free() -> Int { gw.metricSnapshots().workers.reduce(0) { $0 + $1.buffersFree } }
        // 24 bodies of 200 KB wait together for /slow's answer (500 ms): each holds a 256 KiB
        // block until the response starts.
        let body = "{\"prompt\":\"" + String(repeating: "x", count: 200_000) + "\"}"
        let clients = try (0..<24).map { _ in try TestClient(port: port) }
        for c in clients { c.send(request("POST", "/slow", body: body)) }
        for c in clients { #expect(c.response(method: .post)?.status == 200) }
        // 16 blocks are the floor; of the 8 over it, 1 MiB (4) stays spare and the rest went.
        // (Small blocks of heads and responses are well under the slack.)
        let kept = free()
        #expect(kept >= floor + (1 << 20) && kept < floor + (1 << 20) + block, "free after the burst: \(kept)")
        // Trimmed every 50 ms from now on: the spare blocks sat unused, so they go.
        for loop in gw.group.loops { loop.execute { loop.poolTrimInterval = .milliseconds(50) } }
        #expect(eventually(5) { free() < floor + block }, "free after trimming: \(free())")
        #expect(free() >= floor, "the floor stays")
    }
}
