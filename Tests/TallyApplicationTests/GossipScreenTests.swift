import TallyCrypto
import TallyLedger
import Synchronization
import TallyTypes
import XCTest

@testable import TallyApplication

/// Gossip from a peer buys no signature work unless the transaction could be admitted.
final class GossipScreenTests: XCTestCase {
    let chainID = "tally-test"
    let funded = SigningKey(seed: SHA256.hash(Array("gossip-funded".utf8)).bytes)!
    let unfunded = SigningKey(seed: SHA256.hash(Array("gossip-unfunded".utf8)).bytes)!
    var recipient: Address { Address(publicKey: unfunded.publicKey) }

    func tx(_ key: SigningKey, nonce: UInt64 = 0, fee: UInt64 = 1, chain: String? = nil) -> Transaction {
        Transaction.signed(by: key, chainID: chain ?? chainID, genesisHash: .zero, to: recipient, amount: 10, fee: fee, nonce: nonce)
    }

    func testOnlyAdmissibleTransactionsReachTheSignatureCheck() {
        var pool = Mempool(chainID: chainID, minFee: 2, limits: MempoolLimits(maxTransactions: 100, maxBytes: 1 << 20, maxNonceGap: 4, maxPerSender: 100))
        let held = tx(funded, nonce: 0, fee: 2)
        XCTAssertNoThrow(try pool.admit(VerifiedTransaction(signatureAlreadyVerified: held), account: Account(balance: 1_000, nonce: 0)).get())
        let good = tx(funded, nonce: 1, fee: 2)
        let inFlight = tx(funded, nonce: 2, fee: 2)
        let gossip = [
            good, good,                        // a repeat within the round
            held,                              // already in the mempool
            inFlight,                          // in a block being validated
            tx(unfunded, fee: 2),              // cannot pay
            tx(funded, nonce: 1, fee: 1),      // below the minimum fee
            tx(funded, nonce: 9, fee: 2),      // beyond the nonce window
            tx(funded, nonce: 1, fee: 2, chain: "other-chain"),
        ]
        let accounts = [Address(publicKey: funded.publicKey): Account(balance: 1_000, nonce: 0)]
        let screen = GossipScreen(
            gossip, mempool: pool, account: { accounts[$0] ?? .empty }, isInFlight: { $0 == inFlight.hash })
        XCTAssertEqual(screen.unchecked, [good])
        XCTAssertEqual(screen.checked, [inFlight])
        XCTAssertEqual(screen.rejected.values.reduce(0, +), 4)
        XCTAssertEqual(screen.rejected["insufficient_balance"], 1)
        XCTAssertEqual(screen.rejected["fee_too_low"], 1)
    }

    /// Counts the signatures it checks (all valid).
    final class CountingChecker: TransactionSignatureChecker {
        let checks = Atomic<Int>(0)
        func isValid(_ transaction: Transaction, genesisHash: Hash) -> Bool {
            checks.add(1, ordering: .relaxed)
            return true
        }
    }

    /// Issue 14: what the screen saves. A Byzantine peer relays 400 hopeless
    /// transactions (unfunded senders, another chain, nonces past the window, fees
    /// below the minimum) around one good one: the gossip path (`verifyScreened`, the
    /// node's order of work) checks one signature; without the screen it would check
    /// all 401. Fails if the path verifies before (or without) screening.
    func testHopelessGossipCostsNoSignatureChecks() async {
        let pool = Mempool(chainID: chainID, minFee: 2, limits: MempoolLimits(maxTransactions: 1_000, maxBytes: 1 << 20, maxNonceGap: 4, maxPerSender: 100))
        let accounts = [Address(publicKey: funded.publicKey): Account(balance: 1_000_000, nonce: 0)]
        let good = tx(funded, nonce: 0, fee: 2)
        var hopeless: [Transaction] = []
        for index in 0..<100 {
            let stranger = SigningKey(seed: SHA256.hash(Array("gossip-stranger-\(index)".utf8)).bytes)!
            hopeless.append(tx(stranger, nonce: 0, fee: 2))                               // cannot pay
            hopeless.append(tx(funded, nonce: UInt64(index), fee: 2, chain: "other-chain"))
            hopeless.append(tx(funded, nonce: 10 + UInt64(index), fee: 2))                  // past the nonce window
            hopeless.append(tx(funded, nonce: UInt64(index), fee: 1))                       // below the minimum fee
        }
        let gossip = hopeless + [good]
        let screened = CountingChecker()
        let admissible = await GossipScreen.verifyScreened(
            gossip, screen: { GossipScreen($0, mempool: pool, account: { accounts[$0] ?? .empty }, isInFlight: { _ in false }) },
            verify: { SignatureBatch.verify($0, genesisHash: .zero, using: screened) })
        XCTAssertEqual(admissible.map(\.transaction), [good])
        XCTAssertNotNil(admissible.first?.verified)
        XCTAssertEqual(screened.checks.load(ordering: .relaxed), 1, "only the admissible transaction's signature is checked")

        // The same gossip verified without the screen: a signature check each.
        let unscreened = CountingChecker()
        _ = SignatureBatch.verify(gossip, genesisHash: .zero, using: unscreened)
        XCTAssertEqual(unscreened.checks.load(ordering: .relaxed), gossip.count)
    }
}
