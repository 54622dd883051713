import TallyCrypto
import TallyLedger
import TallyStore
import TallyTypes

/// Why a block is not a valid next block of the chain, and at which height.
public struct VerificationFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// The block at this position carries another height (a gap or a swap).
        case unexpectedHeight(found: UInt64)
        case previousHashMismatch(expected: Hash, found: Hash)
        /// More transactions than genesis allows in a block (`consensus.max_block_transactions`).
        case tooManyTransactions(count: Int, limit: UInt32)
        case unknownProposer(index: UInt32)
        /// The proposer is not the primary of the header's view (v mod n).
        case wrongProposer(found: UInt32, view: UInt64, primary: UInt32)
        /// The header's view is later than its commit certificate's.
        case viewAfterCertificate(header: UInt64, certificate: UInt64)
        /// The header's view is later than the PRE-PREPARE's that proposes it.
        case viewAfterProposal(header: UInt64, proposal: UInt64)
        /// Not later than the parent's timestamp (the genesis time below block 1).
        case timestampNotIncreasing(found: UInt64, parent: UInt64)
        /// A proposal's timestamp beyond the local clock plus `consensus.max_clock_drift_ms`.
        case timestampTooFarAhead(found: UInt64, nowMs: UInt64, maxDriftMs: UInt64)
        case transactionsRootMismatch(header: Hash, computed: Hash)
        case certificate(CommitCertificate.Failure)
        case transactionSignature(index: Int)
        case transactionRejected(index: Int, TransactionRejection)
        case stateRootMismatch(header: Hash, computed: Hash)
        /// The stored bytes are not a certified block (checksum was fine).
        case undecodable(CanonicalDecodingError)
        /// A damaged, truncated, missing or misplaced record in the block files.
        case storage(Corruption)
    }

    public let height: UInt64
    public let reason: Reason

    public init(height: UInt64, reason: Reason) {
        self.height = height
        self.reason = reason
    }

    /// A stable snake_case code (JSON reports, metrics labels).
    public var code: String {
        switch reason {
        case .unexpectedHeight: return "unexpected_height"
        case .previousHashMismatch: return "previous_hash_mismatch"
        case .tooManyTransactions: return "too_many_transactions"
        case .unknownProposer: return "unknown_proposer"
        case .wrongProposer: return "wrong_proposer"
        case .viewAfterCertificate: return "view_after_certificate"
        case .viewAfterProposal: return "view_after_proposal"
        case .timestampNotIncreasing: return "timestamp_not_increasing"
        case .timestampTooFarAhead: return "timestamp_too_far_ahead"
        case .transactionsRootMismatch: return "transactions_root_mismatch"
        case .certificate(let failure):
            switch failure {
            case .wrongHeight: return "certificate_wrong_height"
            case .wrongBlockHash: return "certificate_wrong_block_hash"
            case .notSorted: return "certificate_duplicate_or_unsorted"
            case .unknownValidator: return "certificate_unknown_validator"
            case .badSignature: return "certificate_bad_signature"
            case .belowQuorum: return "certificate_below_quorum"
            }
        case .transactionSignature: return "transaction_bad_signature"
        case .transactionRejected: return "transaction_rejected"
        case .stateRootMismatch: return "state_root_mismatch"
        case .undecodable: return "undecodable_block"
        case .storage: return "storage_damaged"
        }
    }

    /// The reason in words.
    public var explanation: String {
        switch reason {
        case .unexpectedHeight(let found):
            return "expected the block of height \(height), found height \(found) (a block is missing or out of order)"
        case .previousHashMismatch(let expected, let found):
            return "previous-hash link broken: the header names \(found.hex), the previous block is \(expected.hex)"
        case .tooManyTransactions(let count, let limit):
            return "\(count) transactions, over the genesis limit of \(limit) (consensus.max_block_transactions)"
        case .unknownProposer(let index): return "proposer index \(index) is not a genesis validator"
        case .wrongProposer(let found, let view, let primary):
            return "proposer \(found) is not validator \(primary), the primary of the header's view \(view)"
        case .viewAfterCertificate(let header, let certificate):
            return "header view \(header) is later than its commit certificate's view \(certificate)"
        case .viewAfterProposal(let header, let proposal):
            return "header view \(header) is later than the view \(proposal) of the PRE-PREPARE proposing it"
        case .timestampNotIncreasing(let found, let parent):
            return "timestamp \(found) ms is not later than the previous block's \(parent) ms"
        case .timestampTooFarAhead(let found, let nowMs, let maxDriftMs):
            return "timestamp \(found) ms is more than \(maxDriftMs) ms (consensus.max_clock_drift_ms) past this clock's \(nowMs) ms"
        case .transactionsRootMismatch(let header, let computed):
            return "transactions do not match the header's Merkle root (header \(header.hex), computed \(computed.hex))"
        case .certificate(let failure): return "commit certificate invalid: \(failure)"
        case .transactionSignature(let index): return "transaction \(index) has an invalid signature"
        case .transactionRejected(let index, let rejection): return "transaction \(index) does not apply: \(rejection)"
        case .stateRootMismatch(let header, let computed):
            return "state root mismatch: the header says \(header.hex), replay computes \(computed.hex)"
        case .undecodable(let error): return "stored block does not decode: \(error)"
        case .storage(let corruption): return "block file damaged: \(corruption.reason) (\(corruption.file), offset \(corruption.offset))"
        }
    }

    public var description: String { "height \(height): \(explanation)" }
}

