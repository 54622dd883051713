import TallyCrypto
import TallyLedger
import TallyTypes

/// Bounds of the mempool; a full mempool rejects (or lets a better-paying
/// transaction displace a worse one) rather than grows.
public struct MempoolLimits: Sendable, Equatable {
    public var maxTransactions: Int
    public var maxBytes: Int
    /// How far ahead of an account's next nonce a transaction may be queued: a
    /// handful, so one key holds at most `maxNonceGap + 1` pending transactions.
    public var maxNonceGap: UInt64
    /// Pending transactions one sender may hold (one spammer cannot fill the pool).
    public var maxPerSender: Int
    /// How long a transaction may wait, in milliseconds of the node's consensus clock
    /// (ticks × `tick_ms`); older ones are evicted.
    public var pendingLifetimeMs: UInt64

    public static let defaultMaxNonceGap: UInt64 = 16
    public static let defaultPendingLifetimeMs: UInt64 = 600_000

    public static let `default` = MempoolLimits(
        maxTransactions: 200_000, maxBytes: 64 << 20, maxNonceGap: defaultMaxNonceGap, maxPerSender: 10_000,
        pendingLifetimeMs: defaultPendingLifetimeMs)

    public init(
        maxTransactions: Int, maxBytes: Int, maxNonceGap: UInt64, maxPerSender: Int,
        pendingLifetimeMs: UInt64 = defaultPendingLifetimeMs
    ) {
        self.maxTransactions = maxTransactions
        self.maxBytes = maxBytes
        self.maxNonceGap = maxNonceGap
        self.maxPerSender = maxPerSender
        self.pendingLifetimeMs = pendingLifetimeMs
    }
}

/// Why the mempool refused a transaction. `code` is the API's error code and the
/// metrics label.
public enum AdmissionError: Error, Equatable, Sendable, CustomStringConvertible {
    case badSignature
    case wrongChain(expected: String, found: String)
    case feeTooLow(minimum: UInt64, found: UInt64)
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
        case .feeTooLow: return "fee_too_low"
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
        case .feeTooLow(let minimum, let found): return "fee \(found) is below this chain's minimum fee of \(minimum) base units"
        case .staleNonce(let next, let found): return "nonce \(found) was already used (next nonce is \(next))"
        case .futureNonce(let next, let found): return "nonce \(found) is too far ahead of the next nonce \(next)"
        case .insufficientBalance(let balance, let needed):
            return "insufficient balance: \(balance) available, \(needed) needed including pending transactions and fees"
        case .duplicate: return "transaction is already pending"
        case .nonceTaken(let nonce): return "another transaction with nonce \(nonce) is already pending for this sender"
        case .full: return "mempool is full of transactions paying at least as much per byte; retry later or raise the fee"
        case .senderFull: return "this sender has too many pending transactions; retry later"
        }
    }
}

/// Why the mempool dropped a transaction it had admitted (not counting those a
/// committed block included). `rawValue` is the metrics label. A transaction
/// evicted takes the same sender's higher nonces with it when they depend on it.
public enum EvictionReason: String, CaseIterable, Sendable {
    /// Waited longer than `pendingLifetimeMs`.
    case expired
    /// A better-paying transaction (per byte) took its place in a full mempool.
    case displaced
    /// After a commit, the sender's balance no longer covers it.
    case unaffordable
    /// A committed block used its nonce with another transaction.
    case nonceUsed = "nonce_used"
}

/// The mempool's two guards against a transaction that can never apply (issue 14:
/// the stuck-transaction view-change loop), which tests switch off one at a time to
/// show what each holds. A production mempool runs `StandardMempoolDefences` (both on).
/// A protocol, as `ReplicaDefences` is, so that no shipped product can switch one off:
/// the only conformance that answers otherwise, `SwitchableMempoolDefences`, lives in
/// the test-support target TallyApplicationTesting.
public protocol MempoolDefences: Sendable {
    /// After a commit, every touched sender's queue is walked as execution would
    /// apply it and what would fail is evicted (off: only used nonces go).
    var recheckAfterCommit: Bool { get }
    /// "Proposable" is what execution would apply (off: any transaction at the
    /// sender's next nonce counts, whatever the balance).
    var proposableByExecutionRule: Bool { get }
}

/// Both mempool defences on: what every production mempool runs.
public struct StandardMempoolDefences: MempoolDefences {
    public init() {}
    public var recheckAfterCommit: Bool { true }
    public var proposableByExecutionRule: Bool { true }
}

