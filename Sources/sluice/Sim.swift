import SluiceIO
import SluiceSim

/// `sluice sim`: one simulated vLLM server.
enum SimCommand {
    static let valued: Set<String> = ["port", "host", "model", "lora", "max-loras", "kv-tokens", "block-tokens", "seed",
                                      "max-running", "step-ms"]

    static func options(_ o: Options) throws(UsageError) -> SimOptions {
        var s = SimOptions()
        s.port = UInt16(try o.int("port", default: 8000))
        s.host = o.value("host") ?? s.host
        s.model = o.value("model") ?? s.model
        s.loras = o.all("lora")
        s.maxLoras = try o.int("max-loras", default: s.maxLoras)
        s.kvTokens = try o.int("kv-tokens", default: s.kvTokens)
        s.blockTokens = try o.int("block-tokens", default: s.blockTokens)
        s.seed = UInt64(try o.int("seed", default: 1))
        s.maxRunning = try o.int("max-running", default: s.maxRunning)
        if let ms = o.value("step-ms") {
            guard let v = Double(ms), v > 0 else { throw UsageError("--step-ms must be a positive number") }
            s.stepMillis = v
        }
        return s
    }

    static func run(_ o: Options) throws -> Int32 {
        let s = try options(o)
        log("simulated vLLM server for '\(s.model)' on \(s.host):\(s.port)" + (s.loras.isEmpty ? "" : " with LoRA adapters \(s.loras.joined(separator: ", "))"))
        try SimServer.run(options: s)
    }
}
