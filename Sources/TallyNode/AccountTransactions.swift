import Logging
import Synchronization
import TallyCrypto
import TallyStore
import TallyTypes

/// Where a committed transaction sits: its block's height and its index in the block.
/// Ordered by height, then index (the chain's order).
public struct TransactionPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    public let height: UInt64
    public let index: UInt32

    public init(height: UInt64, index: UInt32) {
        self.height = height
        self.index = index
    }

    public static func < (a: Self, b: Self) -> Bool { (a.height, a.index) < (b.height, b.index) }

    /// The cursor form of `GET /accounts/{address}/txs?before=`: `<height>:<index>`.
    public var description: String { "\(height):\(index)" }

    /// Parses `<height>:<index>` (decimal, nothing else); nil for anything else.
    public init?(cursor text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }),
              let height = UInt64(parts[0]), let index = UInt32(parts[1])
        else { return nil }
        self.init(height: height, index: index)
    }
}

/// One page of an account's committed transactions, newest first.
public struct AccountTransactionsPage: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public let position: TransactionPosition
        public let transaction: Transaction

        public init(position: TransactionPosition, transaction: Transaction) {
            self.position = position
            self.transaction = transaction
        }
    }

    public let entries: [Entry]
    /// The cursor for the next (older) page; nil when this page reaches the oldest indexed.
    public let next: TransactionPosition?
    /// The lowest height whose transactions are all indexed: 1, since the index is
    /// persisted and covers the whole chain (kept in the API for clients that check it).
    public let indexedFromHeight: UInt64

    public init(entries: [Entry], next: TransactionPosition?, indexedFromHeight: UInt64) {
        self.entries = entries
        self.next = next
        self.indexedFromHeight = indexedFromHeight
    }
}


/// `GET /accounts/{address}/txs`: which committed transactions touch each account (as
/// sender or recipient), persisted under `DATA/account-index/` (`AccountIndexFormat`)
/// so an account's whole history survives restarts. Memory holds one head per account
/// (its newest record), not the positions; a page walks the account's chain of records
/// on disk from there, off the node's actor, reading O(log n + limit) records and at
/// most `limit` blocks. Every record read is checked (checksum, account, links, order)
/// and every entry against its block; damage is logged, never served, and makes the
/// next start rebuild the index from the last good record.
final class AccountTransactions: Sendable {
    /// Largest page (`limit`): each entry may read its own block, so this bounds the
    /// blocks one request reads.
    static let maxPageTransactions = 100
    /// The page size when the request gives no `limit`.
    static let defaultPageTransactions = 20
    /// The heads are checkpointed once this many records were added since the last
    /// checkpoint (a start replays at most about this many records, 60 bytes each) …
    static let checkpointIntervalRecords: UInt64 = 131_072
    /// … or this many blocks (a start re-reads at most about this many blocks).
    static let checkpointIntervalBlocks: UInt64 = 1_024
    /// Records one page may read: the walk to the cursor takes at most about
    /// 4·log2(depth) ≤ 256 (each step may read a jump target it does not take), then
    /// one per entry. Well-formed chains stay far below.
    static let maxRecordReadsPerPage = 4 * UInt64.bitWidth + maxPageTransactions + 8

    /// What `open` did, for its log line and the tests.
    struct OpenReport: Equatable {
        /// Records after the checkpoint that were checked and kept.
        var replayedRecords: UInt64 = 0
        /// Records dropped: damaged, torn, or of the last block (re-indexed, it may be partial).
        var droppedRecords: UInt64 = 0
        /// Blocks read from the store to catch up.
        var indexedBlocks: UInt64 = 0
        /// Whether the heads checkpoint was missing or unusable (then every record is checked).
        var checkpointUnusable = false
    }

    private struct State {
        var heads: [Address: AccountIndexHead] = [:]
        var recordCount: UInt64 = 0
        var indexedHeight: UInt64 = 0
        var lastBlockHash = Hash.zero
        var checkpointRecords: UInt64 = 0
        var checkpointHeight: UInt64 = 0
        /// The positions file, open for appending; nil once closed.
        var file: (any StoreFile)?
        /// Set when a read found damage or a write failed: no more checkpoints this run
        /// (the next start checks every record and rebuilds from the last good one).
        var damaged = false
        /// Set when a block could not be added: later ones are not either (the index
        /// never skips a block); the next start indexes them from the store.
        var addingStopped = false
    }

