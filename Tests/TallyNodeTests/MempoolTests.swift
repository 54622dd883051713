import TallyCrypto
import TallyLedger
import TallyNode
import TallyTypes
import XCTest

final class MempoolTests: XCTestCase {
    let chainID = "tally-test"
    let keys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("mempool-\($0)".utf8)).bytes)! }
    var recipient: Address { Address(publicKey: keys[3].publicKey) }

    func tx(_ sender: Int, nonce: UInt64, amount: UInt64 = 10, fee: UInt64 = 1, chain: String? = nil) -> VerifiedTransaction {
        VerifiedTransaction(Transaction.signed(
            by: keys[sender], chainID: chain ?? chainID, to: recipient, amount: amount, fee: fee, nonce: nonce))!
    }

    let rich = Account(balance: 1_000_000, nonce: 0)

    func testAdmitDeduplicatesAndOrdersByNonce() throws {
        var pool = Mempool(chainID: chainID)
        let first = tx(0, nonce: 0)
        XCTAssertEqual(try pool.admit(first, account: rich).get(), first.transaction.hash)
        XCTAssertEqual(pool.admit(first, account: rich), .failure(.duplicate))
        XCTAssertEqual(pool.admit(tx(0, nonce: 0, amount: 11), account: rich), .failure(.nonceTaken(0)))
        _ = pool.admit(tx(0, nonce: 2), account: rich)
        _ = pool.admit(tx(0, nonce: 1), account: rich)
        XCTAssertEqual(pool.count, 3)
        let reaped = pool.reap(maxCount: 10) { _ in 0 }
        XCTAssertEqual(reaped.map(\.nonce), [0, 1, 2])
        // A gap stops the run: nonce 5 is not proposable before 3 and 4.
        _ = pool.admit(tx(0, nonce: 5), account: rich)
        XCTAssertEqual(pool.reap(maxCount: 10) { _ in 0 }.map(\.nonce), [0, 1, 2])
    }

    func testStaleFutureWrongChainAndBalance() {
        var pool = Mempool(chainID: chainID, limits: MempoolLimits(maxTransactions: 100, maxBytes: 1 << 20, maxNonceGap: 5, maxPerSender: 100))
        let used = Account(balance: 100, nonce: 3)
        XCTAssertEqual(pool.admit(tx(0, nonce: 2), account: used), .failure(.staleNonce(next: 3, found: 2)))
        XCTAssertEqual(pool.admit(tx(0, nonce: 9), account: used), .failure(.futureNonce(next: 3, found: 9)))
        XCTAssertEqual(pool.admit(tx(0, nonce: 3, chain: "other"), account: used),
                       .failure(.wrongChain(expected: chainID, found: "other")))
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 3, amount: 60, fee: 1), account: used).get())
        // Pending spend counts: 61 + 41 > 100.
        XCTAssertEqual(pool.admit(tx(0, nonce: 4, amount: 40, fee: 1), account: used),
                       .failure(.insufficientBalance(balance: 100, needed: 102)))
        XCTAssertEqual(pool.count, 1)
    }

    func testBoundsRejectInsteadOfGrowing() {
        var pool = Mempool(chainID: chainID, limits: MempoolLimits(maxTransactions: 3, maxBytes: 1 << 20, maxNonceGap: 100, maxPerSender: 2))
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 0), account: rich).get())
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 1), account: rich).get())
        XCTAssertEqual(pool.admit(tx(0, nonce: 2), account: rich), .failure(.senderFull))
        XCTAssertNotNil(try? pool.admit(tx(1, nonce: 0), account: rich).get())
        XCTAssertEqual(pool.admit(tx(2, nonce: 0), account: rich), .failure(.full))
        let size = tx(0, nonce: 0).transaction.canonicalBytes.count
        var small = Mempool(chainID: chainID, limits: MempoolLimits(maxTransactions: 100, maxBytes: size * 2, maxNonceGap: 100, maxPerSender: 100))
        _ = small.admit(tx(0, nonce: 0), account: rich)
        _ = small.admit(tx(1, nonce: 0), account: rich)
        XCTAssertEqual(small.admit(tx(2, nonce: 0), account: rich), .failure(.full))
        XCTAssertEqual(small.byteCount, size * 2)
    }

    func testReapIsFairAcrossSendersAndBounded() {
        var pool = Mempool(chainID: chainID)
        for nonce in 0..<5 { _ = pool.admit(tx(0, nonce: UInt64(nonce)), account: rich) }
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        let reaped = pool.reap(maxCount: 4) { _ in 0 }
        XCTAssertEqual(reaped.count, 4)
        // Sender 0 arrived first and its run is taken first, in nonce order.
        XCTAssertEqual(reaped.map(\.nonce), [0, 1, 2, 3])
    }

    func testRemoveCommittedEvictsIncludedAndNowInvalid() {
        var pool = Mempool(chainID: chainID)
        let a0 = tx(0, nonce: 0), a1 = tx(0, nonce: 1), b0 = tx(1, nonce: 0)
        for t in [a0, a1, b0] { _ = pool.admit(t, account: rich) }
        // Another node's block used sender 0's nonces 0 and 1 with other transactions.
        let foreign = [tx(0, nonce: 0, amount: 99).transaction, tx(0, nonce: 1, amount: 98).transaction]
        pool.removeCommitted(foreign + [b0.transaction]) { address in
            address == Address(publicKey: self.keys[0].publicKey) ? 2 : 1
        }
        XCTAssertEqual(pool.count, 0)
        XCTAssertEqual(pool.byteCount, 0)
        // The freed budget is usable again.
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 2, amount: 999_000), account: Account(balance: 1_000_000, nonce: 2)).get())
    }

    func testNextNonceCountsThePendingRun() {
        var pool = Mempool(chainID: chainID)
        let sender = Address(publicKey: keys[0].publicKey)
        XCTAssertEqual(pool.nextNonce(for: sender, committed: 4), 4)
        _ = pool.admit(tx(0, nonce: 4), account: Account(balance: 1_000_000, nonce: 4))
        _ = pool.admit(tx(0, nonce: 5), account: Account(balance: 1_000_000, nonce: 4))
        _ = pool.admit(tx(0, nonce: 7), account: Account(balance: 1_000_000, nonce: 4))
        XCTAssertEqual(pool.nextNonce(for: sender, committed: 4), 6)
    }

    /// Regression (found by a manual run): a transaction behind a nonce gap made
    /// every replica expect progress, and the network changed views forever.
    func testGapTransactionsAreNotProposable() {
        var pool = Mempool(chainID: chainID)
        _ = pool.admit(tx(0, nonce: 3), account: rich)
        XCTAssertEqual(pool.count, 1)
        XCTAssertFalse(pool.hasProposable { _ in 0 })
        XCTAssertTrue(pool.reap(maxCount: 10) { _ in 0 }.isEmpty)
        XCTAssertTrue(pool.hasProposable { _ in 3 })
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        XCTAssertTrue(pool.hasProposable { _ in 0 })
    }

    func testHeadsAreEachSendersNextTransactionOldestFirstAndBounded() {
        var pool = Mempool(chainID: chainID)
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        _ = pool.admit(tx(0, nonce: 1), account: rich)
        _ = pool.admit(tx(0, nonce: 0), account: rich)
        _ = pool.admit(tx(2, nonce: 4), account: rich)
        let heads = pool.heads(maxCount: 10) { _ in 0 }
        // Sender 2 waits behind a gap: no head. Sender 1 arrived first.
        XCTAssertEqual(heads.map(\.hash), [tx(1, nonce: 0).transaction.hash, tx(0, nonce: 0).transaction.hash])
        XCTAssertEqual(pool.heads(maxCount: 1) { _ in 0 }.count, 1)
        // After sender 0's nonce 0 commits, its head is nonce 1.
        XCTAssertEqual(pool.heads(maxCount: 10) { $0 == Address(publicKey: self.keys[0].publicKey) ? 1 : 0 }.map(\.nonce), [0, 1])
    }
}
