import TallyCrypto
import TallyTypes

/// An account's state.
public struct Account: Hashable, Sendable {
    public var balance: UInt64
    /// The nonce the account's next transaction must carry.
    public var nonce: UInt64

    public init(balance: UInt64, nonce: UInt64) {
        self.balance = balance
        self.nonce = nonce
    }

    public static let empty = Account(balance: 0, nonce: 0)
}

/// A ledger's state in the flat form a snapshot stores (`Ledger.image`,
/// `Ledger(genesis:height:image:)`): `accounts` and their 20-byte addresses
/// (`addressBytes`, back to back) in creation order, `addressOrder` the leaf indices
/// sorted by address, and `treeLevels` the state tree's levels (`StateTree.levelBytes`).
public struct LedgerImage: Sendable {
    public let addressBytes: [UInt8]
    public let accounts: [Account]
    public let addressOrder: [UInt32]
    public let treeLevels: [[UInt8]]

    public init(addressBytes: [UInt8], accounts: [Account], addressOrder: [UInt32], treeLevels: [[UInt8]]) {
        self.addressBytes = addressBytes
        self.accounts = accounts
        self.addressOrder = addressOrder
        self.treeLevels = treeLevels
    }
}

/// A transaction whose signature has been checked. The ledger takes only these, so
/// "the caller verified the signature" is a type, not a hope.
public struct VerifiedTransaction: Hashable, Sendable {
    public let transaction: Transaction

    /// Checks the Ed25519 signature with libsodium for the chain of `genesisHash`;
    /// nil when it is invalid (also when it was signed for another chain).
    public init?(_ transaction: Transaction, genesisHash: Hash) {
        guard transaction.hasValidSignature(genesisHash: genesisHash) else { return nil }
        self.transaction = transaction
    }

    /// For a caller that verified the signature itself (for instance in a parallel
    /// batch); the name says what the caller promises.
    public init(signatureAlreadyVerified transaction: Transaction) {
        self.transaction = transaction
    }
}

/// Why a transaction was not applied.
public enum TransactionRejection: Error, Hashable, Sendable, CustomStringConvertible {
    case wrongChain(expected: String, found: String)
    case wrongNonce(expected: UInt64, found: UInt64)
    case feeTooLow(minimum: UInt64, found: UInt64)
    case insufficientBalance(balance: UInt64, needed: UInt64)
    case amountOverflow
    case recipientOverflow

    public var description: String {
        switch self {
        case .wrongChain(let expected, let found): return "wrong chain id '\(found)', this chain is '\(expected)'"
        case .wrongNonce(let expected, let found):
            return found < expected ? "stale nonce \(found) (already used; next is \(expected))"
                : "nonce \(found) is ahead; the next nonce is \(expected)"
        case .feeTooLow(let minimum, let found): return "fee \(found) is below this chain's minimum fee \(minimum)"
        case .insufficientBalance(let balance, let needed): return "insufficient balance: \(balance) < amount + fee = \(needed)"
        case .amountOverflow: return "amount + fee overflows 64 bits"
        case .recipientOverflow: return "recipient balance would overflow 64 bits"
        }
    }

    /// A stable snake_case code for APIs and metrics labels.
    public var code: String {
        switch self {
        case .wrongChain: return "wrong_chain_id"
        case .wrongNonce(let expected, let found): return found < expected ? "stale_nonce" : "future_nonce"
        case .feeTooLow: return "fee_too_low"
        case .insufficientBalance: return "insufficient_balance"
        case .amountOverflow: return "amount_overflow"
        case .recipientOverflow: return "recipient_overflow"
        }
    }
}

/// The outcome of executing a list of transactions against a ledger (and the
/// executions of blocks in flight below it), not yet applied: the per-transaction
/// results, the accounts it changes and the state root it leads to.
/// `Ledger.commit` applies it.
public struct BlockExecution: Sendable {
    public let results: [Result<Void, TransactionRejection>]
    /// Changed accounts, keyed by address, with their final state.
    public let changes: [Address: Account]
    /// Addresses first seen in this execution, in creation order, and their leaf
    /// indices (consecutive, after every account that exists below this block).
    public let created: [Address]
    let createdIndex: [Address: Int]
    let overlay: StateTreeOverlay
    public var stateRoot: Hash { overlay.root }
    /// Height of the ledger (plus in-flight parents) this execution was computed on.
    public let baseHeight: UInt64

