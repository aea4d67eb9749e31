import SluiceHTTP

/// The server side of one RFC 6455 WebSocket, enough for the simulator's `/v1/realtime` echo:
/// client frames must be masked; text and binary messages (fragmented ones reassembled) are sent
/// back as they came; a ping gets a pong with its payload; a close is answered with the same
/// status code and the connection closes. A protocol error (unmasked or reserved-bit frames, a
/// control frame over 125 bytes or fragmented, an unexpected continuation, invalid UTF-8 in a
/// text message) closes with 1002 (1007 for UTF-8); a message over ``maxMessageBytes`` with 1009.
///
/// ```
/// open ──text/binary (FIN)──▶ echo ──▶ open        open ──ping──▶ pong ──▶ open
///   └──close──▶ close reply, drain, close           any error ──▶ close 1002/1007/1009
/// ```
final class SimWebSocket: UpgradedConnectionHandler {
    /// RFC 6455 §1.3: the GUID appended to the client's key.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    let maxMessageBytes: Int
    /// What the server sends first (vLLM's realtime endpoint sends `session.created`).
    let greeting: [UInt8]?

    private var input: [UInt8] = []
    private var message: [UInt8] = []
    private var messageOpcode: UInt8 = 0
    private var closing = false
    /// Frames echoed (tests).
    private(set) var echoed = 0

    /// Called once the connection closed (the server forgets it).
    private let onClose: (SimWebSocket) -> Void

    init(greeting: [UInt8]?, maxMessageBytes: Int = 1 << 20, onClose: @escaping (SimWebSocket) -> Void) {
        self.greeting = greeting
        self.maxMessageBytes = maxMessageBytes
        self.onClose = onClose
    }

    /// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
    static func accept(key: String) -> String {
        Base64.encode(SHA1.hash(Array((key.trimmingSpaces + guid).utf8)))
    }

    /// A server frame (never masked), FIN set.
    static func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            out.append(UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            out += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            out.append(127)
            for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: payload.count >> s)) }
        }
        return out + payload
    }

    func started(_ c: UpgradedConnection) {
        if let g = greeting { c.write(Self.frame(opcode: 1, g)) }
    }

    func received(_ bytes: UnsafeRawBufferPointer, on c: UpgradedConnection) {
        guard !closing else { return }
        input.append(contentsOf: bytes)
        var at = 0
        defer { input.removeFirst(min(at, input.count)) }
        while !closing {
            guard let (consumed, fin, opcode, payload) = nextFrame(at: at, c) else { return }
            at += consumed
            handle(fin: fin, opcode: opcode, payload: payload, c)
        }
    }

    func closed(_ c: UpgradedConnection) {
        closing = true
        input = []
        message = []
        onClose(self)
    }

    /// The frame at `at` of the input, unmasked; nil when incomplete (or the connection failed).
    private func nextFrame(at: Int, _ c: UpgradedConnection) -> (Int, Bool, UInt8, [UInt8])? {
        let avail = input.count - at
        guard avail >= 2 else { return nil }
        let b0 = input[at], b1 = input[at + 1]
        let fin = b0 & 0x80 != 0
        let opcode = b0 & 0x0F
        guard b0 & 0x70 == 0 else { fail(c, 1002); return nil }
        guard b1 & 0x80 != 0 else { fail(c, 1002); return nil }  // clients must mask
        var len = Int(b1 & 0x7F)
        var header = 2
        if len == 126 {
            guard avail >= 4 else { return nil }
            len = Int(input[at + 2]) << 8 | Int(input[at + 3])
            header = 4
        } else if len == 127 {
            guard avail >= 10 else { return nil }
            guard input[at + 2] & 0x80 == 0 else { fail(c, 1002); return nil }
            var v: UInt64 = 0
            for k in 2..<10 { v = v << 8 | UInt64(input[at + k]) }
            guard v <= UInt64(maxMessageBytes) else { fail(c, 1009); return nil }
            len = Int(v)
            header = 10
        }
        if opcode >= 8 { guard fin && len <= 125 else { fail(c, 1002); return nil } }
        guard len <= maxMessageBytes else { fail(c, 1009); return nil }
        guard avail >= header + 4 + len else { return nil }
        let mask = Array(input[(at + header)..<(at + header + 4)])
        var payload = Array(input[(at + header + 4)..<(at + header + 4 + len)])
        for i in payload.indices { payload[i] ^= mask[i & 3] }
        return (header + 4 + len, fin, opcode, payload)
    }

    private func handle(fin: Bool, opcode: UInt8, payload: [UInt8], _ c: UpgradedConnection) {
        switch opcode {
        case 0x0:  // continuation
            guard messageOpcode != 0 else { return fail(c, 1002) }
            guard message.count + payload.count <= maxMessageBytes else { return fail(c, 1009) }
            message += payload
            if fin { deliver(c) }
        case 0x1, 0x2:
            guard messageOpcode == 0 else { return fail(c, 1002) }
            messageOpcode = opcode
            message = payload
            if fin { deliver(c) }
        case 0x8:
            // Echo the status code (a 1-byte body is malformed), then close once it is sent.
            closing = true
            if payload.count == 1 { c.write(Self.frame(opcode: 8, [0x03, 0xEA])) }
            else { c.write(Self.frame(opcode: 8, Array(payload.prefix(2)))) }
            c.close()
        case 0x9:
            c.write(Self.frame(opcode: 0xA, payload))
        case 0xA:
            break
        default:
            fail(c, 1002)
        }
    }

    private func deliver(_ c: UpgradedConnection) {
        if messageOpcode == 1 && String(validating: message, as: UTF8.self) == nil { return fail(c, 1007) }
        // A client that sends without reading: stop before its echoes pile up (1008, policy).
        if c.pendingOutput > 4 * maxMessageBytes { return fail(c, 1008) }
        c.write(Self.frame(opcode: messageOpcode, message))
        echoed += 1
        message = []
        messageOpcode = 0
    }

    private func fail(_ c: UpgradedConnection, _ code: UInt16) {
        guard !closing else { return }
        closing = true
        c.write(Self.frame(opcode: 8, [UInt8(code >> 8), UInt8(code & 0xFF)]))
        c.close()
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (header values).
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
