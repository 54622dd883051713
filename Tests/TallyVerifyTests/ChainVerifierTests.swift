import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting
@testable import TallyVerify
import TallyVerifyTesting

final class ChainVerifierTests: XCTestCase {
    func testGeneratedChainVerifies() throws {
        let report = try Fixture.verify(Fixture.blocks)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.blocks, 10)
        XCTAssertEqual(report.transactions, 240)
        let certificateSignatures = Fixture.blocks.reduce(0) { $0 + $1.certificate.signatures.count }
        XCTAssertEqual(report.signaturesChecked, 240 + certificateSignatures)
        XCTAssertEqual(report.tipHash, Fixture.blocks.last!.block.hash)
        XCTAssertEqual(report.stateRoot, Fixture.blocks.last!.block.header.stateRoot)
    }

    func testGeneratorIsDeterministicAndRealistic() {
        var again = ChainGenerator(Fixture.parameters)
        XCTAssertEqual((0..<10).map { _ in again.nextBlock() }, Fixture.blocks)
        var other = ChainGenerator(ChainGenerator.Parameters(blocks: 1, transactionsPerBlock: 24, fundedAccounts: 40, seed: 8))
        XCTAssertNotEqual(other.nextBlock(), Fixture.blocks[0])
        let senders = Set(Fixture.blocks.flatMap { $0.block.transactions.map(\.sender) })
        XCTAssertGreaterThan(senders.count, 30)
        XCTAssertGreaterThan(again.ledger.accountCount, 40, "transfers created new accounts")
        let signerCounts = Set(Fixture.blocks.map { $0.certificate.signatures.count })
        XCTAssertTrue(signerCounts.isSubset(of: [3, 4]))
    }

    func testChainSpreadOverManySegmentsVerifies() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(
            dataDirectory: "/chain/data", fileSystem: fileSystem, options: .init(maxSegmentBytes: 12_000))
        for block in Fixture.blocks { try store.append(block) }
        XCTAssertGreaterThan(store.location(at: 10)!.segment, 3)
        let report = try Fixture.verify(fileSystem)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.blocks, 10)
    }

    func testIncrementalVerifierRejectsABadBlockAndStaysUsable() throws {
        var verifier = ChainVerifier(genesis: Fixture.genesis)
        for block in Fixture.blocks.prefix(3) { try verifier.verifyNext(block) }
        var bad = Fixture.blocks[3]
        bad.certificate.signatures.removeLast(bad.certificate.signatures.count - 2)
        XCTAssertThrowsError(try verifier.verifyNext(bad)) {
            XCTAssertEqual(($0 as? VerificationFailure)?.height, 4)
        }
        XCTAssertEqual(verifier.height, 3)
        XCTAssertEqual(verifier.lastBlockHash, Fixture.blocks[2].block.hash)
        for block in Fixture.blocks.dropFirst(3) { try verifier.verifyNext(block) }
        XCTAssertEqual(verifier.ledger.stateRoot, Fixture.blocks.last!.block.header.stateRoot)
    }

    func testBatchPrecheckMatchesOneByOne() throws {
        let prechecked = BlockPrecheck.run(
            Fixture.blocks, chainID: Fixture.genesis.chainID, genesisHash: Fixture.genesis.hash, validators: Fixture.genesis.validators)
        var verifier = ChainVerifier(genesis: Fixture.genesis)
        for (block, checked) in zip(Fixture.blocks, prechecked) {
            XCTAssertEqual(checked.computedTransactionsRoot, block.block.header.transactionsRoot)
            XCTAssertNil(checked.firstInvalidSignature)
            XCTAssertNil(checked.certificateFailure)
            try verifier.verifyNext(checked)
        }
        XCTAssertEqual(verifier.height, 10)
    }

    func testResumeFromASnapshotReplaysOnlyTheBlocksAbove() throws {
        var verifier = ChainVerifier(genesis: Fixture.genesis)
        for block in Fixture.blocks.prefix(6) { try verifier.verifyNext(block) }
        let snapshot = Snapshot(ledger: verifier.ledger, blockHash: verifier.lastBlockHash)
        let restored = try snapshot.restore(genesis: Fixture.genesis)
        XCTAssertEqual(restored.stateRoot, Fixture.blocks[5].block.header.stateRoot)
        var resumed = ChainVerifier(genesis: Fixture.genesis, resumingFrom: restored, lastBlockHash: snapshot.blockHash,
            lastTimestampMs: Fixture.blocks[5].block.header.timestampMs)
        for block in Fixture.blocks.dropFirst(6) { try resumed.verifyNext(block) }
        XCTAssertEqual(resumed.ledger.stateRoot, Fixture.blocks.last!.block.header.stateRoot)
    }

    func testWalletCertificateCheck() throws {
        let block = Fixture.blocks[4]
        XCTAssertNoThrow(try ChainVerifier.verifyCertificate(block.certificate, for: block.block.header, genesis: Fixture.genesis))
        XCTAssertThrowsError(
            try ChainVerifier.verifyCertificate(block.certificate, for: Fixture.blocks[5].block.header, genesis: Fixture.genesis))
        var forged = block.certificate
        forged.signatures[0].signature = forged.signatures[1].signature
        XCTAssertThrowsError(try ChainVerifier.verifyCertificate(forged, for: block.block.header, genesis: Fixture.genesis)) {
            XCTAssertEqual(($0 as? VerificationFailure)?.code, "certificate_bad_signature")
        }
    }

    /// Issue 14: transactions signed only the chain id string, so a chain with the same
    /// id and another genesis (a second `tally-node testnet`) accepted them. A block of
    /// chain B carrying a transfer signed for chain A is invalid on B; the same transfer
    /// signed for B is valid.
    func testTransactionSignedForAnotherGenesisWithTheSameChainIDIsRejected() throws {
        let chainA = Fixture.genesis
        var chainB = Fixture.genesis
        chainB.genesisTimeMs += 1
        XCTAssertTrue(ChainID.same(chainA.chainID, chainB.chainID))
        XCTAssertNotEqual(chainA.hash, chainB.hash)
        let key = DevnetKeys.accountKey(0)
        XCTAssertEqual(chainB.accounts[0].address, Address(publicKey: key.publicKey))
        let ledger = Ledger(genesis: chainB)
        func block(signedFor genesis: Genesis) throws -> CertifiedBlock {
            let transfer = Transaction.signed(
                by: key, chainID: chainB.chainID, genesisHash: genesis.hash, to: chainB.accounts[1].address, amount: 5,
                fee: 1, nonce: 0)
            // Built as a faulty proposer would: without checking the signature.
            let built = try BlockBuilder.build(
                on: ledger, view: 0, proposer: 0, timestampMs: chainB.genesisTimeMs + 1000, previousHash: chainB.hash,
                transactions: [VerifiedTransaction(signatureAlreadyVerified: transfer)])
            return Fixture.certify(built.block, view: 0, chainID: chainB.chainID)
        }
        XCTAssertNil(VerifiedTransaction(try block(signedFor: chainA).block.transactions[0], genesisHash: chainB.hash))
        var verifier = ChainVerifier(genesis: chainB)
        XCTAssertThrowsError(try verifier.verifyNext(try block(signedFor: chainA))) {
            XCTAssertEqual(($0 as? VerificationFailure)?.code, "transaction_bad_signature")
        }
        XCTAssertNoThrow(try verifier.verifyNext(try block(signedFor: chainB)))
    }

    func testBlockBuilderRefusesATransactionThatDoesNotApply() {
        let ledger = Ledger(genesis: Fixture.genesis)
        let poor = SigningKey(seed: [UInt8](repeating: 3, count: 32))!
        let transaction = Transaction.signed(
            by: poor, chainID: DevnetKeys.chainID, genesisHash: ledger.genesisHash, to: Fixture.genesis.accounts[0].address,
            amount: 5, fee: 1, nonce: 0)
        XCTAssertThrowsError(try BlockBuilder.build(
            on: ledger, view: 0, proposer: 0, timestampMs: 0, previousHash: Fixture.genesis.hash,
            transactions: [VerifiedTransaction(transaction, genesisHash: ledger.genesisHash)!]))
    }

    func testDevnetKeyDerivation() {
        // Seeds computed independently (Python hashlib.sha256).
        XCTAssertEqual(Hex.encode(DevnetKeys.validatorSeed(0)), "370e2cf7288e9138d93c724a63a9135e3eec1e20bec36b78019af1dea0276354")
        XCTAssertEqual(Hex.encode(DevnetKeys.accountSeed(12)), "c38a69319b48f013e14cd9dd3655c71de40d447c6556a21ee6d8e8bc07c9c8a3")
        XCTAssertEqual(DevnetKeys.validatorKey(0).publicKey, SigningKey(seed: DevnetKeys.validatorSeed(0))!.publicKey)
        XCTAssertNotEqual(DevnetKeys.validatorSeed(1), DevnetKeys.accountSeed(1))
        XCTAssertEqual(DevnetKeys.validators().count, 4)
        XCTAssertEqual(Fixture.genesis.validators.quorum, 3)
    }
}

