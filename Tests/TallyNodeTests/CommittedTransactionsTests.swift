import Logging
import TallyCrypto
import TallyStore
import TallyStoreTesting
import TallyTypes
import XCTest

@testable import TallyNode

/// `/txs/{hash}` for committed transactions, answered from the block reader and a
/// kept tree per block.
final class CommittedTransactionsTests: XCTestCase {
    static let sender = DevnetKeys.accountKey(0).publicKey

    static func block(height: UInt64, transactions: Int) -> CertifiedBlock {
        let recipient = Address(bytes: [UInt8](repeating: UInt8(truncatingIfNeeded: height), count: 20))!
        let list = (0..<transactions).map {
            Transaction(chainID: "test", sender: sender, recipient: recipient, amount: height, fee: 1,
                        nonce: height * 1_000 + UInt64($0))
        }
        let header = BlockHeader(
            height: height, view: 0, timestampMs: 1000 * height, previousHash: .zero,
            transactionsRoot: Block.transactionsRoot(list), stateRoot: .zero, proposer: 0,
            transactionCount: UInt32(list.count))
        let block = Block(header: header, transactions: list)
        return CertifiedBlock(block: block, certificate: CommitCertificate(view: 0, height: height, blockHash: block.hash, signatures: []))
    }

    func testCommittedTransactionsCarryProofsAgainstTheirBlock() throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let committed = CommittedTransactions(reader: store.reader, index: TransactionIndex())
        let blocks = (1...3).map { Self.block(height: UInt64($0), transactions: 5 * $0) }
        for block in blocks {
            try store.append(block)
            committed.add(block.block)
        }
        for block in blocks {
            for (index, transaction) in block.block.transactions.enumerated() {
                guard case .committed(let height, let position, let blockHash, let proof)? = committed.status(of: transaction.hash)
                else { return XCTFail("not found: height \(block.block.height) index \(index)") }
                XCTAssertEqual(height, block.block.height)
                XCTAssertEqual(position, index)
                XCTAssertEqual(blockHash, block.block.hash)
                XCTAssertTrue(proof.verify(item: transaction.hash, root: block.block.header.transactionsRoot))
            }
        }
        XCTAssertNil(committed.status(of: SHA256.hash([1, 2, 3])), "unknown hash")
    }

    /// The index keys on 8 bytes: a hash sharing them with a committed one is not it.
    func testAHashSharingTheIndexKeyIsNotFound() throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let committed = CommittedTransactions(reader: store.reader, index: TransactionIndex())
        let block = Self.block(height: 1, transactions: 2)
        try store.append(block)
        committed.add(block.block)
        var lookalike = block.block.transactions[0].hash.bytes
        lookalike[31] ^= 1
        XCTAssertNil(committed.status(of: Hash(bytes: lookalike)!))
    }

    /// A block indexed but not in the store (cannot happen in the node, which indexes
    /// after the append) is not reported committed.
    func testIndexedButUnreadableIsNotCommitted() throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let committed = CommittedTransactions(reader: store.reader, index: TransactionIndex())
        let block = Self.block(height: 1, transactions: 2)
        committed.add(block.block)
        XCTAssertNil(committed.status(of: block.block.transactions[0].hash))
    }

    /// Issue 16: the hash index was rebuilt from the last 2,000 blocks inside the
    /// node's start-up (about 1 µs per transaction: seconds at 10^6). It is rebuilt on
    /// a thread now; a block committed meanwhile is found, and a lookup made before
    /// the rebuild is done waits for it instead of answering "unknown".
    func testIndexRebuiltInTheBackgroundAnswersAfterItAndKeepsBlocksAddedMeanwhile() async throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let blocks = (1...40).map { Self.block(height: UInt64($0), transactions: 50) }
        for block in blocks { try store.append(block) }
        let logger = Logger(label: "test")
        let committed = CommittedTransactions(reader: store.reader, rebuildingFrom: 2, through: 40, logger: logger)
        let live = Self.block(height: 41, transactions: 3)
        try store.append(live)
        committed.add(live.block)
        // The oldest block the rebuild covers, asked for at once.
        guard case .committed(let height, _, _, _)? = await committed.status(of: blocks[1].block.transactions[0].hash, waitingForRebuild: true)
        else { return XCTFail("a transaction of a rebuilt block is not found") }
        XCTAssertEqual(height, 2)
        XCTAssertFalse(committed.isRebuilding)
        for block in blocks.dropFirst() + [live] {
            for transaction in block.block.transactions where committed.status(of: transaction.hash) == nil {
                return XCTFail("height \(block.block.height) not indexed")
            }
        }
        XCTAssertNil(committed.status(of: blocks[0].block.transactions[0].hash), "below the rebuilt range")
        let unknown = await committed.status(of: SHA256.hash([1, 2, 3]), waitingForRebuild: true)
        XCTAssertNil(unknown)
    }

    func testTreeCacheKeepsTheMostRecentlyUsed() {
        var cache = TreeCache(capacity: 2)
        func entry(_ height: UInt64) -> TreeCache.Entry {
            TreeCache.Entry(height: height, blockHash: .zero, tree: Merkle.Tree([SHA256.hash([UInt8(height)])]))
        }
        cache.insert(entry(1))
        cache.insert(entry(2))
        XCTAssertNotNil(cache.entry(at: 1))  // 1 is now the most recent
        cache.insert(entry(3))
        XCTAssertEqual(cache.heights, [1, 3])
        XCTAssertNil(cache.entry(at: 2))
        cache.insert(entry(3))
        XCTAssertEqual(cache.heights, [1, 3], "re-inserting does not duplicate")
    }
}

/// `/txs/{hash}`'s order of questions: the index first (no mempool question for a
/// committed transaction), then the mempool, then the index again.
final class TransactionStatusTests: XCTestCase {
    func testCommittedThenPendingThenUnknown() async throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let committed = CommittedTransactions(reader: store.reader, index: TransactionIndex())
        let block = CommittedTransactionsTests.block(height: 1, transactions: 2)
        try store.append(block)
        committed.add(block.block)
        let hash = block.block.transactions[1].hash
        let found = await committed.status(of: hash) { XCTFail("a committed transaction asks no mempool question"); return true }
        guard case .committed(let height, let index, _, _) = found else { return XCTFail("not committed: \(found)") }
        XCTAssertEqual([height, UInt64(index)], [1, 1])

        let unknownHash = SHA256.hash([7])
        let pending = await committed.status(of: unknownHash) { true }
        XCTAssertEqual(pending, .pending)
        let unknown = await committed.status(of: unknownHash) { false }
        XCTAssertEqual(unknown, .unknown)
    }

    /// Committed between the index question and the mempool question: the second
    /// index question finds it.
    func testCommittedWhileTheMempoolWasAskedIsFound() async throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        let committed = CommittedTransactions(reader: store.reader, index: TransactionIndex())
        let block = CommittedTransactionsTests.block(height: 1, transactions: 1)
        let status = await committed.status(of: block.block.transactions[0].hash) {
            try? store.append(block)
            committed.add(block.block)
            return false
        }
        guard case .committed(let height, _, _, _) = status else { return XCTFail("not committed: \(status)") }
        XCTAssertEqual(height, 1)
    }
}
