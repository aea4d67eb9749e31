import Foundation
import Glibc
import SluiceGateway
import SluiceIO
import Testing

/// One header policy for every downstream protocol (UpstreamRequestEncoder): the same table of
/// requests is sent over HTTP/1.1 (a raw client) and HTTP/2 (nghttp, a real client), and the
/// upstream must see the same fields either way.
@Suite(.serialized) struct HeaderPolicyTests {
    struct Row: Sendable, CustomStringConvertible {
        var name: String
        var headers: [String]
        var trustForwarded = false
        var via = false
        /// Lines the upstream must see (lowercase `name: value`), and substrings it must not.
        var present: [String] = []
        var absent: [String] = []
        var description: String { name }
    }

    static let validTrace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    static let rows: [Row] = [
        Row(name: "hop-by-hop and proxy credentials are dropped",
            headers: ["Proxy-Authorization: Basic c2VjcmV0", "X-Keep: k"],
            present: ["x-keep: k"], absent: ["proxy-authorization", "c2VjcmV0"]),
        Row(name: "untrusted forwarding fields are replaced by the peer",
            headers: ["X-Forwarded-For: 10.9.9.9", "Forwarded: for=10.9.9.9", "X-Real-IP: 10.9.9.9",
                      "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https"],
            present: ["x-forwarded-for: 127.0.0.1", "x-forwarded-proto: http"],
            absent: ["10.9.9.9", "forwarded: for", "x-real-ip", "evil.example", "x-forwarded-proto: https"]),
        Row(name: "trusted forwarding fields pass and the peer is appended",
            headers: ["X-Forwarded-For: 10.9.9.9", "Forwarded: for=10.9.9.9", "X-Real-IP: 10.9.9.9", "X-Forwarded-Proto: https"],
            trustForwarded: true,
            present: ["x-forwarded-for: 10.9.9.9, 127.0.0.1", "forwarded: for=10.9.9.9", "x-real-ip: 10.9.9.9",
                      "x-forwarded-proto: https"],
            absent: ["x-forwarded-proto: http\n"]),
        Row(name: "via when configured", headers: [], via: true, present: ["via: 1.1 sluice"]),
        Row(name: "no via by default", headers: [], absent: ["via:"]),
        Row(name: "a valid traceparent passes with its tracestate",
            headers: ["traceparent: \(validTrace)", "tracestate: a=1"],
            present: ["traceparent: \(validTrace)", "tracestate: a=1"]),
        Row(name: "a malformed traceparent is replaced and its tracestate dropped",
            headers: ["traceparent: 00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "tracestate: a=1"],
            absent: ["0AF7651916CD43DD", "tracestate"]),
        Row(name: "an all-zero trace id is replaced",
            headers: ["traceparent: 00-00000000000000000000000000000000-b7ad6b7169203331-01"],
            absent: ["00000000000000000000000000000000"]),
        Row(name: "a usable client request id passes", headers: ["X-Request-Id: abc-123"], present: ["x-request-id: abc-123"]),
        Row(name: "an oversized client request id is replaced",
            headers: ["X-Request-Id: " + String(repeating: "r", count: 201)], absent: [String(repeating: "r", count: 201)]),
        Row(name: "expect is answered, not forwarded", headers: ["Expect: 100-continue"], absent: ["expect"]),
    ]

    /// What the echo upstream saw for `row`, over HTTP/1.1 or HTTP/2.
    static func seen(_ row: Row, http2: Bool) throws -> String {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint]) {
            $0.proxy.trustForwarded = row.trustForwarded
            $0.proxy.via = row.via
        }
        defer { gw.stop(grace: .seconds(1)) }
        if http2 {
            var args = ["--no-verify-peer"]
            for h in row.headers where !h.lowercased().hasPrefix("expect") { args += ["-H", h] }
            let (status, out) = try run("nghttp", args + ["http://127.0.0.1:\(port)/echo"])
            #expect(status == 0, "\(out)")
            return out
        }
        let c = try TestClient(port: port)
        c.send(request("GET", "/echo", headers: row.headers))
        return try #require(c.response()).text
    }

    @Test(arguments: rows) func sameUpstreamHeadOverBothProtocols(_ row: Row) throws {
        for http2 in [false, true] {
            let text = try Self.seen(row, http2: http2)
            let proto = http2 ? "HTTP/2" : "HTTP/1.1"
            #expect(text.hasPrefix("GET /echo\n"), "\(proto): \(text)")
            for p in row.present { #expect(text.contains(p + "\n"), "\(proto) lacks '\(p)': \(text)") }
            for a in row.absent { #expect(!text.contains(a), "\(proto) has '\(a)': \(text)") }
            // Always: one Host, a request id and a trace for the upstream.
            #expect(text.components(separatedBy: "\nhost: ").count == 2, "\(proto): \(text)")
            #expect(text.contains("\nx-request-id: "), "\(proto): \(text)")
            #expect(text.range(of: "\ntraceparent: [0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\n", options: .regularExpression) != nil,
                    "\(proto): \(text)")
        }
    }

    /// HTTP/1.1 only (HTTP/2 clients cannot send these): absolute-form targets and fragments.
    @Test func absoluteFormAndFragmentsBecomeOriginForm() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let c = try TestClient(port: port)
        c.send("GET http://upstream.example:8000/echo?q=1#frag HTTP/1.1\r\nHost: other\r\n\r\n")
        let text = try #require(c.response()).text
        #expect(text.hasPrefix("GET /echo\n"))
        #expect(text.contains("host: upstream.example:8000\n"))
        #expect(!text.contains("host: other"))
        c.send("GET /echo#frag HTTP/1.1\r\nHost: h\r\n\r\n")
        let r2 = try #require(c.response())
        #expect(r2.status == 200)
        #expect(r2.text.hasPrefix("GET /echo\n"))
    }
}