    public var allApplied: Bool { results.allSatisfy { if case .success = $0 { true } else { false } } }
    public var firstRejection: (index: Int, reason: TransactionRejection)? {
        for (index, result) in results.enumerated() { if case .failure(let reason) = result { return (index, reason) } }
        return nil
    }
}

/// An account `Ledger.execute` has read or written: its state so far in the block
/// and its leaf (nil until a first credit creates it).
private struct AccountSlot {
    let address: Address
    var account: Account
    var leafIndex: Int?
    var changed: Bool
}

/// The ledger state machine: accounts with balances and nonces, a state root over
/// them, and deterministic block execution. Pure: no I/O, no clock.
public struct Ledger: Sendable {
    public let chainID: String
    /// What this chain's transaction signatures commit to (`Transaction.signingBytes(genesisHash:)`).
    public let genesisHash: Hash
    public let validators: ValidatorSet
    public let totalSupply: UInt64
    /// Genesis `consensus.min_fee`: a transaction paying less does not apply.
    public let minFee: UInt64
    /// Height of the last block applied (0 = genesis).
    public private(set) var height: UInt64 = 0

    /// Accounts in creation order (leaf order), and their addresses: 20 bytes each,
    /// back to back in the same order.
    private var accounts: [Account] = []
    private var addressBytes: [UInt8] = []
    /// Leaf indices of the accounts below `sortedAccounts.count`, in address order
    /// (binary-searched): a ledger restored from a snapshot image takes it as stored,
    /// so a restart builds no per-account dictionary.
    private var sortedAccounts: [UInt32] = []
    /// Leaf index of every account not in `sortedAccounts` (all of them for a ledger
    /// built from genesis; those created since the restore for a restored one).
    private var indexByAddress: [Address: Int] = [:]
    private var tree = StateTree()

    public init(genesis: Genesis) {
        self.init(emptyLedgerOf: genesis, height: 0)
        var leaves: [Int: Hash] = [:]
        for account in genesis.accounts {
            leaves[accounts.count] = StateTree.leafHash(address: account.address, balance: account.balance, nonce: 0)
            indexByAddress[account.address] = accounts.count
            addressBytes.append(contentsOf: account.address.bytes)
            accounts.append(Account(balance: account.balance, nonce: 0))
        }
        tree.update(leaves: leaves)
    }

    /// Why a snapshot's accounts cannot be this chain's ledger.
    public enum RestoreError: Error, Equatable, CustomStringConvertible {
        case duplicateAddress(index: Int)
        case supplyMismatch(expected: UInt64, found: UInt64?)
        /// An image whose parts disagree in size, or whose address order is not a
        /// strictly increasing order of its accounts.
        case malformedImage(String)
        /// An image whose stored state tree fails a sampled check against its accounts.
        case treeMismatch(String)

        public var description: String {
            switch self {
            case .malformedImage(let reason): return "malformed ledger image: \(reason)"
            case .treeMismatch(let reason): return "stored state tree does not match the accounts: \(reason)"
            case .duplicateAddress(let index): return "account \(index) repeats an earlier address"
            case .supplyMismatch(let expected, let found):
                return "balances sum to \(found.map(String.init) ?? "more than 2^64"), the genesis supply is \(expected)"
            }
        }
    }

    /// The ledger of `genesis`'s chain at `height` with no accounts yet: what the
    /// public initialisers start from and fill.
    private init(emptyLedgerOf genesis: Genesis, height: UInt64) {
        chainID = genesis.chainID
        genesisHash = genesis.hash
        validators = genesis.validators
        totalSupply = genesis.totalSupply
        minFee = genesis.consensus.minFee
        self.height = height
    }

