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
    /// The lowest height whose transactions are all indexed: older ones are in their
    /// blocks but not listed (the index is bounded, and after a restart rebuilt from
    /// the last blocks only).
    public let indexedFromHeight: UInt64

    public init(entries: [Entry], next: TransactionPosition?, indexedFromHeight: UInt64) {
        self.entries = entries
        self.next = next
        self.indexedFromHeight = indexedFromHeight
    }
}

/// Which committed transactions touch each account (as sender or recipient), in chain
/// order, for `GET /accounts/{address}/txs`. Bounded: beyond `maxEntries` positions the
/// oldest blocks are forgotten a quarter at a time (so the cost of forgetting is
/// amortised over the additions).
struct AccountTransactionIndex: Sendable {
    /// Positions kept (a transaction counts once for its sender, once for a different
    /// recipient): 16 bytes each, ~64 MiB at the bound, plus one entry per account.
    static let maxEntries = 4_000_000

    let maxEntries: Int
    private var positions: [Address: [TransactionPosition]] = [:]
    /// Per indexed block, oldest first: its height and how many positions it added.
    private var blocks: [(height: UInt64, count: Int)] = []
    private var firstBlock = 0
    private(set) var entryCount = 0
    /// Heights below this are not (or no longer) indexed.
    private(set) var indexedFromHeight: UInt64 = 1

    /// An index of the blocks from `fromHeight` on (the node rebuilds it at start from
    /// the last blocks only).
    init(fromHeight: UInt64 = 1, maxEntries: Int = AccountTransactionIndex.maxEntries) {
        precondition(maxEntries >= 1 && fromHeight >= 1)
        self.maxEntries = maxEntries
        indexedFromHeight = fromHeight
    }

    /// Adds a committed block; blocks come in height order, from `indexedFromHeight` on.
    mutating func add(_ block: Block) {
        var added = 0
        for (offset, transaction) in block.transactions.enumerated() {
            let position = TransactionPosition(height: block.height, index: UInt32(offset))
            let sender = transaction.senderAddress
            positions[sender, default: []].append(position)
            added += 1
            if transaction.recipient != sender {
                positions[transaction.recipient, default: []].append(position)
                added += 1
            }
        }
        blocks.append((block.height, added))
        entryCount += added
        if entryCount > maxEntries { forgetOldest() }
    }

    /// Drops the oldest blocks until at most three quarters of the bound are left.
    private mutating func forgetOldest() {
        let target = maxEntries - maxEntries / 4
        while entryCount > target, firstBlock < blocks.count - 1 {
            entryCount -= blocks[firstBlock].count
            firstBlock += 1
        }
        let cutoff = blocks[firstBlock].height
        indexedFromHeight = cutoff
        // Keys' order does not matter here: each account's list is filtered alone.
        positions = positions.compactMapValues { list in
            let kept = list.drop { $0.height < cutoff }
            return kept.isEmpty ? nil : Array(kept)
        }
        blocks.removeFirst(firstBlock)
        firstBlock = 0
    }

    /// At most `limit` positions of `address` older than `before` (all when nil),
    /// newest first, and whether older ones remain.
    func positions(of address: Address, before: TransactionPosition?, limit: Int) -> (positions: [TransactionPosition], more: Bool) {
        precondition(limit >= 1)
        guard let list = positions[address] else { return ([], false) }
        // The first position not older than `before`: everything before it qualifies.
        var end = list.count
        if let before {
            var low = 0, high = list.count
            while low < high {
                let middle = (low + high) / 2
                if list[middle] < before { low = middle + 1 } else { high = middle }
            }
            end = low
        }
        let start = max(0, end - limit)
        return (Array(list[start..<end].reversed()), start > 0)
    }
}

/// `GET /accounts/{address}/txs`, answered off the node's actor: the index says where
/// an account's transactions are, the blocks come through the store's `BlockReader`.
final class AccountTransactions: Sendable {
    /// Largest page (`limit`): each entry may read its own block, so this bounds the
    /// blocks one request reads.
    static let maxPageTransactions = 100
    /// The page size when the request gives no `limit`.
    static let defaultPageTransactions = 20

    private let reader: BlockReader
    private let index: Mutex<AccountTransactionIndex>

    init(reader: BlockReader, index: AccountTransactionIndex) {
        self.reader = reader
        self.index = Mutex(index)
    }

    /// Called by the node after `block` is durable (so the reader can serve it).
    func add(_ block: Block) {
        index.withLock { $0.add(block) }
    }

    /// Newest first, at most `limit` (1…`maxPageTransactions`) older than `before`.
    func page(_ address: Address, before: TransactionPosition?, limit: Int) -> AccountTransactionsPage {
        precondition(limit >= 1 && limit <= Self.maxPageTransactions)
        let (found, more, indexedFrom) = index.withLock { index in
            let (positions, more) = index.positions(of: address, before: before, limit: limit)
            return (positions, more, index.indexedFromHeight)
        }
        // Read outside the lock; one read per distinct block (a page of one block's
        // transactions reads it once).
        var entries: [AccountTransactionsPage.Entry] = []
        var block: CertifiedBlock?
        for position in found {
            if block?.block.height != position.height { block = try? reader.block(at: position.height) }
            guard let transactions = block?.block.transactions, Int(position.index) < transactions.count else { continue }
            entries.append(.init(position: position, transaction: transactions[Int(position.index)]))
        }
        return AccountTransactionsPage(entries: entries, next: more ? found.last : nil, indexedFromHeight: indexedFrom)
    }
}
