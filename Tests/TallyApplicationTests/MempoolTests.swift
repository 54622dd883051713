import Foundation
import TallyApplicationTesting
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyApplication

final class MempoolTests: XCTestCase {
    let chainID = "tally-test"
    /// The mempool never sees the genesis, only signatures checked for its hash.
    let genesisHash = SHA256.hash(Array("mempool-genesis".utf8))
    let keys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("mempool-\($0)".utf8)).bytes)! }
    var recipient: Address { Address(publicKey: keys[3].publicKey) }

    func tx(
        _ sender: Int, nonce: UInt64, amount: UInt64 = 10, fee: UInt64 = 1, chain: String? = nil, genesisHash: Hash? = nil
    ) -> VerifiedTransaction {
        let genesisHash = genesisHash ?? self.genesisHash
        return VerifiedTransaction(Transaction.signed(
            by: keys[sender], chainID: chain ?? chainID, genesisHash: genesisHash, to: recipient, amount: amount, fee: fee,
            nonce: nonce), genesisHash: genesisHash)!
    }

    let rich = Account(balance: 1_000_000, nonce: 0)

    func testAdmitDeduplicatesAndOrdersByNonce() throws {
        var pool = Mempool(chainID: chainID, minFee: 1)
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

    /// The replica times the oldest proposable transaction (issue 13, censorship): it is
    /// proposable from its admission, or from its sender's last commit if later; a
    /// transaction behind a nonce gap is not, and a credit to its sender restarts nothing.
    func testOldestProposableSequence() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        func oldest(_ accounts: [Address: Account]) -> UInt64? {
            pool.oldestProposableSequence { accounts[$0] ?? self.rich }
        }
        XCTAssertNil(oldest([:]))
        _ = pool.admit(tx(0, nonce: 1), account: rich)
        XCTAssertNil(oldest([:]), "behind a nonce gap: not proposable")
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        let senderOne = pool.proposableSequence
        _ = pool.admit(tx(0, nonce: 0), account: rich)
        XCTAssertEqual(oldest([:]), senderOne)
        // Sender 0's nonce 0 commits: its nonce 1 becomes proposable only now.
        let sender0 = tx(0, nonce: 0).transaction.senderAddress
        let afterCommit: [Address: Account] = [sender0: Account(balance: 1_000_000, nonce: 1)]
        pool.removeCommitted([tx(0, nonce: 0).transaction]) { afterCommit[$0] ?? self.rich }
        XCTAssertEqual(oldest(afterCommit), senderOne, "sender 1 still waits longest")
        let moved = pool.proposableSequence
        XCTAssertGreaterThan(moved, senderOne)
        // A transfer to sender 1 (from sender 2) commits: sender 1's wait goes on.
        let sender1 = tx(1, nonce: 0).transaction.senderAddress
        let credit = Transaction.signed(by: keys[2], chainID: chainID, genesisHash: genesisHash, to: sender1, amount: 5, fee: 1, nonce: 0)
        pool.removeCommitted([credit]) { afterCommit[$0] ?? self.rich }
        XCTAssertEqual(oldest(afterCommit), senderOne)
        // Sender 1's commits: what is left is sender 0's nonce 1, proposable since its sender's commit.
        let sender1Committed = afterCommit.merging([sender1: Account(balance: 1_000_000, nonce: 1)]) { $1 }
        pool.removeCommitted([tx(1, nonce: 0).transaction]) { sender1Committed[$0] ?? self.rich }
        XCTAssertEqual(oldest(sender1Committed), moved)
    }

    /// The sequence numbers a commit hands out (one per sender whose next nonce it
    /// moved) follow the block's order. Consensus reads them (the backups' transaction
    /// timers), so they must not follow a set's order, which Swift seeds per process:
    /// a seed would not replay, and a test passed or failed by the process it ran in.
    func testACommitMovesNextNoncesInBlockOrder() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        let senders = (0..<12).map { SigningKey(seed: SHA256.hash(Array("block-order-\($0)".utf8)).bytes)! }
        func transfer(_ sender: Int, nonce: UInt64) -> VerifiedTransaction {
            VerifiedTransaction(Transaction.signed(
                by: senders[sender], chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1, fee: 1,
                nonce: nonce), genesisHash: genesisHash)!
        }
        for sender in senders.indices {
            for nonce: UInt64 in 0...1 { _ = pool.admit(transfer(sender, nonce: nonce), account: rich) }
        }
        var accounts: [Address: Account] = [:]
        func commit(_ transactions: [Transaction]) {
            for transaction in transactions {
                accounts[transaction.senderAddress] = Account(balance: 1_000_000, nonce: transaction.nonce + 1)
            }
            pool.removeCommitted(transactions) { accounts[$0] ?? self.rich }
        }
        // One block takes every sender's nonce 0, in a shuffled order.
        let blockOrder = [7, 2, 11, 0, 5, 9, 1, 10, 3, 8, 6, 4]
        let before = pool.proposableSequence
        commit(blockOrder.map { transfer($0, nonce: 0).transaction })
        // Then the senders' nonce 1 commit one at a time, in block order: each time
        // the oldest left is the next sender's, moved right after the previous one's.
        for (position, sender) in blockOrder.enumerated() {
            let oldest = pool.oldestProposableSequence { accounts[$0] ?? self.rich }
            XCTAssertEqual(oldest, before + UInt64(position) + 1, "sender \(sender) at place \(position) of the block")
            commit([transfer(sender, nonce: 1).transaction])
        }
        XCTAssertNil(pool.oldestProposableSequence { accounts[$0] ?? self.rich })
    }

    func testStaleFutureWrongChainAndBalance() {
        var pool = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(maxTransactions: 100, maxBytes: 1 << 20, maxNonceGap: 5, maxPerSender: 100))
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
        var pool = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(maxTransactions: 3, maxBytes: 1 << 20, maxNonceGap: 100, maxPerSender: 2))
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 0), account: rich).get())
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 1), account: rich).get())
        XCTAssertEqual(pool.admit(tx(0, nonce: 2), account: rich), .failure(.senderFull))
        XCTAssertNotNil(try? pool.admit(tx(1, nonce: 0), account: rich).get())
        XCTAssertEqual(pool.admit(tx(2, nonce: 0), account: rich), .failure(.full))
        let size = tx(0, nonce: 0).transaction.canonicalBytes.count
        var small = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(maxTransactions: 100, maxBytes: size * 2, maxNonceGap: 100, maxPerSender: 100))
        _ = small.admit(tx(0, nonce: 0), account: rich)
        _ = small.admit(tx(1, nonce: 0), account: rich)
        XCTAssertEqual(small.admit(tx(2, nonce: 0), account: rich), .failure(.full))
        XCTAssertEqual(small.byteCount, size * 2)
    }

    func testReapIsFairAcrossSendersAndBounded() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        for nonce in 0..<5 { _ = pool.admit(tx(0, nonce: UInt64(nonce)), account: rich) }
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        let reaped = pool.reap(maxCount: 4) { _ in 0 }
        XCTAssertEqual(reaped.count, 4)
        // Sender 0 arrived first and its run is taken first, in nonce order.
        XCTAssertEqual(reaped.map(\.nonce), [0, 1, 2, 3])
    }

    func testRemoveCommittedEvictsIncludedAndNowInvalid() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        let a0 = tx(0, nonce: 0), a1 = tx(0, nonce: 1), b0 = tx(1, nonce: 0)
        for t in [a0, a1, b0] { _ = pool.admit(t, account: rich) }
        // Another node's block used sender 0's nonces 0 and 1 with other transactions.
        let foreign = [tx(0, nonce: 0, amount: 99).transaction, tx(0, nonce: 1, amount: 98).transaction]
        pool.removeCommitted(foreign + [b0.transaction]) { address in
            Account(balance: 1_000_000, nonce: address == Address(publicKey: self.keys[0].publicKey) ? 2 : 1)
        }
        XCTAssertEqual(pool.count, 0)
        XCTAssertEqual(pool.byteCount, 0)
        // The freed budget is usable again.
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 2, amount: 999_000), account: Account(balance: 1_000_000, nonce: 2)).get())
    }

    func testNextNonceCountsThePendingRun() {
        var pool = Mempool(chainID: chainID, minFee: 1)
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
        var pool = Mempool(chainID: chainID, minFee: 1)
        _ = pool.admit(tx(0, nonce: 3), account: rich)
        XCTAssertEqual(pool.count, 1)
        XCTAssertFalse(pool.hasProposable { _ in self.rich })
        XCTAssertTrue(pool.reap(maxCount: 10) { _ in 0 }.isEmpty)
        XCTAssertTrue(pool.hasProposable { _ in Account(balance: self.rich.balance, nonce: 3) })
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        XCTAssertTrue(pool.hasProposable { _ in self.rich })
    }

    func testHeadsAreEachSendersNextTransactionOldestFirstAndBounded() {
        var pool = Mempool(chainID: chainID, minFee: 1)
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

    var sender0: Address { Address(publicKey: keys[0].publicKey) }

    /// Regression (testnet): zero-fee, zero-amount transfers from never-funded keys
    /// were admitted and committed, each leaving two permanent accounts for free.
    func testFeeBelowMinimumAndSendersThatCannotPayAreRejected() {
        var pool = Mempool(chainID: chainID, minFee: 3)
        XCTAssertEqual(pool.admit(tx(0, nonce: 0, amount: 0, fee: 0), account: .empty), .failure(.feeTooLow(minimum: 3, found: 0)))
        XCTAssertEqual(pool.admit(tx(0, nonce: 0, amount: 0, fee: 2), account: rich), .failure(.feeTooLow(minimum: 3, found: 2)))
        XCTAssertEqual(AdmissionError.feeTooLow(minimum: 3, found: 2).code, "fee_too_low")
        // Paying the fee needs a balance: a zero-value transfer from an unfunded key is refused.
        XCTAssertEqual(pool.admit(tx(0, nonce: 0, amount: 0, fee: 3), account: .empty),
                       .failure(.insufficientBalance(balance: 0, needed: 3)))
        XCTAssertEqual(pool.check(tx(0, nonce: 0, amount: 0, fee: 3).transaction, account: .empty),
                       .insufficientBalance(balance: 0, needed: 3))
        XCTAssertEqual(pool.count, 0)
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 0, amount: 0, fee: 3), account: Account(balance: 3, nonce: 0)).get())
    }

    /// Regression (testnet): never-funded keys queued 1,000 future nonces each and
    /// filled every node's mempool.
    func testDefaultNonceWindowIsAHandful() {
        XCTAssertEqual(MempoolLimits.default.maxNonceGap, 16)
        var pool = Mempool(chainID: chainID, minFee: 1)
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 16), account: rich).get())
        XCTAssertEqual(pool.admit(tx(0, nonce: 17), account: rich), .failure(.futureNonce(next: 0, found: 17)))
    }

    func testExpiredTransactionsAreEvictedWithTheirDependentsAndCounted() {
        var pool = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(
            maxTransactions: 100, maxBytes: 1 << 20, maxNonceGap: 16, maxPerSender: 100, pendingLifetimeMs: 1_000))
        pool.expire(nowMs: 100)
        _ = pool.admit(tx(0, nonce: 0), account: rich)
        pool.expire(nowMs: 600)
        _ = pool.admit(tx(0, nonce: 1), account: rich)
        _ = pool.admit(tx(1, nonce: 0), account: rich)
        pool.expire(nowMs: 1_099)
        XCTAssertEqual(pool.count, 3)
        // Sender 0's nonce 0 expires; its nonce 1, younger, could not apply before it.
        pool.expire(nowMs: 1_100)
        XCTAssertEqual(pool.count, 1)
        XCTAssertFalse(pool.contains(tx(0, nonce: 1).transaction.hash))
        XCTAssertEqual(pool.evictions[.expired], 2)
        XCTAssertEqual(pool.nextNonce(for: sender0, committed: 0), 0)
        pool.expire(nowMs: 1_600)
        XCTAssertEqual(pool.count, 0)
        XCTAssertEqual(pool.byteCount, 0)
        XCTAssertEqual(pool.evictions[.expired], 3)
        // The freed sender may submit again, and the new copy gets a new lifetime.
        XCTAssertNotNil(try? pool.admit(tx(0, nonce: 0), account: rich).get())
        pool.expire(nowMs: 2_599)
        XCTAssertEqual(pool.count, 1)
    }

    func testBetterFeePerByteDisplacesTheWorstSendersHighestNonce() {
        var pool = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(
            maxTransactions: 3, maxBytes: 1 << 20, maxNonceGap: 16, maxPerSender: 100))
        let cheapHead = tx(0, nonce: 0, fee: 1)
        for transaction in [cheapHead, tx(0, nonce: 1, fee: 5), tx(1, nonce: 0, fee: 2)] {
            XCTAssertNotNil(try? pool.admit(transaction, account: rich).get())
        }
        // Sender 0's nonce 0 pays least but nonce 1 depends on it: only sender tails
        // (fee 5 and fee 2) may go, and fee 1 beats neither.
        XCTAssertEqual(pool.admit(tx(2, nonce: 0, fee: 1), account: rich), .failure(.full))
        XCTAssertEqual(pool.admit(tx(2, nonce: 0, fee: 2), account: rich), .failure(.full), "an equal fee does not displace")
        XCTAssertNotNil(try? pool.admit(tx(2, nonce: 0, fee: 3), account: rich).get())
        XCTAssertEqual(pool.count, 3)
        XCTAssertFalse(pool.contains(tx(1, nonce: 0, fee: 2).transaction.hash))
        XCTAssertTrue(pool.contains(cheapHead.transaction.hash))
        XCTAssertEqual(pool.evictions[.displaced], 1)
        // Next the worst tail is sender 2's fee 3, then sender 0's fee 5; the head stays.
        XCTAssertNotNil(try? pool.admit(tx(1, nonce: 0, fee: 9), account: rich).get())
        XCTAssertNotNil(try? pool.admit(tx(2, nonce: 0, fee: 9), account: rich).get())
        XCTAssertEqual(pool.reap(maxCount: 10) { _ in 0 }.map(\.fee).sorted(), [1, 9, 9])
        XCTAssertEqual(pool.evictions[.displaced], 3)
        XCTAssertEqual(pool.byteCount, 3 * cheapHead.transaction.canonicalBytes.count)
    }

    func testDisplacementByBytesAndNeverBelowTheNewcomersOwnNonce() {
        let size = tx(0, nonce: 0).transaction.canonicalBytes.count
        var pool = Mempool(chainID: chainID, minFee: 1, limits: MempoolLimits(
            maxTransactions: 100, maxBytes: 2 * size, maxNonceGap: 16, maxPerSender: 100))
        _ = pool.admit(tx(0, nonce: 0, fee: 1), account: rich)
        _ = pool.admit(tx(1, nonce: 0, fee: 4), account: rich)
        // Sender 0's nonce 1 would need its own nonce 0 displaced: refused.
        XCTAssertEqual(pool.admit(tx(0, nonce: 1, fee: 8), account: rich), .failure(.full))
        XCTAssertNotNil(try? pool.admit(tx(2, nonce: 0, fee: 8), account: rich).get())
        XCTAssertFalse(pool.contains(tx(0, nonce: 0, fee: 1).transaction.hash))
        XCTAssertEqual(pool.byteCount, 2 * size)
    }

    func testCommitEvictsWhatTheNewBalanceNoLongerCovers() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        let funded = Account(balance: 100, nonce: 0)
        _ = pool.admit(tx(0, nonce: 0, amount: 50), account: funded)
        _ = pool.admit(tx(0, nonce: 1, amount: 40), account: funded)
        _ = pool.admit(tx(0, nonce: 3, amount: 5), account: funded)
        _ = pool.admit(tx(1, nonce: 0, amount: 5), account: funded)
        // Another node's block spent sender 0's nonce 0 on 98 + 1: 1 unit is left.
        let foreign = tx(0, nonce: 0, amount: 98).transaction
        pool.removeCommitted([foreign]) { address in
            address == self.sender0 ? Account(balance: 1, nonce: 1) : funded
        }
        XCTAssertEqual(pool.count, 1, "only sender 1's transaction can still apply")
        XCTAssertEqual(pool.evictions[.nonceUsed], 1)
        XCTAssertEqual(pool.evictions[.unaffordable], 2)
        XCTAssertFalse(pool.hasProposable { $0 == self.sender0 ? Account(balance: 1, nonce: 1) : Account(balance: 100, nonce: 1) })
    }

    func testProposableMeansExecutionWouldApplyIt() {
        var pool = Mempool(chainID: chainID, minFee: 1)
        _ = pool.admit(tx(0, nonce: 0, amount: 50), account: rich)
        XCTAssertTrue(pool.hasProposable { _ in Account(balance: 51, nonce: 0) })
        // The balance fell below amount + fee (say, through another node's block in
        // flight): execution would refuse it, so it is not proposable.
        XCTAssertFalse(pool.hasProposable { _ in Account(balance: 50, nonce: 0) })
    }

    /// Regression (testnet): T0' spending the whole balance went to the primary, T0
    /// and T1 (nonce + 1) to the backups. After T0' committed, T1 stayed in the
    /// backups' mempools as "proposable" though it could never apply, and the idle
    /// network changed views 0 → 5 in 40 s and on.
    func testUnaffordableQueueIsEvictedAfterCommitAndExpectsNoProgress() throws {
        let validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("mempool-validator-\($0)".utf8)).bytes)! }
        let genesis = try Genesis(
            chainID: chainID, genesisTimeMs: 1_000,
            validators: validatorKeys.enumerated().map {
                Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(7800 + $0.offset)")
            },
            accounts: [GenesisAccount(address: sender0, balance: 1_000)])
        func application() -> LedgerApplication {
            LedgerApplication(
                genesis: genesis, ledger: Ledger(genesis: genesis), tipHash: genesis.hash, tipTimestampMs: genesis.genesisTimeMs,
                mempool: Mempool(genesis: genesis), nowMs: { 5_000 })
        }
        let primary = application(), backup = application()
        let funded = Account(balance: 1_000, nonce: 0)
        XCTAssertNotNil(try? primary.mempool.admit(tx(0, nonce: 0, amount: 999, fee: 1, genesisHash: genesis.hash), account: funded).get())
        XCTAssertNotNil(try? backup.mempool.admit(tx(0, nonce: 0, amount: 1, fee: 1, genesisHash: genesis.hash), account: funded).get())
        XCTAssertNotNil(try? backup.mempool.admit(tx(0, nonce: 1, amount: 1, fee: 1, genesisHash: genesis.hash), account: funded).get())
        XCTAssertTrue(backup.hasPendingTransactions)

        let block = try XCTUnwrap(primary.propose(
            height: 1, view: 0, proposer: 0, parentHash: genesis.hash, maxTransactions: 100, allowEmpty: false))
        XCTAssertEqual(block.transactions.map(\.amount), [999])
        XCTAssertNoThrow(try backup.validate(block, parentHash: genesis.hash, maxTransactions: 100, origin: .prePrepare(view: 0)).get())
        _ = backup.commit(block)

        XCTAssertEqual(backup.ledger.account(sender0), Account(balance: 0, nonce: 1))
        XCTAssertFalse(backup.hasPendingTransactions, "a transaction that can never apply must not make backups expect progress")
        XCTAssertEqual(backup.mempool.count, 0)
        XCTAssertEqual(backup.mempool.evictions[.nonceUsed], 1)
        XCTAssertEqual(backup.mempool.evictions[.unaffordable], 1)
        XCTAssertNil(backup.propose(height: 2, view: 1, proposer: 1, parentHash: block.hash, maxTransactions: 100, allowEmpty: false))
    }

    /// The two guards of the test above, one at a time (the simulator's
    /// `MempoolDefenceTests` runs the same switches on a cluster): either alone keeps
    /// the stuck T1 from making a backup expect progress; with both off (the code
    /// before the fix) the backup expects progress for a transaction no proposal takes.
    func testEitherMempoolDefenceAloneKeepsAStuckTransactionFromExpectingProgress() throws {
        let validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("mempool-validator-\($0)".utf8)).bytes)! }
        let genesis = try Genesis(
            chainID: chainID, genesisTimeMs: 1_000,
            validators: validatorKeys.enumerated().map {
                Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(7800 + $0.offset)")
            },
            accounts: [GenesisAccount(address: sender0, balance: 1_000)])
        func application(_ defences: SwitchableMempoolDefences) -> LedgerApplication {
            var mempool = Mempool(genesis: genesis)
            mempool.defences = defences
            return LedgerApplication(
                genesis: genesis, ledger: Ledger(genesis: genesis), tipHash: genesis.hash, tipTimestampMs: genesis.genesisTimeMs,
                mempool: mempool, nowMs: { 5_000 })
        }
        let primary = application(.all)
        XCTAssertTrue(primary.submit([tx(0, nonce: 0, amount: 999, fee: 1, genesisHash: genesis.hash).transaction]).allSatisfy { (try? $0.get()) != nil })
        let block = try XCTUnwrap(primary.propose(
            height: 1, view: 0, proposer: 0, parentHash: genesis.hash, maxTransactions: 100, allowEmpty: false))
        for (recheck, proposable) in [(true, true), (false, true), (true, false), (false, false)] {
            var defences = SwitchableMempoolDefences.all
            defences.recheckAfterCommit = recheck
            defences.proposableByExecutionRule = proposable
            let backup = application(defences)
            let admitted = backup.submit([tx(0, nonce: 0, amount: 1, fee: 1, genesisHash: genesis.hash).transaction, tx(0, nonce: 1, amount: 1, fee: 1, genesisHash: genesis.hash).transaction])
            XCTAssertTrue(admitted.allSatisfy { (try? $0.get()) != nil })
            XCTAssertNoThrow(try backup.validate(block, parentHash: genesis.hash, maxTransactions: 100, origin: .prePrepare(view: 0)).get())
            backup.commit(block)
            let label = "recheck \(recheck), proposable by execution rule \(proposable)"
            XCTAssertEqual(backup.hasPendingTransactions, !recheck && !proposable, label)
            XCTAssertEqual(backup.mempool.count, recheck ? 0 : 1, label)
            XCTAssertNil(backup.propose(height: 2, view: 1, proposer: 1, parentHash: block.hash, maxTransactions: 100, allowEmpty: false), label)
        }
    }

    /// Regression: admission checked every signature of a 10,000-transaction batch
    /// before the cheap checks. Hopeless transactions now never reach the verifier.
    func testCheapChecksRunBeforeSignatures() async {
        let pool = Mempool(chainID: chainID, minFee: 1)
        var forged = (0..<100).map { tx(0, nonce: UInt64($0), chain: "another-chain").transaction }
        for index in forged.indices { forged[index].amount += 1 }  // invalid signatures too
        let verified = Counter()
        let results = await AdmissionScreen.verifySurvivors(
            forged, prechecked: forged.map { pool.check($0, account: rich) }
        ) { batch in
            verified.add(batch.count)
            return SignatureBatch.verify(batch, genesisHash: self.genesisHash)
        }
        XCTAssertEqual(verified.value, 0, "no signature is checked for transactions the cheap checks refuse")
        XCTAssertTrue(results.allSatisfy { if case .failure(.wrongChain) = $0 { true } else { false } })

        // A mixed batch: only the survivors are verified, results keep their order.
        var badSignature = tx(1, nonce: 0).transaction
        badSignature.amount += 1
        let mixed = [tx(0, nonce: 0).transaction, forged[0], badSignature, tx(2, nonce: 0, fee: 0).transaction]
        let screened = await AdmissionScreen.verifySurvivors(
            mixed, prechecked: mixed.map { pool.check($0, account: rich) }
        ) { batch in
            verified.add(batch.count)
            return SignatureBatch.verify(batch, genesisHash: self.genesisHash)
        }
        XCTAssertEqual(verified.value, 2)
        XCTAssertEqual(try? screened[0].get().transaction, mixed[0])
        XCTAssertEqual(screened.dropFirst().map { result -> AdmissionError? in
            if case .failure(let reason) = result { return reason } else { return nil }
        }, [.wrongChain(expected: chainID, found: "another-chain"), .badSignature, .feeTooLow(minimum: 1, found: 0)])
    }

    /// Issue 14: admission checked signatures over the chain id string only; a transfer
    /// signed for another genesis with the same chain id passes the cheap checks and
    /// is refused as a bad signature.
    func testAdmissionRefusesATransactionSignedForAnotherGenesisWithTheSameChainID() async {
        let pool = Mempool(chainID: chainID, minFee: 1)
        let otherGenesisHash = SHA256.hash(Array("another-genesis".utf8))
        let replayed = Transaction.signed(
            by: keys[0], chainID: chainID, genesisHash: otherGenesisHash, to: recipient, amount: 10, fee: 1, nonce: 0)
        let own = tx(0, nonce: 0).transaction
        let batch = [replayed, own]
        let screened = await AdmissionScreen.verifySurvivors(batch, prechecked: batch.map { pool.check($0, account: rich) }) {
            SignatureBatch.verify($0, genesisHash: self.genesisHash)
        }
        XCTAssertEqual(screened[0].map(\.transaction), .failure(.badSignature))
        XCTAssertEqual(try? screened[1].get().transaction, own)
        // Also past the parallel threshold.
        let many = Array(repeating: replayed, count: SignatureBatch.parallelThreshold + 1)
        XCTAssertTrue(SignatureBatch.verify(many, genesisHash: genesisHash).allSatisfy { $0 == nil })
        XCTAssertTrue(SignatureBatch.verify(many, genesisHash: otherGenesisHash).allSatisfy { $0 != nil })
    }

    func testSignatureGateBoundsConcurrentBatches() async {
        let gate = SignatureGate(permits: 1)
        let inside = Counter(), most = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    await gate.withPermit {
                        inside.add(1)
                        most.raise(to: inside.value)
                        Thread.sleep(forTimeInterval: 0.02)
                        inside.add(-1)
                    }
                }
            }
        }
        XCTAssertEqual(most.value, 1, "batches verified at once")
        let transactions = (0..<8).map { tx(0, nonce: UInt64($0)).transaction }
        let verified = await gate.verify(transactions, genesisHash: genesisHash)
        XCTAssertEqual(verified.compactMap { $0 }.count, 8)
    }
}

/// Counts across concurrency domains (the screen's verifier closure is async).
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ count: Int) { lock.withLock { total += count } }
    func raise(to candidate: Int) { lock.withLock { total = max(total, candidate) } }
    var value: Int { lock.withLock { total } }
}
