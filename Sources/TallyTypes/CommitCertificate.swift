import TallyCrypto

/// Proof that a block was committed: COMMIT signatures from a quorum (⌈(n+f+1)/2⌉,
/// 2f+1 when n = 3f+1) of
/// distinct validators over `VoteTarget(phase: .commit, view, height, block_hash)`.
///
/// Canonical bytes:
/// ```
/// tag "tally/commit-cert/v1" | view: u64 | height: u64 | block_hash: 32
/// | count: u32 | (validator_index: u32 | signature: 64)…
/// ```
/// Entries are sorted by strictly increasing validator index, so one validator can
/// appear only once and the encoding is unique.
public struct CommitCertificate: Hashable, Sendable, CanonicalCodable {
    public struct Entry: Hashable, Sendable {
        public var validatorIndex: UInt32
        public var signature: Signature

        public init(validatorIndex: UInt32, signature: Signature) {
            self.validatorIndex = validatorIndex
            self.signature = signature
        }
    }

    public var view: UInt64
    public var height: UInt64
    public var blockHash: Hash
    public var signatures: [Entry]

    public init(view: UInt64, height: UInt64, blockHash: Hash, signatures: [Entry]) {
        self.view = view
        self.height = height
        self.blockHash = blockHash
        self.signatures = signatures
    }

    public var voteTarget: VoteTarget {
        VoteTarget(phase: .commit, view: view, height: height, blockHash: blockHash)
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case wrongHeight(expected: UInt64, found: UInt64)
        case wrongBlockHash(expected: Hash, found: Hash)
        case notSorted(position: Int)
        case unknownValidator(index: UInt32)
        case badSignature(validatorIndex: UInt32)
        case belowQuorum(signers: Int, quorum: Int)

        public var description: String {
            switch self {
            case .wrongHeight(let expected, let found): return "certificate is for height \(found), block is at \(expected)"
            case .wrongBlockHash(let expected, let found): return "certificate is for block \(found.hex), not \(expected.hex)"
            case .notSorted(let position): return "certificate entry \(position) repeats or is out of order (a validator counted twice?)"
            case .unknownValidator(let index): return "certificate names validator \(index), which is not in genesis"
            case .badSignature(let index): return "certificate signature of validator \(index) is invalid for this chain, view, height and block"
            case .belowQuorum(let signers, let quorum): return "certificate has \(signers) signers, below the quorum of \(quorum)"
            }
        }
    }

    /// Structural checks (no signature work): height, hash, order, known validators,
    /// quorum. Cheap; run before `signatureChecks`.
    /// `quorum`: the signers required; nil: the validator set's (2f+1). Only the replica's
    /// test-only quorum override passes another.
    public func checkStructure(
        height expectedHeight: UInt64, blockHash expectedHash: Hash, validators: ValidatorSet, quorum: Int? = nil
    ) throws(Failure) {
        let quorum = quorum ?? validators.quorum
        guard height == expectedHeight else { throw .wrongHeight(expected: expectedHeight, found: height) }
        guard blockHash == expectedHash else { throw .wrongBlockHash(expected: expectedHash, found: blockHash) }
        for (position, entry) in signatures.enumerated() {
            if position > 0 && entry.validatorIndex <= signatures[position - 1].validatorIndex {
                throw .notSorted(position: position)
            }
            guard Int(entry.validatorIndex) < validators.count else { throw .unknownValidator(index: entry.validatorIndex) }
        }
        guard signatures.count >= quorum else { throw .belowQuorum(signers: signatures.count, quorum: quorum) }
    }

    /// Full check: structure, then every signature with libsodium.
    public func verify(height: UInt64, blockHash: Hash, validators: ValidatorSet, chainID: String) throws(Failure) {
        try checkStructure(height: height, blockHash: blockHash, validators: validators)
        let message = voteTarget.signingBytes(chainID: chainID)
        for entry in signatures {
            let key = validators[Int(entry.validatorIndex)].publicKey
            guard key.isValidSignature(entry.signature, for: message) else {
                throw .badSignature(validatorIndex: entry.validatorIndex)
            }
        }
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.tag(.commitCertificate)
        encoder.u64(view)
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        encoder.count(signatures.count)
        for entry in signatures {
            encoder.u32(entry.validatorIndex)
            encoder.fixed(entry.signature.bytes)
        }
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> CommitCertificate {
        try decoder.tag(.commitCertificate)
        let view = try decoder.u64("cert.view")
        let height = try decoder.u64("cert.height")
        let blockHash = try decoder.hash("cert.block_hash")
        let count = try decoder.count(max: Limits.maxValidators, minItemBytes: 68, "cert.signatures")
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            entries.append(Entry(validatorIndex: try decoder.u32("cert.validator_index"),
                                 signature: try decoder.signature("cert.signature")))
        }
        return CommitCertificate(view: view, height: height, blockHash: blockHash, signatures: entries)
    }
}

/// A block with the certificate that committed it: what the store keeps, what sync
/// sends and what the verifier checks.
/// ```
/// block | certificate
/// ```
public struct CertifiedBlock: Hashable, Sendable, CanonicalCodable {
    public var block: Block
    public var certificate: CommitCertificate

    public init(block: Block, certificate: CommitCertificate) {
        self.block = block
        self.certificate = certificate
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        block.encode(to: &encoder)
        certificate.encode(to: &encoder)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> CertifiedBlock {
        CertifiedBlock(block: try Block.decode(from: &decoder), certificate: try CommitCertificate.decode(from: &decoder))
    }
}
