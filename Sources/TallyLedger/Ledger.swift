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

/// A transaction whose signature has been checked. The ledger takes only these, so
/// "the caller verified the signature" is a type, not a hope.
public struct VerifiedTransaction: Hashable, Sendable {
    public let transaction: Transaction

    /// Checks the Ed25519 signature with libsodium; nil when it is invalid.
    public init?(_ transaction: Transaction) {
        guard transaction.hasValidSignature else { return nil }
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
    case insufficientBalance(balance: UInt64, needed: UInt64)
    case amountOverflow
    case recipientOverflow

    public var description: String {
        switch self {
        case .wrongChain(let expected, let found): return "wrong chain id '\(found)', this chain is '\(expected)'"
        case .wrongNonce(let expected, let found):
            return found < expected ? "stale nonce \(found) (already used; next is \(expected))"
                : "nonce \(found) is ahead; the next nonce is \(expected)"
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
        case .insufficientBalance: return "insufficient_balance"
        case .amountOverflow: return "amount_overflow"
        case .recipientOverflow: return "recipient_overflow"
        }
    }
}

/// The outcome of executing a list of transactions against a ledger, not yet
/// applied: the per-transaction results, the accounts it changes and the state root
/// it leads to. `Ledger.commit` applies it.
public struct BlockExecution: Sendable {
    public let results: [Result<Void, TransactionRejection>]
    /// Changed accounts, keyed by address, with their final state.
    public let changes: [Address: Account]
    /// Addresses first seen in this execution, in creation order.
    public let created: [Address]
    let overlay: StateTreeOverlay
    public var stateRoot: Hash { overlay.root }
    /// Height of the ledger this execution was computed on.
    public let baseHeight: UInt64

    public var allApplied: Bool { results.allSatisfy { if case .success = $0 { true } else { false } } }
    public var firstRejection: (index: Int, reason: TransactionRejection)? {
        for (index, result) in results.enumerated() { if case .failure(let reason) = result { return (index, reason) } }
        return nil
    }
}

/// The ledger state machine: accounts with balances and nonces, a state root over
/// them, and deterministic block execution. Pure: no I/O, no clock.
public struct Ledger: Sendable {
    public let chainID: String
    public let validators: ValidatorSet
    public let totalSupply: UInt64
    /// Height of the last block applied (0 = genesis).
    public private(set) var height: UInt64 = 0

    private var accounts: [Account] = []
    private var addresses: [Address] = []
    private var indexByAddress: [Address: Int] = [:]
    private var tree = StateTree()

    public init(genesis: Genesis) {
        chainID = genesis.chainID
        validators = genesis.validators
        totalSupply = genesis.totalSupply
        var leaves: [Int: Hash] = [:]
        for account in genesis.accounts {
            leaves[addresses.count] = StateTree.leafHash(address: account.address, balance: account.balance, nonce: 0)
            indexByAddress[account.address] = addresses.count
            addresses.append(account.address)
            accounts.append(Account(balance: account.balance, nonce: 0))
        }
        tree.update(leaves: leaves)
    }

    public var stateRoot: Hash { tree.root }
    /// Inner-node hashes the state tree has computed (see `StateTree`).
    public var stateTreeNodeHashes: Int { tree.nodeHashesComputed }
    public var accountCount: Int { accounts.count }

    public func account(_ address: Address) -> Account? {
        indexByAddress[address].map { accounts[$0] }
    }

    /// Every account in creation order (for snapshots and audits).
    public var allAccounts: [(address: Address, account: Account)] {
        zip(addresses, accounts).map { ($0, $1) }
    }

    /// Checks one transaction against `state` and returns the new sender and
    /// recipient states, or why it cannot apply.
    static func transfer(
        _ transaction: Transaction, chainID: String, sender: Account, recipient: Account, selfTransfer: Bool
    ) -> Result<(sender: Account, recipient: Account), TransactionRejection> {
        guard transaction.chainID == chainID else { return .failure(.wrongChain(expected: chainID, found: transaction.chainID)) }
        guard transaction.nonce == sender.nonce else {
            return .failure(.wrongNonce(expected: sender.nonce, found: transaction.nonce))
        }
        let (needed, overflow) = transaction.amount.addingReportingOverflow(transaction.fee)
        guard !overflow else { return .failure(.amountOverflow) }
        guard sender.balance >= needed else { return .failure(.insufficientBalance(balance: sender.balance, needed: needed)) }
        var newSender = sender
        newSender.balance -= needed
        newSender.nonce += 1
        if selfTransfer {
            newSender.balance += transaction.amount
            return .success((newSender, newSender))
        }
        var newRecipient = recipient
        let (credited, recipientOverflow) = recipient.balance.addingReportingOverflow(transaction.amount)
        guard !recipientOverflow else { return .failure(.recipientOverflow) }
        newRecipient.balance = credited
        return .success((newSender, newRecipient))
    }

    /// Executes `transactions` in order on top of this ledger without changing it.
    /// Each transaction applies whole or not at all; fees of applied ones go to the
    /// proposer's account after all transfers.
    public func execute(_ transactions: [VerifiedTransaction], proposer: Int) -> BlockExecution {
        precondition(proposer >= 0 && proposer < validators.count, "proposer index out of range")
        var changes: [Address: Account] = [:]
        var created: [Address] = []
        var results: [Result<Void, TransactionRejection>] = []
        results.reserveCapacity(transactions.count)
        var fees: UInt64 = 0

        func current(_ address: Address) -> Account {
            changes[address] ?? account(address) ?? .empty
        }
        func store(_ address: Address, _ value: Account) {
            if changes[address] == nil && indexByAddress[address] == nil { created.append(address) }
            changes[address] = value
        }

        for verified in transactions {
            let transaction = verified.transaction
            let senderAddress = transaction.senderAddress
            let selfTransfer = senderAddress == transaction.recipient
            let outcome = Ledger.transfer(
                transaction, chainID: chainID, sender: current(senderAddress),
                recipient: current(transaction.recipient), selfTransfer: selfTransfer)
            switch outcome {
            case .failure(let reason):
                results.append(.failure(reason))
            case .success(let updated):
                store(senderAddress, updated.sender)
                if !selfTransfer { store(transaction.recipient, updated.recipient) }
                // Fees are bounded by the total supply, which fits in 64 bits.
                fees += transaction.fee
                results.append(.success(()))
            }
        }
        if fees > 0 {
            let proposerAddress = validators[proposer].accountAddress
            var proposerAccount = current(proposerAddress)
            proposerAccount.balance += fees
            store(proposerAddress, proposerAccount)
        }
        return BlockExecution(
            results: results, changes: changes, created: created,
            overlay: tree.overlay(applying: leafChanges(changes, created: created)), baseHeight: height)
    }

    private func leafChanges(_ changes: [Address: Account], created: [Address]) -> [Int: Hash] {
        var leaves: [Int: Hash] = [:]
        leaves.reserveCapacity(changes.count)
        for (address, value) in changes {
            let index = indexByAddress[address] ?? (accounts.count + created.firstIndex(of: address)!)
            leaves[index] = StateTree.leafHash(address: address, balance: value.balance, nonce: value.nonce)
        }
        return leaves
    }

    /// Applies an execution computed on this ledger at this height.
    public mutating func commit(_ execution: BlockExecution) {
        precondition(execution.baseHeight == height, "execution was computed on another height")
        for address in execution.created {
            indexByAddress[address] = addresses.count
            addresses.append(address)
            accounts.append(.empty)
        }
        for (address, value) in execution.changes { accounts[indexByAddress[address]!] = value }
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
