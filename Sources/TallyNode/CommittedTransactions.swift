import Synchronization
import TallyCrypto
import TallyStore
import TallyTypes

/// `/txs/{hash}` for committed transactions, answered off the node's actor: the
/// index says where a transaction is, the block comes through the store's
/// `BlockReader`, and the Merkle tree of a block is built once and kept for the
/// next lookups in it (a 4,000-transaction block costs one tree, not one per proof).
final class CommittedTransactions: Sendable {
    /// Trees kept: the blocks most recently asked about (a client polling its
    /// transfers asks about the last few blocks).
    static let maxCachedTrees = 16

    private let reader: BlockReader
    private let index: Mutex<TransactionIndex>
    private let trees: Mutex<TreeCache>

    init(reader: BlockReader, index: TransactionIndex) {
        self.reader = reader
        self.index = Mutex(index)
        trees = Mutex(TreeCache(capacity: Self.maxCachedTrees))
    }

    /// Called by the node after `block` is durable (so the reader can serve it).
    func add(_ block: Block) {
        index.withLock { $0.add(block) }
    }

    /// Where `hash` was committed with its inclusion proof, or nil when the index
    /// does not know it (not committed, or forgotten beyond the index's bound).
    func status(of hash: Hash) -> TransactionStatus? {
        guard let location = index.withLock({ $0.location(of: hash) }), let tree = tree(at: location.height) else {
            return nil
        }
        let position = Int(location.index)
        // The index keys on 8 bytes of the hash: the full hash decides.
        guard position < tree.tree.items.count, tree.tree.items[position] == hash,
              let proof = tree.tree.proof(index: position)
        else { return nil }
        return .committed(height: location.height, index: position, blockHash: tree.blockHash, proof: proof)
    }

    private func tree(at height: UInt64) -> TreeCache.Entry? {
        if let cached = trees.withLock({ $0.entry(at: height) }) { return cached }
        // Read, decode and hash outside the lock: concurrent lookups of other blocks
        // proceed; two of the same block may both build it (then one is kept).
        guard let certified = try? reader.block(at: height) else { return nil }
        let entry = TreeCache.Entry(
            height: height, blockHash: certified.block.hash, tree: Merkle.Tree(certified.block.transactions.map(\.hash)))
        trees.withLock { $0.insert(entry) }
        return entry
    }
}

/// The last `capacity` blocks' trees, least recently used evicted first.
struct TreeCache: Sendable {
    struct Entry: Sendable {
        let height: UInt64
        let blockHash: Hash
        let tree: Merkle.Tree
    }

    let capacity: Int
    private var entries: [Entry] = []

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    mutating func entry(at height: UInt64) -> Entry? {
        guard let position = entries.firstIndex(where: { $0.height == height }) else { return nil }
        let entry = entries.remove(at: position)
        entries.append(entry)
        return entry
    }

    mutating func insert(_ entry: Entry) {
        entries.removeAll { $0.height == entry.height }
        entries.append(entry)
        if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
    }

    var heights: [UInt64] { entries.map(\.height) }
}

/// Where committed transactions are, for `/txs/{hash}`: keyed by the first 8 bytes
/// of the hash (a lookup checks the full hash against the stored block), bounded.
struct TransactionIndex: Sendable {
    struct Location: Equatable, Sendable {
        let height: UInt64
        let index: UInt32
    }

    static let maxEntries = 4_000_000
    private var locations: [UInt64: Location] = [:]
    private var order: [UInt64] = []
    private var evicted = 0

    static func key(_ hash: Hash) -> UInt64 {
        hash.bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func add(_ block: Block) {
        for (index, transaction) in block.transactions.enumerated() {
            let key = Self.key(transaction.hash)
            if locations.updateValue(Location(height: block.height, index: UInt32(index)), forKey: key) == nil {
                order.append(key)
            }
        }
        // Forget the oldest entries beyond the bound (amortised: compact in batches).
        if locations.count > Self.maxEntries {
            let excess = locations.count - Self.maxEntries
            for key in order[evicted..<evicted + excess] { locations[key] = nil }
            evicted += excess
            if evicted > Self.maxEntries / 2 {
                order.removeFirst(evicted)
                evicted = 0
            }
        }
    }

    func location(of hash: Hash) -> Location? { locations[Self.key(hash)] }
}

