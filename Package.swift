// swift-tools-version:6.1
// Sluice: an LLM inference gateway. Layers (lower never imports higher) are described in
// docs/internals.md and ../shared/DESIGN.md.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    // Our event-loop objects are thread-confined and their exclusive access is by construction;
    // the runtime checks cost ~7 % of a proxied request (measured with perf), so they are off in
    // release builds (debug builds and tests keep them).
    .unsafeFlags(["-enforce-exclusivity=unchecked", "-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        // Libraries for the nested Fuzz/ and Benchmarks/ packages.
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceHTTP", targets: ["SluiceHTTP"]),
        .library(name: "SluiceLLM", targets: ["SluiceLLM"]),
        .library(name: "SluiceGateway", targets: ["SluiceGateway"]),
        .library(name: "SluiceConfig", targets: ["SluiceConfig"]),
        .library(name: "SluiceSettings", targets: ["SluiceSettings"]),
        .library(name: "SluiceRouting", targets: ["SluiceRouting"]),
        .library(name: "SluiceTracing", targets: ["SluiceTracing"]),
        // test support the nested Benchmarks/ packages use too (never linked into sluice)
        .library(name: "SluiceTestSupport", targets: ["SluiceTestSupport"]),
    ],
    targets: [
        // C layer
        .target(name: "CSluiceLinux"),
        // wider vector loops than the Swift build's baseline, chosen at run time; DWARF 4 debug
        // info because valgrind 3.19 (Benchmarks/instructions.sh) cannot read clang's DWARF 5 here
        .target(name: "CSluiceSIMD", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // hiredis's .pc file carries a flag SwiftPM prohibits, so it is linked by the modulemap.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),

        // base: what every layer shares (byte ranges, SHA-256); pure, imports nothing
        .target(name: "SluiceBase", swiftSettings: strict),
        .testTarget(name: "SluiceBaseTests", dependencies: ["SluiceBase"]),

        // I/O core
        .target(name: "SluiceIO", dependencies: ["CSluiceLinux"], swiftSettings: strict),
        .testTarget(name: "SluiceIOTests", dependencies: ["SluiceIO", "CSluiceLinux"]),

        // protocols
        .target(name: "SluiceHTTP", dependencies: ["SluiceBase", "SluiceIO", "COpenSSL", "CNghttp2"], swiftSettings: strict),
        .testTarget(name: "SluiceHTTPTests", dependencies: ["SluiceHTTP", "SluiceIO"]),

        .target(name: "SluiceRedis", dependencies: ["SluiceBase", "SluiceIO", "CHiredis"], swiftSettings: strict),
        .testTarget(name: "SluiceRedisTests", dependencies: ["SluiceRedis", "SluiceBase", "SluiceIO"]),

        // LLM semantics (pure)
        .target(name: "SluiceLLM", dependencies: ["SluiceBase", "CSluiceSIMD"], swiftSettings: strict),
        .testTarget(name: "SluiceLLMTests", dependencies: ["SluiceLLM", "CSluiceSIMD"]),

        // routing decisions (pure): filters, scorers, pickers, profiles, the prefix index
        .target(name: "SluiceRouting", swiftSettings: strict),
        .testTarget(name: "SluiceRoutingTests", dependencies: ["SluiceRouting"]),

        // the simulated vLLM server
        .target(name: "SluiceSim", dependencies: ["SluiceIO", "SluiceHTTP"], swiftSettings: strict),
        .testTarget(name: "SluiceSimTests", dependencies: ["SluiceSim", "SluiceIO"]),

        // OpenTelemetry trace export: span model, OTLP protobuf encoder, sampler, exporter thread
        .target(name: "SluiceTracing", dependencies: ["SluiceIO", "SluiceHTTP"], swiftSettings: strict),
        .testTarget(name: "SluiceTracingTests", dependencies: ["SluiceTracing", "SluiceIO", "SluiceHTTP"]),

        // the settings schema: what a worker needs, compiled from the config (no YAML here)
        .target(name: "SluiceSettings", dependencies: ["SluiceIO", "SluiceHTTP", "SluiceRedis", "SluiceRouting", "SluiceTracing"], swiftSettings: strict),

        // app
        .target(name: "SluiceGateway", dependencies: ["SluiceSettings", "SluiceIO", "SluiceHTTP", "SluiceLLM", "SluiceRouting", "SluiceRedis", "SluiceTracing"], swiftSettings: strict),
        .testTarget(name: "SluiceGatewayTests", dependencies: ["SluiceGateway", "SluiceHTTP", "SluiceIO", "SluiceRedis", "SluiceRouting", "SluiceSim", "SluiceTracing", "SluiceTestSupport"]),
        // test support: the gateway's router on fake endpoints, one decision at a time (the
        // router tests and Benchmarks/routing-decision); it reaches the gateway through its
        // `package` declarations, so it builds in release too (no @testable import)
        .target(name: "SluiceTestSupport", dependencies: ["SluiceGateway", "SluiceIO", "SluiceLLM", "SluiceRouting", "SluiceSettings"],
                path: "Tests/Support", swiftSettings: strict),

        // the YAML config: schema, validation, secrets
        .target(name: "SluiceConfig", dependencies: ["SluiceSettings", "SluiceHTTP", "SluiceIO", "SluiceRedis", "SluiceRouting", "SluiceTracing", "CYAML"], swiftSettings: strict),
        .testTarget(name: "SluiceConfigTests", dependencies: ["SluiceConfig", "SluiceSettings", "SluiceRedis", "SluiceRouting", "SluiceTracing", "SluiceIO"]),

        // programs
        .executableTarget(name: "sluice", dependencies: ["SluiceConfig", "SluiceGateway", "SluiceIO", "SluiceHTTP", "SluiceSim"], swiftSettings: strict),
    ]
)
