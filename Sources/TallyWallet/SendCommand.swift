import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes

/// `tally send`: sign a transfer, submit it, wait for it to commit and check the
/// commit certificate and inclusion proof against the trusted genesis.
public struct Send: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Send TALLY: sign, submit, wait for commit and verify it.",
        discussion: """
            Fetches the sender's nonce, signs the transfer for the trusted chain, \
            submits it and, unless --async, polls the node until it is committed. It \
            then fetches the block and checks, itself, that the commit certificate \
            carries a quorum of valid signatures of the genesis validators and that the \
            transaction's Merkle inclusion proof leads to the block's transactions_root; \
            only then does it report "committed". --async prints the hash at once.

            Amounts are whole TALLY with at most 6 decimals (1 TALLY = 1,000,000 base \
            units); the default fee is \(Send.defaultFee) TALLY. Addresses are checked by \
            their bech32m checksum before anything is sent.
            With --json: hash, status (committed|pending), height (null with --async), \
            index, block_hash, from, to, amount, fee, nonce.

            \(chainHelp)

            \(exitCodeHelp)
            """)

    public static let defaultFee = "0.001"
    public static let defaultTimeoutSeconds = 30
    static let maxTimeoutSeconds = 3600
    /// How often to ask the node whether the transaction committed.
    static let pollIntervalMilliseconds = 200

    @Option(help: ArgumentHelp("The sending key's name.", valueName: "NAME")) var from: String?
    @Option(name: .customLong("key-file"), help: ArgumentHelp("Send with this key file instead of a named key.", valueName: "PATH"))
    var keyFile: String?
    @Option(name: .customLong("password-file"), help: ArgumentHelp("Read the key's passphrase from this file.", valueName: "FILE"))
    var passwordFile: String?
    @Option(help: ArgumentHelp("The recipient (tally1…).", valueName: "ADDRESS")) var to: String
    @Option(help: ArgumentHelp("Whole TALLY, at most 6 decimals (e.g. 1.5).", valueName: "N")) var amount: String
    @Option(help: ArgumentHelp("Fee in TALLY.", valueName: "N")) var fee: String = Send.defaultFee
    @Option(help: ArgumentHelp("Seconds to wait for the commit.", valueName: "SECONDS"))
    var timeout: Int = Send.defaultTimeoutSeconds
    @Flag(name: .customLong("async"), help: "Print the hash once the node accepted it; do not wait.") var noWait = false
    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        guard (from != nil) != (keyFile != nil) else { throw ValidationError("give exactly one of --from NAME or --key-file PATH") }
        if let from, !KeyStore.isValidName(from) { throw ValidationError("key name '\(from)' is invalid") }
        do { _ = try Address(bech32m: to) } catch { throw ValidationError("--to '\(to)' is not a Tally address: \(error)") }
        let units: UInt64
        let feeUnits: UInt64
        do { units = try Amount.parse(amount) } catch { throw ValidationError("--amount: \(error)") }
        do { feeUnits = try Amount.parse(fee) } catch { throw ValidationError("--fee: \(error)") }
        guard units > 0 else { throw ValidationError("--amount must be more than 0") }
        guard !units.addingReportingOverflow(feeUnits).overflow else { throw ValidationError("--amount plus --fee overflows") }
        guard timeout >= 1 && timeout <= Send.maxTimeoutSeconds else {
            throw ValidationError("--timeout must be 1…\(Send.maxTimeoutSeconds) seconds")
        }
    }

    public func run() async throws {
        try await Runner.run(json: json) { context in
            let recipient = try! Address(bech32m: to)
            let (units, feeUnits) = (try! Amount.parse(amount), try! Amount.parse(fee))
            // The chain first: without a trusted genesis nothing could be verified, so
            // fail before asking for a passphrase or signing anything.
            let session = try await NodeSession.open(connection, chain, context)
            let key = try unlockKey(context)
            let sender = Address(publicKey: key.publicKey)
            let nonce = try await session.account(sender).pendingNonce
            let transaction = Transaction.signed(
                by: key, chainID: session.genesis.chainID, genesisHash: session.genesis.hash, to: recipient, amount: units,
                fee: feeUnits, nonce: nonce)
            try await submit(transaction, session)
            var summary: [String: Any] = [
                "hash": transaction.hash.hex, "from": sender.bech32m, "to": recipient.bech32m,
                "amount": Amount.format(units), "fee": Amount.format(feeUnits), "nonce": String(nonce),
            ]
            if noWait {
                summary["status"] = "pending"
                summary["height"] = NSNull()
                if json { return Runner.emit(summary, context) }
                return context.output("submitted \(transaction.hash.hex) (not waiting; see `tally tx \(transaction.hash.hex)`)")
            }
            if !json { context.error("submitted \(transaction.hash.hex); waiting up to \(timeout) s for it to commit…") }
            let committed = try await waitForCommit(transaction.hash, session)
            let (certified, signers) = try await session.verifyCommitted(
                transaction.hash, height: committed.height, index: committed.index, blockHash: committed.blockHash,
                proof: committed.proof)
            summary["status"] = "committed"
            summary["height"] = String(committed.height)
            summary["index"] = String(committed.index)
            summary["block_hash"] = certified.block.hash.hex
            if json { return Runner.emit(summary, context) }
            context.output("""
                committed \(transaction.hash.hex) at height \(committed.height)
                sent \(Amount.format(units)) TALLY (fee \(Amount.format(feeUnits))) from \(sender.bech32m) to \(recipient.bech32m)
                verified: certificate of \(signers) of \(session.genesis.validators.count) validators, inclusion proof
                """)
        }
    }

    func unlockKey(_ context: WalletContext) throws(WalletError) -> SigningKey {
        let file: KeyFile
        let label: String
        if let from {
            file = try KeyStore(home: context.home).load(from)
            label = "'\(from)'"
        } else {
            file = try KeyStore.loadFile(keyFile!)
            label = keyFile!
        }
        let passphrase = try Passphrase.read(file: passwordFile, purpose: .open(from ?? keyFile!), context: context)
        return try KeyStore.unlock(file, passphrase: passphrase, label: label)
    }

    func submit(_ transaction: Transaction, _ session: NodeSession) async throws(WalletError) {
        let node = session.node
        let answer = try await node.postJSON("/txs", ["tx": Hex.encode(transaction.canonicalBytes)])
        if let refusal = answer.nodeError {
            // Another client may have taken the same pending nonce at the same time.
            let hint = refusal.code == "duplicate"
                ? " (another transaction of this key took the same nonce; retry)" : ""
            throw WalletError(exitCode: .transactionRejected,
                              message: "the node rejected the transaction: \(refusal.code): \(refusal.message)\(hint)",
                              nodeCode: refusal.code)
        }
        guard answer.status == 202, let hash = answer.json?["hash"] as? String else {
            throw node.unusable("POST /txs answered HTTP \(answer.status)")
        }
        guard hash == transaction.hash.hex else { throw node.unusable("POST /txs named hash \(hash), not \(transaction.hash.hex)") }
    }

    struct Committed {
        var height: UInt64
        var index: Int
        var blockHash: Hash
        var proof: InclusionProof
    }

    /// Polls `/txs/{hash}` until committed or `--timeout` passes. Transient node
    /// errors while waiting are retried; the last one is reported on timeout.
    func waitForCommit(_ hash: Hash, _ session: NodeSession) async throws(WalletError) -> Committed {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(timeout))
        var last = "pending"
        while true {
            let remaining = clock.now.duration(to: deadline).components.seconds
            do {
                switch try await session.transactionState(hash, timeoutSeconds: max(1, remaining)) {
                case .committed(let height, let index, let blockHash, let proof):
                    return Committed(height: height, index: index, blockHash: blockHash, proof: proof)
                case .pending: last = "pending"
                case .unknown: last = "unknown to the node (dropped from its mempool?)"
                }
            } catch where error.exitCode == .nodeUnreachable {
                last = error.message
            }
            guard clock.now < deadline else {
                throw WalletError(
                    exitCode: .timedOut,
                    message: "timed out after \(timeout) s waiting for \(hash.hex) to commit (last status: \(last)); "
                        + "it may still commit: check with `tally tx \(hash.hex)`",
                    details: ["hash": hash.hex])
            }
            try? await Task.sleep(for: .milliseconds(Send.pollIntervalMilliseconds))
        }
    }
}
