// swift-tools-version:6.1
// What recording one request's spans costs on a worker (issue 28): a nested package so the main
// build stays as it is; run it with Benchmarks/tracing-cost.sh (or span-record.sh alone).
import PackageDescription

let package = Package(
    name: "span-record",
    // The main package by a fixed name (SwiftPM names a path dependency after its directory);
    // the script links it here as `sluice`.
    dependencies: [.package(path: ".build-root/sluice")],
    targets: [
        .executableTarget(name: "SpanRecord", dependencies: [.product(name: "SluiceTracing", package: "sluice")],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ],
    // The loop's tasks capture the benchmark's counters: a benchmark, not worth the ceremony.
    swiftLanguageModes: [.v5]
)