/// A block with the parallel, order-independent work done: transaction hashes and
/// Merkle root, every transaction signature, and the commit certificate (structure
/// and signatures against the block's own height and hash). `ChainVerifier` then
/// does the sequential checks.
public struct PrecheckedBlock: Sendable {
    public let certified: CertifiedBlock
    public let computedTransactionsRoot: Hash
    /// Index of the first transaction whose signature is invalid.
    public let firstInvalidSignature: Int?
    public let certificateFailure: CommitCertificate.Failure?
    /// Signatures this precheck verified (transactions + certificate entries).
    public let signaturesChecked: Int
}

public enum BlockPrecheck {
    /// The parallel part for a block that has no certificate yet (a proposal): its
    /// transactions' Merkle root and the first transaction whose signature fails.
    /// `signatureAlreadyVerified` names transactions (by hash, which covers the
    /// signature) whose signature the caller checked before, e.g. on admission to
    /// its mempool: they are not verified again. `isValidSignature` checks the others
    /// (Ed25519; the simulator injects its own). Both are called from several threads.
    public static func transactions(
        of block: Block, genesisHash: Hash, signatureAlreadyVerified: @Sendable (Hash) -> Bool = { _ in false },
        isValidSignature: (@Sendable (Transaction) -> Bool)? = nil
    ) -> (computedTransactionsRoot: Hash, firstInvalidSignature: Int?) {
        let count = block.transactions.count
        let hashes = SharedBuffer(repeating: Hash.zero, count: max(count, 1))
        let valid = SharedBuffer(repeating: false, count: max(count, 1))
        let tasks = (count + transactionsPerTask - 1) / transactionsPerTask
        Parallel.forEach(tasks) { task in
            let start = task * transactionsPerTask
            for index in start..<min(count, start + transactionsPerTask) {
                let transaction = block.transactions[index]
                let hash = transaction.hash
                hashes[index] = hash
                valid[index] = signatureAlreadyVerified(hash)
                    || (isValidSignature?(transaction) ?? transaction.hasValidSignature(genesisHash: genesisHash))
            }
        }
        let root = Merkle.root(Array(hashes.pointer[0..<count]))
        return (root, (0..<count).first { !valid[$0] })
    }

    /// The precheck of a committed block whose certificate the caller checked itself
    /// (`certificateFailure`: the simulator, whose signatures are stand-ins for
    /// Ed25519), with the Merkle root and transaction signatures as `transactions(of:)`
    /// computes them.
    public static func committed(
        _ certified: CertifiedBlock, genesisHash: Hash, certificateFailure: CommitCertificate.Failure?,
        isValidSignature: @escaping @Sendable (Transaction) -> Bool
    ) -> PrecheckedBlock {
        let (root, invalid) = transactions(of: certified.block, genesisHash: genesisHash, isValidSignature: isValidSignature)
        return PrecheckedBlock(
            certified: certified, computedTransactionsRoot: root, firstInvalidSignature: invalid,
            certificateFailure: certificateFailure, signaturesChecked: certified.block.transactions.count)
    }

    /// Transactions per parallel work item: big enough to amortise scheduling (about
    /// 2 ms of signature checks each), small enough that the cores finish a batch
    /// together (at a batch's end a core idles for up to one item).
    static let transactionsPerTask = 32

    /// Prechecks `blocks` on all cores. Order of the result matches the input.
    /// Transaction signatures are checked for the chain of `genesisHash`.
    public static func run(
        _ blocks: [CertifiedBlock], chainID: String, genesisHash: Hash, validators: ValidatorSet
    ) -> [PrecheckedBlock] {
        run(blocks, encoded: nil, chainID: chainID, genesisHash: genesisHash, validators: validators)
    }

