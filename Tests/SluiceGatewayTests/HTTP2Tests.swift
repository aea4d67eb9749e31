import Foundation
import Glibc
import SluiceGateway
import SluiceIO
import Testing

/// Runs a command line tool and returns its exit status and output.
func run(_ tool: String, _ args: [String], timeout: Double = 60) throws -> (Int32, String) {
    let (status, data) = try runRaw(tool, args)
    return (status, String(decoding: data, as: UTF8.self))
}

func runRaw(_ tool: String, _ args: [String]) throws -> (Int32, Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [tool] + args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, data)
}

@Suite(.serialized) struct HTTP2Tests {
    @Test func h2loadPriorKnowledgeAllRequestsSucceed() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let (status, out) = try run("h2load", ["-n", "4000", "-c", "4", "-m", "16",
                                               "http://127.0.0.1:\(port)/echo"])
        #expect(status == 0, "\(out)")
        #expect(out.contains("4000 succeeded, 0 failed, 0 errored"), "\(out)")
        #expect(out.contains("status codes: 4000 2xx"), "\(out)")
    }

    @Test func nghttpStreamsAndPostsBodies() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-h2-body-\(getpid())")
        let body = String(repeating: "0123456789", count: 30_000)  // 300 KB, more than one window
        try body.write(to: tmp, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (s1, echo) = try run("nghttp", ["-d", tmp.path, "http://127.0.0.1:\(port)/echo"])
        #expect(s1 == 0)
        #expect(echo.hasPrefix("POST /echo\n"))
        #expect(echo.contains("content-length: 300000"))
        #expect(echo.hasSuffix(body))
        let (s2, sse) = try run("nghttp", ["http://127.0.0.1:\(port)/sse"])
        #expect(s2 == 0)
        #expect(sse.contains("data: {\"n\":4}"))
        #expect(sse.hasSuffix("data: [DONE]\n\n"))
        let (s3, big) = try runRaw("nghttp", ["http://127.0.0.1:\(port)/bigchunked?n=2000000"])
        #expect(s3 == 0)
        #expect(big.count == 2_000_000)
        #expect(Array(big) == (0..<2_000_000).map { UInt8($0 % 251) })
    }

    @Test func errorsAreOpenAIJSONOverHTTP2() throws {
        let (gw, port) = try startGateway([deadEndpoint()])
        defer { gw.stop(grace: .seconds(1)) }
        let (_, out) = try run("nghttp", ["-v", "http://127.0.0.1:\(port)/v1/chat/completions"])
        #expect(out.contains(":status: 502"))
        #expect(out.contains("\"type\":\"server_error\""))
    }

    @Test func streamResetAbortsTheUpstreamRequest() throws {
        let up = try TestUpstream(standardHandler())
        defer { up.stop() }
        let (gw, port) = try startGateway([up.endpoint])
        defer { gw.stop(grace: .seconds(1)) }
        // curl gives up on an endless stream after 0.5 s and closes its connection.
        _ = try run("curl", ["-s", "--http2-prior-knowledge", "-m", "0.5", "-o", "/dev/null", "http://127.0.0.1:\(port)/forever"])
        #expect(eventually(1.5) { up.closedConnections == 1 })
    }
}
