import SluiceConfig

/// The config loader (libyaml events → tree → schema, validation, secret references) never
/// crashes: any text is either settings or a list of issues, each with a path and a line.
/// Offline, so generated host names cause no DNS lookups.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let s = try ConfigLoader.load(text: text, file: "fuzz", offline: true)
        precondition(!s.pools.isEmpty, "a valid config has a pool")
    } catch let e as ConfigInvalid {
        precondition(!e.issues.isEmpty, "an invalid config names its problems")
        for i in e.issues { precondition(i.line >= 0) }
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
    return 0
}
