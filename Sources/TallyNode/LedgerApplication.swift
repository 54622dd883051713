import Foundation
import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes
import TallyVerify

/// The consensus application of a real node: the committed ledger, the mempool, and
/// the executions of blocks proposed or validated but not executed yet (PBFT keeps
/// up to `maxBlocksInFlight` of them; losers of a view change are dropped when the
/// chain moves past their height).
///
/// Block checks go through `ChainVerifier.checkContents`, the code `tally verify`
/// runs, so a node accepts exactly the blocks the offline verifier accepts.
/// Owned by the node's actor; not thread-safe.
final class LedgerApplication: ConsensusApplication {
    struct InFlight {
        let block: Block
        let parentHash: Hash
        let execution: BlockExecution
        /// Hashed once here: proposals and gossip consult them often.
        let transactionHashes: Set<Hash>

        init(block: Block, parentHash: Hash, execution: BlockExecution) {
            self.block = block
            self.parentHash = parentHash
            self.execution = execution
            transactionHashes = Set(block.transactions.map(\.hash))
        }
    }

    let genesis: Genesis
    private(set) var ledger: Ledger
    private(set) var tipHash: Hash
    /// The committed tip's timestamp (the genesis time at height 0).
    private(set) var tipTimestampMs: UInt64
    var mempool: Mempool
    private var inFlight: [Hash: InFlight] = [:]
    /// Wall clock for proposal timestamps (injected so tests can pin it).
    let nowMs: () -> UInt64

    init(
        genesis: Genesis, ledger: Ledger, tipHash: Hash, tipTimestampMs: UInt64, mempool: Mempool,
        nowMs: @escaping () -> UInt64
    ) {
        precondition(ChainID.same(mempool.chainID, ledger.chainID) && mempool.minFee == ledger.minFee, "mempool and ledger of different chains")
        self.genesis = genesis
        self.ledger = ledger
        self.tipHash = tipHash
        self.tipTimestampMs = tipTimestampMs
        self.mempool = mempool
        self.nowMs = nowMs
    }

    /// Only transactions a proposal could include, by the rule execution applies (next
    /// nonce, fee, balance): a backup expecting progress for a transaction stuck
    /// behind a nonce gap or beyond its sender's balance would start view change
    /// after view change.
    var hasPendingTransactions: Bool {
        mempool.hasProposable { self.ledger.account($0) ?? .empty }
    }

    /// Executions from the committed tip up to `parentHash`, oldest first; nil when
    /// `parentHash` is neither the tip nor an in-flight block above it.
    private func chain(to parentHash: Hash) -> [InFlight]? {
        var chain: [InFlight] = []
        var cursor = parentHash
        while cursor != tipHash {
            guard let entry = inFlight[cursor] else { return nil }
            chain.append(entry)
            cursor = entry.parentHash
        }
        return chain.reversed()
    }

    private func account(_ address: Address, after parents: [InFlight]) -> Account {
        for parent in parents.reversed() { if let changed = parent.execution.changes[address] { return changed } }
        return ledger.account(address) ?? .empty
    }

