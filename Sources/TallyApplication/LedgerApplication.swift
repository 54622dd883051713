import Foundation
import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes
import TallyVerify

/// The consensus application of a node and of the simulator: the committed ledger,
/// the mempool, and the executions of blocks proposed or validated but not executed
/// yet (PBFT keeps up to `maxBlocksInFlight` of them; losers of a view change are
/// dropped when the chain moves past their height).
///
/// Block checks go through `ChainVerifier.checkContents`, the code `tally verify`
/// runs, so a node accepts exactly the blocks the offline verifier accepts.
/// Transaction signatures are checked by the injected `signatures` (Ed25519 in a
/// node; the simulator's remembers the libsodium verdicts on its pre-signed
/// transactions). Owned by the node's actor; not thread-safe.
public final class LedgerApplication: ConsensusApplication {
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

    public let genesis: Genesis
    public private(set) var ledger: Ledger
    public private(set) var tipHash: Hash
    /// The committed tip's timestamp (the genesis time at height 0).
    public private(set) var tipTimestampMs: UInt64
    public var mempool: Mempool
    private var inFlight: [Hash: InFlight] = [:]
    /// Wall clock for proposal timestamps (injected so tests can pin it).
    public let nowMs: () -> UInt64
    /// Checks transaction signatures on admission and in blocks not from the mempool.
    public let signatures: any TransactionSignatureChecker

    public init(
        genesis: Genesis, ledger: Ledger, tipHash: Hash, tipTimestampMs: UInt64, mempool: Mempool,
        signatures: any TransactionSignatureChecker = Ed25519TransactionChecker(), nowMs: @escaping () -> UInt64
    ) {
        precondition(ChainID.same(mempool.chainID, ledger.chainID) && mempool.minFee == ledger.minFee, "mempool and ledger of different chains")
        self.genesis = genesis
        self.ledger = ledger
        self.tipHash = tipHash
        self.tipTimestampMs = tipTimestampMs
        self.mempool = mempool
        self.signatures = signatures
        self.nowMs = nowMs
    }

    /// Only transactions a proposal could include, by the rule execution applies (next
    /// nonce, fee, balance): a backup expecting progress for a transaction stuck
    /// behind a nonce gap or beyond its sender's balance would start view change
    /// after view change.
    public var hasPendingTransactions: Bool {
        mempool.hasProposable { self.ledger.account($0) ?? .empty }
    }

    public var proposableSequence: UInt64 { mempool.proposableSequence }

    public var oldestProposableSequence: UInt64? {
        mempool.oldestProposableSequence { self.ledger.account($0) ?? .empty }
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

    public func propose(
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
    public func isInFlight(_ transactionHash: Hash) -> Bool {
        inFlight.values.contains { $0.transactionHashes.contains(transactionHash) }
    }

    /// `maxTransactions` is the genesis maximum, which `checkContents` applies.
    public func validate(
        _ block: Block, parentHash: Hash, maxTransactions: Int, origin: BlockOrigin
    ) -> Result<Void, BlockRejection> {
        if inFlight[block.hash] != nil { return .success(()) }
        guard let parents = chain(to: parentHash) else { return .failure(BlockRejection("unknown parent \(parentHash.hex)")) }
        // Transactions in the mempool had their signatures verified on admission.
        let pool = mempool
        let genesisHash = ledger.genesisHash
        let checker = signatures
        let precheck = BlockPrecheck.transactions(
            of: block, genesisHash: genesisHash, signatureAlreadyVerified: { pool.contains($0) },
            isValidSignature: { checker.isValid($0, genesisHash: genesisHash) })
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
    @discardableResult
    public func commit(_ block: Block) -> BlockExecution {
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

    // MARK: Admission

    /// The sender's committed state, for the admission checks.
    public func committedAccount(_ address: Address) -> Account { ledger.account(address) ?? .empty }

    /// Every admission check but the signature, against the committed state now
    /// (cheap: run before the signatures, so hopeless transactions cost none).
    public func precheck(_ transactions: [Transaction]) -> [AdmissionError?] {
        transactions.map { mempool.check($0, account: committedAccount($0.senderAddress)) }
    }

    /// Admits a transaction whose signature was verified, checked again against the
    /// committed state now (it may have moved while signatures were verified).
    public func admit(_ verified: VerifiedTransaction) -> Result<Hash, AdmissionError> {
        mempool.admit(verified, account: committedAccount(verified.transaction.senderAddress))
    }

    /// The whole admission in one synchronous call, in the node's order (cheap checks,
    /// then `signatures` for the survivors only, then admission), one result each: the
    /// simulator's clients submit here; a node runs the same steps across its actor.
    public func submit(_ transactions: [Transaction]) -> [Result<Hash, AdmissionError>] {
        let checker = signatures
        let genesisHash = ledger.genesisHash
        let screened = AdmissionScreen.screen(transactions, prechecked: precheck(transactions)) {
            SignatureBatch.verify($0, genesisHash: genesisHash, using: checker)
        }
        return screened.map { screen in screen.flatMap(admit) }
    }
}
