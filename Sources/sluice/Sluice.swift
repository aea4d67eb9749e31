import Glibc
import SluiceGateway
import SluiceIO

/// `sluice`: the gateway's command line. Commands: serve, validate, demo, sim, --version.
/// One `sluice` command: its usage text (`sluice <command> --help`), its options, and what it
/// does.
protocol Command {
    static var usage: String { get }
    /// Options that take a value (`--port 8080`).
    static var valued: Set<String> { get }
    /// Options that take none (`--offline`).
    static var flags: Set<String> { get }
    static func run(_ o: Options) throws -> Int32
}

extension Command {
    static var flags: Set<String> { [] }
}

@main
struct Sluice {
    static let version = Gateway.version

    static var commands: [(name: String, command: any Command.Type)] { [
        ("serve", Serve.self), ("validate", Validate.self), ("demo", Demo.self), ("sim", SimCommand.self),
    ] }

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

        sluice <command> --help prints the command's options.
        """

    static func main() {
        let args = CommandLine.arguments
        guard args.count > 1 else {
            print(usage)
            exit(2)
        }
        var commandUsage = usage
        do {
            switch args[1] {
            case "--version", "version":
                print("sluice \(version)")
            case "-h", "--help":
                print(usage)
            case "help":
                // `sluice help serve` is `sluice serve --help`.
                if args.count > 2 {
                    guard let c = commands.first(where: { $0.name == args[2] }) else { throw UsageError("unknown command '\(args[2])'") }
                    print(c.command.usage)
                } else {
                    print(usage)
                }
            default:
                guard let c = commands.first(where: { $0.name == args[1] })?.command else {
                    throw UsageError("unknown command '\(args[1])'")
                }
                commandUsage = c.usage
                let rest = args.dropFirst(2)
                if wantsHelp(rest) {
                    print(c.usage)
                    exit(0)
                }
                exit(try c.run(Options(rest, valued: c.valued, flags: c.flags)))
            }
        } catch let e as UsageError {
            stderr("sluice: \(e)\n\n\(commandUsage)")
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
