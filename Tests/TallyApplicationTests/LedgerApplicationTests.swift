import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes
import TallyVerify
import TallyVerifyTesting
import XCTest

@testable import TallyApplication

/// The node's consensus application applies the shared block rules, with the
/// clock bound on proposals only, and its own proposals satisfy them.
final class LedgerApplicationTests: XCTestCase {
    let genesis = try! Genesis(
        chainID: DevnetKeys.chainID, genesisTimeMs: 1_767_225_600_000, validators: DevnetKeys.validators(), accounts: [])
    var driftMs: UInt64 { genesis.consensus.maxClockDriftMs }

    final class Clock: @unchecked Sendable { var nowMs: UInt64 = 0 }

    func application(clock: Clock) -> LedgerApplication {
        LedgerApplication(
            genesis: genesis, ledger: Ledger(genesis: genesis), tipHash: genesis.hash, tipTimestampMs: genesis.genesisTimeMs,
            mempool: Mempool(genesis: genesis), nowMs: { clock.nowMs })
    }

    /// An empty block 1 of view 0 (primary: validator 0) at `timestampMs`.
    func block(timestampMs: UInt64) throws -> Block {
        try BlockBuilder.build(
            on: Ledger(genesis: genesis), view: 0, proposer: 0, timestampMs: timestampMs, previousHash: genesis.hash,
            transactions: []
        ).block
    }

    func validate(_ block: Block, origin: BlockOrigin, nowMs: UInt64) -> Result<Void, BlockRejection> {
        let clock = Clock()
        clock.nowMs = nowMs
        return application(clock: clock).validate(
            block, parentHash: genesis.hash, maxTransactions: Int(genesis.consensus.maxBlockTransactions), origin: origin)
    }

    /// Refuses every signature: shows which checks go through the injected checker.
    struct RefuseAll: TransactionSignatureChecker {
        func isValid(_ transaction: Transaction, genesisHash: Hash) -> Bool { false }
    }

    /// Signature checking is the injected checker's, on admission and for block
    /// transactions the mempool does not hold (the simulator injects its own).
    func testInjectedSignatureCheckerDecidesAdmissionAndBlocks() throws {
        let sender = DevnetKeys.accountKey(0)
        let funded = try Genesis(
            chainID: DevnetKeys.chainID, genesisTimeMs: genesis.genesisTimeMs, validators: DevnetKeys.validators(),
            accounts: [GenesisAccount(address: Address(publicKey: sender.publicKey), balance: 1_000)])
        let transfer = Transaction.signed(
            by: sender, chainID: funded.chainID, genesisHash: funded.hash, to: Address(publicKey: DevnetKeys.accountKey(1).publicKey), amount: 5, fee: 1,
            nonce: 0)
        let nowMs = funded.genesisTimeMs + 60_000
        let block = try BlockBuilder.build(
            on: Ledger(genesis: funded), view: 0, proposer: 0, timestampMs: nowMs, previousHash: funded.hash,
            transactions: [VerifiedTransaction(signatureAlreadyVerified: transfer)]
        ).block
        func application(_ checker: any TransactionSignatureChecker) -> LedgerApplication {
            LedgerApplication(
                genesis: funded, ledger: Ledger(genesis: funded), tipHash: funded.hash, tipTimestampMs: funded.genesisTimeMs,
                mempool: Mempool(genesis: funded), signatures: checker, nowMs: { nowMs })
        }
        let maxTransactions = Int(funded.consensus.maxBlockTransactions)
        let refusing = application(RefuseAll())
        XCTAssertEqual(refusing.submit([transfer]).map { result -> AdmissionError? in
            if case .failure(let reason) = result { return reason } else { return nil }
        }, [.badSignature])
        guard case .failure(let rejection) = refusing.validate(
            block, parentHash: funded.hash, maxTransactions: maxTransactions, origin: .prePrepare(view: 0))
        else { return XCTFail("a block was accepted though its transaction's signature was refused") }
        XCTAssertTrue(rejection.reason.contains("signature"), rejection.reason)

        let ed25519 = application(Ed25519TransactionChecker())
        XCTAssertNoThrow(try ed25519.validate(
            block, parentHash: funded.hash, maxTransactions: maxTransactions, origin: .prePrepare(view: 0)).get())
        XCTAssertEqual(try ed25519.submit([transfer])[0].get(), transfer.hash)
    }

