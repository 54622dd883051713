import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes
import TallyVerify

/// The simulator's `ConsensusApplication`: a real TallyLedger, a mempool fed by
/// simulated clients, and the states after blocks proposed or validated but not yet
/// executed (keyed by block hash). Header checks are the node's (`BlockRules`);
/// signatures are looked up among the pool's valid transactions instead of checked.
public final class SimApplication: ConsensusApplication {
    struct Pending {
        let ledger: Ledger
        let timestampMs: UInt64
        let transactionHashes: Set<Hash>
    }

    let genesis: Genesis
    let validTransactionHashes: Set<Hash>
    public private(set) var ledger: Ledger
    public private(set) var tipHash: Hash
    var tipTimestampMs: UInt64
    var pending: [Hash: Pending] = [:]
    /// Mempool by sender address, then nonce.
    var mempool: [Address: [UInt64: Transaction]] = [:]
    var mempoolCount = 0
    static let maxMempoolTransactions = 4096
    /// `proposableSequence`: raised on each admission and each sender's commit;
    /// `admittedAt` and `nextNonceMovedAt` hold its value at those moments.
    public private(set) var proposableSequence: UInt64 = 0
    var admittedAt: [Hash: UInt64] = [:]
    var nextNonceMovedAt: [Address: UInt64] = [:]
    let clockMs: () -> UInt64

    public init(genesis: Genesis, ledger: Ledger, tipHash: Hash, tipTimestampMs: UInt64, validTransactionHashes: Set<Hash>,
                clockMs: @escaping () -> UInt64) {
        self.genesis = genesis
        self.ledger = ledger
        self.tipHash = tipHash
        self.tipTimestampMs = tipTimestampMs
        self.validTransactionHashes = validTransactionHashes
        self.clockMs = clockMs
    }

    public var hasPendingTransactions: Bool { mempoolCount > 0 }

    /// Each sender's next transaction waits since its admission or its sender's last
    /// commit, whichever is later (the node's mempool rule).
    public var oldestProposableSequence: UInt64? {
        mempool.compactMap { sender, queue -> UInt64? in
            guard let head = queue[ledger.account(sender)?.nonce ?? 0] else { return nil }
            return max(admittedAt[head.hash] ?? 0, nextNonceMovedAt[sender] ?? 0)
        }.min()
    }

    public func submit(_ transaction: Transaction) {
        let sender = transaction.senderAddress
        guard mempoolCount < SimApplication.maxMempoolTransactions,
              transaction.nonce >= (ledger.account(sender)?.nonce ?? 0),
              mempool[sender]?[transaction.nonce] == nil
        else { return }
        mempool[sender, default: [:]][transaction.nonce] = transaction
        mempoolCount += 1
        proposableSequence += 1
        admittedAt[transaction.hash] = proposableSequence
    }

    func state(after hash: Hash) -> (ledger: Ledger, timestampMs: UInt64)? {
        if hash == tipHash { return (ledger, tipTimestampMs) }
        return pending[hash].map { ($0.ledger, $0.timestampMs) }
    }

    public func propose(height: UInt64, view: UInt64, proposer: ValidatorIndex, parentHash: Hash, maxTransactions: Int,
                        allowEmpty: Bool) -> Block? {
        guard let base = state(after: parentHash), base.ledger.height + 1 == height else { return nil }
        var chosen: [Transaction] = []
        for sender in mempool.keys.sorted() {
            var nonce = base.ledger.account(sender)?.nonce ?? 0
            while chosen.count < maxTransactions, let transaction = mempool[sender]?[nonce] {
                chosen.append(transaction)
                nonce += 1
            }
        }
        var execution = base.ledger.execute(chosen.map { VerifiedTransaction(signatureAlreadyVerified: $0) },
                                            proposer: Int(proposer))
        while !execution.allApplied {
            let rejected = Set(execution.results.indices.filter { if case .failure = execution.results[$0] { true } else { false } })
            chosen = chosen.enumerated().filter { !rejected.contains($0.offset) }.map(\.element)
            execution = base.ledger.execute(chosen.map { VerifiedTransaction(signatureAlreadyVerified: $0) },
                                            proposer: Int(proposer))
        }
        guard !chosen.isEmpty || allowEmpty else { return nil }
        let header = BlockHeader(
            height: height, view: view, timestampMs: max(base.timestampMs + 1, clockMs()), previousHash: parentHash,
            transactionsRoot: Block.transactionsRoot(chosen), stateRoot: execution.stateRoot, proposer: proposer,
            transactionCount: UInt32(chosen.count))
        let block = Block(header: header, transactions: chosen)
        var next = base.ledger
        next.commit(execution)
        pending[block.hash] = Pending(ledger: next, timestampMs: header.timestampMs, transactionHashes: Set(chosen.map(\.hash)))
        return block
    }

