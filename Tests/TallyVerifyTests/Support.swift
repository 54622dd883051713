import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting
@testable import TallyVerify
import TallyVerifyTesting

/// A small generated chain, shared by the tests (generation signs every transfer).
enum Fixture {
    static let parameters = ChainGenerator.Parameters(blocks: 10, transactionsPerBlock: 24, fundedAccounts: 40, seed: 7)
    static let generated: (genesis: Genesis, blocks: [CertifiedBlock]) = {
        var generator = ChainGenerator(parameters)
        let blocks = (0..<parameters.blocks).map { _ in generator.nextBlock() }
        return (generator.genesis, blocks)
    }()
    static var genesis: Genesis { generated.genesis }
    static var blocks: [CertifiedBlock] { generated.blocks }
    static let validatorKeys = (0..<DevnetKeys.validatorCount).map(DevnetKeys.validatorKey)

    /// Writes records with the given (frame height, payload) pairs into one segment.
    static func write(records: [(height: UInt64, payload: [UInt8])], fileSystem: SimulatedFileSystem) throws {
        try fileSystem.createDirectory("/chain/data/blocks")
        let bytes = records.flatMap { RecordFormat.encode(height: $0.height, payload: $0.payload) }
        fileSystem.setContents("/chain/data/blocks/segment-00000001.tblk", bytes)
    }

    static func write(_ blocks: [CertifiedBlock], fileSystem: SimulatedFileSystem) throws {
        try write(records: blocks.map { ($0.block.height, $0.canonicalBytes) }, fileSystem: fileSystem)
    }

    static func verify(_ fileSystem: SimulatedFileSystem) throws -> VerificationReport {
        try ChainVerification.run(dataDirectory: "/chain/data", genesis: genesis, fileSystem: fileSystem)
    }

    static func verify(_ blocks: [CertifiedBlock]) throws -> VerificationReport {
        let fileSystem = SimulatedFileSystem()
        try write(blocks, fileSystem: fileSystem)
        return try verify(fileSystem)
    }

    static func certify(_ block: Block, view: UInt64, chainID: String = DevnetKeys.chainID) -> CertifiedBlock {
        BlockBuilder.certify(block, view: view, chainID: chainID, signers: (0..<3).map { (UInt32($0), validatorKeys[$0]) })
    }

    /// Changes block `height` with `edit`, then re-seals the chain as a forger holding
    /// every validator key would: (optionally) the transactions root, the header, its
    /// certificate, and every later block's previous-hash link and certificate. The
    /// only flaw left is the one `edit` made.
    static func tamper(
        at height: UInt64, recomputeTransactionsRoot: Bool = true, _ edit: (inout Block) -> Void
    ) -> [CertifiedBlock] {
        var blocks = Fixture.blocks
        var previousHash = height == 1 ? genesis.hash : blocks[Int(height) - 2].block.hash
        for index in Int(height - 1)..<blocks.count {
            var block = blocks[index].block
            if index == Int(height - 1) {
                edit(&block)
                if recomputeTransactionsRoot { block.header.transactionsRoot = Block.transactionsRoot(block.transactions) }
            } else {
                block.header.previousHash = previousHash
            }
            blocks[index] = certify(block, view: blocks[index].certificate.view)
            previousHash = block.hash
        }
        return blocks
    }

    /// The fixture's chain re-sealed onto `genesis` (its hash links block 1) by a
    /// forger holding every validator key, with `edits[h]` applied to block h: each
    /// changed block gets its transactions root, previous-hash link and certificate
    /// (same view) redone, and with `recomputeStateRoots` the state roots too (from
    /// the first edited height on), so the edits are the only flaws. Onto another
    /// genesis, every transaction is signed again by its sender (devnet account keys)
    /// for that genesis, since signatures commit to the genesis hash.
    static func reseal(
        onto genesis: Genesis = Fixture.genesis, recomputeStateRoots: Bool = false,
        _ edits: [UInt64: (inout Block) -> Void]
    ) -> [CertifiedBlock] {
        var blocks = Fixture.blocks
        let first = edits.keys.min() ?? UInt64(blocks.count + 1)
        var ledger = Ledger(genesis: genesis)
        var previousHash = genesis.hash
        let resign = genesis.hash != Fixture.genesis.hash
        for index in blocks.indices {
            let height = UInt64(index + 1)
            var block = blocks[index].block
            block.header.previousHash = previousHash
            if let edit = edits[height] { edit(&block) }
            if resign { block.transactions = block.transactions.map { resigned($0, for: genesis) } }
            if edits[height] != nil || resign {
                block.header.transactionCount = UInt32(block.transactions.count)
                block.header.transactionsRoot = Block.transactionsRoot(block.transactions)
            }
            if recomputeStateRoots {
                let execution = ledger.execute(
                    block.transactions.map(VerifiedTransaction.init(signatureAlreadyVerified:)), proposer: Int(block.header.proposer))
                precondition(execution.allApplied, "an edit left a transaction that does not apply")
                if height >= first { block.header.stateRoot = execution.stateRoot }
                ledger.commit(execution)
            }
            if block != blocks[index].block { blocks[index] = certify(block, view: blocks[index].certificate.view) }
            previousHash = block.hash
        }
        return blocks
    }

    static let accountKeys = Dictionary(
        uniqueKeysWithValues: (0..<parameters.fundedAccounts).map(DevnetKeys.accountKey).map { ($0.publicKey, $0) })

    /// `transaction` signed again by its sender for `genesis`.
    static func resigned(_ transaction: Transaction, for genesis: Genesis) -> Transaction {
        Transaction.signed(
            by: accountKeys[transaction.sender]!, chainID: transaction.chainID, genesisHash: genesis.hash,
            to: transaction.recipient, amount: transaction.amount, fee: transaction.fee, nonce: transaction.nonce)
    }

    static func verify(_ blocks: [CertifiedBlock], genesis: Genesis) throws -> VerificationReport {
        let fileSystem = SimulatedFileSystem()
        try write(blocks, fileSystem: fileSystem)
        return try ChainVerification.run(dataDirectory: "/chain/data", genesis: genesis, fileSystem: fileSystem)
    }
}

extension XCTestCase {
    func assertFailure(
        _ report: VerificationReport, height: UInt64, code: String, mentioning words: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let failure = report.failure else { return XCTFail("chain verified as valid", file: file, line: line) }
        XCTAssertEqual(failure.height, height, failure.description, file: file, line: line)
        XCTAssertEqual(failure.code, code, failure.description, file: file, line: line)
        XCTAssertTrue(failure.explanation.contains(words), "'\(failure.explanation)' lacks '\(words)'", file: file, line: line)
        XCTAssertEqual(report.blocks, height - 1, "blocks verified before the bad one", file: file, line: line)
    }
}
