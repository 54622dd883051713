import TallyCrypto
import TallyStore
import TallyStoreTesting
import TallyTypes
import XCTest

@testable import TallyNode

/// `/accounts/{address}/txs`: each account's committed transactions, newest first, paged.
final class AccountTransactionsTests: XCTestCase {
    static let alice = DevnetKeys.accountKey(0).publicKey
    static let bob = DevnetKeys.accountKey(1).publicKey
    static let carol = Address(bytes: [UInt8](repeating: 7, count: 20))!

    /// Block `height` with `count` transfers alternating alice→carol and bob→alice.
    static func block(height: UInt64, count: Int) -> CertifiedBlock {
        let list = (0..<count).map { (offset: Int) -> Transaction in
            let even = offset % 2 == 0
            let sender: PublicKey = even ? alice : bob
            let recipient: Address = even ? carol : Address(publicKey: alice)
            return Transaction(chainID: "test", sender: sender, recipient: recipient, amount: height, fee: 1,
                               nonce: height * 1_000 + UInt64(offset))
        }
        let header = BlockHeader(
            height: height, view: 0, timestampMs: 1000 * height, previousHash: .zero,
            transactionsRoot: Block.transactionsRoot(list), stateRoot: .zero, proposer: 0, transactionCount: UInt32(list.count))
        let block = Block(header: header, transactions: list)
        return CertifiedBlock(block: block, certificate: CommitCertificate(view: 0, height: height, blockHash: block.hash, signatures: []))
    }

    func testPositionsAreNewestFirstAndPagesJoinWithoutGapOrOverlap() {
        var index = AccountTransactionIndex()
        for height in 1...5 { index.add(Self.block(height: UInt64(height), count: 3).block) }
        let alice = Address(publicKey: Self.alice)
        // alice is in every transaction: 15 positions.
        let all = index.positions(of: alice, before: nil, limit: 100)
        XCTAssertEqual(all.positions.count, 15)
        XCTAssertFalse(all.more)
        XCTAssertEqual(all.positions, all.positions.sorted(by: >), "newest first")
        XCTAssertEqual(all.positions.first, TransactionPosition(height: 5, index: 2))
        var paged: [TransactionPosition] = []
        var cursor: TransactionPosition?
        var pages = 0
        repeat {
            let page = index.positions(of: alice, before: cursor, limit: 4)
            paged += page.positions
            cursor = page.more ? page.positions.last : nil
            pages += 1
        } while cursor != nil
        XCTAssertEqual(paged, all.positions)
        XCTAssertEqual(pages, 4)
        // carol only receives alice's (even-index) transfers.
        XCTAssertEqual(index.positions(of: Self.carol, before: nil, limit: 100).positions.map(\.index).filter { $0 % 2 == 1 }, [])
        // A cursor between positions and one past the end.
        XCTAssertEqual(
            index.positions(of: alice, before: TransactionPosition(height: 3, index: 0), limit: 2).positions,
            [TransactionPosition(height: 2, index: 2), TransactionPosition(height: 2, index: 1)])
        XCTAssertEqual(index.positions(of: alice, before: TransactionPosition(height: 99, index: 0), limit: 1).positions.first,
                       TransactionPosition(height: 5, index: 2))
        XCTAssertEqual(index.positions(of: alice, before: TransactionPosition(height: 1, index: 0), limit: 5).positions, [])
        XCTAssertEqual(index.positions(of: Address(bytes: [UInt8](repeating: 9, count: 20))!, before: nil, limit: 5).positions, [])
    }

    /// A self-transfer is listed once.
    func testSelfTransferCountsOnce() {
        var index = AccountTransactionIndex()
        let own = Transaction(chainID: "test", sender: Self.alice, recipient: Address(publicKey: Self.alice), amount: 1, fee: 1, nonce: 0)
        index.add(Block(header: BlockHeader(height: 1, view: 0, timestampMs: 0, previousHash: .zero,
                                            transactionsRoot: Block.transactionsRoot([own]), stateRoot: .zero, proposer: 0,
                                            transactionCount: 1), transactions: [own]))
        XCTAssertEqual(index.positions(of: Address(publicKey: Self.alice), before: nil, limit: 10).positions.count, 1)
        XCTAssertEqual(index.entryCount, 1)
    }

    /// Beyond the bound the oldest blocks are forgotten, and the index says from where it is whole.
    func testBoundForgetsOldestBlocksAndMovesIndexedFrom() {
        var index = AccountTransactionIndex(fromHeight: 3, maxEntries: 40)
        XCTAssertEqual(index.indexedFromHeight, 3)
        // Each block of 4 transfers adds 8 positions (sender and recipient differ).
        for height in 3...12 { index.add(Self.block(height: UInt64(height), count: 4).block) }
        XCTAssertLessThanOrEqual(index.entryCount, 40)
        XCTAssertGreaterThan(index.indexedFromHeight, 3)
        let alice = index.positions(of: Address(publicKey: Self.alice), before: nil, limit: 100).positions
        XCTAssertEqual(alice.first?.height, 12)
        XCTAssertEqual(alice.last?.height, index.indexedFromHeight, "whole from indexedFromHeight on")
        XCTAssertEqual(alice.count, 4 * Int(12 - index.indexedFromHeight + 1))
    }

    func testPageReadsTheTransactionsFromTheStore() throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let history = AccountTransactions(reader: store.reader, index: AccountTransactionIndex())
        let blocks = (1...3).map { Self.block(height: UInt64($0), count: 2) }
        for block in blocks {
            try store.append(block)
            history.add(block.block)
        }
        let first = history.page(Self.carol, before: nil, limit: 2)
        XCTAssertEqual(first.entries.map(\.transaction), [blocks[2].block.transactions[0], blocks[1].block.transactions[0]])
        XCTAssertEqual(first.next, TransactionPosition(height: 2, index: 0))
        let second = history.page(Self.carol, before: first.next, limit: 2)
        XCTAssertEqual(second.entries.map(\.transaction), [blocks[0].block.transactions[0]])
        XCTAssertNil(second.next)
        XCTAssertEqual(second.indexedFromHeight, 1)
    }

    func testCursorParsing() {
        XCTAssertEqual(TransactionPosition(cursor: "12:3"), TransactionPosition(height: 12, index: 3))
        XCTAssertEqual(TransactionPosition(height: 12, index: 3).description, "12:3")
        for bad in ["", ":", "12", "12:", ":3", "+1:2", "1:-2", "1:2:3", "a:b", " 1:2", "1:4294967296", "18446744073709551616:0", "１:2"] {
            XCTAssertNil(TransactionPosition(cursor: bad), bad)
        }
    }
}
