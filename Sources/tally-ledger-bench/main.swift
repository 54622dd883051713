import ArgumentParser
import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes

/// Measures the state-root cost at scale: a ledger of N accounts, blocks of M
/// transfers (signatures pre-verified, as the node's mempool does), and prints the
/// time per block and the inner-node hashes per changed account.
@main
struct LedgerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-ledger-bench",
        abstract: "Benchmark the ledger's incremental state root (not a test; prints figures).")

    @Option(help: "Accounts in genesis.") var accounts = 1_000_000
    @Option(help: "Transactions per block.") var blockTransactions = 1_000
    @Option(help: "Blocks to execute.") var blocks = 20
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func run() throws {
        let senders = (0..<blockTransactions).map { SigningKey(seed: SHA256.hash(Array("bench-sender-\($0)".utf8)).bytes)! }
        var genesisAccounts = senders.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: 1_000_000_000) }
        for index in genesisAccounts.count..<accounts {
            let digest = SHA256.hash(Array("bench-account-\(index)".utf8))
            genesisAccounts.append(GenesisAccount(address: Address(bytes: Array(digest.bytes.prefix(20)))!, balance: 1))
        }
        let validators = (0..<4).map {
            Validator(name: "v\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey, networkAddress: "x:1")
        }
        let genesis = try Genesis(chainID: "bench", genesisTimeMs: 0, validators: validators, accounts: genesisAccounts)

        var clock = ContinuousClock.now
        var ledger = Ledger(genesis: genesis)
        let genesisHash = ledger.genesisHash
        let genesisSeconds = seconds(since: clock)

        var random = SystemRandomNumberGenerator()
        // Twice the blocks: the second half runs on the ledger restored from its image.
        let prepared: [[VerifiedTransaction]] = (0..<2 * blocks).map { height in
            senders.map { key in
                let recipient = genesisAccounts[Int.random(in: 0..<genesisAccounts.count, using: &random)].address
                return VerifiedTransaction(signatureAlreadyVerified: Transaction.signed(
                    by: key, chainID: "bench", genesisHash: genesisHash, to: recipient, amount: 5, fee: 1,
                    nonce: UInt64(height)))
            }
        }

        let hashesBefore = ledger.stateTreeNodeHashes
        var changedAccounts = 0
        clock = ContinuousClock.now
        var cpu = cpuSeconds()
        for block in prepared.prefix(blocks) {
            let execution = ledger.execute(block, proposer: 0)
            precondition(execution.allApplied, "benchmark transactions must all apply")
            changedAccounts += execution.changes.count
            ledger.commit(execution)
        }
        let blockSeconds = seconds(since: clock) / Double(blocks)
        let blockCPUSeconds = (cpuSeconds() - cpu) / Double(blocks)
        let hashesPerChange = Double(ledger.stateTreeNodeHashes - hashesBefore) / Double(changedAccounts)
        let depth = Int(ceil(log2(Double(ledger.accountCount))))

        // A restart's restore (issue 16): from the account list, as snapshot format 1
        // did (every leaf and inner node rehashed, a dictionary of every address), and
        // from the ledger's image, as format 2 does (taken as stored, sampled). CPU
        // seconds of this process (one thread), so other load on the machine does not count.
        let accountList = ledger.allAccounts
        cpu = cpuSeconds()
        let fromAccounts = try Ledger(genesis: genesis, height: ledger.height, accounts: accountList)
        let accountsRestoreSeconds = cpuSeconds() - cpu
        cpu = cpuSeconds()
        let image = ledger.image
        let imageSeconds = cpuSeconds() - cpu
        cpu = cpuSeconds()
        var restored = try Ledger(genesis: genesis, height: ledger.height, image: image)
        let imageRestoreSeconds = cpuSeconds() - cpu
        precondition(fromAccounts.stateRoot == ledger.stateRoot && restored.stateRoot == ledger.stateRoot, "restores differ")
        cpu = cpuSeconds()
        for block in prepared.suffix(blocks) {
            let execution = restored.execute(block, proposer: 0)
            precondition(execution.allApplied, "benchmark transactions must all apply")
            restored.commit(execution)
        }
        let restoredBlockSeconds = (cpuSeconds() - cpu) / Double(blocks)

        if json {
            let report: [String: Any] = [
                "accounts": ledger.accountCount, "block_transactions": blockTransactions, "blocks": blocks,
                "genesis_build_s": genesisSeconds, "block_execute_commit_ms": blockSeconds * 1000,
                "node_hashes_per_changed_account": hashesPerChange, "tree_depth": depth,
                "restore_from_accounts_cpu_s": accountsRestoreSeconds, "image_cpu_s": imageSeconds,
                "restore_from_image_cpu_s": imageRestoreSeconds,
                "restored_block_execute_commit_cpu_ms": restoredBlockSeconds * 1000, "block_execute_commit_cpu_ms": blockCPUSeconds * 1000,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("accounts:                         \(ledger.accountCount) (tree depth \(depth))")
            print("genesis ledger build:             \(String(format: "%.2f", genesisSeconds)) s")
            print("block of \(blockTransactions) transfers (execute + commit, root included): \(String(format: "%.2f", blockSeconds * 1000)) ms")
            print("inner-node hashes per changed account: \(String(format: "%.2f", hashesPerChange)) (+1 leaf hash each; a full rehash would be \(ledger.accountCount))")
            print("CPU time, one thread:")
            print("  block on the genesis ledger (address dictionary): \(String(format: "%.2f", blockCPUSeconds * 1000)) ms")
            print("  restore from the account list (snapshot format 1): \(String(format: "%.3f", accountsRestoreSeconds)) s")
            print("  image of the ledger (snapshot format 2 write):      \(String(format: "%.3f", imageSeconds)) s")
            print("  restore from the image (snapshot format 2):        \(String(format: "%.3f", imageRestoreSeconds)) s")
            print("  block on the restored ledger (sorted addresses):   \(String(format: "%.2f", restoredBlockSeconds * 1000)) ms")
        }
    }

    /// CPU seconds used by this process so far.
    private func cpuSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}