    /// With `encoded` (the stored payloads and each transaction's byte range in it),
    /// hashes and signing bytes come from the stored bytes instead of re-encoding.
    static func run(
        _ blocks: [CertifiedBlock], encoded: [EncodedBlock]?, chainID: String, genesisHash: Hash, validators: ValidatorSet
    ) -> [PrecheckedBlock] {
        precondition(encoded == nil || encoded!.count == blocks.count)
        var tasks: [(block: Int, start: Int, end: Int)] = []
        var firstTransaction: [Int] = []
        var total = 0
        for (position, certified) in blocks.enumerated() {
            firstTransaction.append(total)
            let count = certified.block.transactions.count
            var start = 0
            while start < count {
                let end = min(count, start + transactionsPerTask)
                tasks.append((position, start, end))
                start = end
            }
            total += count
        }
        let hashes = SharedBuffer(repeating: Hash.zero, count: max(total, 1))
        let signatureValid = SharedBuffer(repeating: false, count: max(total, 1))
        let certificateFailures = SharedBuffer<CommitCertificate.Failure?>(repeating: nil, count: max(blocks.count, 1))
        let roots = SharedBuffer(repeating: Hash.zero, count: max(blocks.count, 1))
        let taskCount = tasks.count
        let starts = firstTransaction
        let chunks = tasks
        // Certificates first in the index space, then transaction chunks.
        Parallel.forEach(blocks.count + taskCount) { item in
            if item < blocks.count {
                let certified = blocks[item]
                do throws(CommitCertificate.Failure) {
                    try certified.certificate.verify(
                        height: certified.block.height, blockHash: certified.block.hash, validators: validators, chainID: chainID)
                } catch { certificateFailures[item] = error }
                return
            }
            let task = chunks[item - blocks.count]
            let transactions = blocks[task.block].block.transactions
            let base = starts[task.block]
            if let encoded {
                let source = encoded[task.block]
                for index in task.start..<task.end {
                    let transaction = transactions[index]
                    let range = source.transactionRanges[index]
                    hashes[base + index] = SHA256.hash(source.payload[range])
                    signatureValid[base + index] = transaction.sender.isValidSignature(
                        transaction.signature, for: EncodedBlock.signingBytes(payload: source.payload, transaction: range, genesisHash: genesisHash))
                }
            } else {
                for index in task.start..<task.end {
                    let transaction = transactions[index]
                    hashes[base + index] = transaction.hash
                    signatureValid[base + index] = transaction.hasValidSignature(genesisHash: genesisHash)
                }
            }
        }
        Parallel.forEach(blocks.count) { position in
            let base = starts[position]
            let count = blocks[position].block.transactions.count
            roots[position] = Merkle.root(Array(hashes.pointer[base..<base + count]))
        }
        return blocks.enumerated().map { position, certified in
            let base = firstTransaction[position]
            let count = certified.block.transactions.count
            let invalid = (0..<count).first { !signatureValid[base + $0] }
            return PrecheckedBlock(
                certified: certified, computedTransactionsRoot: roots[position], firstInvalidSignature: invalid,
                certificateFailure: certificateFailures[position],
                signaturesChecked: count + certified.certificate.signatures.count)
        }
    }
}

/// Verifies a chain block by block from genesis (or from a trusted snapshot): the
/// header rules (`BlockRules`: height and previous-hash link, transaction count,
/// proposer, view against the certificate's, increasing timestamp), transactions'
/// Merkle root, commit certificate
/// (2f+1 distinct genesis validators, each signature valid over the canonical COMMIT
/// bytes for this chain id, view, height and block hash), every transaction
/// signature, then replay through the ledger with the header's state root checked.
///
/// The same code serves `tally verify`, a syncing node (blocks from peers) and the
/// wallet (`verifyCertificate`). A failed block leaves the verifier unchanged.
public struct ChainVerifier: Sendable {
    public let genesis: Genesis
    public private(set) var ledger: Ledger
    /// Hash of the last verified block (the genesis hash before block 1).
    public private(set) var lastBlockHash: Hash
    /// Its timestamp (the genesis time before block 1): the next must be later.
    public private(set) var lastTimestampMs: UInt64

    public var height: UInt64 { ledger.height }

    public init(genesis: Genesis) {
        self.genesis = genesis
        ledger = Ledger(genesis: genesis)
        lastBlockHash = genesis.hash
        lastTimestampMs = genesis.genesisTimeMs
    }

