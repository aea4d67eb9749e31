// swift-tools-version:6.1
// The request scanner + prefix hasher throughput benchmark (issue 3: ≥ 1 GB/s on a 200 KB chat
// body), against memchr and memcpy over the same bytes in the same run. Run it with
// Benchmarks/llm-scan.sh.
import PackageDescription

let package = Package(
    name: "llm-scan",
    // The main package by a fixed name; llm-scan.sh links it here as `sluice`.
    dependencies: [.package(path: ".build-root/sluice")],
    targets: [
        .executableTarget(name: "LLMScan", dependencies: [.product(name: "SluiceLLM", package: "sluice")],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ]
)
