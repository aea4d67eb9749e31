import SluiceGateway
import SluiceIO
import SluiceSim

/// `sluice sim`: one simulated vLLM server.
enum SimCommand: Command {
    static let valued: Set<String> = ["port", "host", "model", "lora", "max-loras", "kv-tokens", "block-tokens", "seed",
                                      "max-num-seqs", "max-model-len", "time-scale", "max-num-queued-reqs",
                                      "fail-rate", "fail-status", "delay", "jitter"]

    static let usage: String = {
        let d = SimOptions()
        return """
            usage: sluice sim [--port N] [--host ADDR] [--model NAME] [--lora NAME[=PATH]]... [options]

            Runs one simulated vLLM server (OpenAI API, vLLM's /metrics, LoRA load/unload) until
            SIGINT or SIGTERM.

              --port N                  listen port (default \(d.port); 0 picks a free one)
              --host ADDR               numeric listen address (default \(d.host))
              --model NAME              the served model (default \(d.model))
              --lora NAME[=PATH]        a LoRA adapter registered at start (repeatable)
              --max-loras K             adapters that may run at once (default \(d.maxLoras))
              --kv-tokens N             KV-cache capacity in tokens (default \(d.kvTokens))
              --block-tokens N          tokens per KV block and prefix-cache unit (default \(d.blockTokens))
              --max-num-seqs N          sequences in a batch (default \(d.maxNumSeqs))
              --max-model-len N         prompt plus completion tokens per request (default \(d.maxModelLen))
              --max-num-queued-reqs N   waiting requests beyond which new ones get 503 (default: unlimited)
              --time-scale X            multiplies every simulated duration (default 1)
              --seed S                  seeds ids, text and step jitter (default 1)
              --fail-rate X             answer this share (0-1) of generation requests with an error (default 0)
              --fail-status N           the status of those errors (default \(d.failStatus))
              --delay MS                hold each generation request this long before it starts (default 0)
              --jitter X                relative random variation of step lengths, 0-1 (default 0)
              -h, --help                print this
            """
    }()

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
        if let v = o.value("fail-rate") {
            guard let r = Double(v), r >= 0, r <= 1 else { throw UsageError("--fail-rate must be a number from 0 to 1") }
            s.failRate = r
        }
        s.failStatus = try o.int("fail-status", default: s.failStatus)
        guard (400...599).contains(s.failStatus) else { throw UsageError("--fail-status must be from 400 to 599") }
        if let v = o.value("jitter") {
            guard let j = Double(v), j >= 0, j <= 1 else { throw UsageError("--jitter must be a number from 0 to 1") }
            s.jitter = j
        }
        s.delayMilliseconds = try o.int("delay", default: 0)
        guard s.delayMilliseconds >= 0 else { throw UsageError("--delay must be >= 0 (milliseconds)") }
        return s
    }

    static func run(_ o: Options) throws -> Int32 {
        let s = try options(o)
        log("simulated vLLM server for '\(s.model)' on \(s.host):\(s.port)" + (s.loras.isEmpty ? "" : " with LoRA adapters \(s.loras.joined(separator: ", "))"))
        try SimServer.run(options: s)
        return 0
    }
}
