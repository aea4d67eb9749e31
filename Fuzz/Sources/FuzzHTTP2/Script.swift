/// Turns a fuzz input into what the client does on one HTTP/2 connection: a structure-aware
/// decoder, so that most inputs are sequences of well-formed frames on a few streams (and a
/// mutation changes one frame, not the framing of everything after it).
///
/// Input format (every read past the end gives 0, so any input decodes):
///
///     input   := header op*                          (at most `maxOps` ops)
///     header  := H   bits 0-1 close: 0/3 close, 1 RST (SO_LINGER 0), 2 shutdown(SHUT_WR) + read to EOF
///                    bits 2-3 both set: no client SETTINGS frame after the preface
///                    bit 4 no PING barrier at the end    bit 5 do not ACK the server's SETTINGS
///                    bit 6 abrupt: close right after the last write, reading nothing more
///     op      := K  (K % 16 picks the kind, the bytes after it are the kind's)
///       0,1  HEADERS        S F T N field*    request head on stream S (see `headers`)
///       2    trailers       S F N field*      a second HEADERS with END_STREAM
///       3,4  DATA           S F L [P] [bytes] JSON body, filler of a size, or input bytes
///       5    CONTINUATION   S F N field*      (or the rest of a split HEADERS block)
///       6    WINDOW_UPDATE  S V [u32]         increments 0 .. 2^31-1 and invalid ones
///       7    RST_STREAM     S C
///       8    SETTINGS       F (I V [u32])*    INITIAL_WINDOW_SIZE 0.., MAX_FRAME_SIZE, ...
///       9    PING           F b8
///       10   PRIORITY       S D W
///       11   GOAWAY         S C
///       12   raw frame      T F S L bytes     any type (PUSH_PROMISE, unknown), any flags
///       13   drain          W                 flush, read what came back for 0..20 ms; W&8:
///                                             replenish windows for the DATA read (a real client)
///       14   request        S F               HEADERS + DATA (+ trailers): a whole request
///       15   SETTINGS ACK   F
///
/// Stream selectors S pick from a small set so that frames meet on the same streams: fixed odd
/// ids 1..11, the current stream (the last one an op used), a new one (above all used so far),
/// 0, an even id, 2^31-1.
struct Script {
    enum Close: String { case close, reset, halfClose }
    enum Action {
        case write([UInt8])
        /// Flush, then read for `ms`; replenish flow-control windows for DATA received.
        case drain(ms: Int, replenish: Bool)
    }

    var close = Close.close
    var clientSettings = true
    var pingBarrier = true
    var ackServerSettings = true
    var abrupt = false
    var actions: [Action] = []
    /// What each op was, for `SLUICE_FUZZ_TRACE=1`.
    var trace: [String] = []
    /// The largest valid MAX_FRAME_SIZE the client announced (frames from the gateway may be
    /// up to that long).
    var maxFrameSize = 16384

    static let maxOps = 200
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    // Frame types and flags.
    static let DATA: UInt8 = 0, HEADERS: UInt8 = 1, PRIORITY: UInt8 = 2, RST_STREAM: UInt8 = 3, SETTINGS: UInt8 = 4
    static let PUSH_PROMISE: UInt8 = 5, PING: UInt8 = 6, GOAWAY: UInt8 = 7, WINDOW_UPDATE: UInt8 = 8, CONTINUATION: UInt8 = 9
    static let END_STREAM: UInt8 = 0x1, ACK: UInt8 = 0x1, END_HEADERS: UInt8 = 0x4, PADDED: UInt8 = 0x8, PRIORITY_FLAG: UInt8 = 0x20

