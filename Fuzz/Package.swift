// swift-tools-version:6.1
// libFuzzer targets for Sluice's parsers, kept out of the main package so its build stays
// clean. Build and run with Fuzz/run (it passes -sanitize=fuzzer to every module so the
// parsers themselves are instrumented).
import PackageDescription

let package = Package(
    name: "sluice-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(name: "FuzzHTTPRequest", dependencies: [.product(name: "SluiceHTTP", package: "main")]),
        .executableTarget(name: "FuzzHTTPResponse", dependencies: [.product(name: "SluiceHTTP", package: "main")]),
        .executableTarget(name: "FuzzChunked", dependencies: [.product(name: "SluiceHTTP", package: "main")]),
    ]
)
