public import SluiceHTTP
import Synchronization

/// A TLS listener's certificate: the files it comes from and the context built from them.
/// `reload()` rebuilds the context (cert-manager rotated the files); new connections use the new
/// one, established connections keep theirs.
public final class ListenerTLS: Sendable {
    public let certificateChain: String
    public let privateKey: String
    public let http2: Bool
    private let context: Mutex<TLSContext>

    public init(certificateChain: String, privateKey: String, http2: Bool = true) throws(TLSError) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.http2 = http2
        context = Mutex(try TLSContext(certificateChain: certificateChain, privateKey: privateKey, http2: http2))
    }

    public var current: TLSContext { context.withLock { $0 } }

    /// Rebuilds the context from the files; on failure the old context stays in use.
    public func reload() throws(TLSError) {
        let fresh = try TLSContext(certificateChain: certificateChain, privateKey: privateKey, http2: http2)
        context.withLock { $0 = fresh }
    }
}
