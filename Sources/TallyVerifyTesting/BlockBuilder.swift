import TallyCrypto
import TallyLedger
import TallyTypes

/// Builds blocks and commit certificates exactly as the network does, signing with
/// keys it is given: the chain generator's and the tests' (a node proposes through
/// TallyApplication and collects the votes it receives instead). Test support: no
/// shipped product links it.
public enum BlockBuilder {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case transactionRejected(index: Int, TransactionRejection)

        public var description: String {
            switch self {
            case .transactionRejected(let index, let reason): return "transaction \(index) does not apply: \(reason)"
            }
        }
    }

    /// The block at `ledger.height + 1` holding `transactions`, all of which must
    /// apply: header with the transactions' Merkle root, the state root after the
    /// block (fees to `proposer`) and `previousHash` (the genesis hash for height 1).
    /// The ledger is not changed; commit the returned execution once the block is
    /// committed.
    public static func build(
        on ledger: Ledger, view: UInt64, proposer: Int, timestampMs: UInt64, previousHash: Hash,
        transactions: [VerifiedTransaction]
    ) throws(Failure) -> (block: Block, execution: BlockExecution) {
        let execution = ledger.execute(transactions, proposer: proposer)
        if let rejection = execution.firstRejection { throw .transactionRejected(index: rejection.index, rejection.reason) }
        let plain = transactions.map(\.transaction)
        let header = BlockHeader(
            height: ledger.height + 1, view: view, timestampMs: timestampMs, previousHash: previousHash,
            transactionsRoot: Block.transactionsRoot(plain), stateRoot: execution.stateRoot, proposer: UInt32(proposer),
            transactionCount: UInt32(plain.count))
        return (Block(header: header, transactions: plain), execution)
    }

    /// A validator's COMMIT vote signature for `block` in `view`: over
    /// `VoteTarget(phase: .commit, view, height, block hash).signingBytes(chainID:)`.
    public static func commitSignature(for block: Block, view: UInt64, chainID: String, key: SigningKey) -> Signature {
        key.sign(VoteTarget(phase: .commit, view: view, height: block.height, blockHash: block.hash).signingBytes(chainID: chainID))
    }

    /// A certificate from collected COMMIT signatures (validator index → signature),
    /// entries sorted by validator index as the canonical form requires.
    public static func certificate(for block: Block, view: UInt64, signatures: [UInt32: Signature]) -> CommitCertificate {
        CommitCertificate(
            view: view, height: block.height, blockHash: block.hash,
            signatures: signatures.sorted { $0.key < $1.key }.map { .init(validatorIndex: $0.key, signature: $0.value) })
    }

    /// Signs and certifies `block` with the given validators' keys (for the
    /// generator and tests; a node assembles votes it received instead).
    public static func certify(
        _ block: Block, view: UInt64, chainID: String, signers: [(index: UInt32, key: SigningKey)]
    ) -> CertifiedBlock {
        var signatures: [UInt32: Signature] = [:]
        for signer in signers {
            signatures[signer.index] = commitSignature(for: block, view: view, chainID: chainID, key: signer.key)
        }
        return CertifiedBlock(block: block, certificate: certificate(for: block, view: view, signatures: signatures))
    }
}