/// The fixture chain verified and appended to a block store on a simulated file
/// system, with a snapshot written at each of `heights`.
private func storedFixtureChain(snapshotsAt heights: Set<UInt64>) throws
    -> (SimulatedFileSystem, BlockStore, SnapshotStore, ChainVerifier)
{
    let fileSystem = SimulatedFileSystem()
    let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
    let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem)
    var verifier = ChainVerifier(genesis: Fixture.genesis)
    for block in Fixture.blocks {
        try verifier.verifyNext(block)
        try store.append(block)
        if heights.contains(verifier.height) {
            try snapshots.write(Snapshot(ledger: verifier.ledger, blockHash: verifier.lastBlockHash))
        }
    }
    return (fileSystem, store, snapshots, verifier)
}

final class ChainRecoveryTests: XCTestCase {
    func testRestartLoadsTheSnapshotAndReplaysOnlyTheBlocksAbove() throws {
        let (_, store, snapshots, verifier) = try storedFixtureChain(snapshotsAt: [4, 8])
        let outcome = try ChainRecovery.resume(store: store, snapshots: snapshots, genesis: Fixture.genesis)
        XCTAssertEqual(outcome.snapshotHeight, 8)
        XCTAssertEqual(outcome.replayedBlocks, 2)
        XCTAssertEqual(outcome.verifier.ledger.stateRoot, verifier.ledger.stateRoot)
        XCTAssertEqual(outcome.verifier.lastBlockHash, Fixture.blocks.last!.block.hash)

        // A snapshot of another history is not trusted: replay from genesis instead.
        var other = ChainGenerator(ChainGenerator.Parameters(blocks: 9, transactionsPerBlock: 5, fundedAccounts: 40, seed: 99))
        var otherVerifier = ChainVerifier(genesis: other.genesis)
        for _ in 0..<9 { try otherVerifier.verifyNext(other.nextBlock()) }
        XCTAssertEqual(other.genesis, Fixture.genesis)
        try snapshots.write(Snapshot(ledger: otherVerifier.ledger, blockHash: otherVerifier.lastBlockHash))
        let fallback = try ChainRecovery.resume(store: store, snapshots: snapshots, genesis: Fixture.genesis)
        XCTAssertEqual(fallback.snapshotHeight, 0)
        XCTAssertEqual(fallback.replayedBlocks, 10)
        XCTAssertEqual(fallback.verifier.ledger.stateRoot, verifier.ledger.stateRoot)
    }
}

