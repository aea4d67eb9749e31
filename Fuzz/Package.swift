// swift-tools-version:6.1
// libFuzzer targets for Sluice's parsers, kept out of the main package so its build stays
// clean. Build and run with Fuzz/run (it passes -sanitize=fuzzer to every module so the
// parsers themselves are instrumented).
import PackageDescription

let package = Package(
    name: "sluice-fuzz",
    // The main package by a fixed name: SwiftPM names a path dependency after its directory,
    // which differs between clones; Fuzz/run links it here as `sluice`.
    dependencies: [.package(path: ".build-root/sluice")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(name: "FuzzHTTPRequest", dependencies: ["FuzzDriver", .product(name: "SluiceHTTP", package: "sluice")]),
        .executableTarget(name: "FuzzHTTPResponse", dependencies: ["FuzzDriver", .product(name: "SluiceHTTP", package: "sluice")]),
        .executableTarget(name: "FuzzChunked", dependencies: ["FuzzDriver", .product(name: "SluiceHTTP", package: "sluice")]),
        .executableTarget(name: "FuzzRequestScanner", dependencies: ["FuzzDriver", .product(name: "SluiceLLM", package: "sluice")]),
        .executableTarget(name: "FuzzSSEScanner", dependencies: ["FuzzDriver", .product(name: "SluiceLLM", package: "sluice")]),
        .executableTarget(name: "FuzzPrometheus", dependencies: ["FuzzDriver", .product(name: "SluiceLLM", package: "sluice")]),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzDriver", .product(name: "SluiceConfig", package: "sluice")]),
        .executableTarget(name: "FuzzHTTP2", dependencies: ["FuzzDriver", .product(name: "SluiceGateway", package: "sluice"),
                                                            .product(name: "SluiceSettings", package: "sluice"),
                                                            .product(name: "SluiceHTTP", package: "sluice")]),
    ]
)
