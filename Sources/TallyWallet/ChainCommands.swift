import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes

/// The wallet's subcommands, for the root `tally` command's `subcommands`.
public enum WalletCommands {
    public static let all: [any ParsableCommand.Type] = [
        Keys.self, GenesisCommand.self, Status.self, Balance.self, Send.self, TransactionCommand.self, BlockCommand.self,
        History.self,
    ]
}

let chainHelp = """
    The wallet trusts one chain: the genesis given with --genesis FILE, else the one \
    pinned in $TALLY_HOME/genesis.json (default ~/.tally) by `tally genesis trust`. \
    No command pins on its own: with neither, commands that verify stop with exit 2 \
    (`tally status` still shows the node's genesis hash, to check and pin). A node \
    serving another genesis is refused (exit 1).
    """

// MARK: status

public struct Status: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Show the node's chain, height and view.",
        discussion: """
            Runs without a pinned genesis too: it shows the hash of the genesis the node \
            serves and whether it is the trusted one, so it can be checked and pinned \
            (`tally genesis trust --hash HASH`).
            With --json: chain_id, height, view, latest_block_hash, primary, \
            validator_index, validator_name, catching_up, peers_connected, mempool_size, \
            genesis_hash (the node's), genesis_trusted (false: nothing pinned), \
            trusted_genesis (the pin's or --genesis file's path, or null) (numbers as strings).

            \(chainHelp)

            \(exitCodeHelp)
            """)

    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func run() async throws {
        try await Runner.run(json: json) { context in
            // Status is how a user learns the node's genesis hash before pinning it, so
            // it runs without a pin (and says so); with one, a mismatch is still exit 1.
            let node = try connection.client(context)
            let trusted = try ChainPin.trusted(override: chain.genesis, context: context)
            let served = try await ChainPin.served(by: node).genesis
            if let trusted { try ChainPin.check(served: served, from: node, against: trusted, context: context) }
            let object = try node.object(try await node.get("/status"), "/status")
            guard let chainID = object["chain_id"] as? String, let height = object["height"] as? String,
                  let view = object["view"] as? String
            else { throw node.unusable("/status lacks chain_id, height or view") }
            guard ChainID.same(chainID, served.chainID) else {
                throw WalletError.verification("the node reports chain '\(chainID)', its genesis is of chain '\(served.chainID)'")
            }
            /// Numbers as strings; null when the node does not say.
            func text(_ key: String) -> Any {
                if let value = object[key] as? String { return value }
                if let value = object[key] as? Int { return String(value) }
                return NSNull()
            }
            var result: [String: Any] = ["chain_id": chainID, "height": height, "view": view,
                                         "genesis_hash": served.hash.hex, "genesis_trusted": trusted != nil,
                                         "trusted_genesis": trusted?.source ?? NSNull()]
            for key in ["latest_block_hash", "primary", "validator_index", "validator_name", "peers_connected", "mempool_size"] {
                result[key] = text(key)
            }
            result["catching_up"] = object["catching_up"] as? Bool ?? NSNull()
            if json { return Runner.emit(result, context) }
            let pin = trusted.map { "matches \($0.source)" }
                ?? "NOT PINNED: check it with the chain's operators, then `tally genesis trust --hash \(served.hash.hex)`"
            context.output("""
                node:        \(node.baseURL)
                chain:       \(chainID)
                genesis:     \(served.hash.hex) (\(pin))
                height:      \(height)
                view:        \(view) (primary \(result["primary"] ?? ""))
                validator:   \(result["validator_name"] is NSNull ? "-" : "\(result["validator_name"]!)")
                catching up: \(result["catching_up"] ?? "")
                peers:       \(result["peers_connected"] ?? "")
                mempool:     \(result["mempool_size"] ?? "") transactions
                """)
        }
    }
}

// MARK: balance

public struct Balance: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Show the balance and next nonce of a key or address.",
        discussion: """
            NAME|ADDRESS: a key name, or a bech32m address (tally1…, checksum checked). \
            Without it, the only key in the key store. The balance is as the node reports \
            it (the API has no state proofs); amounts are whole TALLY with 6 decimals.
            With --json: address, balance, nonce (and name for a key), as strings.

            \(chainHelp)

            \(exitCodeHelp)
            """)

    @Argument(help: "A key name or a tally1… address.") var account: String?
    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        guard let account, account.lowercased().hasPrefix(Address.humanReadablePrefix + "1") else { return }
        do { _ = try Address(bech32m: account) } catch { throw ValidationError("'\(account)' is not a Tally address: \(error)") }
    }

    public func run() async throws {
        try await Runner.run(json: json) { context in
            let (name, address) = try resolve(context)
            let session = try await NodeSession.open(connection, chain, context)
            let state = try await session.account(address)
            if json {
                var object: [String: Any] = ["address": address.bech32m, "balance": Amount.format(state.balance),
                                             "nonce": String(state.nonce)]
                if let name { object["name"] = name }
                return Runner.emit(object, context)
            }
            let label = name.map { "\(address.bech32m) (\($0))" } ?? address.bech32m
            context.output("\(label): \(Amount.format(state.balance)) TALLY, next nonce \(state.nonce)")
        }
    }

    func resolve(_ context: WalletContext) throws(WalletError) -> (name: String?, address: Address) {
        try Self.resolve(account, context)
    }

    /// A key name or an address; nil: the only key in the store.
    static func resolve(_ account: String?, _ context: WalletContext) throws(WalletError) -> (name: String?, address: Address) {
        let store = KeyStore(home: context.home)
        if let account {
            if let address = try? Address(bech32m: account) { return (nil, address) }
            try KeyStore.checkName(account)
            return (account, try Balance.address(of: store.load(account)))
        }
        let keys = store.list().keys
        guard keys.count == 1 else {
            throw .usage(keys.isEmpty ? "no keys in \(store.directory); name an address"
                : "name a key (\(keys.map(\.name).joined(separator: ", "))) or an address")
        }
        return (keys[0].name, try Balance.address(of: keys[0].file))
    }

    static func address(of file: KeyFile) throws(WalletError) -> Address {
        do { return try Address(bech32m: file.address) } catch { throw .input("key file address: \(error)") }
    }
}