    func testProposalTimestampBeyondTheClockDriftIsRejected() throws {
        let nowMs = genesis.genesisTimeMs + 60_000
        let tooFar = try block(timestampMs: nowMs + driftMs + 1)
        guard case .failure(let rejection) = validate(tooFar, origin: .prePrepare(view: 0), nowMs: nowMs) else {
            return XCTFail("a proposal \(driftMs + 1) ms ahead of the clock was accepted")
        }
        XCTAssertTrue(rejection.reason.contains("max_clock_drift_ms"), rejection.reason)
        // At the bound it is accepted; a synced (committed) block is not judged by the clock.
        XCTAssertNoThrow(try validate(try block(timestampMs: nowMs + driftMs), origin: .prePrepare(view: 0), nowMs: nowMs).get())
        XCTAssertNoThrow(try validate(tooFar, origin: .sync(certificateView: 0), nowMs: nowMs).get())
    }

    func testProposalRulesAreTheVerifiers() throws {
        let nowMs = genesis.genesisTimeMs + 60_000
        // Not after the genesis time.
        let early = try block(timestampMs: genesis.genesisTimeMs)
        guard case .failure(let rejection) = validate(early, origin: .prePrepare(view: 0), nowMs: nowMs) else {
            return XCTFail("block 1 at the genesis time was accepted")
        }
        XCTAssertTrue(rejection.reason.contains("not later"), rejection.reason)
        // A header view later than the PRE-PREPARE's, or a certificate's.
        var later = try block(timestampMs: nowMs)
        later.header.view = 4  // primary 0 again
        XCTAssertNoThrow(try validate(later, origin: .prePrepare(view: 4), nowMs: nowMs).get())
        XCTAssertThrowsError(try validate(later, origin: .prePrepare(view: 3), nowMs: nowMs).get())
        XCTAssertThrowsError(try validate(later, origin: .sync(certificateView: 3), nowMs: nowMs).get())
        // A proposer that is not the header view's primary.
        var wrong = try block(timestampMs: nowMs)
        wrong.header.view = 1
        XCTAssertThrowsError(try validate(wrong, origin: .prePrepare(view: 1), nowMs: nowMs).get()) { error in
            XCTAssertTrue("\(error)".contains("primary of the header's view 1"), "\(error)")
        }
    }

    /// The primary's clock at or behind its parent: the block is 1 ms after the
    /// parent (before, it took the clock, equal to or before the parent's time).
    func testProposerTimestampIsAfterTheParent() throws {
        let clock = Clock()
        clock.nowMs = genesis.genesisTimeMs
        let primary = application(clock: clock)
        let first = try XCTUnwrap(primary.propose(
            height: 1, view: 0, proposer: 0, parentHash: genesis.hash, maxTransactions: 10, allowEmpty: true))
        XCTAssertEqual(first.header.timestampMs, genesis.genesisTimeMs + 1)
        clock.nowMs = genesis.genesisTimeMs - 5_000
        let second = try XCTUnwrap(primary.propose(
            height: 2, view: 0, proposer: 0, parentHash: first.hash, maxTransactions: 10, allowEmpty: true))
        XCTAssertEqual(second.header.timestampMs, first.header.timestampMs + 1)
        // A backup with the same clock accepts both.
        let backup = application(clock: clock)
        XCTAssertNoThrow(try backup.validate(first, parentHash: genesis.hash, maxTransactions: 10, origin: .prePrepare(view: 0)).get())
        XCTAssertNoThrow(try backup.validate(second, parentHash: first.hash, maxTransactions: 10, origin: .prePrepare(view: 0)).get())
        // Once committed, the tip's timestamp is the parent's (it was taken as 0).
        _ = primary.commit(first)
        _ = primary.commit(second)
        clock.nowMs = second.header.timestampMs - 1_000
        let third = try XCTUnwrap(primary.propose(
            height: 3, view: 0, proposer: 0, parentHash: second.hash, maxTransactions: 10, allowEmpty: true))
        XCTAssertEqual(third.header.timestampMs, second.header.timestampMs + 1)
    }

    /// A parent more than the drift bound ahead of this clock: no acceptable
    /// timestamp exists, so the primary proposes nothing yet.
    func testNoProposalWhenTheParentIsBeyondTheDrift() throws {
        let clock = Clock()
        clock.nowMs = genesis.genesisTimeMs - driftMs
        XCTAssertNil(application(clock: clock).propose(
            height: 1, view: 0, proposer: 0, parentHash: genesis.hash, maxTransactions: 10, allowEmpty: true))
        clock.nowMs += 1
        XCTAssertNotNil(application(clock: clock).propose(
            height: 1, view: 0, proposer: 0, parentHash: genesis.hash, maxTransactions: 10, allowEmpty: true))
    }
}
