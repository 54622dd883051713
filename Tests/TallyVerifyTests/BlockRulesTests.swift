import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
@testable import TallyVerify

/// The header rules a replica applies, found by `tally verify`'s code path in a
/// chain whose certificates are otherwise valid (a forger holding every key, or a
/// quorum that did not check): each at the right height, with its reason.
final class BlockRulesTests: XCTestCase {
    let height: UInt64 = 6
    var index: Int { Int(height - 1) }

    func testResealingWithoutEditsKeepsTheChainValid() throws {
        let blocks = Fixture.reseal(recomputeStateRoots: true, [:])
        XCTAssertEqual(blocks, Fixture.blocks)
        XCTAssertTrue(try Fixture.verify(blocks).isValid)
    }

    /// Block 6 takes block 7's first transaction: 25 valid transactions, over a
    /// genesis maximum of 24 (the fixture's blocks hold 24).
    func testBlockOverTheGenesisTransactionLimit() throws {
        var genesis = Fixture.genesis
        genesis.consensus.maxBlockTransactions = 24
        let moved = Fixture.blocks[index + 1].block.transactions[0]
        let blocks = Fixture.reseal(onto: genesis, recomputeStateRoots: true, [
            height: { $0.transactions.append(moved) },
            height + 1: { $0.transactions.removeFirst() },
        ])
        XCTAssertEqual(blocks[index].block.transactions.count, 25)
        let report = try Fixture.verify(blocks, genesis: genesis)
        assertFailure(report, height: height, code: "too_many_transactions", mentioning: "25 transactions, over the genesis limit of 24")

        // At the limit, the same chain without the extra block-6 transaction is fine.
        XCTAssertTrue(try Fixture.verify(Fixture.reseal(onto: genesis, [:]), genesis: genesis).isValid)
    }

    func testProposerThatIsNotThePrimaryOfTheHeaderView() throws {
        let header = Fixture.blocks[index].block.header
        let other = (header.proposer + 1) % UInt32(Fixture.genesis.validators.count)
        let blocks = Fixture.reseal(recomputeStateRoots: true, [height: { $0.header.proposer = other }])
        assertFailure(
            try Fixture.verify(blocks), height: height, code: "wrong_proposer",
            mentioning: "proposer \(other) is not validator \(header.proposer), the primary of the header's view \(header.view)")
    }

    /// The header claims a later view (with that view's primary as proposer) than
    /// the certificate that committed it.
    func testHeaderViewLaterThanItsCertificate() throws {
        let certificateView = Fixture.blocks[index].certificate.view
        let blocks = Fixture.reseal(recomputeStateRoots: true, [height: {
            $0.header.view = certificateView + 1
            $0.header.proposer = UInt32(Fixture.genesis.validators.primary(view: certificateView + 1))
        }])
        XCTAssertEqual(blocks[index].certificate.view, certificateView)
        assertFailure(
            try Fixture.verify(blocks), height: height, code: "view_after_certificate",
            mentioning: "header view \(certificateView + 1) is later than its commit certificate's view \(certificateView)")
    }

    func testTimestampEqualToThePreviousBlock() throws {
        let previous = Fixture.blocks[index - 1].block.header.timestampMs
        let blocks = Fixture.reseal([height: { $0.header.timestampMs = previous }])
        assertFailure(
            try Fixture.verify(blocks), height: height, code: "timestamp_not_increasing",
            mentioning: "timestamp \(previous) ms is not later than the previous block's \(previous) ms")
    }

    func testTimestampBeforeThePreviousBlock() throws {
        let previous = Fixture.blocks[index - 1].block.header.timestampMs
        let blocks = Fixture.reseal([height: { $0.header.timestampMs = previous - 1 }])
        assertFailure(try Fixture.verify(blocks), height: height, code: "timestamp_not_increasing", mentioning: "not later")
    }

    /// Block 1's parent time is the genesis time.
    func testFirstBlockAtTheGenesisTime() throws {
        let blocks = Fixture.reseal([1: { $0.header.timestampMs = Fixture.genesis.genesisTimeMs }])
        assertFailure(try Fixture.verify(blocks), height: 1, code: "timestamp_not_increasing", mentioning: "not later")
    }

    /// A timestamp far in the future is only refused for a proposal: a committed
    /// block cannot be judged against today's clock (and the chain stays valid
    /// when the next blocks are later still).
    func testClockBoundAppliesToProposalsOnly() throws {
        let block = Fixture.blocks[0].block
        let parent = BlockRules.Parent.genesis(Fixture.genesis)
        let drift = Fixture.genesis.consensus.maxClockDriftMs
        let nowMs = block.header.timestampMs - drift
        XCTAssertNoThrow(try BlockRules.checkHeader(
            block, parent: parent, genesis: Fixture.genesis, origin: .proposal(view: block.header.view, nowMs: nowMs)))
        XCTAssertThrowsError(try BlockRules.checkHeader(
            block, parent: parent, genesis: Fixture.genesis, origin: .proposal(view: block.header.view, nowMs: nowMs - 1))
        ) { error in
            XCTAssertEqual((error as? VerificationFailure)?.code, "timestamp_too_far_ahead")
            XCTAssertEqual((error as? VerificationFailure)?.height, 1)
        }
        XCTAssertNoThrow(try BlockRules.checkHeader(
            block, parent: parent, genesis: Fixture.genesis, origin: .committed(certificateView: block.header.view)))
    }

    /// A PRE-PREPARE may re-propose a block of an earlier view, never a later one.
    func testProposalViewBound() throws {
        var block = Fixture.blocks[0].block
        block.header.view = 2
        block.header.proposer = UInt32(Fixture.genesis.validators.primary(view: 2))
        let parent = BlockRules.Parent.genesis(Fixture.genesis)
        let nowMs = block.header.timestampMs
        for view: UInt64 in [2, 6] {
            XCTAssertNoThrow(try BlockRules.checkHeader(
                block, parent: parent, genesis: Fixture.genesis, origin: .proposal(view: view, nowMs: nowMs)))
        }
        XCTAssertThrowsError(try BlockRules.checkHeader(
            block, parent: parent, genesis: Fixture.genesis, origin: .proposal(view: 1, nowMs: nowMs))
        ) { error in
            XCTAssertEqual((error as? VerificationFailure)?.code, "view_after_proposal")
        }
    }

    func testProposalTimestamp() {
        let genesis = Fixture.genesis
        let drift = genesis.consensus.maxClockDriftMs
        // The clock when it is past the parent, else just after the parent.
        XCTAssertEqual(BlockRules.proposalTimestampMs(parentTimestampMs: 1_000, nowMs: 5_000, genesis: genesis), 5_000)
        XCTAssertEqual(BlockRules.proposalTimestampMs(parentTimestampMs: 5_000, nowMs: 5_000, genesis: genesis), 5_001)
        XCTAssertEqual(BlockRules.proposalTimestampMs(parentTimestampMs: 5_000 + drift - 1, nowMs: 5_000, genesis: genesis), 5_000 + drift)
        // A parent beyond the drift bound: no timestamp this clock would accept.
        XCTAssertNil(BlockRules.proposalTimestampMs(parentTimestampMs: 5_000 + drift, nowMs: 5_000, genesis: genesis))
        XCTAssertNil(BlockRules.proposalTimestampMs(parentTimestampMs: .max, nowMs: .max, genesis: genesis))
    }
}