    private let reader: BlockReader
    private let fileSystem: any FileSystem
    private let directory: String
    private let logger: Logger
    private let state: Mutex<State>

    private var positionsPath: String { directory + "/" + AccountIndexFormat.positionsName }
    private var headsPath: String { directory + "/" + AccountIndexFormat.headsName }

    private init(reader: BlockReader, fileSystem: any FileSystem, directory: String, logger: Logger, state: sending State) {
        self.reader = reader
        self.fileSystem = fileSystem
        self.directory = directory
        self.logger = logger
        self.state = Mutex(state)
    }

    /// Opens the index under `dataDirectory` (creating it), checks what was written
    /// since its checkpoint, and indexes the store's blocks after it.
    static func open(
        dataDirectory: String, store: BlockStore, fileSystem: any FileSystem = PosixFileSystem(),
        logger: Logger = Logger(label: "tally.account-index")
    ) throws -> (index: AccountTransactions, report: OpenReport) {
        let directory = dataDirectory + "/" + AccountIndexFormat.directoryName
        try fileSystem.createDirectory(directory)
        let file = try fileSystem.open(directory + "/" + AccountIndexFormat.positionsName, mode: .create)
        var report = OpenReport()
        var state = State()
        var fileRecords = UInt64(try file.size() / AccountIndexRecord.byteCount)
        switch loadCheckpoint(directory + "/" + AccountIndexFormat.headsName, fileSystem: fileSystem, fileRecords: fileRecords, store: store) {
        case .usable(let checkpoint):
            state.heads = checkpoint.heads
            state.recordCount = checkpoint.recordCount
            state.indexedHeight = checkpoint.height
            state.lastBlockHash = checkpoint.blockHash
        case .missing:
            // Lost, or removed after a read found damage: every record is checked.
            report.checkpointUnusable = fileRecords > 0
        case .damaged:
            report.checkpointUnusable = true
        case .otherChain:
            // Whole but not of these blocks (data put together from elsewhere): none of
            // the records can be trusted.
            report.checkpointUnusable = true
            report.droppedRecords = fileRecords
            fileRecords = 0
        }
        state.checkpointRecords = state.recordCount
        state.checkpointHeight = state.indexedHeight
        state.file = file
        let discarded = report.droppedRecords
        try replay(&state, fileRecords: fileRecords, tipHeight: store.tipHeight, report: &report)
        report.droppedRecords += discarded
        try file.truncate(to: Int(state.recordCount) * AccountIndexRecord.byteCount)
        if state.indexedHeight > state.checkpointHeight, let block = try store.block(at: state.indexedHeight) {
            state.lastBlockHash = block.block.hash
        }
        let index = AccountTransactions(
            reader: store.reader, fileSystem: fileSystem, directory: directory, logger: logger, state: state)
        try store.forEachBlock(from: index.indexedHeight + 1) {
            index.add($0.block)
            report.indexedBlocks += 1
        }
        if report != OpenReport() {
            logger.info("account index opened", metadata: [
                "height": "\(index.indexedHeight)", "replayed_records": "\(report.replayedRecords)",
                "dropped_records": "\(report.droppedRecords)", "indexed_blocks": "\(report.indexedBlocks)",
                "checkpoint_unusable": "\(report.checkpointUnusable)",
            ])
            index.checkpoint()
        }
        return (index, report)
    }

    /// The height up to which every block is indexed.
    var indexedHeight: UInt64 { state.withLock { $0.indexedHeight } }

    /// Writes a last checkpoint (so the next start replays nothing) and closes the file.
    func close() {
        checkpoint()
        state.withLock { state in
            state.file?.close()
            state.file = nil
        }
    }

