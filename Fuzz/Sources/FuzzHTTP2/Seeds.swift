import Glibc

/// The seed corpus in `Corpus/http2`, in `Script`'s input format, written by
/// `SLUICE_FUZZ_WRITE_SEEDS=Corpus/http2 FuzzHTTP2` (regenerate after changing the format).
enum Seeds {
    // Op bytes (see Script): kind first, then its operands.
    static let headers: UInt8 = 0, trailers: UInt8 = 2, data: UInt8 = 3, continuation: UInt8 = 5
    static let windowUpdate: UInt8 = 6, rst: UInt8 = 7, settings: UInt8 = 8, ping: UInt8 = 9
    static let priority: UInt8 = 10, goaway: UInt8 = 11, drain: UInt8 = 13, request: UInt8 = 14
    // Stream selectors: 0 → 1, 1 → 3, 6 → the current stream, 9 → a new stream.
    static let cur: UInt8 = 6, new: UInt8 = 9
    // Drain: 2 = 1 ms, 4 = 2 ms, 5 = 5 ms, + 8 replenish windows.
    static let drain2msReplenish: [UInt8] = [drain, 4 | 8]

    static let all: [(String, [UInt8])] = [
        // A plain POST /v1/chat/completions (HEADERS + DATA with END_STREAM), read back.
        ("post", [0, request, new, 0] + drain2msReplenish),
        // The same, streamed ("stream": true: a chunked SSE answer upstream).
        ("post-streamed", [0, request, new, 1] + drain2msReplenish),
        // GET /v1/models (answered by the gateway itself), two on one connection.
        ("get-models", [0, request, new, 2, request, new, 2] + drain2msReplenish),
        // A request ending with trailers (HEADERS, DATA, HEADERS with END_STREAM).
        ("post-trailers", [0, request, new, 8] + drain2msReplenish),
        // A body over max_body_bytes (413).
        ("post-over-limit", [0, request, new, 4] + drain2msReplenish),
        // The same request op by op: HEADERS (POST chat, content-type), DATA (JSON), trailers.
        ("headers-data-trailers", [0, headers, new, 0, 0, 8, data, cur, 0, 0, trailers, cur, 0, 0] + drain2msReplenish),
        // Issue 22's crash: stream windows 0 (SETTINGS INITIAL_WINDOW_SIZE 0), a body over the
        // limit (a 413 is queued and waits for the window), trailers on the same stream, then a
        // WINDOW_UPDATE for it. Crashes a gateway whose trailers replace the stream object.
        ("window0-over-limit-trailers-window-update",
         [0, settings, 0, 4, 0,
          headers, new, 0, 0, 8,
          data, cur, 4, 8,  // filler, 2048 bytes
          drain, 2,
          trailers, cur, 0, 0,
          windowUpdate, cur, 7,  // + 1 MiB
          ] + drain2msReplenish),
        // Flow control: windows 0, a streamed answer let out by WINDOW_UPDATEs.
        ("window0-streamed",
         [0, settings, 0, 4, 0, request, new, 1, drain, 2,
          windowUpdate, cur, 4, drain, 2, windowUpdate, cur, 7, windowUpdate, 12, 7] + drain2msReplenish),
        // A header block split over HEADERS and CONTINUATION frames, then the body.
        ("continuation", [0, headers, new, 0x18, 0, 8, 5, data, cur, 1, 0] + drain2msReplenish),
        // A request, its RST_STREAM (CANCEL) while the answer is on its way, another request.
        ("rst-stream", [0, request, new, 1, rst, cur, 4, request, new, 0] + drain2msReplenish),
        // A streamed request whose upstream connection is reset part way ("user": "cut").
        ("upstream-cut-streamed", [0, headers, new, 0, 0, 8, data, cur, 1, 0x64] + drain2msReplenish),
        // The preface and SETTINGS, then an abrupt close (the gateway reads EOF while it starts).
        ("preface-abrupt-close", [0x40]),
        // HEADERS on stream 0: a connection error (GOAWAY, and the gateway closes).
        ("headers-stream-0", [0, drain, 0, headers, 12, 0, 0, 0]),
        // WebSockets over HTTP/2 (RFC 8441): extended CONNECT (method 7, N bits 6-7:
        // `:protocol websocket`, `/v1/realtime?model=m`) to the upstream's echo, DATA through
        // the tunnel, then RST_STREAM; a second tunnel ended by the client's END_STREAM.
        ("websocket-tunnel",
         [0, headers, new, 0, 7, 0xC0, drain, 4 | 8, data, cur, 0, 0, drain, 4 | 8, rst, cur, 4,
          headers, new, 0, 7, 0xC0, drain, 4 | 8, data, cur, 1, 0, drain, 4 | 8] + drain2msReplenish),
        // A tunnel left idle past realtime.idle_timeout (40 ms here): RST_STREAM(CANCEL).
        ("websocket-idle", [0, headers, new, 0, 7, 0xC0, drain, 7 | 8, drain, 7 | 8, drain, 7 | 8, drain, 7 | 8]),
        // Plain CONNECT (405), extended CONNECT elsewhere (404), then a request on the connection.
        ("connect-refused", [0, headers, new, 0, 7, 0, headers, new, 0, 7, 0x40, request, new, 2] + drain2msReplenish),
        // PING, PRIORITY, a request, GOAWAY from the client.
        ("ping-priority-goaway",
         [0, ping, 0, 1, 2, 3, 4, 5, 6, 7, 8, priority, new, 0, 16, request, cur, 0, drain, 4, goaway, cur, 0] + drain2msReplenish),
    ]

    static func write(to dir: String) -> Bool {
        for (name, bytes) in all {
            let path = dir + "/" + name
            guard let f = fopen(path, "wb") else { printError("cannot write \(path)\n"); return false }
            _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
        }
        print("wrote \(all.count) seeds to \(dir)")
        return true
    }
}