    private var input: Input
    private var pending: [UInt8] = []
    private var current: UInt32 = 1
    private var highest: UInt32 = 0
    /// The rest of a split header block waiting for a CONTINUATION op.
    private var pendingBlock: [UInt8] = []
    private var pendingBlockStream: UInt32 = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        input = Input(bytes)
        let h = input.byte()
        switch h & 3 {
        case 1: close = .reset
        case 2: close = .halfClose
        default: close = .close
        }
        clientSettings = h & 0x0c != 0x0c
        pingBarrier = h & 0x10 == 0
        ackServerSettings = h & 0x20 == 0
        abrupt = h & 0x40 != 0
        pending = Self.preface
        if clientSettings { frame(Self.SETTINGS, 0, 0, []) }
        var ops = 0
        while !input.atEnd && ops < Self.maxOps {
            ops += 1
            op(input.byte())
        }
        flushPending()
    }

    // MARK: ops

    private mutating func op(_ k: UInt8) {
        switch k % 16 {
        case 0, 1: headersOp()
        case 2: trailersOp()
        case 3, 4: dataOp()
        case 5: continuationOp()
        case 6: windowUpdateOp()
        case 7: rstOp()
        case 8: settingsOp()
        case 9: pingOp()
        case 10: priorityOp()
        case 11: goawayOp()
        case 12: rawOp()
        case 13: drainOp()
        case 14: requestOp()
        default: settingsAckOp()
        }
    }

    /// HEADERS  S F T N field*
    ///   F: bit 0 END_STREAM, bit 1 PADDED (a pad byte follows), bit 2 PRIORITY (D W follow),
    ///      bits 3-4 both set: the block is split into HEADERS + CONTINUATION (bit 5: the rest
    ///      waits for a CONTINUATION op instead of following at once), bits 6-7 field encoding
    ///   T: bits 0-2 method, bits 3-5 path, bits 6-7 pseudo-header shape (0 complete, 1 no
    ///      :authority, 2 no :path (or no :method), 3 a pseudo-header after a regular one)
    ///   N: bits 0-2 extra fields, bit 3 content-type: application/json, bits 4-5 a dynamic
    ///      table size update first (none, 0, 4096, 1 MiB: above the limit), bit 6
    ///      `:protocol websocket` (RFC 8441; malformed but on CONNECT), bit 7 the path is
    ///      `/v1/realtime?model=m` (with both and CONNECT: a WebSocket tunnel to the upstream's echo)
    private mutating func headersOp() {
        let sid = stream(input.byte(), preferNew: true)
        let f = input.byte(), t = input.byte(), n = input.byte()
        let mode = HPACKWriter.Mode(rawValue: f >> 6)!
        var w = HPACKWriter()
        switch (n >> 4) & 3 {
        case 1: w.sizeUpdate(0)
        case 2: w.sizeUpdate(4096)
        case 3: w.sizeUpdate(1 << 20)
        default: break
        }
        let methods = ["POST", "POST", "POST", "GET", "GET", "HEAD", "PUT", "CONNECT"]
        let paths = ["/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/models",
                     "/v1/embeddings", "/health", "/", "*"]
        let method = methods[Int(t & 7)], path = n & 0x80 != 0 ? "/v1/realtime?model=m" : paths[Int((t >> 3) & 7)]
        let shape = t >> 6
        let omitPath = shape == 2 && t & 1 == 0, omitMethod = shape == 2 && t & 1 == 1
        if !omitMethod {
            if method == "GET" && mode == .withoutIndexing { w.indexed(2) } else if method == "POST" && mode == .withoutIndexing { w.indexed(3) } else { w.literal(staticName: 2, Array(method.utf8), mode: mode) }
        }
        w.indexed(6)  // :scheme http
        if n & 0x40 != 0 { w.literal(Array(":protocol".utf8), Array("websocket".utf8), mode: mode) }
        if shape != 1 { w.literal(staticName: 1, Array("gateway.test".utf8), mode: mode) }
        if shape == 3 { w.literal(Array("accept".utf8), Array("*/*".utf8), mode: mode) }
        if !omitPath { w.literal(staticName: 4, Array(path.utf8), mode: mode) }
        if n & 8 != 0 { w.literal(Array("content-type".utf8), Array("application/json".utf8), mode: mode) }
        let extras = fields(count: Int(n & 7), into: &w, mode: mode, perField: f >> 6 == 3)
        trace.append("HEADERS s=\(sid) \(method) \(omitPath ? "-" : path)\(n & 0x40 != 0 ? " :protocol" : "") shape=\(shape) es=\(f & 1) mode=\(mode) +\(extras)")
        headerBlock(Self.HEADERS, sid, f, w.bytes, endStream: f & 1 != 0)
    }

    /// Trailers  S F N field*: HEADERS with END_STREAM (F bit 0 leaves it off, which is
    /// malformed), F bit 1 adds a pseudo-header (malformed), bits 3-4 and 6-7 as in HEADERS.
    private mutating func trailersOp() {
        let sid = stream(input.byte(), preferNew: false)
        let f = input.byte(), n = input.byte()
        let mode = HPACKWriter.Mode(rawValue: f >> 6)!
        var w = HPACKWriter()
        w.literal(Array("x-checksum".utf8), Array("d41d8cd98f00b204".utf8), mode: mode)
        if f & 2 != 0 { w.literal(staticName: 4, Array("/v1/models".utf8), mode: mode) }
        let extras = fields(count: Int(n & 7), into: &w, mode: mode, perField: f >> 6 == 3)
        trace.append("TRAILERS s=\(sid) es=\(f & 1 == 0) pseudo=\(f & 2 != 0) +\(extras)")
        headerBlock(Self.HEADERS, sid, f & ~3 & ~UInt8(4), w.bytes, endStream: f & 1 == 0)
    }

    /// Writes a header block as HEADERS (or CONTINUATION) frames: padded, with a priority,
    /// split, per the op's flag byte `f` (see `headersOp`).
    private mutating func headerBlock(_ type: UInt8, _ sid: UInt32, _ f: UInt8, _ block: [UInt8], endStream: Bool) {
        var flags: UInt8 = endStream ? Self.END_STREAM : 0
        var prefix: [UInt8] = []
        var suffix: [UInt8] = []
        if f & 2 != 0 {
            let pad = input.byte() % 32
            flags |= Self.PADDED
            prefix.append(pad)
            suffix = Array(repeating: 0, count: Int(pad))
        }
        if f & 4 != 0 {
            let d = input.byte(), weight = input.byte()
            flags |= Self.PRIORITY_FLAG
            prefix += be32(stream(d & 0x7f, preferNew: false, update: false) | (d & 0x80 != 0 ? 0x8000_0000 : 0))
            prefix.append(weight)
        }
        if f & 0x18 == 0x18 && block.count > 1 {
            let cut = 1 + Int(input.byte()) % (block.count - 1)
            frame(type, flags, sid, prefix + block[..<cut] + suffix)
            let rest = Array(block[cut...])
            if f & 0x20 != 0 {
                pendingBlock = rest
                pendingBlockStream = sid
                trace.append("  split at \(cut), \(rest.count) bytes wait for CONTINUATION")
            } else {
                // Two CONTINUATION frames when the rest is long enough.
                let mid = rest.count > 2 ? rest.count / 2 : rest.count
                frame(Self.CONTINUATION, mid == rest.count ? Self.END_HEADERS : 0, sid, Array(rest[..<mid]))
                if mid < rest.count { frame(Self.CONTINUATION, Self.END_HEADERS, sid, Array(rest[mid...])) }
                trace.append("  split at \(cut) + CONTINUATION")
            }
        } else {
            frame(type, flags | Self.END_HEADERS, sid, prefix + block + suffix)
        }
    }

    /// Extra header fields, one selector byte each (plus a few value bytes for some).
    private mutating func fields(count: Int, into w: inout HPACKWriter, mode: HPACKWriter.Mode, perField: Bool) -> String {
        var names: [String] = []
        for _ in 0..<count {
            let x = input.byte()
            let m = perField ? HPACKWriter.Mode(rawValue: (x >> 4) & 3)! : mode
            func add(_ n: String, _ v: String) { w.literal(Array(n.utf8), Array(v.utf8), mode: m); names.append(n) }
            switch x % 16 {
            case 0: add("content-type", "application/json")
            case 1: add("te", "trailers")
            case 2:
                let v = ["0", "5", "100", "1024", "1025", "99999999999999999999", "-1", "abc"][Int(input.byte() & 7)]
                add("content-length", v)
            case 3: add("x-request-id", String(decoding: input.bytes(Int(input.byte() & 31)).map { 0x21 + $0 % 94 }, as: UTF8.self))
            case 4: add("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            case 5: add("host", "h.test")
            case 6: add("authorization", "Bearer sk-fuzz")
            case 7: add("accept", "text/event-stream")
            case 8: add("connection", "keep-alive")
            case 9:
                let name = input.bytes(Int(input.byte() & 15)), value = input.bytes(Int(input.byte() & 31))
                w.literal(name, value, mode: m)
                names.append("raw(\(name.count),\(value.count))")
            case 10: add("X-Upper", "v")
            case 11: add("x-forwarded-for", "10.0.0.1")
            case 12: add(":path", "/v1/models")
            case 13: add("user-agent", "sluice-fuzz")
            case 14:
                let size = [100, 1000, 3000, 5000][Int(input.byte() & 3)]
                add("x-long", String(repeating: "a", count: size))
            default: add("bad name", "v")
            }
        }
        return names.joined(separator: ",")
    }

    /// DATA  S F L [P] [bytes]
    ///   F: bit 0 END_STREAM, bit 1 PADDED (P follows), bits 2-3 content (0 a JSON body picked
    ///      by L, 1 filler of size table[L & 15], 2 L & 63 input bytes, 3 empty), bit 4 split
    ///      into two frames (END_STREAM on the second)
    private mutating func dataOp() {
        let sid = stream(input.byte(), preferNew: false)
        let f = input.byte(), l = input.byte()
        var pad: UInt8? = nil
        if f & 2 != 0 { pad = input.byte() }
        let payload: [UInt8]
        let what: String
        switch (f >> 2) & 3 {
        case 0: payload = Self.jsonBody(l); what = "json(\(l))"
        case 1:
            let n = Self.fillerSizes[Int(l & 15)]
            payload = Array(repeating: UInt8(ascii: "x"), count: n); what = "filler"
        case 2: payload = input.bytes(Int(l & 63)); what = "input"
        default: payload = []; what = "empty"
        }
        trace.append("DATA s=\(sid) \(what) \(payload.count)B es=\(f & 1) pad=\(pad.map(String.init) ?? "-") split=\(f & 16 != 0)")
        data(sid, payload, endStream: f & 1 != 0, pad: pad, split: f & 16 != 0)
    }

    /// Around the 1 KiB body limit, around the 16 KiB frame size, past the 64 KiB window.
    static let fillerSizes = [1, 10, 100, 500, 1000, 1023, 1024, 1025, 2048, 4096, 16384, 16385, 40000, 65535, 65536, 70000]

    /// Body bytes as DATA frames of at most 16 KiB.
    private mutating func data(_ sid: UInt32, _ payload: [UInt8], endStream: Bool, pad: UInt8?, split: Bool) {
        var pieces: [ArraySlice<UInt8>] = []
        var i = 0
        let room = pad.map { 16384 - 1 - Int($0) } ?? 16384
        let step = min(room, split ? max(1, (payload.count + 1) / 2) : room)
        repeat {
            let end = min(payload.count, i + step)
            pieces.append(payload[i..<end])
            i = end
        } while i < payload.count
        for (k, p) in pieces.enumerated() {
            var flags: UInt8 = k == pieces.count - 1 && endStream ? Self.END_STREAM : 0
            if let pad {
                flags |= Self.PADDED
                frame(Self.DATA, flags, sid, [pad] + p + Array(repeating: 0, count: Int(pad)))
            } else {
                frame(Self.DATA, flags, sid, Array(p))
            }
        }
    }

    /// A request body selected by `l`: bits 0-1 endpoint (chat, completions, embeddings, chat),
    /// bit 2 "stream": true, bits 3-4 max_tokens (none, 16, -1, 2^63-1), bits 5-6 model (m,
    /// alias, unknown, m with "user": "cut", which the upstream answers by resetting its
    /// connection part way), bit 7 a prompt long enough to pass the 1 KiB body limit.
    static func jsonBody(_ l: UInt8) -> [UInt8] {
        let model = ["m", "alias", "nope", "m\",\"user\":\"cut"][Int((l >> 5) & 3)]
        let text = l & 0x80 != 0 ? String(repeating: "lorem ipsum ", count: 120) : "hello"
        var s: String
        switch l & 3 {
        case 1: s = "{\"model\":\"\(model)\",\"prompt\":\"\(text)\""
        case 2: s = "{\"model\":\"\(model)\",\"input\":\"\(text)\""
        default: s = "{\"model\":\"\(model)\",\"messages\":[{\"role\":\"user\",\"content\":\"\(text)\"}]"
        }
        if l & 4 != 0 { s += ",\"stream\":true" }
        switch (l >> 3) & 3 {
        case 1: s += ",\"max_tokens\":16"
        case 2: s += ",\"max_tokens\":-1"
        case 3: s += ",\"max_tokens\":9223372036854775807"
        default: break
        }
        return Array((s + "}").utf8)
    }

    /// CONTINUATION  S F N field*: F bit 0 leaves END_HEADERS off; bit 2 sends fields even
    /// when a split block is waiting (otherwise its rest goes, on its own stream unless bit 1).
    private mutating func continuationOp() {
        var sid = stream(input.byte(), preferNew: false)
        let f = input.byte(), n = input.byte()
        let flags: UInt8 = f & 1 != 0 ? 0 : Self.END_HEADERS
        if !pendingBlock.isEmpty && f & 4 == 0 {
            if f & 2 == 0 { sid = pendingBlockStream }
            trace.append("CONTINUATION s=\(sid) rest of block \(pendingBlock.count)B eh=\(flags != 0)")
            frame(Self.CONTINUATION, flags, sid, pendingBlock)
            pendingBlock = []
            return
        }
        var w = HPACKWriter()
        let extras = fields(count: Int(n & 7), into: &w, mode: .withoutIndexing, perField: false)
        trace.append("CONTINUATION s=\(sid) eh=\(flags != 0) +\(extras)")
        frame(Self.CONTINUATION, flags, sid, w.bytes)
    }

    /// WINDOW_UPDATE  S V [u32]: V bits 0-3 increment, bit 4 a 3-byte payload (FRAME_SIZE_ERROR),
    /// bit 5 sent twice (overflow past 2^31-1 for the large ones).
    private mutating func windowUpdateOp() {
        let sid = stream(input.byte(), preferNew: false, update: false)
        let v = input.byte()
        let table: [UInt32] = [0, 1, 100, 1000, 16384, 65535, 65536, 1 << 20, 1 << 24, 0x7fff_ffff,
                               0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0, 0x4000_0000, 10]
        var inc = table[Int(v & 15)]
        if v & 15 == 13 { inc = input.u32() }
        trace.append("WINDOW_UPDATE s=\(sid) +\(inc)\(v & 16 != 0 ? " short" : "")\(v & 32 != 0 ? " x2" : "")")
        for _ in 0..<(v & 32 != 0 ? 2 : 1) {
            frame(Self.WINDOW_UPDATE, 0, sid, v & 16 != 0 ? Array(be32(inc)[1...]) : be32(inc))
        }
    }

    /// RST_STREAM  S C: C bits 0-2 error code, bit 3 a 5-byte payload.
    private mutating func rstOp() {
        let sid = stream(input.byte(), preferNew: false)
        let c = input.byte()
        let code: UInt32 = [0, 1, 2, 7, 8, 0xb, 0xd, 0xffff_ffff][Int(c & 7)]
        trace.append("RST_STREAM s=\(sid) code=\(code)")
        frame(Self.RST_STREAM, 0, sid, be32(code) + (c & 8 != 0 ? [0] : []))
    }

    /// SETTINGS  F (I V [u32])*: F bits 0-1 one to four entries, bit 2 on stream 1 (an error),
    /// bit 3 one stray byte (FRAME_SIZE_ERROR).
    private mutating func settingsOp() {
        let f = input.byte()
        var payload: [UInt8] = []
        var desc: [String] = []
        for _ in 0...(f & 3) {
            let i = input.byte(), v = input.byte()
            let id: UInt16
            let value: UInt32
            switch i & 7 {
            case 3, 4:  // INITIAL_WINDOW_SIZE, twice as likely
                id = 4
                let t: [UInt32] = [0, 0, 0, 1, 10, 100, 1000, 16384, 65535, 65535, 65536, 1 << 20, 0x7fff_ffff, 0x8000_0000, 2, 0]
                value = v & 15 == 15 ? input.u32() : t[Int(v & 15)]
            case 5:
                id = 5  // MAX_FRAME_SIZE
                let t: [UInt32] = [16384, 16383, 16385, 32768, 65536, 1 << 20, (1 << 24) - 1, 1 << 24]
                value = t[Int(v & 7)]
                if value >= 16384 && value < 1 << 24 { maxFrameSize = max(maxFrameSize, Int(value)) }
            default:
                // HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE,
                // ENABLE_CONNECT_PROTOCOL (8), an unknown id
                id = [1, 2, 3, 6, 8, 0x99, 1, 2][Int((i >> 3) & 7)]
                value = [0, 1, 2, 16, 100, 4096, 65536, 0xffff_ffff][Int(v & 7)]
            }
            payload += [UInt8(id >> 8), UInt8(id & 0xff)] + be32(value)
            desc.append("\(id)=\(value)")
        }
        if f & 8 != 0 { payload.append(0) }
        let sid: UInt32 = f & 4 != 0 ? 1 : 0
        trace.append("SETTINGS \(desc.joined(separator: " "))\(sid != 0 ? " on stream 1" : "")\(f & 8 != 0 ? " +1B" : "")")
        frame(Self.SETTINGS, 0, sid, payload)
    }

    /// PING  F b8: F bit 0 ACK, bit 1 a 7-byte payload.
    private mutating func pingOp() {
        let f = input.byte()
        var payload = input.bytes(8)
        while payload.count < 8 { payload.append(0) }
        if f & 2 != 0 { payload.removeLast() }
        trace.append("PING ack=\(f & 1) \(payload.count)B")
        frame(Self.PING, f & 1 != 0 ? Self.ACK : 0, 0, payload)
    }

    /// PRIORITY  S D W: D bit 7 exclusive, bit 6 depends on itself (an error), else on stream D.
    private mutating func priorityOp() {
        let sid = stream(input.byte(), preferNew: false)
        let d = input.byte(), weight = input.byte()
        let dep = d & 0x40 != 0 ? sid : stream(d & 0x3f, preferNew: false, update: false)
        trace.append("PRIORITY s=\(sid) dep=\(dep) excl=\(d >> 7) w=\(weight)")
        frame(Self.PRIORITY, 0, sid, be32(dep | (d & 0x80 != 0 ? 0x8000_0000 : 0)) + [weight])
    }

    /// GOAWAY  S C: last stream S, error code, a few bytes of debug data.
    private mutating func goawayOp() {
        let last = stream(input.byte(), preferNew: false, update: false)
        let c = input.byte()
        let code: UInt32 = [0, 1, 2, 0xb][Int(c & 3)]
        trace.append("GOAWAY last=\(last) code=\(code)")
        frame(Self.GOAWAY, 0, 0, be32(last) + be32(code) + Array("bye".utf8.prefix(Int(c >> 6))))
    }

    /// Raw frame  T F S L bytes: any type and flags, L & 63 payload bytes; L bit 6 makes the
    /// length field say 9 bytes more than are sent (the rest of the input is then misframed).
    private mutating func rawOp() {
        let type = input.byte(), flags = input.byte()
        let sid = stream(input.byte(), preferNew: false, update: false)
        let l = input.byte()
        let payload = input.bytes(Int(l & 63))
        let claimed = payload.count + (l & 0x40 != 0 ? 9 : 0)
        trace.append("RAW type=\(type) flags=\(flags) s=\(sid) \(payload.count)B\(claimed != payload.count ? " (claims \(claimed))" : "")")
        pending += [UInt8(claimed >> 16), UInt8((claimed >> 8) & 0xff), UInt8(claimed & 0xff), type, flags] + be32(sid)
        pending += payload
    }

    /// drain  W: W bits 0-2 how long to read (0, 0, 1, 1, 2, 5, 10, 20 ms), bit 3 replenish.
    private mutating func drainOp() {
        let w = input.byte()
        let ms = [0, 0, 1, 1, 2, 5, 10, 20][Int(w & 7)]
        trace.append("drain \(ms)ms\(w & 8 != 0 ? " +replenish" : "")")
        flushPending()
        actions.append(.drain(ms: ms, replenish: w & 8 != 0))
    }

    /// request  S F: a whole request. F bits 0-1 kind (chat, chat streamed, GET /v1/models,
    /// completions streamed), bit 2 a body over the 1 KiB limit, bit 3 trailers end the
    /// stream, bit 4 nothing ends it, bit 5 the body in two DATA frames.
    private mutating func requestOp() {
        let sid = stream(input.byte(), preferNew: true)
        let f = input.byte()
        var w = HPACKWriter()
        let kind = f & 3
        let get = kind == 2
        w.indexed(get ? 2 : 3)
        w.indexed(6)
        w.literal(staticName: 1, Array("gateway.test".utf8), mode: .withoutIndexing)
        let path = kind == 2 ? "/v1/models" : kind == 3 ? "/v1/completions" : "/v1/chat/completions"
        w.literal(staticName: 4, Array(path.utf8), mode: .withoutIndexing)
        let trailers = f & 8 != 0, open = f & 16 != 0
        trace.append("REQUEST s=\(sid) \(path) big=\(f & 4 != 0) trailers=\(trailers) open=\(open)")
        if get {
            frame(Self.HEADERS, Self.END_HEADERS | (open || trailers ? 0 : Self.END_STREAM), sid, w.bytes)
        } else {
            w.literal(Array("content-type".utf8), Array("application/json".utf8), mode: .withoutIndexing)
            frame(Self.HEADERS, Self.END_HEADERS, sid, w.bytes)
            let l: UInt8 = (kind == 0 ? 0 : kind == 1 ? 4 : 5) | (f & 4 != 0 ? 0x80 : 0) | 0x08
            data(sid, Self.jsonBody(l), endStream: !trailers && !open, pad: nil, split: f & 32 != 0)
        }
        if trailers && !open {
            var t = HPACKWriter()
            t.literal(Array("x-checksum".utf8), Array("d41d8cd98f00b204".utf8), mode: .withoutIndexing)
            frame(Self.HEADERS, Self.END_HEADERS | Self.END_STREAM, sid, t.bytes)
        }
    }

    /// SETTINGS ACK  F: bit 0 with a 6-byte payload (FRAME_SIZE_ERROR).
    private mutating func settingsAckOp() {
        let f = input.byte()
        trace.append("SETTINGS ACK\(f & 1 != 0 ? " +6B" : "")")
        frame(Self.SETTINGS, Self.ACK, 0, f & 1 != 0 ? [0, 4, 0, 0, 0, 0] : [])
    }

    // MARK: helpers

    /// A stream id from a selector byte (low 4 bits).
    private mutating func stream(_ b: UInt8, preferNew: Bool, update: Bool = true) -> UInt32 {
        let sid: UInt32
        switch b & 15 {
        case 0...5: sid = UInt32(b & 15) * 2 + 1
        case 6, 7, 8: sid = current
        case 9, 10: sid = highest == 0 ? 1 : highest + 2
        case 11: sid = preferNew ? (highest == 0 ? 1 : highest + 2) : current
        case 12: sid = 0
        case 13: sid = 2
        case 14: sid = 0x7fff_ffff
        default: sid = current
        }
        if update && sid != 0 {
            current = sid
            if sid & 1 == 1 && sid > highest && sid < 0x7fff_fff0 { highest = sid }
        }
        return sid
    }

    private mutating func frame(_ type: UInt8, _ flags: UInt8, _ sid: UInt32, _ payload: [UInt8]) {
        let n = payload.count
        pending += [UInt8(n >> 16), UInt8((n >> 8) & 0xff), UInt8(n & 0xff), type, flags] + be32(sid & 0x7fff_ffff)
        pending += payload
    }

    private mutating func flushPending() {
        if !pending.isEmpty { actions.append(.write(pending)); pending = [] }
    }
}

func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

/// A cursor over the fuzz input; reads past the end give zeros.
struct Input {
    let bytes: UnsafeRawBufferPointer
    var pos = 0
    init(_ b: UnsafeRawBufferPointer) { bytes = b }
    var atEnd: Bool { pos >= bytes.count }
    mutating func byte() -> UInt8 {
        guard pos < bytes.count else { return 0 }
        defer { pos += 1 }
        return bytes[pos]
    }
    mutating func u32() -> UInt32 {
        (0..<4).reduce(0) { v, _ in v << 8 | UInt32(byte()) }
    }
    mutating func bytes(_ n: Int) -> [UInt8] {
        let end = min(bytes.count, pos + n)
        defer { pos = end }
        return Array(bytes[pos..<end])
    }
}