// MARK: tx

public struct TransactionCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tx",
        abstract: "Show a transaction's status; for a committed one, check its proof.",
        discussion: """
            For a committed transaction it fetches the block, checks the commit \
            certificate against the trusted genesis and the Merkle inclusion proof, and \
            says so (exit 1 if they fail). An unknown hash exits with 7.
            With --json: hash, status (pending|committed|unknown), height (null unless \
            committed), index, block_hash, verified.

            \(chainHelp)

            \(exitCodeHelp)
            """)

    @Argument(help: "The transaction hash (64 hex characters).") var hash: String
    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        guard Hash(hex: hash.lowercased()) != nil else { throw ValidationError("'\(hash)' is not a transaction hash (64 hex characters)") }
    }

    public func run() async throws {
        try await Runner.run(json: json) { context in
            let hash = Hash(hex: self.hash.lowercased())!
            let session = try await NodeSession.open(connection, chain, context)
            switch try await session.transactionState(hash) {
            case .pending:
                if json { return Runner.emit(["hash": hash.hex, "status": "pending", "height": NSNull()], context) }
                context.output("\(hash.hex): pending (in the mempool, not committed yet)")
            case .unknown:
                throw WalletError(exitCode: .notFound, message: "the node does not know transaction \(hash.hex)",
                                  details: ["hash": hash.hex, "status": "unknown"])
            case .committed(let height, let index, let blockHash, let proof):
                let (certified, signers) = try await session.verifyCommitted(
                    hash, height: height, index: index, blockHash: blockHash, proof: proof)
                let transaction = certified.block.transactions[index]
                if json {
                    return Runner.emit([
                        "hash": hash.hex, "status": "committed", "height": String(height), "index": String(index),
                        "block_hash": blockHash.hex, "verified": true, "from": transaction.senderAddress.bech32m,
                        "to": transaction.recipient.bech32m, "amount": Amount.format(transaction.amount),
                        "fee": Amount.format(transaction.fee), "nonce": String(transaction.nonce),
                    ], context)
                }
                context.output("""
                    \(hash.hex): committed at height \(height), index \(index)
                    block:  \(blockHash.hex)
                    from:   \(transaction.senderAddress.bech32m)
                    to:     \(transaction.recipient.bech32m)
                    amount: \(Amount.format(transaction.amount)) TALLY, fee \(Amount.format(transaction.fee)), nonce \(transaction.nonce)
                    verified: certificate of \(signers) of \(session.genesis.validators.count) validators, inclusion proof
                    """)
            }
        }
    }
}

// MARK: block

public struct BlockCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "block",
        abstract: "Show a block (default: the latest), its certificate checked.",
        discussion: """
            Fetches the certified block in its canonical binary form and checks its \
            commit certificate against the trusted genesis and its transactions against \
            its transactions_root before printing it (exit 1 if they fail). An unknown \
            height exits with 7.
            With --json: height, hash, previous_hash, view, timestamp_ms, proposer, \
            transactions_root, state_root, transactions [{hash, from, to, amount, fee, \
            nonce}], signers, verified.

            \(chainHelp)

            \(exitCodeHelp)
            """)

    @Argument(help: "The block height (default: the latest).") var height: UInt64?
    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        if height == 0 { throw ValidationError("heights start at 1 (the genesis is not a block)") }
    }

    public func run() async throws {
        try await Runner.run(json: json) { context in
            let session = try await NodeSession.open(connection, chain, context)
            let (certified, signers) = try await session.verifiedBlock(height)
            let header = certified.block.header
            let transactions = certified.block.transactions
            if json {
                return Runner.emit([
                    "height": String(header.height), "hash": header.hash.hex, "previous_hash": header.previousHash.hex,
                    "view": String(header.view), "timestamp_ms": String(header.timestampMs),
                    "proposer": String(header.proposer), "transactions_root": header.transactionsRoot.hex,
                    "state_root": header.stateRoot.hex, "signers": certified.certificate.signatures.map { String($0.validatorIndex) },
                    "verified": true,
                    "transactions": transactions.map { transaction -> [String: Any] in
                        ["hash": transaction.hash.hex, "from": transaction.senderAddress.bech32m,
                         "to": transaction.recipient.bech32m, "amount": Amount.format(transaction.amount),
                         "fee": Amount.format(transaction.fee), "nonce": String(transaction.nonce)]
                    },
                ], context)
            }
            var lines = [
                "block \(header.height)  \(header.hash.hex)",
                "previous:     \(header.previousHash.hex)",
                "view:         \(header.view), proposer \(header.proposer), time \(header.timestampMs) ms",
                "state root:   \(header.stateRoot.hex)",
                "verified:     certificate of \(signers) of \(session.genesis.validators.count) validators, transactions root",
                "transactions: \(transactions.count)",
            ]
            for transaction in transactions {
                lines.append("  \(transaction.hash.hex)  \(transaction.senderAddress.bech32m) → \(transaction.recipient.bech32m)  "
                    + "\(Amount.format(transaction.amount)) (fee \(Amount.format(transaction.fee)), nonce \(transaction.nonce))")
            }
            context.output(lines.joined(separator: "\n"))
        }
    }
}
