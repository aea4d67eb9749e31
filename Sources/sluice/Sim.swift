import SluiceGateway
import SluiceIO
import SluiceSim

/// `sluice sim`: one simulated vLLM server.
enum SimCommand {
    static let valued: Set<String> = ["port", "host", "model", "lora", "max-loras", "kv-tokens", "block-tokens", "seed",
                                      "max-num-seqs", "max-model-len", "time-scale", "max-num-queued-reqs"]

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
        s.maxNumSeqs = try o.int("max-num-seqs", default: s.maxNumSeqs)
        s.maxModelLen = try o.int("max-model-len", default: s.maxModelLen)
        if o.value("max-num-queued-reqs") != nil { s.maxQueuedRequests = try o.int("max-num-queued-reqs", default: 0) }
        if let ts = o.value("time-scale") {
            guard let v = Double(ts), v > 0 else { throw UsageError("--time-scale must be a positive number") }
            s.timeScale = v
        }
        return s
    }

    static func run(_ o: Options) throws -> Int32 {
        let s = try options(o)
        log("simulated vLLM server for '\(s.model)' on \(s.host):\(s.port)" + (s.loras.isEmpty ? "" : " with LoRA adapters \(s.loras.joined(separator: ", "))"))
        try SimServer.run(options: s)
        return 0
    }
}
