public import SluiceHTTP

/// TLS towards a pool behind TLS: the client context (CA file, verification) and the name
/// sent as SNI and checked against the certificate.
public final class UpstreamTLS: Sendable {
    public let context: TLSClientContext
    public let serverName: String

    public init(context: TLSClientContext, serverName: String) {
        self.context = context
        self.serverName = serverName
    }
}
