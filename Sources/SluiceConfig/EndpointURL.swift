public import SluiceSettings
import SluiceHTTP
import SluiceIO

/// `http://host:port` or `https://host:port` → an endpoint; https verifies the server against
/// `caFile` (or the system store) and its name. A numeric host is used as is; a name is resolved
/// now (blocking: at load time, never on a worker), or, `offline`, stands in as 127.0.0.1.
public func parseEndpointURL(_ url: String, caFile: String? = nil, offline: Bool = false) -> GatewaySettings.Endpoint? {
    let tls = url.hasPrefix("https://")
    guard url.hasPrefix("http://") || tls else { return nil }
    var rest = url.dropFirst(tls ? 8 : 7)
    if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
    guard let (host, port) = SocketAddress.split(String(rest)) else { return nil }
    let address = SocketAddress(numericHost: host, port: port)
        ?? (offline ? SocketAddress(numericHost: "127.0.0.1", port: port) : (try? SocketAddress.resolve(host: host, port: port))?.first)
    guard let address else { return nil }
    var upstreamTLS: UpstreamTLS? = nil
    if tls {
        guard let ctx = try? TLSClientContext(caFile: caFile) else { return nil }
        upstreamTLS = UpstreamTLS(context: ctx, serverName: host, caFile: caFile)
    }
    return GatewaySettings.Endpoint(address: address, authority: String(rest), tls: upstreamTLS)
}
