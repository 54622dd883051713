import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
@testable import TallyVerify
import TallyVerifyTesting

/// The genesis minimum fee is a rule of execution: `tally verify`, block sync and
/// consensus validation (all `ChainVerifier.checkContents` over `Ledger.execute`)
/// refuse a block that carries a transaction paying less.
final class MinFeeTests: XCTestCase {
    let height: UInt64 = 4
    var index: Int { Int(height - 1) }

    func testBlockWithATransactionBelowTheMinimumFeeIsInvalid() throws {
        XCTAssertEqual(Fixture.genesis.consensus.minFee, 1)
        // Validly signed by its sender, with every root re-sealed: only the fee is wrong.
        let original = Fixture.blocks[index].block.transactions[4]
        let key = try XCTUnwrap((0..<Fixture.parameters.fundedAccounts).lazy.map(DevnetKeys.accountKey).first {
            $0.publicKey == original.sender
        })
        let blocks = Fixture.tamper(at: height) { block in
            block.transactions[4] = Transaction.signed(
                by: key, chainID: DevnetKeys.chainID, genesisHash: Fixture.genesis.hash, to: original.recipient,
                amount: original.amount, fee: 0,
                nonce: original.nonce)
        }
        assertFailure(try Fixture.verify(blocks), height: height, code: "transaction_rejected", mentioning: "minimum fee")
    }

    func testBlockBuilderRefusesAFreeTransferFromAnUnfundedKey() {
        let ledger = Ledger(genesis: Fixture.genesis)
        let stranger = SigningKey(seed: [UInt8](repeating: 9, count: 32))!
        let free = Transaction.signed(
            by: stranger, chainID: DevnetKeys.chainID, genesisHash: ledger.genesisHash, to: Address(publicKey: stranger.publicKey),
            amount: 0, fee: 0, nonce: 0)
        XCTAssertThrowsError(try BlockBuilder.build(
            on: ledger, view: 0, proposer: 0, timestampMs: 0, previousHash: Fixture.genesis.hash,
            transactions: [VerifiedTransaction(free, genesisHash: ledger.genesisHash)!]))
    }
}