    public func validate(
        _ block: Block, parentHash: Hash, maxTransactions: Int, origin: BlockOrigin
    ) -> Result<Void, BlockRejection> {
        let header = block.header
        guard let base = state(after: parentHash) else { return .failure(BlockRejection("unknown parent")) }
        let parent = BlockRules.Parent(height: base.ledger.height, hash: parentHash, timestampMs: base.timestampMs)
        let rulesOrigin: BlockRules.Origin = switch origin {
        case .prePrepare(let view): .proposal(view: view, nowMs: clockMs())
        case .sync(let certificateView): .committed(certificateView: certificateView)
        }
        do { try BlockRules.checkHeader(block, parent: parent, genesis: genesis, origin: rulesOrigin) } catch {
            return .failure(BlockRejection(error.explanation))
        }
        guard block.transactions.count == Int(header.transactionCount), block.transactions.count <= maxTransactions else {
            return .failure(BlockRejection("transaction count"))
        }
        guard Block.transactionsRoot(block.transactions) == header.transactionsRoot else {
            return .failure(BlockRejection("transactions root"))
        }
        let hashes = block.transactions.map(\.hash)
        guard hashes.allSatisfy(validTransactionHashes.contains) else { return .failure(BlockRejection("bad transaction signature")) }
        let execution = base.ledger.execute(
            block.transactions.map { VerifiedTransaction(signatureAlreadyVerified: $0) }, proposer: Int(header.proposer))
        guard execution.allApplied else { return .failure(BlockRejection("transaction does not apply")) }
        guard execution.stateRoot == header.stateRoot else { return .failure(BlockRejection("state root")) }
        var next = base.ledger
        next.commit(execution)
        pending[block.hash] = Pending(ledger: next, timestampMs: header.timestampMs, transactionHashes: Set(hashes))
        return .success(())
    }

    /// Applies a committed block (validated or built before); returns the state root.
    public func execute(_ block: Block) -> Hash {
        let hash = block.hash
        precondition(block.header.previousHash == tipHash, "executed out of order")
        if pending[hash] == nil {
            // Committed: its certificate's view is the header's or later.
            guard case .success = validate(
                block, parentHash: tipHash, maxTransactions: Int.max, origin: .sync(certificateView: block.header.view))
            else {
                preconditionFailure("a committed block does not apply")
            }
        }
        let next = pending[hash]!
        ledger = next.ledger
        tipHash = hash
        tipTimestampMs = next.timestampMs
        pending = pending.filter { $0.value.ledger.height > ledger.height }
        for transaction in block.transactions {
            let sender = transaction.senderAddress
            if let pooled = mempool[sender]?.removeValue(forKey: transaction.nonce) {
                mempoolCount -= 1
                admittedAt[pooled.hash] = nil
            }
            proposableSequence += 1
            nextNonceMovedAt[sender] = proposableSequence
        }
        for sender in Array(mempool.keys) {
            let nonce = ledger.account(sender)?.nonce ?? 0
            for stale in mempool[sender]!.keys where stale < nonce {
                if let pooled = mempool[sender]!.removeValue(forKey: stale) { admittedAt[pooled.hash] = nil }
                mempoolCount -= 1
            }
            if mempool[sender]!.isEmpty { mempool.removeValue(forKey: sender) }
        }
        precondition(ledger.stateRoot == block.header.stateRoot)
        return ledger.stateRoot
    }

    /// A fresh application after a restart: the executed ledger survives (it is
    /// rebuilt from the block store), the mempool and pending states do not.
    public func restarted() -> SimApplication {
        SimApplication(genesis: genesis, ledger: ledger, tipHash: tipHash, tipTimestampMs: tipTimestampMs,
                       validTransactionHashes: validTransactionHashes, clockMs: clockMs)
    }
}