/// Pending transactions: bounded in count and bytes, de-duplicated by hash, ordered
/// per sender by nonce, each sender's pending spend covered by its committed balance.
/// Signatures are verified before `admit` (the caller does it in parallel, after
/// `check`); the account state comes from the caller's ledger.
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

    struct SenderQueue: Sendable {
        var entries: [UInt64: Entry] = [:]
        /// Sum of the entries' amount + fee: admission keeps it within the balance.
        var pendingCost: UInt64 = 0
        var highestNonce: UInt64 = 0
        /// The sequence number (`proposableSequence`) at which the sender's next nonce
        /// last moved (a transaction of it committed): its next transaction has been
        /// proposable since then at the earliest.
        var nextNonceMovedAt: UInt64 = 0
    }

    /// A transaction's place in the expiry order (admission order, so times ascend).
    struct Expiry: Sendable {
        let sender: Address
        let nonce: UInt64
        let arrival: UInt64
        let expiresAtMs: UInt64
    }

    public let chainID: String
    /// Genesis `consensus.min_fee`; the ledger applies the same minimum.
    public let minFee: UInt64
    public let limits: MempoolLimits
    private var bySender: [Address: SenderQueue] = [:]
    private var senderByHash: [Hash: (Address, UInt64)] = [:]
    public private(set) var byteCount = 0
    /// Admissions and next-nonce moves so far: entries' arrival order, and the
    /// `proposableSequence` the replica turns into ticks.
    private var arrivals: UInt64 = 0
    /// The consensus clock as last reported to `expire(nowMs:)`.
    public private(set) var clockMs: UInt64 = 0
    private var expiries: [Expiry] = []
    private var expiriesHead = 0
    /// Each sender's highest nonce, cheapest per byte on top: the only transactions
    /// displacement may take (removing a sender's highest nonce leaves no gap).
    /// Lazy: entries that are no longer a sender's highest are skipped.
    private var tails = TailHeap()
    /// Transactions evicted so far, by reason.
    public private(set) var evictions: [EvictionReason: Int] = [:]
    /// `StandardMempoolDefences` in every shipped product (see `MempoolDefences`).
    package var defences: any MempoolDefences = StandardMempoolDefences()

    public init(chainID: String, minFee: UInt64, limits: MempoolLimits = .default) {
        self.chainID = chainID
        self.minFee = minFee
        self.limits = limits
    }

    public init(genesis: Genesis, limits: MempoolLimits = .default) {
        self.init(chainID: genesis.chainID, minFee: genesis.consensus.minFee, limits: limits)
    }

    public var count: Int { senderByHash.count }

    public func contains(_ hash: Hash) -> Bool { senderByHash[hash] != nil }

    // MARK: Admission

    /// Where an admissible transaction goes and what it costs.
    struct Placement {
        let hash: Hash
        let sender: Address
        let cost: UInt64
        let byteCount: Int
        /// The worse-paying transaction to displace to make room, if the pool is full.
        let displaced: (sender: Address, nonce: UInt64)?
    }

    /// Every admission check but the signature, cheapest first, without changing
    /// anything: run it before the costly signature check, so a batch of hopeless
    /// transactions costs no verification. `account` is the sender's committed state.
    public func check(_ transaction: Transaction, account: Account) -> AdmissionError? {
        if case .failure(let reason) = placement(transaction, account: account) { return reason }
        return nil
    }

    func placement(_ transaction: Transaction, account: Account) -> Result<Placement, AdmissionError> {
        guard ChainID.same(transaction.chainID, chainID) else {
            return .failure(.wrongChain(expected: chainID, found: transaction.chainID))
        }
        guard transaction.fee >= minFee else { return .failure(.feeTooLow(minimum: minFee, found: transaction.fee)) }
        guard transaction.nonce >= account.nonce else {
            return .failure(.staleNonce(next: account.nonce, found: transaction.nonce))
        }
        guard transaction.nonce - account.nonce <= limits.maxNonceGap else {
            return .failure(.futureNonce(next: account.nonce, found: transaction.nonce))
        }
        let hash = transaction.hash
        guard senderByHash[hash] == nil else { return .failure(.duplicate) }
        let sender = transaction.senderAddress
        let queue = bySender[sender] ?? SenderQueue()
        guard queue.entries[transaction.nonce] == nil else { return .failure(.nonceTaken(transaction.nonce)) }
        guard queue.entries.count < limits.maxPerSender else { return .failure(.senderFull) }
        let (cost, overflow) = transaction.amount.addingReportingOverflow(transaction.fee)
        let (total, totalOverflow) = queue.pendingCost.addingReportingOverflow(cost)
        guard !overflow, !totalOverflow, total <= account.balance else {
            return .failure(.insufficientBalance(balance: account.balance, needed: overflow || totalOverflow ? .max : total))
        }
        let size = transaction.canonicalBytes.count
        var displaced: (sender: Address, nonce: UInt64)?
        if count >= limits.maxTransactions || byteCount + size > limits.maxBytes {
            // One displacement makes room: every pending transaction has this chain
            // id, so all have the same size.
            guard let worst = tails.top, worst.feePerByte < FeePerByte(fee: transaction.fee, byteCount: size),
                  worst.sender != sender || worst.nonce > transaction.nonce,
                  count - 1 < limits.maxTransactions, byteCount - worst.byteCount + size <= limits.maxBytes
            else { return .failure(.full) }
            displaced = (worst.sender, worst.nonce)
        }
        return .success(Placement(hash: hash, sender: sender, cost: cost, byteCount: size, displaced: displaced))
    }

    /// Admits a transaction whose signature the caller has verified. `account` is
    /// the sender's committed state. A full pool admits it only by displacing the
    /// transaction that pays least per byte, when that pays less than this one.
    public mutating func admit(_ verified: VerifiedTransaction, account: Account) -> Result<Hash, AdmissionError> {
        let transaction = verified.transaction
        let placement: Placement
        switch self.placement(transaction, account: account) {
        case .failure(let reason): return .failure(reason)
        case .success(let found): placement = found
        }
        if let displaced = placement.displaced { evict(sender: displaced.sender, from: displaced.nonce, reason: .displaced) }
        arrivals += 1
        let entry = Entry(
            transaction: transaction, hash: placement.hash, byteCount: placement.byteCount, cost: placement.cost,
            arrival: arrivals)
        var queue = bySender[placement.sender] ?? SenderQueue()
        let becomesTail = queue.entries.isEmpty || transaction.nonce > queue.highestNonce
        queue.entries[transaction.nonce] = entry
        queue.pendingCost += placement.cost
        if becomesTail { queue.highestNonce = transaction.nonce }
        bySender[placement.sender] = queue
        senderByHash[placement.hash] = (placement.sender, transaction.nonce)
        byteCount += placement.byteCount
        if becomesTail { tails.push(tail(entry, sender: placement.sender)) }
        let (expiresAt, late) = clockMs.addingReportingOverflow(limits.pendingLifetimeMs)
        expiries.append(Expiry(sender: placement.sender, nonce: transaction.nonce, arrival: entry.arrival,
                               expiresAtMs: late ? .max : expiresAt))
        settle()
        return .success(placement.hash)
    }

    // MARK: Reading

    /// The nonce a sender's next transaction should carry: after its committed
    /// nonce and the consecutive run of its pending transactions.
    public func nextNonce(for sender: Address, committed: UInt64) -> UInt64 {
        guard let queue = bySender[sender] else { return committed }
        var nonce = committed
        while queue.entries[nonce] != nil { nonce += 1 }
        return nonce
    }

    /// True when some sender's next transaction would apply now, by the ledger's
    /// own rule (`Ledger.debit`: next nonce, fee ≥ minimum, amount + fee ≤ balance),
    /// i.e. a proposal would not be empty. Transactions behind a nonce gap or beyond
    /// the balance do not count: replicas that expected progress for them would
    /// change views forever.
    public func hasProposable(account: (Address) -> Account) -> Bool {
        bySender.contains { sender, queue in proposableHead(queue, state: account(sender)) != nil }
    }

    private func proposableHead(_ queue: SenderQueue, state: Account) -> Entry? {
        guard let head = queue.entries[state.nonce] else { return nil }
        guard defences.proposableByExecutionRule else { return head }
        guard (try? Ledger.debit(head.transaction, chainID: chainID, minFee: minFee, sender: state).get()) != nil
        else { return nil }
        return head
    }

    /// Raised on every admission and every move of a sender's next nonce.
    public var proposableSequence: UInt64 { arrivals }

    /// When the proposable transaction that has waited longest became proposable, as
    /// a `proposableSequence` value: its admission, or the commit that made it its
    /// sender's next, whichever is later. Nil when nothing is proposable.
    public func oldestProposableSequence(account: (Address) -> Account) -> UInt64? {
        var oldest: UInt64?
        for (sender, queue) in bySender {
            guard let head = proposableHead(queue, state: account(sender)) else { continue }
            let since = max(head.arrival, queue.nextNonceMovedAt)
            if since < oldest ?? .max { oldest = since }
        }
        return oldest
    }

    /// Up to `maxCount` senders' next transactions (the ones a proposal would take
    /// first), oldest arrival first.
    public func heads(maxCount: Int, nextNonce: (Address) -> UInt64) -> [Transaction] {
        let entries = bySender.compactMap { sender, queue in queue.entries[nextNonce(sender)] }
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
            while let entry = queue.entries[nonce] {
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

    // MARK: Upkeep

    /// After a block commits: drops its transactions, then re-checks the queue of
    /// every sender and recipient it touched against the new state (`account`):
    /// transactions whose nonce is now used, and those the balance no longer covers
    /// (with everything above them), are evicted, so what stays can still apply.
    public mutating func removeCommitted(_ transactions: [Transaction], account: (Address) -> Account) {
        // Arrays in block order, not sets: the sequence numbers handed out below are
        // consensus input (the backups' transaction timers), so their order must not
        // depend on the process's hash seed.
        var touched = OrderedAddresses()
        var senders = OrderedAddresses()
        for transaction in transactions {
            touched.insert(transaction.senderAddress)
            senders.insert(transaction.senderAddress)
            touched.insert(transaction.recipient)
            if let (sender, nonce) = senderByHash[transaction.hash] { remove(sender: sender, nonce: nonce) }
        }
        for address in touched.inOrder where bySender[address] != nil { recheck(address, against: account(address)) }
        // Only a sender's own commit moves its next nonce (a credit does not: then a
        // primary could restart a censored sender's wait by paying it).
        for sender in senders.inOrder where bySender[sender] != nil {
            arrivals += 1
            bySender[sender]!.nextNonceMovedAt = arrivals
        }
        settle()
    }

    /// Evicts what has waited longer than the lifetime; `nowMs` is the node's
    /// consensus clock (it never goes back).
    public mutating func expire(nowMs: UInt64) {
        clockMs = max(clockMs, nowMs)
        while expiriesHead < expiries.count, expiries[expiriesHead].expiresAtMs <= clockMs {
            let due = expiries[expiriesHead]
            expiriesHead += 1
            if bySender[due.sender]?.entries[due.nonce]?.arrival == due.arrival {
                evict(sender: due.sender, from: due.nonce, reason: .expired)
            }
        }
        settle()
    }

    /// A sender's queue against its committed state: used nonces go, then the
    /// consecutive run is walked as execution would apply it and the first
    /// transaction that would fail goes with everything above it; last, the highest
    /// nonces go until the pending spend fits the balance again (the admission rule).
    private mutating func recheck(_ sender: Address, against state: Account) {
        guard let queue = bySender[sender] else { return }
        for nonce in queue.entries.keys.filter({ $0 < state.nonce }).sorted() { evictOne(sender: sender, nonce: nonce, reason: .nonceUsed) }
        guard defences.recheckAfterCommit else { return }
        var simulated = state
        var nonce = state.nonce
        while let entry = bySender[sender]?.entries[nonce] {
            switch Ledger.debit(entry.transaction, chainID: chainID, minFee: minFee, sender: simulated) {
            case .success(var next):
                if entry.transaction.recipient == sender { next.balance += entry.transaction.amount }
                simulated = next
                nonce += 1
            case .failure:
                evict(sender: sender, from: nonce, reason: .unaffordable)
                return
            }
        }
        while let queue = bySender[sender], queue.pendingCost > state.balance {
            evictOne(sender: sender, nonce: queue.highestNonce, reason: .unaffordable)
        }
    }

    /// Evicts a sender's transaction at `nonce` and every higher one (they could not
    /// apply before it).
    private mutating func evict(sender: Address, from nonce: UInt64, reason: EvictionReason) {
        guard let queue = bySender[sender] else { return }
        // Highest first: each removal then finds the sender's new highest nonce at once.
        for pending in queue.entries.keys.filter({ $0 >= nonce }).sorted(by: >) {
            evictOne(sender: sender, nonce: pending, reason: reason)
        }
    }

    private mutating func evictOne(sender: Address, nonce: UInt64, reason: EvictionReason) {
        guard remove(sender: sender, nonce: nonce) else { return }
        evictions[reason, default: 0] += 1
    }

    @discardableResult
    private mutating func remove(sender: Address, nonce: UInt64) -> Bool {
        guard var queue = bySender[sender], let entry = queue.entries.removeValue(forKey: nonce) else { return false }
        senderByHash[entry.hash] = nil
        byteCount -= entry.byteCount
        queue.pendingCost -= entry.cost
        if queue.entries.isEmpty {
            bySender[sender] = nil
            return true
        }
        if nonce == queue.highestNonce {
            queue.highestNonce = Self.highest(below: nonce, in: queue.entries)
            tails.push(tail(queue.entries[queue.highestNonce]!, sender: sender))
        }
        bySender[sender] = queue
        return true
    }

    /// The highest key below `nonce` (all keys are): a short walk down when the queue
    /// is contiguous there, else a scan of the keys; never more than twice the count.
    private static func highest(below nonce: UInt64, in entries: [UInt64: Entry]) -> UInt64 {
        var candidate = nonce
        for _ in 0..<entries.count {
            candidate -= 1
            if entries[candidate] != nil { return candidate }
        }
        return entries.keys.max()!
    }

    private func tail(_ entry: Entry, sender: Address) -> TailHeap.Item {
        TailHeap.Item(
            feePerByte: FeePerByte(fee: entry.transaction.fee, byteCount: entry.byteCount), arrival: entry.arrival,
            sender: sender, nonce: entry.transaction.nonce, byteCount: entry.byteCount)
    }

    /// Restores the invariants `placement` reads without changing anything: the
    /// heap's top is a live tail, and the lazy queues stay within a constant factor
    /// of the live transactions.
    private mutating func settle() {
        let pool = bySender
        func isLive(_ item: TailHeap.Item) -> Bool {
            guard let queue = pool[item.sender] else { return false }
            return queue.highestNonce == item.nonce && queue.entries[item.nonce]?.arrival == item.arrival
        }
        tails.dropTop(while: { !isLive($0) })
        if tails.count > 2 * bySender.count + Self.lazySlack {
            tails = TailHeap(bySender.map { sender, queue in tail(queue.entries[queue.highestNonce]!, sender: sender) })
        }
        if expiriesHead > Self.lazySlack && expiriesHead * 2 > expiries.count {
            expiries.removeFirst(expiriesHead)
            expiriesHead = 0
        }
        if expiries.count - expiriesHead > 2 * count + Self.lazySlack {
            expiries = expiries[expiriesHead...].filter { pool[$0.sender]?.entries[$0.nonce]?.arrival == $0.arrival }
            expiriesHead = 0
        }
    }

    /// Stale entries the lazy queues may hold beyond twice the live ones.
    static let lazySlack = 4_096
}

/// A fee per byte, compared exactly (no division): a/b < c/d ⇔ a·d < c·b.
struct FeePerByte: Comparable, Sendable {
    let fee: UInt64
    let byteCount: Int

    static func < (lhs: FeePerByte, rhs: FeePerByte) -> Bool {
        let left = lhs.fee.multipliedFullWidth(by: UInt64(rhs.byteCount))
        let right = rhs.fee.multipliedFullWidth(by: UInt64(lhs.byteCount))
        return (left.high, left.low) < (right.high, right.low)
    }

    static func == (lhs: FeePerByte, rhs: FeePerByte) -> Bool { !(lhs < rhs) && !(rhs < lhs) }
}

/// A binary min-heap of sender tails: lowest fee per byte first, and among equals
/// the latest arrival (older transactions keep their place).
struct TailHeap: Sendable {
    struct Item: Sendable {
        let feePerByte: FeePerByte
        let arrival: UInt64
        let sender: Address
        let nonce: UInt64
        let byteCount: Int

        func isEvictedBefore(_ other: Item) -> Bool {
            feePerByte != other.feePerByte ? feePerByte < other.feePerByte : arrival > other.arrival
        }
    }

    private var items: [Item] = []

    init() {}

    init(_ items: [Item]) {
        self.items = items
        for index in stride(from: items.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    var count: Int { items.count }
    var top: Item? { items.first }

    mutating func push(_ item: Item) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].isEvictedBefore(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func dropTop(while shouldDrop: (Item) -> Bool) {
        while let first = items.first, shouldDrop(first) {
            items.swapAt(0, items.count - 1)
            items.removeLast()
            siftDown(0)
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { return }
            let right = left + 1
            let child = right < items.count && items[right].isEvictedBefore(items[left]) ? right : left
            guard items[child].isEvictedBefore(items[parent]) else { return }
            items.swapAt(child, parent)
            parent = child
        }
    }
}

/// Addresses in first-insertion order, each once.
struct OrderedAddresses {
    private(set) var inOrder: [Address] = []
    private var seen = Set<Address>()

    mutating func insert(_ address: Address) {
        if seen.insert(address).inserted { inOrder.append(address) }
    }
}
