/// A TLS listener's certificate: the files it comes from and the context built from them, once.
/// A rotated certificate is a new `ListenerTLS`: a config reload (SIGHUP, the config file or
/// one of these files changing) builds the settings anew, and the listener's next handshake
/// takes the context of the settings then in force; established connections keep theirs.
public final class ListenerTLS: Sendable {
    public let certificateChain: String
    public let privateKey: String
    public let http2: Bool
    /// The context new handshakes use.
    public let current: TLSContext

    public init(certificateChain: String, privateKey: String, http2: Bool = true) throws(TLSError) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.http2 = http2
        current = try TLSContext(certificateChain: certificateChain, privateKey: privateKey, http2: http2)
    }
}
