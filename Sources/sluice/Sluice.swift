import Glibc
import SluiceGateway
import SluiceIO

/// `sluice`: the gateway's command line. Commands: serve, validate, demo, sim, --version.
@main
struct Sluice {
    static let version = "0.1.0"

    static let usage = """
        usage: sluice <command> [options]

          serve --config FILE     run the gateway with FILE (YAML; see docs/configuration.md)
          validate FILE           check a config file; exit 1 and list every problem if invalid
                                  (--offline: don't resolve host names or read secrets)
          demo                    start simulated vLLM servers and the gateway in front of them
          sim --port N --model NAME [--lora NAME]... [--max-loras K] [--kv-tokens N]
              [--block-tokens N] [--seed S]
                                  run one simulated vLLM server
          --version               print the version
        """

    static func main() {
        let args = CommandLine.arguments
        guard args.count > 1 else {
            print(usage)
            exit(2)
        }
        do {
            switch args[1] {
            case "--version", "version":
                print("sluice \(version)")
            case "serve":
                exit(try Serve.run(Options(args.dropFirst(2), valued: Serve.valued)))
            case "validate":
                exit(try Validate.run(Options(args.dropFirst(2), valued: [])))
            case "demo":
                exit(try Demo.run(Options(args.dropFirst(2), valued: ["port", "servers"])))
            case "sim":
                exit(try SimCommand.run(Options(args.dropFirst(2), valued: SimCommand.valued)))
            case "-h", "--help", "help":
                print(usage)
            default:
                throw UsageError("unknown command '\(args[1])'")
            }
        } catch let e as UsageError {
            stderr("sluice: \(e)\n\n\(usage)")
            exit(2)
        } catch {
            stderr("sluice: \(error)")
            exit(1)
        }
    }
}

func stderr(_ s: String) {
    var line = s
    if !line.hasSuffix("\n") { line += "\n" }
    // write(2) on fd 2: unbuffered, thread-safe, and no shared FILE* to reason about.
    var bytes = Array(line.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        off += n
    }
    _ = bytes.count
}
