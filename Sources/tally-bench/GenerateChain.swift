import ArgumentParser
import Foundation
import TallyTypes
import TallyVerifyTesting

struct GenerateChain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate-chain",
        abstract: "Write a valid devnet chain for tests and benchmarks.",
        discussion: """
            Writes OUTPUT/genesis.json and the data directory OUTPUT/data: transfers between devnet accounts signed \
            by their keys, blocks certified by a quorum of the devnet validators, stored exactly as a node stores \
            them. OUTPUT is then a node home for `tally verify --home OUTPUT`. The devnet keys are public and \
            insecure: never use such a chain for anything of value.
            """)

    @Option(name: .long, help: ArgumentHelp("Directory to create (must not hold a chain yet).", valueName: "DIR"))
    var output: String

    @Option(name: .long, help: "Number of blocks.")
    var blocks: Int

    @Option(name: .customLong("txs-per-block"), help: "Transactions in each block.")
    var transactionsPerBlock: Int

    @Option(name: .long, help: "Seed of the deterministic generator.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Funded genesis accounts that send transfers.")
    var accounts: Int = 1024

    func validate() throws {
        guard blocks >= 0 else { throw ValidationError("--blocks must be at least 0") }
        guard transactionsPerBlock >= 0 && transactionsPerBlock <= Limits.maxBlockTransactions else {
            throw ValidationError("--txs-per-block must be 0…\(Limits.maxBlockTransactions)")
        }
        guard accounts >= 1 && accounts <= 1_000_000 else { throw ValidationError("--accounts must be 1…1000000") }
        if FileManager.default.fileExists(atPath: output + "/data/blocks") {
            throw ValidationError("\(output)/data/blocks already exists; choose an empty directory")
        }
    }

    func run() throws {
        let parameters = ChainGenerator.Parameters(
            blocks: blocks, transactionsPerBlock: transactionsPerBlock, fundedAccounts: accounts, seed: seed)
        let start = Date()
        let showProgress = isatty(STDERR_FILENO) == 1
        try ChainGenerator.write(parameters, to: output) { height in
            if showProgress { FileHandle.standardError.write(Data("\rgenerated \(height)/\(blocks) blocks".utf8)) }
        }
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        print(String(
            format: "wrote %d blocks of %d transactions (%d in all) to %@/data, genesis %@/genesis.json, in %.1f s",
            blocks, transactionsPerBlock, blocks * transactionsPerBlock, output, output, Date().timeIntervalSince(start)))
    }
}
