import SluiceGateway

/// Loads a config file into gateway settings. Bridges SluiceConfig's schema to the gateway.
enum ConfigFile {
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    static func load(_ path: String) throws -> GatewaySettings {
        // Interim until SluiceConfig is integrated: config files are not read yet; use flags.
        throw Invalid(description: "\(path): config files are not supported by this build yet; use --endpoint URL [--listen ADDR]")
    }
}
