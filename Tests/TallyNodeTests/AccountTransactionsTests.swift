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

    static let dataDirectory = "/n"

    /// A store and its account index on `fileSystem` (re-opened when called again).
    static func open(_ fileSystem: SimulatedFileSystem) throws -> (BlockStore, AccountTransactions, AccountTransactions.OpenReport) {
        let store = try BlockStore.open(dataDirectory: dataDirectory, fileSystem: fileSystem)
        let (index, report) = try AccountTransactions.open(dataDirectory: dataDirectory, store: store, fileSystem: fileSystem)
        return (store, index, report)
    }

    /// What the node does per committed block: stored (durable), then indexed.
    static func commit(_ blocks: [CertifiedBlock], store: BlockStore, index: AccountTransactions) throws {
        for block in blocks {
            try store.append(block)
            index.add(block.block)
        }
    }

    /// Every page of `address` joined, `size` at a time (at most 10,000 pages).
    static func history(_ index: AccountTransactions, _ address: Address, size: Int = 7) throws -> [TransactionPosition] {
        let (all, unavailable) = historyUntilUnavailable(index, address, size: size)
        if unavailable { throw AccountHistoryUnavailable() }
        return all
    }

    /// The pages joined until the end or a page the node cannot serve whole.
    static func historyUntilUnavailable(
        _ index: AccountTransactions, _ address: Address, size: Int = 7
    ) -> (positions: [TransactionPosition], unavailable: Bool) {
        var all: [TransactionPosition] = []
        var cursor: TransactionPosition?
        for _ in 0..<10_000 {
            guard let page = try? index.page(address, before: cursor, limit: size) else { return (all, true) }
            all += page.entries.map(\.position)
            guard let next = page.next else { break }
            cursor = next
        }
        return (all, false)
    }

    /// Alice's positions in blocks 1…`height` of `block(height:count:)`, newest first.
    static func alicePositions(through height: UInt64, count: Int) -> [TransactionPosition] {
        (1...height).reversed().flatMap { height in
            (0..<count).reversed().map { TransactionPosition(height: height, index: UInt32($0)) }
        }
    }

    func testPositionsAreNewestFirstAndPagesJoinWithoutGapOrOverlap() throws {
        let (store, index, _) = try Self.open(SimulatedFileSystem())
        try Self.commit((1...5).map { Self.block(height: UInt64($0), count: 3) }, store: store, index: index)
        let alice = Address(publicKey: Self.alice)
        // alice is in every transaction: 15 positions.
        let all = try index.page(alice, before: nil, limit: 100)
        XCTAssertEqual(all.entries.map(\.position), Self.alicePositions(through: 5, count: 3), "newest first")
        XCTAssertNil(all.next)
        XCTAssertEqual(all.indexedFromHeight, 1)
        var pages = 0
        var cursor: TransactionPosition?
        var paged: [TransactionPosition] = []
        repeat {
            let page = try index.page(alice, before: cursor, limit: 4)
            paged += page.entries.map(\.position)
            cursor = page.next
            pages += 1
        } while cursor != nil
        XCTAssertEqual(paged, Self.alicePositions(through: 5, count: 3))
        XCTAssertEqual(pages, 4)
        // carol only receives alice's (even-index) transfers.
        XCTAssertEqual(try index.page(Self.carol, before: nil, limit: 100).entries.map(\.position.index).filter { $0 % 2 == 1 }, [])
        XCTAssertEqual(try index.page(Self.carol, before: nil, limit: 100).entries.count, 10)
        // A cursor between positions, one past the end, and one before the first.
        XCTAssertEqual(
            try index.page(alice, before: TransactionPosition(height: 3, index: 0), limit: 2).entries.map(\.position),
            [TransactionPosition(height: 2, index: 2), TransactionPosition(height: 2, index: 1)])
        XCTAssertEqual(try index.page(alice, before: TransactionPosition(height: 99, index: 0), limit: 1).entries.first?.position,
                       TransactionPosition(height: 5, index: 2))
        XCTAssertEqual(try index.page(alice, before: TransactionPosition(height: 1, index: 0), limit: 5).entries, [])
        XCTAssertEqual(try index.page(Address(bytes: [UInt8](repeating: 9, count: 20))!, before: nil, limit: 5).entries, [])
    }

    /// A self-transfer is listed once.
    func testSelfTransferCountsOnce() throws {
        let (store, index, _) = try Self.open(SimulatedFileSystem())
        let own = Transaction(chainID: "test", sender: Self.alice, recipient: Address(publicKey: Self.alice), amount: 1, fee: 1, nonce: 0)
        let block = Block(header: BlockHeader(height: 1, view: 0, timestampMs: 0, previousHash: .zero,
                                              transactionsRoot: Block.transactionsRoot([own]), stateRoot: .zero, proposer: 0,
                                              transactionCount: 1), transactions: [own])
        try Self.commit([CertifiedBlock(block: block, certificate: CommitCertificate(view: 0, height: 1, blockHash: block.hash, signatures: []))],
                        store: store, index: index)
        XCTAssertEqual(try index.page(Address(publicKey: Self.alice), before: nil, limit: 10).entries.count, 1)
    }

    /// The jump rule as a function of the depth is Myers' recursive rule (a record jumps
    /// to its parent, or to its parent's jump's jump when the two last jumps were equal).
    func testJumpDepthIsMyersRule() {
        var jump: [UInt64] = [0]  // the virtual root at depth 0 jumps to itself
        for depth in UInt64(1)...20_000 {
            let parent = depth - 1
            let expected = parent - jump[Int(parent)] == jump[Int(parent)] - jump[Int(jump[Int(parent)])]
                ? jump[Int(jump[Int(parent)])] : parent
            jump.append(expected)
            XCTAssertEqual(AccountIndexRecord.jumpDepth(depth), expected, "depth \(depth)")
        }
        XCTAssertLessThan(AccountIndexRecord.jumpDepth(UInt64.max), UInt64.max)
    }

    /// Any cursor deep in a long history is reached in O(log n) record reads, and the
    /// page is the same as the brute-force answer.
    func testDeepCursorTakesLogarithmicReads() throws {
        let (store, index, _) = try Self.open(SimulatedFileSystem())
        let count = 100, height: UInt64 = 40
        try Self.commit((1...height).map { Self.block(height: $0, count: count) }, store: store, index: index)
        let alice = Address(publicKey: Self.alice)
        let all = Self.alicePositions(through: height, count: count)  // 4,000
        for cursor in [TransactionPosition(height: 2, index: 50), TransactionPosition(height: 21, index: 0),
                       TransactionPosition(height: 39, index: 99), TransactionPosition(height: 1, index: 1)] {
            let (records, more, reads) = try index.records(alice, before: cursor, limit: 5)
            let expected = Array(all.filter { $0 < cursor }.prefix(5))
            XCTAssertEqual(records.map(\.position), expected, "\(cursor)")
            XCTAssertEqual(more, all.filter { $0 < cursor }.count > 5)
            // log2(4,000) ≈ 12: a walk without jumps would take up to 4,000 reads.
            XCTAssertLessThanOrEqual(reads, 4 * 12 + 5, "\(cursor): \(reads) reads for depth 4,000")
        }
        XCTAssertEqual(try Self.history(index, alice, size: 100), all)
    }

    func testPageReadsTheTransactionsFromTheStore() throws {
        let (store, history, _) = try Self.open(SimulatedFileSystem())
        let blocks = (1...3).map { Self.block(height: UInt64($0), count: 2) }
        try Self.commit(blocks, store: store, index: history)
        let first = try history.page(Self.carol, before: nil, limit: 2)
        XCTAssertEqual(first.entries.map(\.transaction), [blocks[2].block.transactions[0], blocks[1].block.transactions[0]])
        XCTAssertEqual(first.next, TransactionPosition(height: 2, index: 0))
        let second = try history.page(Self.carol, before: first.next, limit: 2)
        XCTAssertEqual(second.entries.map(\.transaction), [blocks[0].block.transactions[0]])
        XCTAssertNil(second.next)
        XCTAssertEqual(second.indexedFromHeight, 1)
    }

    // MARK: Restarts

    /// The node's start on real files: commit more blocks than the node re-reads at
    /// start-up (`NodeStartup.startupIndexBlocks`), stop, start again, and list from block 1.
    /// Before the persisted index, a start re-indexed only those last blocks, so the
    /// older history was gone; now the start reads no block at all.
    func testHistorySurvivesARestartWithoutReadingTheChain() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("account-index-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let alice = Address(publicKey: Self.alice)
        let height = NodeStartup.startupIndexBlocks + 50
        do {
            let store = try BlockStore.open(dataDirectory: directory)
            let (index, report) = try AccountTransactions.open(dataDirectory: directory, store: store)
            XCTAssertEqual(report, .init())
            try Self.commit((1...height).map { Self.block(height: $0, count: 2) }, store: store, index: index)
            index.close()
            store.close()
        }
        let store = try BlockStore.open(dataDirectory: directory)
        let (index, report) = try AccountTransactions.open(dataDirectory: directory, store: store)
        // Current at the stop: nothing replayed, no block read.
        XCTAssertEqual(report, .init())
        XCTAssertEqual(index.indexedHeight, height)
        XCTAssertEqual(try Self.history(index, alice, size: 100), Self.alicePositions(through: height, count: 2))
        XCTAssertEqual(try index.page(alice, before: TransactionPosition(height: 2, index: 0), limit: 100).entries.count, 2, "block 1's")
        // And it goes on from there.
        try Self.commit([Self.block(height: height + 1, count: 2)], store: store, index: index)
        XCTAssertEqual(try Self.history(index, alice, size: 100), Self.alicePositions(through: height + 1, count: 2))
        store.close()
    }

    /// A crash (no clean stop) loses unsynced records or tears them: the start keeps the
    /// records it can check, drops the last block's, and indexes only the blocks after.
    func testCrashKeepsTheCheckedRecordsAndIndexesOnlyTheRest() throws {
        for outcome in SimulatedFileSystem.CrashOutcome.allCases {
            let fileSystem = SimulatedFileSystem()
            do {
                let (store, index, _) = try Self.open(fileSystem)
                try Self.commit((1...10).map { Self.block(height: UInt64($0), count: 4) }, store: store, index: index)
                index.checkpoint()  // at 10
                try Self.commit((11...20).map { Self.block(height: UInt64($0), count: 4) }, store: store, index: index)
            }
            fileSystem.restart(outcome)
            let (_, index, report) = try Self.open(fileSystem)
            XCTAssertEqual(try Self.history(index, Address(publicKey: Self.alice)), Self.alicePositions(through: 20, count: 4), "\(outcome)")
            XCTAssertEqual(index.indexedHeight, 20)
            XCTAssertLessThanOrEqual(report.indexedBlocks, 10, "\(outcome): only blocks after the checkpoint")
            XCTAssertFalse(report.checkpointUnusable)
            if outcome == .keepUnsynced {
                XCTAssertEqual(report.indexedBlocks, 1, "only the last block, which may have been partial")
                XCTAssertEqual(report.replayedRecords, 9 * 8)
            }
        }
    }

    /// A record damaged in the middle (under the checkpoint) is found by the read that
    /// reaches it, never served, and the next start rebuilds the index from the last
    /// good record; a damaged or truncated heads checkpoint, or a truncated positions
    /// file, are noticed at the start and rebuilt from the blocks.
    func testDamagedIndexIsDetectedAndRebuilt() throws {
        let positions = Self.dataDirectory + "/account-index/positions"
        let heads = Self.dataDirectory + "/account-index/heads"
        let alice = Address(publicKey: Self.alice)
        let whole = Self.alicePositions(through: 12, count: 4)
        let fileSystem = SimulatedFileSystem()
        do {
            let (store, index, _) = try Self.open(fileSystem)
            try Self.commit((1...12).map { Self.block(height: UInt64($0), count: 4) }, store: store, index: index)
            index.close()
        }
        // 1. One flipped byte in the record of block 5, index 2 for alice (record 8·4 + 4).
        var bytes = try XCTUnwrap(fileSystem.contents(positions))
        XCTAssertEqual(bytes.count, 12 * 8 * AccountIndexRecord.byteCount)
        bytes[(4 * 8 + 4) * AccountIndexRecord.byteCount + 25] ^= 0x40
        fileSystem.setContents(positions, bytes)
        do {
            let (_, index, report) = try Self.open(fileSystem)
            XCTAssertEqual(report, .init(), "trusted until read: the start does not read old records")
            let (listed, unavailable) = Self.historyUntilUnavailable(index, alice)
            // Pages of 7: the four before the one that reaches the record (5:3, then 5:2).
            XCTAssertEqual(listed, Array(whole.prefix(28)), "served up to the page that reaches the damage")
            XCTAssertTrue(unavailable, "the page that reaches the damage is refused, not served short as the end")
            XCTAssertFalse(fileSystem.fileExists(heads), "the checkpoint is dropped so the next start checks every record")
            index.close()
            XCTAssertFalse(fileSystem.fileExists(heads), "and not written again by this run")
        }
        do {
            let (_, index, report) = try Self.open(fileSystem)
            XCTAssertTrue(report.checkpointUnusable)
            XCTAssertEqual(report.replayedRecords, 4 * 8 + 4 - 4, "kept up to the damaged record, less block 5's")
            XCTAssertEqual(report.indexedBlocks, 8, "blocks 5…12 again")
            XCTAssertEqual(try Self.history(index, alice), whole)
            index.close()
        }
        // 2. A truncated heads checkpoint and 3. a positions file cut mid-record.
        let checkpoint = try XCTUnwrap(fileSystem.contents(heads))
        fileSystem.setContents(heads, Array(checkpoint.dropLast(3)))
        var cut = try XCTUnwrap(fileSystem.contents(positions))
        cut.removeLast(AccountIndexRecord.byteCount * 10 + 7)
        fileSystem.setContents(positions, cut)
        do {
            let (_, index, report) = try Self.open(fileSystem)
            XCTAssertTrue(report.checkpointUnusable)
            XCTAssertGreaterThan(report.droppedRecords, 0)
            XCTAssertEqual(try Self.history(index, alice), whole)
            XCTAssertEqual(index.indexedHeight, 12)
        }
    }

    /// A checkpoint of another chain's block at its height (data copied from elsewhere)
    /// is not trusted.
    func testCheckpointOfAnotherBlockIsNotTrusted() throws {
        let fileSystem = SimulatedFileSystem()
        do {
            let (store, index, _) = try Self.open(fileSystem)
            try Self.commit((1...3).map { Self.block(height: UInt64($0), count: 2) }, store: store, index: index)
            index.close()
        }
        let other = SimulatedFileSystem()
        do {
            let (store, index, _) = try Self.open(other)
            try Self.commit((1...3).map { Self.block(height: UInt64($0), count: 3) }, store: store, index: index)
            index.close()
        }
        for name in ["positions", "heads"] {
            let path = Self.dataDirectory + "/account-index/" + name
            fileSystem.setContents(path, other.contents(path)!)
        }
        let (_, index, report) = try Self.open(fileSystem)
        XCTAssertTrue(report.checkpointUnusable)
        XCTAssertEqual(try Self.history(index, Address(publicKey: Self.alice)), Self.alicePositions(through: 3, count: 2))
    }

    func testCursorParsing() {
        XCTAssertEqual(TransactionPosition(cursor: "12:3"), TransactionPosition(height: 12, index: 3))
        XCTAssertEqual(TransactionPosition(height: 12, index: 3).description, "12:3")
        for bad in ["", ":", "12", "12:", ":3", "+1:2", "1:-2", "1:2:3", "a:b", " 1:2", "1:4294967296", "18446744073709551616:0", "１:2"] {
            XCTAssertNil(TransactionPosition(cursor: bad), bad)
        }
    }
}
