import SluiceConfig
/// `sluice validate [--offline] FILE`: every problem with its path and line; exit 1 when invalid,
/// 0 when valid. `--offline` (CI pipelines) does not resolve host names or read secrets.
enum Validate: Command {
    static let valued: Set<String> = []
    static let flags: Set<String> = ["offline"]

    static let usage = """
        usage: sluice validate [--offline] FILE

        Checks a config file: prints every problem with its path and line and exits 1 when the
        file is invalid, 0 when it is valid.

          --offline    don't resolve host names or read secrets (CI pipelines)
          -h, --help   print this
        """

    static func run(_ o: Options) throws -> Int32 {
        guard let path = o.positional.first else { throw UsageError("validate needs a FILE") }
        do {
            let s = try ConfigLoader.load(path: path, offline: o.flags.contains("offline"))
            print("\(path): ok (\(s.listen.count) listener(s), \(s.pools.count) pool(s), \(s.models.count) model(s))")
            return 0
        } catch let e as ConfigInvalid {
            print(e.description)
            return 1
        }
    }
}