    /// Called by the node after `block` is durable (so the reader can serve it), in
    /// height order. Its records are written in one write, without fsync (a crash loses
    /// at most what the next start re-indexes from the blocks).
    func add(_ block: Block) {
        let due = state.withLock { state -> Bool in
            guard let file = state.file, !state.addingStopped else { return false }
            guard block.height == state.indexedHeight + 1 else {
                precondition(block.height <= state.indexedHeight, "account index skipped from \(state.indexedHeight) to \(block.height)")
                return false
            }
            var pending: [AccountIndexRecord] = []
            // The heads this block replaced, to put back if its write fails (the heads
            // are changed in place: a copy would cost the whole dictionary per block).
            var replaced: [(Address, AccountIndexHead?)] = []
            do {
                for (offset, transaction) in block.transactions.enumerated() {
                    let position = TransactionPosition(height: block.height, index: UInt32(offset))
                    let sender = transaction.senderAddress
                    for address in transaction.recipient == sender ? [sender] : [sender, transaction.recipient] {
                        let record = try Self.nextRecord(
                            address, position, heads: state.heads, recordCount: state.recordCount, pending: pending, file: file)
                        replaced.append((address, state.heads.updateValue(
                            AccountIndexHead(record: state.recordCount + UInt64(pending.count), depth: record.depth, jump: record.jump),
                            forKey: address)))
                        pending.append(record)
                    }
                }
                if !pending.isEmpty {
                    try file.write(pending.flatMap(\.bytes), at: Int(state.recordCount) * AccountIndexRecord.byteCount)
                }
            } catch {
                // Nothing of this block is kept: the index stays whole up to the block
                // before, and the next start indexes the rest from the store.
                for (address, head) in replaced.reversed() { state.heads[address] = head }
                logger.error("account index write failed; it is completed at the next start", metadata: [
                    "height": "\(block.height)", "error": "\(error)",
                ])
                state.damaged = true
                state.addingStopped = true
                return false
            }
            state.recordCount += UInt64(pending.count)
            state.indexedHeight = block.height
            state.lastBlockHash = block.hash
            return state.recordCount - state.checkpointRecords >= Self.checkpointIntervalRecords
                || state.indexedHeight - state.checkpointHeight >= Self.checkpointIntervalBlocks
        }
        if due { checkpoint() }
    }

    /// The record for `address`'s next transaction at `position`, linked to its head.
    /// Its jump is the parent itself or the parent's jump's jump, read back (and checked).
    private static func nextRecord(
        _ address: Address, _ position: TransactionPosition, heads: [Address: AccountIndexHead], recordCount: UInt64,
        pending: [AccountIndexRecord], file: any StoreFile
    ) throws -> AccountIndexRecord {
        let head = heads[address]
        let depth = (head?.depth ?? 0) + 1
        let previous = head.map { $0.record + 1 } ?? 0
        let target = AccountIndexRecord.jumpDepth(depth)
        var jump: UInt64 = 0
        if let head, target > 0 {
            if target == head.depth {
                jump = previous
            } else {
                // Myers: the parent's jump's jump (which is at depth `target`).
                guard head.jump > 0 else { throw AccountIndexDamage("head of \(address) has no jump at depth \(head.depth)") }
                let number = head.jump - 1
                let parentJump: AccountIndexRecord?
                if number >= recordCount {
                    parentJump = number - recordCount < UInt64(pending.count) ? pending[Int(number - recordCount)] : nil
                } else {
                    parentJump = try readRecord(number, file: file)
                }
                guard let parentJump, parentJump.address == address,
                      parentJump.depth == AccountIndexRecord.jumpDepth(head.depth), parentJump.jump > 0
                else { throw AccountIndexDamage("record \(number) is not \(address)'s jump from depth \(head.depth)") }
                jump = parentJump.jump
            }
        }
        return AccountIndexRecord(address: address, position: position, depth: depth, previous: previous, jump: jump)
    }

    private static func readRecord(_ number: UInt64, file: any StoreFile) throws -> AccountIndexRecord? {
        let bytes = try file.read(at: Int(number) * AccountIndexRecord.byteCount, count: AccountIndexRecord.byteCount)
        return AccountIndexRecord(bytes: bytes[...])
    }

