import SluiceBase
/// Whose cache an entry belongs to.
public enum CacheScope: Sendable, Hashable {
    /// One tenant's entries: no other tenant can read them.
    case tenant(String)
    /// Entries every tenant may read (configured `shared`).
    case shared
}

/// Response cache keys: `sluice:cache:v1:<scope>:<sha256 hex>`.
///
/// - `<scope>` is `shared`, or `t.` followed by the escaped tenant name (the prefix keeps a tenant
///   called "shared" out of the shared scope). The scope is part of the key, so a lookup in one
///   scope can never return another scope's entry, whatever the request.
/// - The hash is SHA-256 over the model (after split resolution) and the normalized request bytes
///   the gateway passes in, with the model length-prefixed so (model, request) pairs cannot be
///   shifted into each other. SHA-256 rather than a 64-bit hash: in the shared scope every tenant
///   feeds the cache, and a cheap hash would let one craft a colliding request and poison entries.
/// - `v1` is bumped whenever the key derivation or ``ResponseCacheEntry``'s encoding changes, so
///   old entries are simply never read again (they expire by TTL).
///
/// Pure: no I/O.
public enum ResponseCacheKeys {
    public static let prefix = "sluice:cache:v1:"

    /// The key for `request` (normalized request bytes) sent to `model` in `scope`.
    public static func key(scope: CacheScope, model: UnsafeRawBufferPointer,
                           request: UnsafeRawBufferPointer) -> [UInt8]
    {
        var hasher = SHA256()
        var length = UInt64(model.count).littleEndian
        withUnsafeBytes(of: &length) { hasher.update($0) }
        hasher.update(model)
        hasher.update(request)
        let digest = hasher.finalize()
        var out = scopePrefix(scope)
        out.reserveCapacity(out.count + 64)
        Hex.append(digest, to: &out)
        return out
    }

    public static func key(scope: CacheScope, model: [UInt8], request: [UInt8]) -> [UInt8] {
        model.withUnsafeBytes { m in request.withUnsafeBytes { r in key(scope: scope, model: m, request: r) } }
    }

    public static func key(scope: CacheScope, model: String, request: [UInt8]) -> [UInt8] {
        key(scope: scope, model: Array(model.utf8), request: request)
    }

    /// `sluice:cache:v1:<scope>:`: every key of `scope` starts with it (append `*` for SCAN to
    /// drop a tenant's entries; the scope is escaped, so it holds no glob characters).
    public static func scopePrefix(_ scope: CacheScope) -> [UInt8] {
        var out = Array(prefix.utf8)
        switch scope {
        case .shared:
            out.append(contentsOf: "shared".utf8)
        case .tenant(let name):
            out.append(UInt8(ascii: "t"))
            out.append(UInt8(ascii: "."))
            KeyComponent.append(name.utf8, to: &out)
        }
        out.append(UInt8(ascii: ":"))
        return out
    }
}