    func propose(
        height: UInt64, view: UInt64, proposer: ValidatorIndex, parentHash: Hash, maxTransactions: Int, allowEmpty: Bool
    ) -> Block? {
        guard let parents = chain(to: parentHash), height == ledger.height + UInt64(parents.count) + 1,
              let timestampMs = BlockRules.proposalTimestampMs(
                  parentTimestampMs: parents.last?.block.header.timestampMs ?? tipTimestampMs, nowMs: nowMs(), genesis: genesis)
        else { return nil }
        let includedCount = parents.reduce(0) { $0 + $1.transactionHashes.count }
        let candidates = mempool.reap(maxCount: maxTransactions + includedCount) { address in
            self.account(address, after: parents).nonce
        }.filter { candidate in !parents.contains { $0.transactionHashes.contains(candidate.hash) } }.prefix(maxTransactions)
        // Mempool transactions had their signatures verified on admission.
        let verified = candidates.map(VerifiedTransaction.init(signatureAlreadyVerified:))
        let executions = parents.map(\.execution)
        var execution = ledger.execute(verified, proposer: Int(proposer), parents: executions)
        var transactions = Array(candidates)
        if !execution.allApplied {
            // Balances changed since admission: keep only what applies, in order.
            transactions = zip(candidates, execution.results).compactMap { (try? $1.get()) != nil ? $0 : nil }
            execution = ledger.execute(
                transactions.map(VerifiedTransaction.init(signatureAlreadyVerified:)), proposer: Int(proposer), parents: executions)
        }
        guard !transactions.isEmpty || allowEmpty else { return nil }
        let header = BlockHeader(
            height: height, view: view, timestampMs: timestampMs, previousHash: parentHash,
            transactionsRoot: Block.transactionsRoot(transactions), stateRoot: execution.stateRoot, proposer: proposer,
            transactionCount: UInt32(transactions.count))
        let block = Block(header: header, transactions: transactions)
        inFlight[block.hash] = InFlight(block: block, parentHash: parentHash, execution: execution)
        return block
    }

    /// Whether a block in flight (proposed or validated, not committed) holds the
    /// transaction: its signature was checked with the block (or on admission), so
    /// gossip of it needs no second check.
    func isInFlight(_ transactionHash: Hash) -> Bool {
        inFlight.values.contains { $0.transactionHashes.contains(transactionHash) }
    }

    /// `maxTransactions` is the genesis maximum, which `checkContents` applies.
    func validate(
        _ block: Block, parentHash: Hash, maxTransactions: Int, origin: BlockOrigin
    ) -> Result<Void, BlockRejection> {
        if inFlight[block.hash] != nil { return .success(()) }
        guard let parents = chain(to: parentHash) else { return .failure(BlockRejection("unknown parent \(parentHash.hex)")) }
        // Transactions in the mempool had their signatures verified on admission.
        let pool = mempool
        let precheck = BlockPrecheck.transactions(of: block, genesisHash: ledger.genesisHash) { pool.contains($0) }
        let executions = parents.map(\.execution)
        let base = ledger
        do {
            let parent = BlockRules.Parent(
                height: base.height + UInt64(parents.count), hash: parentHash,
                timestampMs: parents.last?.block.header.timestampMs ?? tipTimestampMs)
            let rulesOrigin: BlockRules.Origin = switch origin {
            case .prePrepare(let view): .proposal(view: view, nowMs: nowMs())
            case .sync(let certificateView): .committed(certificateView: certificateView)
            }
            let execution = try ChainVerifier.checkContents(
                block, parent: parent, genesis: genesis, origin: rulesOrigin,
                computedTransactionsRoot: precheck.computedTransactionsRoot,
                firstInvalidSignature: precheck.firstInvalidSignature
            ) { transactions, proposer in base.execute(transactions, proposer: proposer, parents: executions) }
            inFlight[block.hash] = InFlight(block: block, parentHash: parentHash, execution: execution)
            return .success(())
        } catch {
            return .failure(BlockRejection(error.explanation))
        }
    }

    /// Applies a committed block (the replica's `.execute`), which it validated or
    /// proposed before. Returns the execution for the caller's bookkeeping.
    func commit(_ block: Block) -> BlockExecution {
        let hash = block.hash
        guard let entry = inFlight[hash], entry.parentHash == tipHash else {
            preconditionFailure("consensus executed block \(block.height) (\(hash.hex)) that was never validated on the tip")
        }
        ledger.commit(entry.execution)
        tipHash = hash
        tipTimestampMs = block.header.timestampMs
        // Blocks at or below the new height can no longer be built on.
        inFlight = inFlight.filter { $0.value.block.height > block.height }
        // Re-checks every queue the block touched against the new state.
        mempool.removeCommitted(block.transactions) { self.ledger.account($0) ?? .empty }
        return entry.execution
    }
}
