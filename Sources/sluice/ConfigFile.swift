import SluiceGateway

/// Loads a config file into gateway settings (see Config/ConfigLoader.swift).
enum ConfigFile {
    static func load(_ path: String) throws -> GatewaySettings {
        try ConfigLoader.load(path: path)
    }
}
