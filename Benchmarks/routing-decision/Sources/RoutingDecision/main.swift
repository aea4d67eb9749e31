import SluiceRouting
import CMallocCount
import Glibc
import SluiceTestSupport

/// One routing decision at N endpoints (default 256): latency percentiles and heap allocations
/// per decision, for the default profile (the cost model: filters, prefix index lookup, a
/// predicted TTFT per endpoint, least with the rendezvous tie-break), the weighted profile
/// (scores, load guard) and least-loaded, against round robin (the cheapest pick) in the same run.
@main
enum RoutingDecision {
    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    struct Result {
        var name: String
        var samples: [UInt64]
        var allocations: Int
        func percentile(_ p: Double) -> Double {
            Double(samples[min(samples.count - 1, Int(Double(samples.count) * p))]) / 1000
        }
    }

    static func measure(_ name: String, iterations: Int, prepare: (Int) -> Void, decide: () -> Void) -> Result {
        var samples = [UInt64](repeating: 0, count: iterations)
        var allocations = 0
        for i in 0..<iterations {
            prepare(i)
            let a0 = sluice_malloc_count()
            let t0 = now()
            decide()
            let t1 = now()
            allocations += Int(sluice_malloc_count() - a0)
            samples[i] = t1 - t0
        }
        samples.sort()
        return Result(name: name, samples: samples, allocations: allocations)
    }

    static func main() throws {
        let args = CommandLine.arguments
        let endpoints = args.count > 1 ? Int(args[1]) ?? 256 : 256
        let iterations = args.count > 2 ? Int(args[2]) ?? 200_000 : 200_000
        var rng = SystemRandomNumberGenerator()
        func harness(_ policy: RoutingPolicy) throws -> RoutingHarness {
            let h = try RoutingHarness(endpoints: endpoints, policy: policy)
            for i in 0..<endpoints {
                h.setTelemetry(i, waiting: Int.random(in: 0...16, using: &rng), running: 8, kvUse: Double.random(in: 0...0.9, using: &rng))
                h.setInflight(i, Int.random(in: 0...4, using: &rng))
                let pending = Int.random(in: 0...3, using: &rng)
                h.setLease(i, pendingRequests: pending, pendingTokens: pending * Int.random(in: 0...2000, using: &rng),
                           decoding: Int.random(in: 0...8, using: &rng))
            }
            return h
        }
        // 512 prompt groups sharing 1.5 KB system prompts; half of them seen before (in the
        // prefix index), half new: both the prefix-hit and the rendezvous paths are timed.
        let bodies: [[UInt8]] = (0..<512).map { g in
            let system = String(repeating: "You are assistant \(g) of the support team. ", count: 36)
            return Array("{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"\(system)\"},{\"role\":\"user\",\"content\":\"Question \(g * 7)?\"}]}".utf8)
        }
        let policies: [(String, RoutingPolicy)] = [("default", .default), ("weighted", .weighted), ("least_loaded", .leastLoaded)]
        var results: [Result] = []
        for (name, policy) in policies {
            let h = try harness(policy)
            for g in stride(from: 0, to: 512, by: 2) {
                h.prepare(bodies[g])
                _ = h.decide(commit: true)
            }
            // Warm-up, then the measured run.
            _ = measure(name, iterations: 10_000, prepare: { h.prepare(bodies[$0 % 512]) }, decide: { _ = h.decide() })
            results.append(measure(name, iterations: iterations, prepare: { h.prepare(bodies[$0 % 512]) }, decide: { _ = h.decide() }))
        }
        let rr = try harness(.roundRobin)
        _ = measure("round_robin", iterations: 10_000, prepare: { _ in }, decide: { _ = rr.roundRobin() })
        results.append(measure("round_robin", iterations: iterations, prepare: { _ in }, decide: { _ = rr.roundRobin() }))

        print("one routing decision, \(endpoints) endpoints, \(iterations) decisions each")
        print("policy          p50 µs   p99 µs  p99.9 µs   max µs   allocations/decision")
        for r in results {
            var line = r.name + String(repeating: " ", count: max(0, 14 - r.name.count))
            line += pad(r.percentile(0.5))
            line += pad(r.percentile(0.99))
            line += pad(r.percentile(0.999))
            line += pad(Double(r.samples.last!) / 1000)
            line += "   " + String(Double(r.allocations) / Double(iterations))
            print(line)
        }
        let d = results[0]
        let p99 = d.percentile(0.99)
        let ratio = d.percentile(0.5) / max(results[results.count - 1].percentile(0.5), 0.001)
        let perDecision = Double(d.allocations) / Double(iterations)
        print("default p99 \(fmt(p99)) µs (target ≤ 5 µs: \(p99 <= 5 ? "met" : "NOT met")); \(fmt(ratio))× round robin's p50; "
              + "allocations per decision \(perDecision) (target 0: \(d.allocations == 0 ? "met" : "NOT met"))")
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return String(r)
    }

    static func pad(_ v: Double) -> String {
        let s = fmt(v)
        return String(repeating: " ", count: max(0, 9 - s.count)) + s
    }
}