    /// Checks the records after the checkpoint one by one against what `add` would have
    /// written, keeps them up to the first that differs (or the last whole one), then
    /// drops those of the last height they reach: that block's records may be partial,
    /// so it is indexed again from the store.
    private static func replay(_ state: inout State, fileRecords: UInt64, tipHeight: UInt64, report: inout OpenReport) throws {
        guard let file = state.file else { return }
        let checkpointed = state.recordCount > 0 ? try readRecord(state.recordCount - 1, file: file) : nil
        var last = checkpointed?.position
        var lastAddress = checkpointed?.address
        while state.recordCount < fileRecords {
            guard let stored = try readRecord(state.recordCount, file: file),
                  stored.position.height > state.checkpointHeight, stored.position.height <= tipHeight,
                  last.map({ stored.position > $0 || (stored.position == $0 && stored.address != lastAddress) }) ?? true,
                  let expected = try? nextRecord(
                    stored.address, stored.position, heads: state.heads, recordCount: state.recordCount, pending: [], file: file),
                  expected == stored
            else { break }
            state.heads[stored.address] = AccountIndexHead(record: state.recordCount, depth: stored.depth, jump: stored.jump)
            state.recordCount += 1
            last = stored.position
            lastAddress = stored.address
            report.replayedRecords += 1
        }
        report.droppedRecords = fileRecords - state.recordCount
        guard let lastHeight = last?.height, lastHeight > state.checkpointHeight else { return }
        // Undo the last height's records, newest first: each account's head goes back to its previous record.
        while state.recordCount > state.checkpointRecords, let record = try readRecord(state.recordCount - 1, file: file),
              record.position.height == lastHeight
        {
            if record.previous == 0 {
                state.heads[record.address] = nil
            } else {
                guard let previous = try readRecord(record.previous - 1, file: file) else {
                    throw AccountIndexDamage("record \(record.previous - 1) unreadable after it was checked")
                }
                state.heads[record.address] = AccountIndexHead(record: record.previous - 1, depth: previous.depth, jump: previous.jump)
            }
            state.recordCount -= 1
            report.replayedRecords -= 1
            report.droppedRecords += 1
        }
        state.indexedHeight = max(state.checkpointHeight, lastHeight - 1)
    }

    // MARK: Checkpoint

    private struct Checkpoint {
        var heads: [Address: AccountIndexHead]
        var recordCount: UInt64
        var height: UInt64
        var blockHash: Hash
    }

    private enum LoadedCheckpoint {
        case usable(Checkpoint)
        case missing
        /// Not whole: its checksum, size or contents are wrong.
        case damaged
        /// Whole, but of a height the store lacks or of another block at its height.
        case otherChain
    }

    /// The heads file if it is whole (checksum), agrees with the positions file (no
    /// head past its end) and with the store (its height is there, with its block hash).
    private static func loadCheckpoint(
        _ path: String, fileSystem: any FileSystem, fileRecords: UInt64, store: BlockStore
    ) -> LoadedCheckpoint {
        guard fileSystem.fileExists(path) else { return .missing }
        guard let file = try? fileSystem.open(path, mode: .readOnly) else { return .damaged }
        defer { file.close() }
        guard let size = try? file.size(), size >= AccountIndexFormat.headsHeaderBytes + 4,
              let bytes = try? file.read(at: 0, count: size), bytes.count == size,
              bytes.starts(with: AccountIndexFormat.headsMagic),
              CRC32C.checksum(bytes[..<(size - 4)]) == bytes[...].readBigEndian(at: size - 4, as: UInt32.self)
        else { return .damaged }
        let all = bytes[...]
        let recordCount = all.readBigEndian(at: 8, as: UInt64.self)
        let height = all.readBigEndian(at: 16, as: UInt64.self)
        let blockHash = Hash(bytes: Array(all[24..<56]))!
        let entryCount = all.readBigEndian(at: 56, as: UInt64.self)
        guard recordCount <= fileRecords, entryCount <= recordCount,
              size == AccountIndexFormat.headsHeaderBytes + Int(entryCount) * AccountIndexFormat.headsEntryBytes + 4
        else { return .damaged }
        guard height <= store.tipHeight else { return .otherChain }
        if height > 0 {
            guard let block = try? store.block(at: height), block.block.hash == blockHash else { return .otherChain }
        }
        var heads: [Address: AccountIndexHead] = [:]
        heads.reserveCapacity(Int(entryCount))
        var offset = AccountIndexFormat.headsHeaderBytes
        for _ in 0..<entryCount {
            let address = Address(bytes: Array(all[offset..<offset + 20]))!
            let head = AccountIndexHead(
                record: all.readBigEndian(at: offset + 20, as: UInt64.self), depth: all.readBigEndian(at: offset + 28, as: UInt64.self),
                jump: all.readBigEndian(at: offset + 36, as: UInt64.self))
            guard head.record < recordCount, head.depth >= 1, head.jump <= head.record, heads.updateValue(head, forKey: address) == nil
            else { return .damaged }
            offset += AccountIndexFormat.headsEntryBytes
        }
        return .usable(Checkpoint(heads: heads, recordCount: recordCount, height: height, blockHash: blockHash))
    }

