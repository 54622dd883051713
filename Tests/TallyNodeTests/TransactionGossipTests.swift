import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNode

/// Re-gossip sends again only the mempool heads that were heads a whole round ago too
/// (a head that moved on since was delivered), and the buffer goes out in messages
/// of at most `PeerMessage.maxGossipTransactions`.
final class TransactionGossipTests: XCTestCase {
    let key = SigningKey(seed: SHA256.hash(Array("gossip".utf8)).bytes)!

    func transfer(nonce: UInt64) -> Transaction {
        Transaction.signed(
            by: key, chainID: "tally-gossip", genesisHash: SHA256.hash([0]), to: Address(publicKey: key.publicKey), amount: 1,
            fee: 1, nonce: nonce)
    }

    func testOnlyHeadsOfTheLastRoundTooAreRegossiped() {
        var gossip = TransactionGossip()
        let (a, b, c) = (transfer(nonce: 1), transfer(nonce: 2), transfer(nonce: 3))
        XCTAssertEqual(gossip.regossipStuck([a, b]), [], "the first round has nothing to compare with")
        XCTAssertEqual(gossip.regossipStuck([b, c]), [b], "a left the mempool, c is new: only b waited a whole round")
        XCTAssertEqual(gossip.takeBatches(), [[b]], "the stuck head is buffered for the flush")
        XCTAssertEqual(gossip.regossipStuck([a]), [], "compared with the last round only, not every earlier one")
    }

    func testTheBufferGoesOutInBoundedMessagesOnce() {
        var gossip = TransactionGossip()
        let transaction = transfer(nonce: 1)
        for _ in 0..<(PeerMessage.maxGossipTransactions + 1) { gossip.append(transaction) }
        XCTAssertEqual(gossip.takeBatches().map(\.count), [PeerMessage.maxGossipTransactions, 1])
        XCTAssertEqual(gossip.takeBatches(), [], "taken: empty")
    }
}
