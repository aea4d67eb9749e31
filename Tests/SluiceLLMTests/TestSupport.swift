import Foundation
import Testing

@testable import SluiceLLM

/// Reads a file of ../shared/vllm-reference (next to the repository, or $SLUICE_VLLM_REFERENCE).
func referenceFile(_ name: String, filePath: String = #filePath) -> [UInt8]? {
    var dirs: [String] = []
    if let env = ProcessInfo.processInfo.environment["SLUICE_VLLM_REFERENCE"] { dirs.append(env) }
    let repo = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    dirs.append(repo.deletingLastPathComponent().appendingPathComponent("shared/vllm-reference").path)
    dirs.append("/work/shared/vllm-reference")
    for d in dirs {
        if let data = FileManager.default.contents(atPath: d + "/" + name) { return [UInt8](data) }
    }
    return nil
}

/// The body of a recorded HTTP response (after the blank line ending the head).
func responseBody(_ raw: [UInt8]) -> [UInt8] {
    let sep: [UInt8] = [13, 10, 13, 10]
    var i = 0
    while i + 4 <= raw.count {
        if Array(raw[i..<i + 4]) == sep { return Array(raw[(i + 4)...]) }
        i += 1
    }
    return raw
}

struct Scan {
    var result: ScannedRequest
    var segments: [PromptSegment]
    var body: [UInt8]

    /// Segment contents, decoded, with roles marked as "<role>".
    var texts: [String] {
        body.withUnsafeBytes { b in
            segments.map { s in
                let t = JSONString.decode(b, s.range)
                return s.kind == .role ? "<\(t)>" : t
            }
        }
    }

    func string(_ r: ByteRange?) -> String? {
        guard let r else { return nil }
        return body.withUnsafeBytes { JSONString.decode($0, r) }
    }

    var model: String { string(result.model)! }
}

func scan(_ body: [UInt8], _ endpoint: OpenAIEndpoint = .chatCompletions, capacity: Int = 64) throws(RequestScanError) -> Scan {
    var segs = [PromptSegment](repeating: PromptSegment(range: ByteRange(start: 0, end: 0), kind: .text), count: capacity)
    let r: Result<ScannedRequest, RequestScanError> = body.withUnsafeBytes { b in
        segs.withUnsafeMutableBufferPointer { s in
            Result { () throws(RequestScanError) -> ScannedRequest in
                try RequestScanner().scan(b, endpoint: endpoint, segments: s)
            }
        }
    }
    let result = try r.get()
    return Scan(result: result, segments: Array(segs[0..<result.segmentCount]), body: body)
}

func scan(_ body: String, _ endpoint: OpenAIEndpoint = .chatCompletions, capacity: Int = 64) throws(RequestScanError) -> Scan {
    try scan(Array(body.utf8), endpoint, capacity: capacity)
}

func scanError(_ body: [UInt8], _ endpoint: OpenAIEndpoint = .chatCompletions) -> RequestScanError? {
    do {
        _ = try scan(body, endpoint)
        return nil
    } catch {
        return error
    }
}

func validate(_ bytes: [UInt8]) -> RequestScanError? {
    bytes.withUnsafeBytes { b in
        do throws(RequestScanError) {
            try JSONValidator.validate(b)
            return nil
        } catch {
            return error
        }
    }
}

/// A deterministic generator for property tests (SplitMix64).
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The body of one exchange of a capture in Tests/vllm-captures/ (recorded from a real vLLM 0.32
/// CPU server by Tests/vllm-captures/capture.py), found by its `### title` line.
func capture(_ file: String, _ title: String, filePath: String = #filePath) -> [UInt8]? {
    let repo = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    guard let data = FileManager.default.contents(atPath: repo.appendingPathComponent("Tests/vllm-captures/\(file)").path) else { return nil }
    let text = [UInt8](data)
    let marker = Array("### \(title)\n".utf8)
    guard let start = text.firstRange(of: marker)?.upperBound else { return nil }
    // Skip the request line ("### METHOD PATH BODY"), then the response head.
    guard let requestEnd = text[start...].firstIndex(of: 10) else { return nil }
    let rest = Array(text[(requestEnd + 1)...])
    guard let headEnd = rest.firstRange(of: [13, 10, 13, 10])?.upperBound else { return nil }
    var body = Array(rest[headEnd...])
    // capture.py writes each body and then one "\n".
    if let next = body.firstRange(of: Array("\n### ".utf8))?.lowerBound { body = Array(body[..<next]) } else if body.last == 10 { body.removeLast() }
    return body
}

/// Scans `body` for `endpoint` with the table-driven entry point.
func scanFor(_ body: String, _ endpoint: LLMEndpoint, capacity: Int = 64) throws(RequestScanError) -> Scan {
    let bytes = Array(body.utf8)
    var segs = [PromptSegment](repeating: PromptSegment(range: ByteRange(start: 0, end: 0), kind: .text), count: capacity)
    let r: Result<ScannedRequest, RequestScanError> = bytes.withUnsafeBytes { b in
        segs.withUnsafeMutableBufferPointer { s in
            Result { () throws(RequestScanError) -> ScannedRequest in
                try RequestScanner().scan(b, for: endpoint, segments: s)
            }
        }
    }
    let result = try r.get()
    return Scan(result: result, segments: Array(segs[0..<min(result.segmentCount, capacity)]), body: bytes)
}

func scanForError(_ body: String, _ endpoint: LLMEndpoint) -> RequestScanError? {
    do {
        _ = try scanFor(body, endpoint)
        return nil
    } catch {
        return error
    }
}

/// Prefix hashes of a scan (64-byte blocks, seed 1).
func hashes(_ s: Scan) -> [UInt64] {
    var out = [UInt64](repeating: 0, count: 64)
    let n = s.body.withUnsafeBytes { b in
        s.segments.withUnsafeBufferPointer { segs in
            out.withUnsafeMutableBufferPointer { o in PrefixHasher.hashPrompt(body: b, segments: segs, seed: 1, into: o) }
        }
    }
    return Array(out[0..<n])
}
