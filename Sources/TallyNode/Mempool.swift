import TallyCrypto
import TallyLedger
import TallyTypes

/// Bounds of the mempool; a full mempool rejects rather than grows.
public struct MempoolLimits: Sendable, Equatable {
    public var maxTransactions: Int
    public var maxBytes: Int
    /// How far ahead of an account's next nonce a transaction may be queued.
    public var maxNonceGap: UInt64
    /// Pending transactions one sender may hold (one spammer cannot fill the pool).
    public var maxPerSender: Int

    public static let `default` = MempoolLimits(
        maxTransactions: 200_000, maxBytes: 64 << 20, maxNonceGap: 1_000, maxPerSender: 10_000)

    public init(maxTransactions: Int, maxBytes: Int, maxNonceGap: UInt64, maxPerSender: Int) {
        self.maxTransactions = maxTransactions
        self.maxBytes = maxBytes
        self.maxNonceGap = maxNonceGap
        self.maxPerSender = maxPerSender
    }
}

/// Why the mempool refused a transaction. `code` is the API's error code and the
/// metrics label.
public enum AdmissionError: Error, Equatable, Sendable, CustomStringConvertible {
    case badSignature
    case wrongChain(expected: String, found: String)
    case staleNonce(next: UInt64, found: UInt64)
    case futureNonce(next: UInt64, found: UInt64)
    case insufficientBalance(balance: UInt64, needed: UInt64)
    case duplicate
    case nonceTaken(UInt64)
    case full
    case senderFull

    public var code: String {
        switch self {
        case .badSignature: return "bad_signature"
        case .wrongChain: return "wrong_chain_id"
        case .staleNonce: return "stale_nonce"
        case .futureNonce: return "future_nonce"
        case .insufficientBalance: return "insufficient_balance"
        case .duplicate, .nonceTaken: return "duplicate"
        case .full, .senderFull: return "mempool_full"
        }
    }

    public var description: String {
        switch self {
        case .badSignature: return "transaction signature is invalid"
        case .wrongChain(let expected, let found): return "transaction is for chain '\(found)', this is '\(expected)'"
        case .staleNonce(let next, let found): return "nonce \(found) was already used (next nonce is \(next))"
        case .futureNonce(let next, let found): return "nonce \(found) is too far ahead of the next nonce \(next)"
        case .insufficientBalance(let balance, let needed):
            return "insufficient balance: \(balance) available, \(needed) needed including pending transactions and fees"
        case .duplicate: return "transaction is already pending"
        case .nonceTaken(let nonce): return "another transaction with nonce \(nonce) is already pending for this sender"
        case .full: return "mempool is full; retry later"
        case .senderFull: return "this sender has too many pending transactions; retry later"
        }
    }
}

/// Pending transactions: bounded in count and bytes, de-duplicated by hash, ordered
/// per sender by nonce. Signatures are verified before `admit` (the caller does it in
/// parallel); the account state comes from the caller's ledger.
///
/// Not thread-safe: owned by the node's actor.
public struct Mempool: Sendable {
    struct Entry: Sendable {
        let transaction: Transaction
        let hash: Hash
        let byteCount: Int
        let cost: UInt64
        let arrival: UInt64
    }

    public let chainID: String
    public let limits: MempoolLimits
    private var bySender: [Address: [UInt64: Entry]] = [:]
    private var senderByHash: [Hash: (Address, UInt64)] = [:]
    private var pendingCost: [Address: UInt64] = [:]
    public private(set) var byteCount = 0
    private var arrivals: UInt64 = 0

    public init(chainID: String, limits: MempoolLimits = .default) {
        self.chainID = chainID
        self.limits = limits
    }

    public var count: Int { senderByHash.count }

    public func contains(_ hash: Hash) -> Bool { senderByHash[hash] != nil }

