import ArgumentParser
import Foundation
import TallyCrypto
import TallyNode
import TallyNodeCLI
import TallyTypes

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a node home: a new validator key and a commented config.toml.",
        discussion: """
            Writes HOME/validator.key (Argon2id + XChaCha20-Poly1305, mode 0600) and HOME/config.toml. Put the \
            chain's genesis at HOME/genesis.json (or pass --genesis), then `tally-node start`. \
            `tally-node show-validator` prints the public key to list in a genesis file.
            """)

    @OptionGroup var homeOption: HomeOption
    @Option(name: .long, help: ArgumentHelp("Passphrase file for the new key (else $TALLY_NODE_PASSWORD or a prompt).", valueName: "FILE"))
    var passwordFile: String?
    @Option(name: .long, help: ArgumentHelp("Genesis file to copy into the home.", valueName: "FILE"))
    var genesis: String?
    @Option(name: .long, help: "HTTP API listen address.") var apiListen = "127.0.0.1:7700"
    @Option(name: .long, help: "Peer listen address.") var p2pListen = "127.0.0.1:7800"
    @Flag(name: .long, help: "Replace an existing key and config.") var force = false

    func run() throws {
        let home = homeOption.resolved
        if FileManager.default.fileExists(atPath: home.file("validator.key")) && !force {
            throw fail("\(home.file("validator.key")) exists; use --force to replace it (the old key is lost)")
        }
        var config = NodeConfig()
        config.api.listen = apiListen
        config.p2p.listen = p2pListen
        try config.check()
        var passphrase = try readNodePassphrase(file: passwordFile, confirm: passwordFile == nil)
        defer { KeyFile.zero(&passphrase) }
        try home.create()
        let key = SigningKey.generate()
        try KeyFile.seal(key, passphrase: passphrase).write(path: home.file(config.keyFile))
        try home.writeConfig(config)
        if let genesis {
            guard let data = FileManager.default.contents(atPath: genesis) else { throw fail("cannot read \(genesis)") }
            do { _ = try Genesis(json: data) } catch { throw fail("\(error)") }
            try AtomicFile.write(data, to: home.file(config.genesisFile))
        }
        print("initialised \(home.path)")
        print("validator public key: \(key.publicKey.hex)")
        print("account address:      \(Address(publicKey: key.publicKey).bech32m)")
    }
}

struct Testnet: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a complete local network of validators.",
        discussion: """
            Writes OUTPUT/genesis.json, one home per validator (OUTPUT/node0 … node{N-1}: node i serves its API on \
            127.0.0.1:(BASE+i) and its peers on 127.0.0.1:(BASE+100+i)), and a funded faucet key OUTPUT/faucet.key \
            with its passphrase in OUTPUT/faucet.password. Keys are fresh and random, but their passphrases sit \
            beside them: for local test networks only. Start the nodes with `tally-node start --home OUTPUT/nodeI` \
            (tools/testnet does all of it).
            """)

    @Option(name: .long, help: "Number of validators (4 tolerates one faulty).") var validators = 4
    @Option(name: .long, help: ArgumentHelp("Directory to create.", valueName: "DIR")) var output: String
    @Option(name: .long, help: "First API port; peer ports start 100 above.") var basePort = 7700
    @Option(name: .long, help: "Chain id.") var chainId = "tally-testnet"
    @Option(name: .long, help: "Also fund the well-known devnet accounts 0..<N (public keys: load tests only).")
    var fundDevnetAccounts = 0
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func validate() throws {
        guard fundDevnetAccounts >= 0 && fundDevnetAccounts <= 1_000_000 else { throw ValidationError("--fund-devnet-accounts must be 0…1000000") }
        guard validators >= 1 && validators <= 64 else { throw ValidationError("--validators must be 1…64") }
        guard basePort >= 1024 && basePort + 100 + validators <= 65535 else { throw ValidationError("--base-port out of range") }
    }

    func run() throws {
        if FileManager.default.fileExists(atPath: (output as NSString).appendingPathComponent("genesis.json")) {
            throw fail("\(output)/genesis.json exists; choose a new directory")
        }
        let result = try TestnetGenerator.generate(
            validators: validators, output: output, basePort: basePort, chainID: chainId, fundedDevnetAccounts: fundDevnetAccounts)
        if json {
            let object: [String: Any] = [
                "chain_id": result.genesis.chainID, "genesis": (output as NSString).appendingPathComponent("genesis.json"),
                "faucet_address": result.faucetAddress.bech32m,
                "nodes": result.homes.enumerated().map { ["home": $0.element.path, "api": "http://127.0.0.1:\(basePort + $0.offset)"] },
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
        } else {
            print("testnet \(result.genesis.chainID) with \(validators) validators in \(output)")
            for (index, home) in result.homes.enumerated() {
                print("  node\(index): home \(home.path), API http://127.0.0.1:\(basePort + index)")
            }
            print("  faucet: \(result.faucetAddress.bech32m) (\(output)/faucet.key, passphrase in \(output)/faucet.password)")
        }
    }
}

struct ShowValidator: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print this node's validator public key and account address.")

    @OptionGroup var homeOption: HomeOption
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() throws {
        let home = homeOption.resolved
        let config: NodeConfig
        do { config = try home.loadConfig() } catch { throw fail("\(error)") }
        let file: KeyFile
        do { file = try KeyFile.load(path: home.file(config.keyFile)) } catch { throw fail("\(error)") }
        // The public key is stored in the clear (and authenticated), so no passphrase is needed.
        if json {
            print("{\"address\":\"\(file.address)\",\"public_key\":\"\(file.publicKey)\"}")
        } else {
            print("public key: \(file.publicKey)\naddress:    \(file.address)")
        }
    }
}

struct UnsafeResetAll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unsafe-reset-all",
        abstract: "Delete this node's blocks, snapshots and consensus state (keeps key, config, genesis).",
        discussion: """
            UNSAFE: this also wipes the signer guard, the record of what this validator signed. A validator that \
            restarts without it could sign a second, conflicting vote for a view and height it already voted in. \
            Only do this when the rest of the network has moved on, so the node catches up by block sync. \
            The signing mark (HOME/signing-mark, the highest view and height it signed) is kept: the node \
            signs nothing at or below it after the reset.
            """)

    @OptionGroup var homeOption: HomeOption
    @Flag(name: .long, help: "Do not ask for confirmation.") var yes = false

    func run() throws {
        let home = homeOption.resolved
        let config: NodeConfig
        do { config = try home.loadConfig() } catch { throw fail("\(error)") }
        let data = home.file(config.storage.dataDir)
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else { throw ValidationError("pass --yes to confirm when not on a terminal") }
            print("Delete \(data), including the signer guard? Type 'yes': ", terminator: "")
            guard readLine() == "yes" else { throw fail("not confirmed; nothing deleted", code: NodeExit.failure) }
        }
        if FileManager.default.fileExists(atPath: data) { try FileManager.default.removeItem(atPath: data) }
        print("deleted \(data)")
    }
}