    /// A restored ledger's balances must sum to the genesis supply exactly (no
    /// overflow on the way), or the snapshot is not this chain's.
    private static func checkSupply(of balances: some Sequence<UInt64>, equals totalSupply: UInt64) throws(RestoreError) {
        var supply: UInt64 = 0
        for balance in balances {
            let (sum, overflow) = supply.addingReportingOverflow(balance)
            guard !overflow else { throw .supplyMismatch(expected: totalSupply, found: nil) }
            supply = sum
        }
        guard supply == totalSupply else { throw .supplyMismatch(expected: totalSupply, found: supply) }
    }

    /// Rebuilds the ledger at `height` from a snapshot: every account in creation
    /// order (as `allAccounts` lists them). The state root is recomputed, so the
    /// caller compares it with the snapshot's and the block header's.
    public init(genesis: Genesis, height: UInt64, accounts restored: [(address: Address, account: Account)])
        throws(RestoreError)
    {
        self.init(emptyLedgerOf: genesis, height: height)
        var leaves: [Int: Hash] = [:]
        leaves.reserveCapacity(restored.count)
        indexByAddress.reserveCapacity(restored.count)
        for (index, entry) in restored.enumerated() {
            guard indexByAddress.updateValue(index, forKey: entry.address) == nil else {
                throw .duplicateAddress(index: index)
            }
            leaves[index] = StateTree.leafHash(address: entry.address, balance: entry.account.balance, nonce: entry.account.nonce)
        }
        try Ledger.checkSupply(of: restored.lazy.map(\.account.balance), equals: totalSupply)
        addressBytes.reserveCapacity(restored.count * Address.byteCount)
        for entry in restored { addressBytes.append(contentsOf: entry.address.bytes) }
        accounts = restored.map(\.account)
        tree.update(leaves: leaves)
    }

    /// Leaves of a restored image whose stored tree path is rehashed and compared:
    /// evenly spread, plus the last (whose path pads with empty subtrees).
    public static let restoreSampledLeaves = 1_024

    /// Rebuilds the ledger at `height` from an image (`image`, as a snapshot stores
    /// it) without per-account work beyond reading it: the accounts and the tree's
    /// levels are taken as stored. Checked here: the parts' sizes, that the address
    /// order is strictly increasing (so no address repeats), the genesis supply, and
    /// `restoreSampledLeaves` leaves (leaf hash and every node on their path). The
    /// caller compares the root with the snapshot's and the block header's; the
    /// snapshot's checksum covers the rest against damage.
    public init(genesis: Genesis, height: UInt64, image: LedgerImage) throws(RestoreError) {
        self.init(emptyLedgerOf: genesis, height: height)
        let count = image.accounts.count
        guard image.addressBytes.count == count * Address.byteCount, image.addressOrder.count == count else {
            throw .malformedImage("\(count) accounts, \(image.addressBytes.count) address bytes, \(image.addressOrder.count) order entries")
        }
        do { tree = try StateTree(count: count, levels: image.treeLevels) } catch { throw .malformedImage(error.description) }
        try Ledger.checkSupply(of: image.accounts.lazy.map(\.balance), equals: totalSupply)
        try Ledger.checkStrictlyIncreasing(image.addressOrder, addressBytes: image.addressBytes)
        accounts = image.accounts
        addressBytes = image.addressBytes
        sortedAccounts = image.addressOrder
        var samples = Array(stride(from: 0, to: count, by: max(1, count / Ledger.restoreSampledLeaves)))
        if count > 0 { samples.append(count - 1) }
        for index in samples {
            let expected = StateTree.leafHash(address: address(at: index), balance: accounts[index].balance, nonce: accounts[index].nonce)
            guard tree.leaf(index) == expected else { throw .treeMismatch("leaf \(index) is not the hash of account \(index)") }
            do { try tree.checkPath(leaf: index) } catch { throw .treeMismatch(error.description) }
        }
    }