    /// Admits a transaction whose signature the caller has verified. `account` is
    /// the sender's committed state.
    public mutating func admit(_ verified: VerifiedTransaction, account: Account) -> Result<Hash, AdmissionError> {
        let transaction = verified.transaction
        guard transaction.chainID == chainID else {
            return .failure(.wrongChain(expected: chainID, found: transaction.chainID))
        }
        let hash = transaction.hash
        guard senderByHash[hash] == nil else { return .failure(.duplicate) }
        guard transaction.nonce >= account.nonce else {
            return .failure(.staleNonce(next: account.nonce, found: transaction.nonce))
        }
        guard transaction.nonce - account.nonce <= limits.maxNonceGap else {
            return .failure(.futureNonce(next: account.nonce, found: transaction.nonce))
        }
        let sender = transaction.senderAddress
        let queue = bySender[sender] ?? [:]
        guard queue[transaction.nonce] == nil else { return .failure(.nonceTaken(transaction.nonce)) }
        guard queue.count < limits.maxPerSender else { return .failure(.senderFull) }
        let (cost, overflow) = transaction.amount.addingReportingOverflow(transaction.fee)
        let (total, totalOverflow) = (pendingCost[sender] ?? 0).addingReportingOverflow(cost)
        guard !overflow, !totalOverflow, total <= account.balance else {
            return .failure(.insufficientBalance(balance: account.balance, needed: overflow || totalOverflow ? .max : total))
        }
        let size = transaction.canonicalBytes.count
        guard count < limits.maxTransactions, byteCount + size <= limits.maxBytes else { return .failure(.full) }

        arrivals += 1
        bySender[sender, default: [:]][transaction.nonce] = Entry(
            transaction: transaction, hash: hash, byteCount: size, cost: cost, arrival: arrivals)
        senderByHash[hash] = (sender, transaction.nonce)
        pendingCost[sender] = total
        byteCount += size
        return .success(hash)
    }

    /// The nonce a sender's next transaction should carry: after its committed
    /// nonce and the consecutive run of its pending transactions.
    public func nextNonce(for sender: Address, committed: UInt64) -> UInt64 {
        guard let queue = bySender[sender] else { return committed }
        var nonce = committed
        while queue[nonce] != nil { nonce += 1 }
        return nonce
    }

    /// True when some sender's next transaction is here, i.e. a proposal would not
    /// be empty. Transactions waiting behind a nonce gap do not count: replicas
    /// that expected progress for them would change views forever.
    public func hasProposable(nextNonce: (Address) -> UInt64) -> Bool {
        bySender.contains { sender, queue in queue[nextNonce(sender)] != nil }
    }

    /// Up to `maxCount` senders' next transactions (the ones a proposal would take
    /// first), oldest arrival first.
    public func heads(maxCount: Int, nextNonce: (Address) -> UInt64) -> [Transaction] {
        let entries = bySender.compactMap { sender, queue in queue[nextNonce(sender)] }
        return entries.sorted { $0.arrival < $1.arrival }.prefix(maxCount).map(\.transaction)
    }

    /// Up to `maxCount` transactions for a proposal: for each sender the run of
    /// consecutive nonces starting at its next nonce (others would fail), senders
    /// taken oldest-arrival first so nobody starves.
    public func reap(maxCount: Int, nextNonce: (Address) -> UInt64) -> [Transaction] {
        var runs: [(first: UInt64, entries: [Entry])] = []
        for (sender, queue) in bySender {
            var nonce = nextNonce(sender)
            var run: [Entry] = []
            while let entry = queue[nonce] {
                run.append(entry)
                nonce += 1
            }
            if let first = run.first { runs.append((first.arrival, run)) }
        }
        runs.sort { $0.first < $1.first }
        var picked: [Transaction] = []
        picked.reserveCapacity(min(maxCount, count))
        for run in runs {
            for entry in run.entries {
                guard picked.count < maxCount else { return picked }
                picked.append(entry.transaction)
            }
        }
        return picked
    }

    /// After a block commits: drops its transactions and any of those senders'
    /// transactions whose nonce is now used.
    public mutating func removeCommitted(_ transactions: [Transaction], nextNonce: (Address) -> UInt64) {
        var senders = Set<Address>()
        for transaction in transactions {
            senders.insert(transaction.senderAddress)
            if let (sender, nonce) = senderByHash[transaction.hash] { remove(sender: sender, nonce: nonce) }
        }
        for sender in senders {
            let next = nextNonce(sender)
            for nonce in (bySender[sender] ?? [:]).keys where nonce < next { remove(sender: sender, nonce: nonce) }
        }
    }

    private mutating func remove(sender: Address, nonce: UInt64) {
        guard let entry = bySender[sender]?.removeValue(forKey: nonce) else { return }
        if bySender[sender]?.isEmpty == true { bySender[sender] = nil }
        senderByHash[entry.hash] = nil
        byteCount -= entry.byteCount
        let remaining = (pendingCost[sender] ?? 0) - entry.cost
        pendingCost[sender] = remaining == 0 && bySender[sender] == nil ? nil : remaining
    }
}
