import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes

/// `tally genesis trust|show`: the explicit step that pins the chain the wallet trusts.
public struct GenesisCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "genesis",
        abstract: "Pin the chain the wallet trusts, or show the pin.",
        subcommands: [Trust.self, Show.self])

    public init() {}

    public struct Trust: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Pin the genesis the node serves (or a local file) as the trusted chain.",
            discussion: """
                Fetches the node's GET /genesis, or reads --genesis FILE, and writes it to \
                $TALLY_HOME/genesis.json. With --hash it pins only if the genesis has that \
                hash (exit 1 otherwise, nothing written): get the hash from the chain's \
                operators, not from the node. A different pinned genesis is kept unless \
                --replace is given (exit 1). Commands that verify never pin on their own.
                With --json: genesis_hash, chain_id, validators, pinned (the path), source, \
                changed.

                \(exitCodeHelp)
                """)

        @Option(help: ArgumentHelp("Pin only a genesis with this hash (64 hex characters).", valueName: "HEX"))
        var hash: String?
        @Option(help: ArgumentHelp("Pin this local genesis file instead of asking a node.", valueName: "FILE"))
        var genesis: String?
        @Flag(help: "Replace a different pinned genesis (switch chains).") var replace = false
        @OptionGroup var connection: NodeOptions
        @Flag(help: "Print one JSON object.") var json = false

        public init() {}

        public func validate() throws {
            if let hash, Hash(hex: hash.lowercased()) == nil { throw ValidationError("--hash '\(hash)' is not 64 hex characters") }
        }

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let (candidate, bytes, source) = try await fetch(context)
                if let hash, candidate.hash.hex != hash.lowercased() {
                    throw WalletError.verification(
                        "\(source) has genesis \(candidate.hash.hex) of chain '\(candidate.chainID)', not the \(hash.lowercased()) "
                            + "given with --hash; nothing was pinned")
                }
                let path = ChainPin.pinnedPath(context)
                let current = try ChainPin.trusted(override: nil, context: context)
                let changed = current?.genesis.hash != candidate.hash
                if let current, changed, !replace {
                    throw WalletError(
                        exitCode: .verificationFailed,
                        message: "\(path) pins genesis \(current.genesis.hash.hex) of chain '\(current.genesis.chainID)'; "
                            + "\(source) has \(candidate.hash.hex) of chain '\(candidate.chainID)'. Pass --replace to switch chains.")
                }
                if changed { try ChainPin.pin(bytes, context: context) }
                if json {
                    return Runner.emit([
                        "genesis_hash": candidate.hash.hex, "chain_id": candidate.chainID,
                        "validators": String(candidate.validators.count), "pinned": path, "source": source, "changed": changed,
                    ], context)
                }
                let verb = changed ? "pinned" : "already pinned:"
                context.output("\(verb) genesis \(candidate.hash.hex) of chain '\(candidate.chainID)' "
                    + "(\(candidate.validators.count) validators) from \(source) in \(path)")
                if hash == nil && genesis == nil {
                    context.error("note: check this hash with the chain's operators; next time pass --hash to pin only the expected chain")
                }
            }
        }

        func fetch(_ context: WalletContext) async throws(WalletError) -> (Genesis, Data, String) {
            if let genesis {
                let bytes = try ChainPin.read(genesis)
                return (try ChainPin.parse(bytes, path: genesis), bytes, genesis)
            }
            let node = try connection.client(context)
            let served = try await ChainPin.served(by: node)
            return (served.genesis, Data(served.bytes), node.baseURL)
        }
    }

    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Show the pinned genesis (reads no node).",
            discussion: """
                With --json: genesis_hash, chain_id, validators, pinned (the path). \
                Nothing pinned is exit 2.

                \(exitCodeHelp)
                """)

        @Flag(help: "Print one JSON object.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let path = ChainPin.pinnedPath(context)
                guard let pinned = try ChainPin.trusted(override: nil, context: context) else {
                    throw WalletError.input("no genesis is pinned in \(path); run `tally genesis trust --hash HASH` "
                        + "(or `tally genesis trust --genesis FILE`)")
                }
                let genesis = pinned.genesis
                if json {
                    return Runner.emit([
                        "genesis_hash": genesis.hash.hex, "chain_id": genesis.chainID,
                        "validators": String(genesis.validators.count), "pinned": path,
                    ], context)
                }
                context.output("genesis \(genesis.hash.hex) of chain '\(genesis.chainID)' (\(genesis.validators.count) validators), pinned in \(path)")
            }
        }
    }
}
