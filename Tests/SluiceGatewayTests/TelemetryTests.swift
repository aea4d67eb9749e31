import Foundation
import Glibc
@testable import SluiceGateway
import SluiceHTTP
import SluiceIO
import Synchronization
import Testing

@Suite(.serialized) struct TelemetryTests {
    static let metrics = """
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{engine="0",model_name="tiny-llama"} 3.0
        vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 7.0
        vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"} 0.25
        vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="1000"} 1.0
        vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.70e+09
        vllm:lora_requests_info{max_lora="2",running_lora_adapters="a1,a2",waiting_lora_adapters="a3"} 1.80e+09
        vllm:prefix_cache_queries_total{engine="0",model_name="tiny-llama"} 200.0
        vllm:prefix_cache_hits_total{engine="0",model_name="tiny-llama"} 50.0

        """

    @Test func scrapesVLLMMetricsAndAdapters() throws {
        let models = try String(contentsOfFile: referencePath("models.json"), encoding: .utf8)
        let up = try TestUpstream { req, r in
            switch req.path {
            case "/metrics": r.respond(status: 200, contentType: "text/plain; version=0.0.4", Self.metrics)
            case "/v1/models": r.respond(status: 200, models)
            default: r.respond(status: 200, "{}")
            }
        }
        defer { up.stop() }
        let admin = freePort()
        let (gw, _) = try startGateway([up.endpoint]) {
            $0.admin = SocketAddress("127.0.0.1:\(admin)")!
            $0.telemetry.interval = .milliseconds(20)
        }
        defer { gw.stop(grace: .seconds(1)) }
        let rt = gw.registry.runtime(for: up.endpoint)
        #expect(eventually { rt.telemetry.withLock { $0.waiting == 7 && !$0.adaptersLoaded.isEmpty } })
        let t = rt.telemetry.withLock { $0 }
        #expect(t.running == 3)
        #expect(t.kvUse == 0.25)
        #expect(t.kvCapacityTokens == 16_000)
        #expect(t.maxLoras == 2)
        #expect(t.adaptersRunning == ["a1", "a2"])  // the newest lora_requests_info series
        #expect(t.adaptersWaiting == ["a3"])
        #expect(t.prefixCacheHits == 50)
        // The reference /v1/models lists the adapters (with a parent) besides the base model.
        #expect(t.adaptersLoaded == TelemetryScraper.modelIDs(Array(models.utf8)))
        #expect(!t.adaptersLoaded.contains("tiny-llama"))
        let c = try TestClient(port: admin)
        c.send(request("GET", "/admin/endpoints"))
        let r = try #require(c.response())
        #expect(r.text.contains("\"waiting\":7"))
        #expect(r.text.contains("\"adapters_running\":[\"a1\",\"a2\"]"))
    }

    /// An endpoint that is not a vLLM server (here: /metrics answers something else) is scraped
    /// ever less often, and at full rate again once its metrics are vLLM's.
    @Test func scrapesBackOffWhileAnEndpointHasNoVLLMMetrics() throws {
        let scrapes = Mutex(0)
        let serveMetrics = Atomic<Bool>(false)
        let up = try TestUpstream { req, r in
            switch req.path {
            case "/metrics":
                scrapes.withLock { $0 += 1 }
                if serveMetrics.load(ordering: .acquiring) {
                    r.respond(status: 200, contentType: "text/plain; version=0.0.4", Self.metrics)
                } else {
                    r.respond(status: 200, #"{"id":"chatcmpl-1","object":"chat.completion"}"#)
                }
            default: r.respond(status: 404, "{}")
            }
        }
        defer { up.stop() }
        let (gw, _) = try startGateway([up.endpoint]) { $0.telemetry.interval = .milliseconds(10) }
        defer { gw.stop(grace: .seconds(1)) }
        usleep(1_500_000)
        // Every 10 ms would be ~150; doubling pauses (20, 40, ... ms, at most 2 s) leave ~7.
        let unrecognised = scrapes.withLock { $0 }
        #expect(unrecognised >= 3 && unrecognised <= 12, "\(unrecognised) scrapes in 1.5 s")
        // And the scraper's timer sleeps through the pauses instead of firing every 10 ms to find
        // nothing due (~150 firings).
        let ticks = gw.control.telemetryTicks
        #expect(ticks >= unrecognised && ticks <= 2 * unrecognised + 2, "\(ticks) timer firings in 1.5 s")
        // Real metrics appear: picked up within the longest pause, then scraped at full rate.
        serveMetrics.store(true, ordering: .releasing)
        let rt = gw.registry.runtime(for: up.endpoint)
        #expect(eventually(4) { rt.telemetry.withLock { $0.waiting == 7 } })
        let before = scrapes.withLock { $0 }
        usleep(500_000)
        #expect(scrapes.withLock { $0 } - before >= 20, "full rate again after a good scrape")
    }

    @Test func modelListParsing() {
        let body = Array(#"{"object":"list","data":[{"id":"base","parent":null,"permission":[{"id":"perm"}]},{"id":"lora-a","parent":"base"},{"id":"lora-b", "parent" : "base"}]}"#.utf8)
        #expect(TelemetryScraper.modelIDs(body) == ["lora-a", "lora-b"])
    }
}

/// A file of ../shared/vllm-reference (beside the repository).
func referencePath(_ name: String) -> String {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let beside = repo.deletingLastPathComponent().appendingPathComponent("shared/vllm-reference/\(name)").path
    return FileManager.default.fileExists(atPath: beside) ? beside : "/work/shared/vllm-reference/\(name)"
}

/// What a model server reports enters as a bounded count: NaN, infinities, negatives and absurd
/// values must not trap a conversion (issue 22).
@Suite struct TelemetryRangeTests {
    @Test(arguments: [(Double?.none, 0), (.nan, 0), (-3.0, 0), (.infinity, Int(Int32.max)), (1e300, Int(Int32.max)),
                      (12.9, 12), (Double(Int32.max) + 5, Int(Int32.max))])
    func gaugesBecomeBoundedCounts(_ v: Double?, _ expected: Int) {
        #expect(TelemetryScraper.count(v) == expected)
    }
}

