/// A small command-line parser: `sluice <command> [--flag value]... [positional]...`.
/// Hand-rolled to keep the binary free of dependencies; every command documents its flags in
/// `usage`.
struct Options {
    var positional: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []

    /// Parses `args`; `valued` are the options that take a value, `flags` those that take none.
    /// Any other option is a usage error (a mistyped `--hepl` must not start a server).
    init(_ args: ArraySlice<String>, valued: Set<String>, flags known: Set<String> = []) throws(UsageError) {
        var i = args.startIndex
        while i < args.endIndex {
            let a = args[i]
            if a.hasPrefix("--") {
                var name = String(a.dropFirst(2))
                var value: String? = nil
                if let eq = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                }
                if valued.contains(name) {
                    if value == nil {
                        i += 1
                        guard i < args.endIndex else { throw UsageError("--\(name) needs a value") }
                        value = args[i]
                    }
                    values[name, default: []].append(value!)
                } else if known.contains(name) {
                    if value != nil { throw UsageError("--\(name) takes no value") }
                    flags.insert(name)
                } else {
                    throw UsageError("unknown option --\(name)")
                }
            } else {
                positional.append(a)
            }
            i += 1
        }
    }

    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }

    func int(_ name: String, default d: Int) throws(UsageError) -> Int {
        guard let v = value(name) else { return d }
        guard let n = Int(v) else { throw UsageError("--\(name) must be an integer, got '\(v)'") }
        return n
    }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// `--help` or `-h` anywhere after the command: print that command's usage instead of running it.
func wantsHelp(_ args: ArraySlice<String>) -> Bool {
    args.contains { $0 == "--help" || $0 == "-h" }
}
