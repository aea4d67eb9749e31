public import SluiceIO
import COpenSSL
import Glibc

/// A connection's byte stream: the socket itself, or TLS over it (OpenSSL on the non-blocking
/// socket). Connections read and flush through it and never see which.
public final class Transport {
    public enum HandshakeResult: Equatable { case done, wouldBlock, failed }

    public let fd: Int32
    private var ssl: OpaquePointer?
    /// Holds the context alive as long as the connection uses it.
    private let context: TLSContext?
    private let clientContext: TLSClientContext?
    public private(set) var handshakeDone: Bool
    private var closed = false
    /// TLS write staging: small queue chunks are coalesced into full records.
    private var staging: UnsafeMutableRawPointer?
    private var stagedLength = 0
    static let stagingSize = 16 << 10

    public init(plain fd: Int32) {
        self.fd = fd
        ssl = nil
        context = nil
        clientContext = nil
        handshakeDone = true
    }

    /// The client side of TLS to an upstream named `serverName` (SNI and certificate name check).
    public init(tlsClient fd: Int32, context: TLSClientContext, serverName: String) {
        self.fd = fd
        self.context = nil
        clientContext = context
        ssl = SSL_new(context.ctx)
        SSL_set_fd(ssl, fd)
        _ = sluice_SSL_set_tlsext_host_name(ssl, serverName)
        if context.verify { SSL_set1_host(ssl, serverName) }
        SSL_set_connect_state(ssl)
        handshakeDone = false
    }

    public init(tls fd: Int32, context: TLSContext) {
        self.fd = fd
        self.context = context
        clientContext = nil
        ssl = SSL_new(context.ctx)
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        handshakeDone = false
    }

    deinit {
        if let s = ssl { SSL_free(s) }
        staging?.deallocate()
    }

    public var isTLS: Bool { ssl != nil }

    /// Whether a read that returned fewer bytes than asked for drained the socket, so the next
    /// read would only say "would block": true for plain TCP (recv takes all that is queued, up
    /// to the buffer), false for TLS, where SSL_read returns at most one record however much is
    /// still waiting. Edge-triggered readers may stop at a short read only when this is true;
    /// otherwise they read until "would block" or wait for an edge that has already passed.
    public var shortReadDrains: Bool { ssl == nil }

    /// The receive low-water mark (SO_RCVLOWAT) that wakes the reader once `plaintext` more
    /// bytes can be read, and never later. Plain TCP: exactly that. TLS: what the socket is
    /// sure to receive for them — records only add bytes, but one record may already sit, partly
    /// read, in OpenSSL's buffer: up to 16 KiB of its plaintext and its header, tag and padding
    /// (under 300 bytes, RFC 8446 §5.2), hence the 1 KiB on top; 0 when that leaves nothing
    /// worth waiting for.
    public func lowWaterMark(forPlaintext plaintext: Int) -> Int {
        guard ssl != nil else { return plaintext }
        return max(0, plaintext - Self.maxRecordPlaintext - 1024)
    }

    /// The most plaintext one TLS record carries (RFC 8446 §5.1).
    static let maxRecordPlaintext = 16 << 10

    /// Advances the TLS handshake.
    public func handshake() -> HandshakeResult {
        guard let ssl, !handshakeDone else { return .done }
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            handshakeDone = true
            return .done
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wouldBlock
        default:
            ERR_clear_error()
            return .failed
        }
    }

    /// The ALPN protocol the handshake chose (`h2`, `http/1.1`), if any.
    public var negotiatedProtocol: String? {
        guard let ssl else { return nil }
        var p: UnsafePointer<UInt8>?
        var n: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &p, &n)
        guard let p, n > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: Int(n)), as: UTF8.self)
    }

    /// Reads into `buffer`: `.processed(0)` is end of stream.
    public func read(_ buffer: UnsafeMutableRawBufferPointer) throws(SyscallError) -> IOResult<Int> {
        guard let ssl else { return try Sys.recv(fd, buffer.baseAddress!, buffer.count) }
        let r = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if r > 0 { return .processed(Int(r)) }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wouldBlock
        case SSL_ERROR_ZERO_RETURN: return .processed(0)
        default:
            ERR_clear_error()
            throw SyscallError("SSL_read", errno: ECONNRESET)
        }
    }

    /// Writes as much of `queue` as the socket takes; true when it is empty afterwards.
    public func flush(_ queue: inout OutputQueue) throws(SyscallError) -> Bool {
        guard let ssl else { return try queue.flush(to: fd) }
        if staging == nil { staging = .allocate(byteCount: Self.stagingSize, alignment: 16) }
        var iov = [iovec](repeating: iovec(), count: 64)
        while !queue.isEmpty {
            if stagedLength == 0 {
                // Coalesce the front of the queue into one record-sized write.
                let n = iov.withUnsafeMutableBufferPointer { queue.gather(into: $0.baseAddress!, max: 64) }
                var total = 0
                for i in 0..<n where total < Self.stagingSize {
                    let take = min(iov[i].iov_len, Self.stagingSize - total)
                    (staging! + total).copyMemory(from: iov[i].iov_base!, byteCount: take)
                    total += take
                }
                if total == 0 { queue.consume(0); continue }
                stagedLength = total
            }
            // OpenSSL wants the same bytes again after WANT_WRITE: they stay staged.
            let r = SSL_write(ssl, staging, Int32(stagedLength))
            if r > 0 {
                queue.consume(Int(r))
                if Int(r) < stagedLength {
                    (staging!).copyMemory(from: staging! + Int(r), byteCount: stagedLength - Int(r))
                }
                stagedLength -= Int(r)
                continue
            }
            switch SSL_get_error(ssl, r) {
            case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ: return false
            default:
                ERR_clear_error()
                throw SyscallError("SSL_write", errno: EPIPE)
            }
        }
        return true
    }

    /// Stops writing: a TLS close_notify, then the socket's write side.
    public func shutdownWrite() {
        if let ssl, handshakeDone { SSL_shutdown(ssl) }
        Sys.shutdown(fd, Int32(SHUT_WR))
    }

    public func close() {
        guard !closed else { return }
        closed = true
        Sys.close(fd)
    }
}
