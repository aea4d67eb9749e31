import SluiceConfig
/// `sluice validate [--offline] FILE`: every problem with its path and line; exit 1 when invalid,
/// 0 when valid. `--offline` (CI pipelines) does not resolve host names or read secrets.
enum Validate {
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