    /// Resumes above a trusted state: a snapshot whose root the caller checked
    /// against the stored header at its height, and that block's hash and timestamp.
    public init(genesis: Genesis, resumingFrom ledger: Ledger, lastBlockHash: Hash, lastTimestampMs: UInt64) {
        precondition(ChainID.same(ledger.chainID, genesis.chainID), "ledger of another chain")
        self.genesis = genesis
        self.ledger = ledger
        self.lastBlockHash = lastBlockHash
        self.lastTimestampMs = lastTimestampMs
    }

    /// What the next block is checked against.
    public var parent: BlockRules.Parent {
        BlockRules.Parent(height: height, hash: lastBlockHash, timestampMs: lastTimestampMs)
    }

    /// Full check of one block (signatures on all cores), then applies it.
    @discardableResult
    public mutating func verifyNext(_ certified: CertifiedBlock) throws(VerificationFailure) -> BlockExecution {
        try verifyNext(
            BlockPrecheck.run([certified], chainID: genesis.chainID, genesisHash: ledger.genesisHash, validators: genesis.validators)[0])
    }

    /// The sequential checks of a prechecked block, then applies it to the ledger.
    @discardableResult
    public mutating func verifyNext(_ prechecked: PrecheckedBlock) throws(VerificationFailure) -> BlockExecution {
        let block = prechecked.certified.block
        let current = ledger
        let execution = try Self.checkContents(
            block, parent: parent, genesis: genesis, origin: .committed(certificateView: prechecked.certified.certificate.view),
            computedTransactionsRoot: prechecked.computedTransactionsRoot,
            certificateFailure: prechecked.certificateFailure, firstInvalidSignature: prechecked.firstInvalidSignature
        ) { transactions, proposer in current.execute(transactions, proposer: proposer) }
        ledger.commit(execution)
        lastBlockHash = block.hash
        lastTimestampMs = block.header.timestampMs
        return execution
    }

    /// The checks of a block's contents on top of its parent, in the order the
    /// verifier reports them: the header rules (`BlockRules.checkHeader`: height,
    /// previous-hash link, transaction count, proposer, view, timestamp), Merkle root,
    /// the commit certificate (when there is one), transaction signatures (both
    /// computed by the caller, in parallel), then execution
    /// (`execute` runs the transactions on the parent's state) with every
    /// transaction applying and the header's state root matching. Shared by
    /// `verifyNext` and the node's consensus application, which runs it on
    /// proposals and on blocks from peers, so a node and `tally verify` accept
    /// exactly the same blocks.
    public static func checkContents(
        _ block: Block, parent: BlockRules.Parent, genesis: Genesis, origin: BlockRules.Origin,
        computedTransactionsRoot: Hash, certificateFailure: CommitCertificate.Failure? = nil, firstInvalidSignature: Int?,
        execute: ([VerifiedTransaction], Int) -> BlockExecution
    ) throws(VerificationFailure) -> BlockExecution {
        let header = block.header
        func fail(_ reason: VerificationFailure.Reason) -> VerificationFailure {
            VerificationFailure(height: parent.height + 1, reason: reason)
        }
        try BlockRules.checkHeader(block, parent: parent, genesis: genesis, origin: origin)
        guard computedTransactionsRoot == header.transactionsRoot else {
            throw fail(.transactionsRootMismatch(header: header.transactionsRoot, computed: computedTransactionsRoot))
        }
        if let certificateFailure { throw fail(.certificate(certificateFailure)) }
        if let index = firstInvalidSignature { throw fail(.transactionSignature(index: index)) }
        let execution = execute(
            block.transactions.map(VerifiedTransaction.init(signatureAlreadyVerified:)), Int(header.proposer))
        if let rejection = execution.firstRejection { throw fail(.transactionRejected(index: rejection.index, rejection.reason)) }
        guard execution.stateRoot == header.stateRoot else {
            throw fail(.stateRootMismatch(header: header.stateRoot, computed: execution.stateRoot))
        }
        return execution
    }

    /// What a wallet runs on a certificate it receives for `header`: the certificate
    /// is for exactly this block and carries a valid quorum of genesis validators.
    public static func verifyCertificate(_ certificate: CommitCertificate, for header: BlockHeader, genesis: Genesis)
        throws(VerificationFailure)
    {
        do {
            try certificate.verify(
                height: header.height, blockHash: header.hash, validators: genesis.validators, chainID: genesis.chainID)
        } catch { throw VerificationFailure(height: header.height, reason: .certificate(error)) }
    }
}
