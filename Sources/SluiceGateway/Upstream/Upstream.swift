import SluiceHTTP
import SluiceIO

/// The server side of an ``Exchange``, mirroring ``Downstream``: a connection to one endpoint
/// that carries one request at a time. HTTP/1.1 (``UpstreamConnection``) today; a second upstream
/// protocol (HTTP/2 or gRPC to an engine) is one more type conforming to this, created by the
/// pool's connector, with no change to the exchange or the phases.
///
/// The exchange drives it through these calls; it reports back through the exchange's
/// `upstream…` events (connected, response head, body, complete, failed).
protocol Upstream: AnyObject {
    /// Still connecting (TCP or TLS): the connect deadline applies, not the first-byte one.
    var isConnecting: Bool { get }
    /// It carried requests before: a failure before any response byte may be the keep-alive
    /// race (the server closed it meanwhile), which makes a retry safe.
    var isReused: Bool { get }
    /// The whole request was written (the request's buffers may go back to the pool).
    var requestSent: Bool { get }
    /// Starts the exchange on this connection: `write` encodes the request into its queue.
    func send(_ x: Exchange, method: HTTPMethod, _ write: (inout OutputQueue) -> Void)
    /// The client's queue is full: stop reading the response until it drains.
    func pauseReading()
    func resumeReading()
    /// Ends the connection now; `reset` sends a RST so the server stops generating at once.
    func close(reset: Bool)
}