/// Issue 16: a version-2 snapshot is taken as stored (no rehash of every account), so
/// damage must still be caught: by the checksum, and with a valid checksum (what a
/// writer bug could leave) by the restore's sampled tree check. Either way the node
/// rebuilds the ledger from the blocks instead of trusting it.
final class DamagedSnapshotRecoveryTests: XCTestCase {
    func testDamagedVersion2SnapshotIsNotTrustedAndTheBlocksAreReplayed() throws {
        for rechecksum in [false, true] {
            let (fileSystem, store, snapshots, verifier) = try storedFixtureChain(snapshotsAt: [8])
            let path = snapshots.path(height: 8)
            var bytes = try XCTUnwrap(fileSystem.contents(path))
            XCTAssertEqual(RecordFormat.readLittleEndian(UInt32.self, bytes, 4), 2, "written in version 2")
            // The first leaf of the stored state tree.
            let count = verifier.ledger.accountCount
            bytes[Snapshot.fixedBytes + count * (Address.byteCount + 16 + 4)] ^= 1
            if rechecksum {
                bytes.removeLast(4)
                RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
            }
            fileSystem.setContents(path, bytes)

            let outcome = try ChainRecovery.resume(store: store, snapshots: snapshots, genesis: Fixture.genesis)
            XCTAssertEqual(outcome.snapshotHeight, 0, "rechecksummed: \(rechecksum)")
            XCTAssertEqual(outcome.replayedBlocks, 10)
            XCTAssertEqual(outcome.verifier.ledger.stateRoot, verifier.ledger.stateRoot)
        }
    }
}

/// Chains longer than one batch: the reader thread runs ahead, and a failure must
/// stop it cleanly wherever it is.
final class LongChainTests: XCTestCase {
    static let chain: (genesis: Genesis, blocks: [CertifiedBlock]) = {
        var generator = ChainGenerator(ChainGenerator.Parameters(blocks: 0, transactionsPerBlock: 1, fundedAccounts: 8, seed: 5))
        let count = ChainVerification.maxBatchBlocks * 2 + 20
        return (generator.genesis, (0..<count).map { _ in generator.nextBlock() })
    }()

    func verify(_ blocks: [CertifiedBlock]) throws -> VerificationReport {
        let fileSystem = SimulatedFileSystem()
        try Fixture.write(blocks, fileSystem: fileSystem)
        return try ChainVerification.run(dataDirectory: "/chain/data", genesis: LongChainTests.chain.genesis, fileSystem: fileSystem)
    }

    func testSeveralBatchesVerify() throws {
        let report = try verify(LongChainTests.chain.blocks)
        XCTAssertNil(report.failure)
        XCTAssertEqual(report.blocks, UInt64(LongChainTests.chain.blocks.count))
        XCTAssertEqual(report.tipHash, LongChainTests.chain.blocks.last!.block.hash)
    }

    func testFailureInAnyBatchIsReportedAndStopsTheReader() throws {
        for height in [3, ChainVerification.maxBatchBlocks + 1, LongChainTests.chain.blocks.count] {
            var blocks = LongChainTests.chain.blocks
            blocks[height - 1].certificate.signatures.removeLast(blocks[height - 1].certificate.signatures.count - 1)
            assertFailure(try verify(blocks), height: UInt64(height), code: "certificate_below_quorum", mentioning: "quorum")
        }
    }
}
