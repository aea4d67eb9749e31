import COpenSSL
import Glibc

public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ what: String) {
        // Append OpenSSL's error queue, which says which file or key was wrong.
        var text = what
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buf = [UInt8](repeating: 0, count: 256)
            buf.withUnsafeMutableBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { ERR_error_string_n(e, $0.baseAddress, $0.count) }
            }
            text += ": " + String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
        }
        description = text
    }
}

/// A server TLS configuration (OpenSSL `SSL_CTX`): certificate chain and key from PEM files,
/// TLS 1.2 or newer (1.3 preferred by OpenSSL), ALPN `h2` and `http/1.1`.
///
/// Immutable once built and safe to share between workers. Certificate rotation builds a new
/// context; connections already established keep the one they started with.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    /// ALPN protocols in preference order, in wire format (length-prefixed).
    let alpnWire: [UInt8]

    public init(certificateChain: String, privateKey: String, http2: Bool = true) throws(TLSError) {
        guard let c = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new failed") }
        ctx = c
        var wire: [UInt8] = []
        for p in (http2 ? ["h2", "http/1.1"] : ["http/1.1"]) {
            wire.append(UInt8(p.utf8.count))
            wire += p.utf8
        }
        alpnWire = wire
        _ = sluice_SSL_CTX_set_min_proto_version(ctx, sluice_TLS1_2_VERSION())
        _ = sluice_SSL_CTX_set_mode(ctx, sluice_SSL_MODE_PARTIAL_AND_MOVING())
        if SSL_CTX_use_certificate_chain_file(ctx, certificateChain) != 1 {
            throw TLSError("cannot load certificate chain \(certificateChain)")
        }
        if SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) != 1 {
            throw TLSError("cannot load private key \(privateKey)")
        }
        if SSL_CTX_check_private_key(ctx) != 1 {
            throw TLSError("private key \(privateKey) does not match the certificate")
        }
        SSL_CTX_set_alpn_select_cb(ctx, { _, out, outlen, input, inlen, arg in
            let me = Unmanaged<TLSContext>.fromOpaque(arg!).takeUnretainedValue()
            return me.alpnWire.withUnsafeBufferPointer { ours -> Int32 in
                var selected: UnsafeMutablePointer<UInt8>?
                var selectedLen: UInt8 = 0
                let r = SSL_select_next_proto(&selected, &selectedLen, ours.baseAddress, UInt32(ours.count), input, inlen)
                guard r == OPENSSL_NPN_NEGOTIATED, let selected else { return SSL_TLSEXT_ERR_NOACK }
                // SSL_select_next_proto points into our list or the client's; both outlive the call.
                out!.pointee = UnsafePointer(selected)
                outlen!.pointee = selectedLen
                return SSL_TLSEXT_ERR_OK
            }
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    // Also runs when init throws after `ctx` was set, which frees it on the error paths.
    deinit { SSL_CTX_free(ctx) }
}

/// A client TLS configuration for upstream connections (pools behind TLS): TLS 1.2+, the
/// server's certificate verified against `caFile` (or the system store) and its name, ALPN
/// `http/1.1`.
public final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let verify: Bool

    public init(caFile: String? = nil, verify: Bool = true) throws(TLSError) {
        guard let c = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new failed") }
        ctx = c
        self.verify = verify
        _ = sluice_SSL_CTX_set_min_proto_version(ctx, sluice_TLS1_2_VERSION())
        _ = sluice_SSL_CTX_set_mode(ctx, sluice_SSL_MODE_PARTIAL_AND_MOVING())
        if verify {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            let ok = caFile.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
            if ok != 1 { throw TLSError("cannot load CA file \(caFile ?? "(system default)")") }
        }
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        _ = alpn.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(ctx, $0.baseAddress, UInt32($0.count)) }
    }

    deinit { SSL_CTX_free(ctx) }
}