    /// Every leaf index below `order.count` once, in strictly increasing address order.
    private static func checkStrictlyIncreasing(_ order: [UInt32], addressBytes: [UInt8]) throws(RestoreError) {
        let failure: String? = order.withUnsafeBufferPointer { order in
            addressBytes.withUnsafeBytes { bytes in
                for position in order.indices {
                    guard Int(order[position]) < order.count else { return "order entry \(position) is out of range" }
                    if position > 0 {
                        let previous = bytes.baseAddress! + Int(order[position - 1]) * Address.byteCount
                        let current = bytes.baseAddress! + Int(order[position]) * Address.byteCount
                        guard compareAddresses(previous, current) < 0 else {
                            return "order entries \(position - 1) and \(position) are not in strictly increasing address order"
                        }
                    }
                }
                return nil
            }
        }
        if let failure { throw .malformedImage(failure) }
    }

    /// Compares two 20-byte addresses as `Address.<` does (bytes, lexicographically).
    static func compareAddresses(_ left: UnsafeRawPointer, _ right: UnsafeRawPointer) -> Int {
        let a0 = UInt64(bigEndian: left.loadUnaligned(as: UInt64.self)), b0 = UInt64(bigEndian: right.loadUnaligned(as: UInt64.self))
        if a0 != b0 { return a0 < b0 ? -1 : 1 }
        let a1 = UInt64(bigEndian: left.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let b1 = UInt64(bigEndian: right.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        if a1 != b1 { return a1 < b1 ? -1 : 1 }
        let a2 = UInt32(bigEndian: left.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        let b2 = UInt32(bigEndian: right.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        return a2 == b2 ? 0 : (a2 < b2 ? -1 : 1)
    }

    /// The ledger's parts as a snapshot stores them: accounts and addresses in
    /// creation order, the leaf indices in address order, and the state tree's levels.
    /// O(accounts) plus a sort of the accounts created since the last restore.
    public var image: LedgerImage {
        let unsorted = indexByAddress.values.map { UInt32($0) }
        let order: [UInt32] = addressBytes.withUnsafeBytes { bytes in
            func less(_ a: UInt32, _ b: UInt32) -> Bool {
                Ledger.compareAddresses(bytes.baseAddress! + Int(a) * Address.byteCount, bytes.baseAddress! + Int(b) * Address.byteCount) < 0
            }
            let added = unsorted.sorted(by: less)
            var merged: [UInt32] = []
            merged.reserveCapacity(accounts.count)
            var base = 0, next = 0
            while base < sortedAccounts.count || next < added.count {
                if next == added.count || (base < sortedAccounts.count && less(sortedAccounts[base], added[next])) {
                    merged.append(sortedAccounts[base])
                    base += 1
                } else {
                    merged.append(added[next])
                    next += 1
                }
            }
            return merged
        }
        return LedgerImage(addressBytes: addressBytes, accounts: accounts, addressOrder: order, treeLevels: tree.levelBytes)
    }

    private func address(at index: Int) -> Address {
        Address(bytes: Array(addressBytes[index * Address.byteCount..<(index + 1) * Address.byteCount]))!
    }

    /// Leaf index of `address`, nil when it has no account.
    private func index(of address: Address) -> Int? {
        if let index = indexByAddress[address] { return index }
        guard !sortedAccounts.isEmpty, address.bytes.count == Address.byteCount else { return nil }
        return address.bytes.withUnsafeBytes { key in
            addressBytes.withUnsafeBytes { bytes in
                sortedAccounts.withUnsafeBufferPointer { order in
                    var low = 0, high = order.count
                    while low < high {
                        let middle = (low + high) / 2
                        let candidate = Int(order[middle])
                        let comparison = Ledger.compareAddresses(bytes.baseAddress! + candidate * Address.byteCount, key.baseAddress!)
                        if comparison == 0 { return candidate }
                        if comparison < 0 { low = middle + 1 } else { high = middle }
                    }
                    return nil
                }
            }
        }
    }

    public var stateRoot: Hash { tree.root }
    /// Inner-node hashes the state tree has computed (see `StateTree`).
    public var stateTreeNodeHashes: Int { tree.nodeHashesComputed }
    public var accountCount: Int { accounts.count }

    public func account(_ address: Address) -> Account? {
        index(of: address).map { accounts[$0] }
    }

    /// Every account in creation order (for audits and tests).
    public var allAccounts: [(address: Address, account: Account)] {
        accounts.indices.map { (address(at: $0), accounts[$0]) }
    }

    /// The sender's side of applying `transaction`: its state afterwards, or why the
    /// transaction cannot apply. The mempool decides "proposable" with this same
    /// function, so what it offers a proposal is what execution accepts. (The
    /// recipient's side cannot fail in practice: balances sum to the supply.)
    public static func debit(
        _ transaction: Transaction, chainID: String, minFee: UInt64, sender: Account
    ) -> Result<Account, TransactionRejection> {
        guard ChainID.same(transaction.chainID, chainID) else { return .failure(.wrongChain(expected: chainID, found: transaction.chainID)) }
        guard transaction.nonce == sender.nonce else {
            return .failure(.wrongNonce(expected: sender.nonce, found: transaction.nonce))
        }
        guard transaction.fee >= minFee else { return .failure(.feeTooLow(minimum: minFee, found: transaction.fee)) }
        let (needed, overflow) = transaction.amount.addingReportingOverflow(transaction.fee)
        guard !overflow else { return .failure(.amountOverflow) }
        guard sender.balance >= needed else { return .failure(.insufficientBalance(balance: sender.balance, needed: needed)) }
        var newSender = sender
        newSender.balance -= needed
        newSender.nonce += 1
        return .success(newSender)
    }

    /// `debit` with this ledger's chain id and minimum fee.
    public func debit(_ transaction: Transaction, sender: Account) -> Result<Account, TransactionRejection> {
        Ledger.debit(transaction, chainID: chainID, minFee: minFee, sender: sender)
    }

    /// Checks one transaction against `state` and returns the new sender and
    /// recipient states, or why it cannot apply.
    static func transfer(
        _ transaction: Transaction, chainID: String, minFee: UInt64, sender: Account, recipient: Account, selfTransfer: Bool
    ) -> Result<(sender: Account, recipient: Account), TransactionRejection> {
        let newSender: Account
        switch debit(transaction, chainID: chainID, minFee: minFee, sender: sender) {
        case .failure(let reason): return .failure(reason)
        case .success(let debited): newSender = debited
        }
        if selfTransfer {
            var credited = newSender
            credited.balance += transaction.amount
            return .success((credited, credited))
        }
        var newRecipient = recipient
        let (credited, recipientOverflow) = recipient.balance.addingReportingOverflow(transaction.amount)
        guard !recipientOverflow else { return .failure(.recipientOverflow) }
        newRecipient.balance = credited
        return .success((newSender, newRecipient))
    }

    /// Executes `transactions` in order on top of this ledger and of `parents`
    /// (executions of blocks in flight above it, oldest first, not committed yet),
    /// without changing anything. Each transaction applies whole or not at all; fees
    /// of applied ones go to the proposer's account after all transfers.
    public func execute(_ transactions: [VerifiedTransaction], proposer: Int, parents: [BlockExecution] = []) -> BlockExecution {
        precondition(proposer >= 0 && proposer < validators.count, "proposer index out of range")
        for (offset, parent) in parents.enumerated() {
            precondition(parent.baseHeight == height + UInt64(offset), "parents must be consecutive executions above this ledger")
        }
        // Every account the block touches gets a slot on first sight (one lookup in
        // the ledger and the parents); after that each transaction costs one
        // dictionary lookup per party instead of several.
        var slotByAddress: [Address: Int] = [:]
        slotByAddress.reserveCapacity(transactions.count * 2 + 1)
        var slots: [AccountSlot] = []
        slots.reserveCapacity(transactions.count * 2 + 1)
        var created: [Address] = []
        var nextIndex = accounts.count + parents.reduce(0) { $0 + $1.created.count }
        var results: [Result<Void, TransactionRejection>] = []
        results.reserveCapacity(transactions.count)
        var fees: UInt64 = 0

        func slot(_ address: Address) -> Int {
            if let slot = slotByAddress[address] { return slot }
            var account: Account?
            for parent in parents.reversed() {
                if let changed = parent.changes[address] { account = changed; break }
            }
            var leafIndex = index(of: address)
            if let index = leafIndex {
                if account == nil { account = accounts[index] }
            } else {
                leafIndex = parents.lazy.compactMap { $0.createdIndex[address] }.first
            }
            let slot = slots.count
            slots.append(AccountSlot(address: address, account: account ?? .empty, leafIndex: leafIndex, changed: false))
            slotByAddress[address] = slot
            return slot
        }
        // A first store creates the account: creation order is first-credit order.
        func store(_ slot: Int, _ value: Account) {
            if slots[slot].leafIndex == nil {
                created.append(slots[slot].address)
                slots[slot].leafIndex = nextIndex
                nextIndex += 1
            }
            slots[slot].account = value
            slots[slot].changed = true
        }

        for verified in transactions {
            let transaction = verified.transaction
            let senderAddress = transaction.senderAddress
            let selfTransfer = senderAddress == transaction.recipient
            let senderSlot = slot(senderAddress)
            let recipientSlot = selfTransfer ? senderSlot : slot(transaction.recipient)
            let outcome = Ledger.transfer(
                transaction, chainID: chainID, minFee: minFee, sender: slots[senderSlot].account,
                recipient: slots[recipientSlot].account, selfTransfer: selfTransfer)
            switch outcome {
            case .failure(let reason):
                results.append(.failure(reason))
            case .success(let updated):
                store(senderSlot, updated.sender)
                if !selfTransfer { store(recipientSlot, updated.recipient) }
                // Fees are bounded by the total supply, which fits in 64 bits.
                fees += transaction.fee
                results.append(.success(()))
            }
        }
        if fees > 0 {
            let proposerSlot = slot(validators[proposer].accountAddress)
            var proposerAccount = slots[proposerSlot].account
            proposerAccount.balance += fees
            store(proposerSlot, proposerAccount)
        }
        var changes: [Address: Account] = [:]
        changes.reserveCapacity(slots.count)
        var leaves: [Int: Hash] = [:]
        leaves.reserveCapacity(slots.count)
        for slot in slots where slot.changed {
            changes[slot.address] = slot.account
            leaves[slot.leafIndex!] = StateTree.leafHash(
                address: slot.address, balance: slot.account.balance, nonce: slot.account.nonce)
        }
        var createdIndex: [Address: Int] = [:]
        createdIndex.reserveCapacity(created.count)
        for address in created { createdIndex[address] = slots[slotByAddress[address]!].leafIndex! }
        return BlockExecution(
            results: results, changes: changes, created: created, createdIndex: createdIndex,
            overlay: tree.overlay(applying: leaves, over: parents.map(\.overlay)),
            baseHeight: height + UInt64(parents.count))
    }

    /// Applies an execution computed on this ledger at this height.
    public mutating func commit(_ execution: BlockExecution) {
        precondition(execution.baseHeight == height, "execution was computed on another height")
        for address in execution.created {
            precondition(execution.createdIndex[address] == accounts.count, "accounts are created in leaf order")
            indexByAddress[address] = accounts.count
            addressBytes.append(contentsOf: address.bytes)
            accounts.append(.empty)
        }
        for (address, value) in execution.changes { accounts[index(of: address)!] = value }
        tree.install(execution.overlay)
        height += 1
    }

    /// Executes and commits in one step; returns the execution.
    @discardableResult
    public mutating func apply(_ transactions: [VerifiedTransaction], proposer: Int) -> BlockExecution {
        let execution = execute(transactions, proposer: proposer)
        commit(execution)
        return execution
    }

    /// Sum of all balances (O(accounts); for checks and audits).
    public var balanceSum: UInt64 { accounts.reduce(0) { $0 + $1.balance } }
}
