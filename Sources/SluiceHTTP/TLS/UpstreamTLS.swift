/// TLS towards a pool behind TLS: the client context (CA file, verification) and the name
/// sent as SNI and checked against the certificate.
public final class UpstreamTLS: Sendable {
    public let context: TLSClientContext
    public let serverName: String
    /// The CA bundle the context was built from (watched: a change reloads the config).
    public let caFile: String?

    public init(context: TLSClientContext, serverName: String, caFile: String? = nil) {
        self.context = context
        self.serverName = serverName
        self.caFile = caFile
    }
}
