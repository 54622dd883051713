import TallyCrypto

/// The header of the block at `height`. The block hash is SHA-256 of its canonical bytes:
/// ```
/// tag "tally/block-header/v1" | height: u64 | view: u64 | timestamp_ms: u64
/// | previous_hash: 32 | transactions_root: 32 | state_root: 32
/// | proposer: u32 | transaction_count: u32
/// ```
/// - `previous_hash`: the hash of block `height-1`; for height 1, the genesis hash.
/// - `transactions_root`: RFC 6962 Merkle root over the transaction hashes in order.
/// - `state_root`: the ledger's state root *after* applying this block, so replay
///   finds a divergence at the first bad block.
/// - `proposer`: index in the genesis validator list; fees go to its account.
public struct BlockHeader: Hashable, Sendable, CanonicalCodable {
    public var height: UInt64
    public var view: UInt64
    public var timestampMs: UInt64
    public var previousHash: Hash
    public var transactionsRoot: Hash
    public var stateRoot: Hash
    public var proposer: UInt32
    public var transactionCount: UInt32

    public init(
        height: UInt64, view: UInt64, timestampMs: UInt64, previousHash: Hash, transactionsRoot: Hash,
        stateRoot: Hash, proposer: UInt32, transactionCount: UInt32
    ) {
        self.height = height
        self.view = view
        self.timestampMs = timestampMs
        self.previousHash = previousHash
        self.transactionsRoot = transactionsRoot
        self.stateRoot = stateRoot
        self.proposer = proposer
        self.transactionCount = transactionCount
    }

    public var hash: Hash { SHA256.hash(canonicalBytes) }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.tag(.blockHeader)
        encoder.u64(height)
        encoder.u64(view)
        encoder.u64(timestampMs)
        encoder.fixed(previousHash.bytes)
        encoder.fixed(transactionsRoot.bytes)
        encoder.fixed(stateRoot.bytes)
        encoder.u32(proposer)
        encoder.u32(transactionCount)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> BlockHeader {
        try decoder.tag(.blockHeader)
        return BlockHeader(
            height: try decoder.u64("header.height"), view: try decoder.u64("header.view"),
            timestampMs: try decoder.u64("header.timestamp_ms"), previousHash: try decoder.hash("header.previous_hash"),
            transactionsRoot: try decoder.hash("header.transactions_root"),
            stateRoot: try decoder.hash("header.state_root"), proposer: try decoder.u32("header.proposer"),
            transactionCount: try decoder.u32("header.transaction_count"))
    }
}

/// A header and its transactions:
/// ```
/// tag "tally/block/v1" | header | count: u32 | transactions…
/// ```
/// Decoding checks that `count` equals `header.transaction_count`; whether the
/// Merkle root matches is the verifier's job (it reports the height and reason).
public struct Block: Hashable, Sendable, CanonicalCodable {
    public var header: BlockHeader
    public var transactions: [Transaction]

    public init(header: BlockHeader, transactions: [Transaction]) {
        self.header = header
        self.transactions = transactions
    }

    public var hash: Hash { header.hash }
    public var height: UInt64 { header.height }

    public static func transactionsRoot(_ transactions: [Transaction]) -> Hash {
        Merkle.root(transactions.map(\.hash))
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.tag(.block)
        header.encode(to: &encoder)
        encoder.count(transactions.count)
        for transaction in transactions { transaction.encode(to: &encoder) }
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> Block {
        try decoder.tag(.block)
        let header = try BlockHeader.decode(from: &decoder)
        let count = try decoder.count(
            max: Limits.maxBlockTransactions, minItemBytes: Transaction.minEncodedBytes, "block.transactions")
        guard count == Int(header.transactionCount) else {
            throw .invalid(field: "block.transactions", reason: "count \(count) differs from header's \(header.transactionCount)")
        }
        var transactions: [Transaction] = []
        transactions.reserveCapacity(count)
        for _ in 0..<count { transactions.append(try Transaction.decode(from: &decoder)) }
        return Block(header: header, transactions: transactions)
    }
}
