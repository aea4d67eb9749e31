import Glibc

/// One HTTP/2 connection to an in-process gateway per input: the client preface, then the
/// frames `Script` decodes from the input (HEADERS with real HPACK blocks, trailers, DATA,
/// CONTINUATION, WINDOW_UPDATE, RST_STREAM, SETTINGS, PING, PRIORITY, GOAWAY, raw frames),
/// with reads in between so flow control and responses move; then a PING barrier, a short
/// quiet wait (or neither: an abrupt close), and a close (plain, RST, or half-close). A crash or an AddressSanitizer report
/// in the gateway's worker thread is a finding, and so is:
/// - misframed output (a frame of an unknown type, or longer than MAX_FRAME_SIZE),
/// - a body past max_body_bytes reaching the upstream,
/// - a connection the client closed still open in the gateway after 5 s,
/// - a whole request on a fresh connection not answered 200 within 5 s (every 64th input,
///   and whenever a connection outlived its client).
///
/// `SLUICE_FUZZ_TRACE=1` prints each input's decoded ops (to turn a crash into a test).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let h = Harness.shared
    Options.recordRecent(data, size)
    let script = Script(UnsafeRawBufferPointer(start: data, count: size))
    if traceEnabled {
        let head = "close=\(script.close)\(script.abrupt ? " abrupt" : "") settings=\(script.clientSettings) barrier=\(script.pingBarrier) ack=\(script.ackServerSettings)"
        printError("-- input of \(size) bytes: \(head)\n" + script.trace.map { "   \($0)\n" }.joined())
    }
    guard let c = H2Client(port: h.port) else { fatalError("FuzzHTTP2: connecting to the gateway failed (errno \(errno))") }
    c.maxFrameSize = script.maxFrameSize
    c.ackServerSettings = script.ackServerSettings
    for a in script.actions {
        if c.peerClosed { break }
        switch a {
        case .write(let bytes):
            c.write(bytes)
        case .drain(let ms, let replenish):
            c.read(forMs: ms)
            if replenish { c.replenish() }
        }
    }
    if !script.abrupt {
        if script.pingBarrier && !c.peerClosed { _ = c.barrier(limitMs: 100) }
        c.readUntilQuiet(quietMs: 2, limitMs: 30)
    }
    if traceEnabled {
        printError("   <- \(c.bytesReceived) bytes, responses on \(c.responseHeads.keys.sorted()), ended \(c.ended.sorted()), goaway \(c.goawayReceived), closed \(c.peerClosed)\n")
    }
    c.close(script.close)
    inputs += 1
    var check = inputs % 64 == 1
    if !h.waitForConnectionsClosed(limitMs: 200) {
        if !h.waitForConnectionsClosed(limitMs: 5000) {
            fatalError("FuzzHTTP2: \(h.gateway.openConnections) client connection(s) still open in the gateway 5 s after the client closed")
        }
        check = true
    }
    if check, let problem = h.liveness() {
        fatalError("FuzzHTTP2: liveness check after input \(inputs) failed: \(problem)")
    }
    // What the gateway does later (its deadlines, or a timer left armed on a connection it
    // freed) happens while a later input runs, and libFuzzer blames that one. Reproducing a
    // crash file waits here for all of it (see Options.settleMs).
    if Options.settleMs > 0 { usleep(UInt32(Options.settleMs) * 1000) }
    return 0
}

nonisolated(unsafe) private var inputs = 0
private let traceEnabled = getenv("SLUICE_FUZZ_TRACE").map { String(cString: $0) == "1" } ?? false

/// Writes to standard error (unbuffered, so it lands before a crash report).
func printError(_ s: String) {
    var s = s
    s.withUTF8 { b in _ = Glibc.write(2, b.baseAddress, b.count) }
}
