import Foundation
import TallyCrypto
import TallyTypes

/// A node's home directory:
/// ```
/// HOME/config.toml        NodeConfig (commented)
/// HOME/validator.key      encrypted Ed25519 key (KeyFile, 0600)
/// HOME/validator.password passphrase, written only by `testnet` (dev networks)
/// HOME/genesis.json       the chain's genesis
/// HOME/data/              blocks, consensus state, snapshots (TallyStore)
/// ```
public struct NodeHome: Sendable {
    public let path: String

    public init(path: String) { self.path = (path as NSString).standardizingPath }

    /// `--home`, else `$TALLY_NODE_HOME`, else `~/.tally-node`.
    public static func resolve(_ option: String?) -> NodeHome {
        if let option { return NodeHome(path: option) }
        if let env = ProcessInfo.processInfo.environment["TALLY_NODE_HOME"], !env.isEmpty { return NodeHome(path: env) }
        return NodeHome(path: (NSHomeDirectory() as NSString).appendingPathComponent(".tally-node"))
    }

    public var configPath: String { file("config.toml") }

    public func file(_ relative: String) -> String {
        relative.hasPrefix("/") ? relative : (path as NSString).appendingPathComponent(relative)
    }

    public func loadConfig() throws -> NodeConfig {
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw NodeConfig.Error.unreadable("no config at \(configPath); run `tally-node init --home \(path)` first")
        }
        return try NodeConfig.load(path: configPath)
    }

    public func writeConfig(_ config: NodeConfig) throws {
        try AtomicFile.write(Data(config.rendered().utf8), to: configPath, mode: 0o644)
    }

    /// Creates the directory (0700: it holds the validator key).
    public func create() throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Reads a passphrase file: its first line, without the newline.
    public static func readPassphrase(file: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: file) else { throw NodeConfig.Error.unreadable("cannot read \(file)") }
        let text = String(decoding: data, as: UTF8.self)
        return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
}

/// Builds a complete local network: genesis, one home per validator, a faucet key.
public enum TestnetGenerator {
    public struct Output: Sendable {
        public let genesis: Genesis
        public let homes: [NodeHome]
        public let faucetAddress: Address
    }

    /// Faucet balance: 10^9 TALLY in base units (10^-6).
    public static let faucetBalance: UInt64 = 1_000_000_000 * 1_000_000

    public static func generate(
        validators count: Int, output directory: String, basePort: Int = 7700, chainID: String = "tally-testnet",
        keyCost: KeyFile.Cost = .moderate, genesisTimeMs: UInt64 = UInt64(Date().timeIntervalSince1970 * 1000),
        fundedDevnetAccounts: Int = 0, fundedDevnetBalance: UInt64 = 1_000_000_000_000
    ) throws -> Output {
        precondition(count >= 1 && count <= Limits.maxValidators)
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keys = (0..<count).map { _ in SigningKey.generate() }
        let faucet = SigningKey.generate()
        let validators = keys.enumerated().map {
            Validator(name: "validator\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(basePort + 100 + $0.offset)")
        }
        var genesis = try Genesis(
            chainID: chainID, genesisTimeMs: genesisTimeMs - genesisTimeMs % 1000, validators: validators,
            accounts: [GenesisAccount(address: Address(publicKey: faucet.publicKey), balance: faucetBalance)]
                + devnetAccounts(fundedDevnetAccounts, balance: fundedDevnetBalance))
        genesis.comment = "Local test network made by `tally-node testnet`; its passphrases sit beside the keys: dev only."
        let genesisData = genesis.jsonData()
        try AtomicFile.write(genesisData, to: (directory as NSString).appendingPathComponent("genesis.json"))

        var homes: [NodeHome] = []
        for (index, key) in keys.enumerated() {
            let home = NodeHome(path: (directory as NSString).appendingPathComponent("node\(index)"))
            try home.create()
            let passphrase = Hex.encode(SecureRandom.bytes(16))
            try AtomicFile.write(Data((passphrase + "\n").utf8), to: home.file("validator.password"), mode: 0o600)
            try KeyFile.seal(key, passphrase: passphrase, cost: keyCost).write(path: home.file("validator.key"))
            try AtomicFile.write(genesisData, to: home.file("genesis.json"))
            var config = NodeConfig()
            config.keyPasswordFile = "validator.password"
            config.api.listen = "127.0.0.1:\(basePort + index)"
            config.p2p.listen = "127.0.0.1:\(basePort + 100 + index)"
            try home.writeConfig(config)
            homes.append(home)
        }
        let faucetPassphrase = Hex.encode(SecureRandom.bytes(16))
        try AtomicFile.write(Data((faucetPassphrase + "\n").utf8), to: (directory as NSString).appendingPathComponent("faucet.password"), mode: 0o600)
        try KeyFile.seal(faucet, passphrase: faucetPassphrase, cost: keyCost)
            .write(path: (directory as NSString).appendingPathComponent("faucet.key"))
        return Output(genesis: genesis, homes: homes, faucetAddress: Address(publicKey: faucet.publicKey))
    }

    /// The well-known devnet accounts `0..<count` (`DevnetKeys.accountKey`), so a load
    /// generator can sign for them without a funding phase. Their keys are public:
    /// local test networks only.
    static func devnetAccounts(_ count: Int, balance: UInt64) -> [GenesisAccount] {
        precondition(count >= 0)
        return (0..<count).map { GenesisAccount(address: Address(publicKey: DevnetKeys.accountKey($0).publicKey), balance: balance) }
    }
}