    /// Makes the records durable, then writes the heads they lead to (temporary file,
    /// fsync, rename, directory fsync), so a checkpoint never names a record a crash
    /// could lose. Synchronous, like the ledger's snapshots: its cost grows with the
    /// number of accounts, about every `checkpointIntervalRecords` records.
    func checkpoint() {
        state.withLock { state in
            guard let file = state.file, !state.damaged,
                  state.recordCount != state.checkpointRecords || state.indexedHeight != state.checkpointHeight
            else { return }
            var bytes = AccountIndexFormat.headsMagic
            bytes.reserveCapacity(AccountIndexFormat.headsHeaderBytes + state.heads.count * AccountIndexFormat.headsEntryBytes + 4)
            bytes.appendBigEndian(state.recordCount)
            bytes.appendBigEndian(state.indexedHeight)
            bytes += state.lastBlockHash.bytes
            bytes.appendBigEndian(UInt64(state.heads.count))
            // In the dictionary's order: the file is read back into a dictionary, so
            // the order reaches nothing (and sorting would cost more than the write).
            for (address, head) in state.heads {
                bytes += address.bytes
                bytes.appendBigEndian(head.record)
                bytes.appendBigEndian(head.depth)
                bytes.appendBigEndian(head.jump)
            }
            bytes.appendBigEndian(CRC32C.checksum(bytes))
            let temporary = headsPath + ".tmp"
            do {
                try file.syncData()
                let out = try fileSystem.open(temporary, mode: .create)
                defer { out.close() }
                try out.truncate(to: 0)
                try out.write(bytes, at: 0)
                try out.sync()
                try fileSystem.rename(temporary, to: headsPath)
                try fileSystem.syncDirectory(directory)
                state.checkpointRecords = state.recordCount
                state.checkpointHeight = state.indexedHeight
            } catch {
                logger.error("account index checkpoint failed; the next start replays more", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: Reading

    /// Newest first, at most `limit` (1…`maxPageTransactions`) older than `before`.
    /// Throws `AccountHistoryUnavailable` (after logging the damage) when the page
    /// cannot be read whole: a shorter page would read as the end of the history.
    func page(_ address: Address, before: TransactionPosition?, limit: Int) throws -> AccountTransactionsPage {
        precondition(limit >= 1 && limit <= Self.maxPageTransactions)
        do {
            let (records, more, _) = try records(address, before: before, limit: limit)
            return try entries(address, records, more: more)
        } catch {
            reportDamage("\(error)")
            throw AccountHistoryUnavailable()
        }
    }

    /// The records of a page, whether older ones remain, and how many records it read.
    func records(
        _ address: Address, before: TransactionPosition?, limit: Int
    ) throws -> (records: [AccountIndexRecord], more: Bool, reads: UInt64) {
        let (head, recordCount) = state.withLock { ($0.heads[address], $0.recordCount) }
        guard let head else { return ([], false, 0) }
        let file = try fileSystem.open(positionsPath, mode: .readOnly)
        defer { file.close() }
        var walk = RecordWalk(address: address, file: file, recordCount: recordCount)
        let (records, more) = try walk.page(from: head, before: before, limit: limit)
        return (records, more, walk.reads)
    }

    /// The transactions of `records`, read from their blocks (once per distinct
    /// block), each checked to touch `address`.
    private func entries(_ address: Address, _ records: [AccountIndexRecord], more: Bool) throws -> AccountTransactionsPage {
        var entries: [AccountTransactionsPage.Entry] = []
        var block: CertifiedBlock?
        for record in records {
            let position = record.position
            if block?.block.height != position.height { block = try reader.block(at: position.height) }
            guard let transactions = block?.block.transactions, Int(position.index) < transactions.count else {
                throw AccountIndexDamage("no transaction at \(position)")
            }
            let transaction = transactions[Int(position.index)]
            guard transaction.recipient == address || transaction.senderAddress == address else {
                throw AccountIndexDamage("the transaction at \(position) does not touch \(address)")
            }
            entries.append(.init(position: position, transaction: transaction))
        }
        return AccountTransactionsPage(entries: entries, next: more ? records.last?.position : nil, indexedFromHeight: 1)
    }

    /// Damage found by a read: logged once, and the checkpoint removed, so the next
    /// start checks every record and rebuilds the index from the last good one.
    private func reportDamage(_ reason: String) {
        let first = state.withLock { state -> Bool in
            defer { state.damaged = true }
            return !state.damaged
        }
        guard first else { return }
        logger.error("account index damaged; not served, rebuilt at the next start", metadata: ["reason": "\(reason)"])
        try? fileSystem.remove(headsPath)
        try? fileSystem.syncDirectory(directory)
    }
}

/// An account's history could not be read whole (the index is damaged; the next start
/// rebuilds it): the API answers 503 `history_unavailable`.
public struct AccountHistoryUnavailable: Error, Sendable {
    public init() {}
}

struct AccountIndexDamage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One page's walk down an account's chain of records, each read checked.
struct RecordWalk {
    let address: Address
    let file: any StoreFile
    let recordCount: UInt64
    private(set) var reads: UInt64 = 0

    init(address: Address, file: any StoreFile, recordCount: UInt64) {
        self.address = address
        self.file = file
        self.recordCount = recordCount
    }

    /// At most `limit` records older than `before` (all when nil), newest first, and whether older ones remain.
    mutating func page(from head: AccountIndexHead, before: TransactionPosition?, limit: Int) throws -> ([AccountIndexRecord], Bool) {
        var current = try read(head.record + 1, depth: head.depth, newerThan: nil)
        if let before {
            // Down to the newest record older than `before`: a jump whose target is
            // still not older skips everything between (positions fall along the chain).
            while current.position >= before {
                if current.jump > 0 {
                    let target = try read(current.jump, depth: AccountIndexRecord.jumpDepth(current.depth), newerThan: current.position)
                    if target.position >= before {
                        current = target
                        continue
                    }
                }
                guard current.previous > 0 else { return ([], false) }
                current = try read(current.previous, depth: current.depth - 1, newerThan: current.position)
            }
        }
        var records = [current]
        while records.count < limit, current.previous > 0 {
            current = try read(current.previous, depth: current.depth - 1, newerThan: current.position)
            records.append(current)
        }
        return (records, current.previous > 0)
    }

    /// Record `link - 1`, which must be this account's at `depth`, older than `newerThan`.
    private mutating func read(_ link: UInt64, depth: UInt64, newerThan: TransactionPosition?) throws -> AccountIndexRecord {
        reads += 1
        guard reads <= AccountTransactions.maxRecordReadsPerPage else {
            throw AccountIndexDamage("a page of \(address) took over \(AccountTransactions.maxRecordReadsPerPage) record reads")
        }
        let number = link - 1
        guard number < recordCount else { throw AccountIndexDamage("record \(number) is past the index's end \(recordCount)") }
        let bytes = try file.read(at: Int(number) * AccountIndexRecord.byteCount, count: AccountIndexRecord.byteCount)
        guard let record = AccountIndexRecord(bytes: bytes[...]), record.address == address, record.depth == depth,
              newerThan.map({ record.position < $0 }) ?? true
        else { throw AccountIndexDamage("record \(number) is not \(address)'s at depth \(depth)") }
        return record
    }
}
