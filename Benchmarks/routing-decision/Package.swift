// swift-tools-version:6.1
// The routing decision micro-benchmark (issue 4): one decision at 256 endpoints, timed and with
// its heap allocations counted. A nested package so the main build stays free of the malloc
// interposer; run it with Benchmarks/routing-decision.sh.
import PackageDescription

let package = Package(
    name: "routing-decision",
    // The main package by a fixed name (SwiftPM names a path dependency after its directory);
    // routing-decision.sh links it here as `sluice`.
    dependencies: [.package(path: ".build-root/sluice")],
    targets: [
        .target(name: "CMallocCount"),
        .executableTarget(name: "RoutingDecision", dependencies: ["CMallocCount", .product(name: "SluiceTestSupport", package: "sluice"), .product(name: "SluiceRouting", package: "sluice")],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ]
)
