import Foundation
import Logging
import Synchronization
import TallyCrypto
import TallyStore
import TallyTypes

/// `/txs/{hash}` for committed transactions, answered off the node's actor: the
/// index says where a transaction is, the block comes through the store's
/// `BlockReader`, and the Merkle tree of a block is built once and kept for the
/// next lookups in it (a 4,000-transaction block costs one tree, not one per proof).
///
/// At start the index of the last blocks is rebuilt on a thread of its own
/// (`init(reader:rebuildingFrom:through:logger:)`: decoding and hashing every
/// transaction of up to `NodeStartup.startupIndexBlocks` blocks took seconds, and the node
/// need not wait for it to serve); blocks committed meanwhile go to a live index
/// merged after it, and `status(waitingForRebuild:)` waits for the rebuild before it
/// answers that it does not know a hash.
final class CommittedTransactions: Sendable {
    /// Trees kept: the blocks most recently asked about (a client polling its
    /// transfers asks about the last few blocks).
    static let maxCachedTrees = 16

    private struct State: Sendable {
        var index: TransactionIndex
        /// Blocks added while the start-up rebuild runs; nil once it is merged.
        var live: TransactionIndex?
        /// Lookups waiting for the rebuild (bounded by the API's request slots).
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let reader: BlockReader
    private let state: Mutex<State>
    private let trees: Mutex<TreeCache>

    init(reader: BlockReader, index: TransactionIndex) {
        self.reader = reader
        state = Mutex(State(index: index, live: nil))
        trees = Mutex(TreeCache(capacity: Self.maxCachedTrees))
    }

    /// An index of the blocks `first…last` built on a thread of its own from `reader`.
    init(reader: BlockReader, rebuildingFrom first: UInt64, through last: UInt64, logger: Logger) {
        self.reader = reader
        let rebuilding = first <= last
        state = Mutex(State(index: TransactionIndex(), live: rebuilding ? TransactionIndex() : nil))
        trees = Mutex(TreeCache(capacity: Self.maxCachedTrees))
        guard rebuilding else { return }
        let thread = Thread { [self] in rebuild(from: first, through: last, logger: logger) }
        thread.name = "tally-tx-index"
        thread.start()
    }

    private func rebuild(from first: UInt64, through last: UInt64, logger: Logger) {
        let start = ContinuousClock.now
        var built = TransactionIndex()
        var height = first
        do {
            while height <= last, let certified = try reader.block(at: height) {
                built.add(certified.block)
                height += 1
            }
        } catch {
            // The store checked every record at open; what is not indexed answers "unknown".
            logger.error("rebuilding the transaction index stopped", metadata: ["height": "\(height)", "error": "\(error)"])
        }
        let waiters = state.withLock { state in
            built.merge(state.live ?? TransactionIndex())
            state.index = built
            state.live = nil
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        logger.info("transaction index rebuilt", metadata: [
            "from": "\(first)", "through": "\(height - 1)", "ms": "\(Self.milliseconds(ContinuousClock.now - start))",
        ])
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    /// Whether the start-up rebuild is still running.
    var isRebuilding: Bool { state.withLock { $0.live != nil } }

    /// Called by the node after `block` is durable (so the reader can serve it).
    func add(_ block: Block) {
        state.withLock { state in
            if state.live != nil { state.live!.add(block) } else { state.index.add(block) }
        }
    }

    /// `/txs/{hash}`: committed (from the index, off the node's actor: the block read
    /// and the proof are the expensive part), else pending when `isPending` (the
    /// mempool question, the only one for the actor), else unknown.
    func status(of hash: Hash, isPending: () async -> Bool) async -> TransactionStatus {
        if let committed = status(of: hash) { return committed }
        if await isPending() { return .pending }
        // Committed between the two questions: the index has it now (or, in the
        // first moments after a start, once the rebuild of the index is done).
        return await status(of: hash, waitingForRebuild: true) ?? .unknown
    }

    /// `status(of:)`, but a hash not found while the start-up rebuild runs is looked
    /// up again after it (so a restart never answers "unknown" for an indexed block).
    func status(of hash: Hash, waitingForRebuild: Bool) async -> TransactionStatus? {
        if let found = status(of: hash) { return found }
        guard waitingForRebuild else { return nil }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if state.live == nil { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
        return status(of: hash)
    }

    /// Where `hash` was committed with its inclusion proof, or nil when the index
    /// does not know it (not committed, forgotten beyond the index's bound, or in a
    /// block the start-up rebuild has not reached yet).
    func status(of hash: Hash) -> TransactionStatus? {
        let found = state.withLock { state in state.live?.location(of: hash) ?? state.index.location(of: hash) }
        guard let location = found, let tree = tree(at: location.height) else {
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
            insert(Self.key(transaction.hash), Location(height: block.height, index: UInt32(index)))
        }
        evictBeyondBound()
    }

    /// Adds `newer`'s entries after these, as if its blocks were added after ours.
    mutating func merge(_ newer: TransactionIndex) {
        for key in newer.order[newer.evicted...] {
            if let location = newer.locations[key] { insert(key, location) }
        }
        evictBeyondBound()
    }

    private mutating func insert(_ key: UInt64, _ location: Location) {
        if locations.updateValue(location, forKey: key) == nil { order.append(key) }
    }

    private mutating func evictBeyondBound() {
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

