import Foundation
import TallyCrypto
import TallyTypes

/// A node's home directory:
/// ```
/// HOME/config.toml        NodeConfig (commented)
/// HOME/validator.key      encrypted Ed25519 key (KeyFile, 0600)
/// HOME/validator.password passphrase (0600), written only by `testnet` (dev networks)
/// HOME/genesis.json       the chain's genesis
/// HOME/data/              blocks, consensus state, snapshots (TallyStore)
/// ```
public struct NodeHome: Sendable {
    public let path: String

    public init(path: String) { self.path = (path as NSString).standardizingPath }

    /// `--home`, else `$TALLY_NODE_HOME`, else `~/.tally-node`.
    public static func resolve(_ option: String?) -> NodeHome {
        if let option { return NodeHome(path: option) }
        // getenv, not ProcessInfo's dictionary: that would copy every variable,
        // $TALLY_NODE_PASSWORD too, into strings that cannot be zeroed.
        if let env = getenv("TALLY_NODE_HOME").map({ String(cString: $0) }), !env.isEmpty { return NodeHome(path: env) }
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

    /// Why a passphrase could not be read.
    public enum PassphraseError: Swift.Error, Equatable, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        /// Group or others may read or write the file (mode shown in octal).
        case tooOpen(path: String, mode: mode_t)
        case tooLarge(path: String)

        public var description: String {
            switch self {
            case .unreadable(let path, let reason): return "cannot read passphrase file \(path): \(reason)"
            case .tooOpen(let path, let mode):
                return "passphrase file \(path) has mode \(String(mode, radix: 8)); it must be 0600 or stricter (chmod 600 \(path))"
            case .tooLarge(let path): return "passphrase file \(path) is over \(NodeHome.maxPassphraseFileBytes) bytes"
            }
        }
    }

    /// Largest passphrase file read (a passphrase is one short line).
    public static let maxPassphraseFileBytes = 64 << 10
    /// The environment variable an unattended node may take its passphrase from.
    public static let passphraseEnvironmentVariable = "TALLY_NODE_PASSWORD"

    /// Reads a passphrase file: its first line, without the newline, as UTF-8 bytes
    /// (the caller zeroes them with `KeyFile.zero`). The file must be owner-only
    /// (mode 0600 or stricter), checked on the open descriptor so the file checked is
    /// the file read.
    public static func readPassphrase(file: String) throws(PassphraseError) -> [UInt8] {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: file, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: file, reason: String(cString: strerror(errno))) }
        let permissions = info.st_mode & 0o7777
        guard permissions & 0o077 == 0 else { throw .tooOpen(path: file, mode: permissions) }
        var contents = [UInt8](repeating: 0, count: maxPassphraseFileBytes + 1)
        defer { KeyFile.zero(&contents) }
        var length = 0
        while length < contents.count {
            let count = contents.withUnsafeMutableBytes { read(fd, $0.baseAddress! + length, $0.count - length) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw .unreadable(path: file, reason: String(cString: strerror(errno))) }
            if count == 0 { break }
            length += count
        }
        guard length <= maxPassphraseFileBytes else { throw .tooLarge(path: file) }
        let lineEnd = contents[..<length].firstIndex(of: UInt8(ascii: "\n")) ?? length
        return Array(contents[..<lineEnd])
    }

    /// Takes the passphrase from `$TALLY_NODE_PASSWORD`, if set, and removes it from
    /// the process: the variable is unset (no child inherits it), then its whole
    /// `NAME=value` entry is overwritten where it lies. unsetenv alone only drops the
    /// pointer; for the initial environment the bytes stay in the memory that
    /// /proc/PID/environ shows to any process of the same user.
    public static func takePassphraseFromEnvironment(_ name: String = passphraseEnvironmentVariable) -> [UInt8]? {
        guard let value = getenv(name) else { return nil }
        let length = strlen(value)
        let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(value).assumingMemoryBound(to: UInt8.self), count: length))
        let prefix = Array((name + "=").utf8)
        let entry = value - prefix.count
        // glibc's getenv points into the entry, just past `NAME=`; check before writing.
        let isEntry = prefix.withUnsafeBytes { memcmp(entry, $0.baseAddress!, prefix.count) == 0 }
        unsetenv(name)
        // The entry's memory stays valid after unsetenv (the initial environment is on
        // the stack; glibc never frees what setenv allocated).
        memset(isEntry ? entry : value, 0, isEntry ? prefix.count + length : length)
        return bytes
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
