import TallyCrypto
import TallyTypes

/// A validator's position in the genesis list.
public typealias ValidatorIndex = UInt32

/// Bounds on what a consensus message may carry, checked while decoding.
public enum ConsensusLimits {
    /// Prepared certificates in one VIEW-CHANGE (heights between the low and high water marks).
    public static let maxPreparedCertificates = Int(2 * Limits.maxCheckpointIntervalBlocks)
    /// Blocks in one sync response.
    public static let maxSyncBlocks = 64
    /// Largest encoded consensus message (a NEW-VIEW carrying blocks).
    public static let maxMessageBytes = 64 * 1024 * 1024
    /// Highest view a message may name; higher ones are dropped (`viewOutOfRange`).
    /// Honest views grow by one per view change, so this is unreachable (one view
    /// change a millisecond would need 292 million years), and `view + 1` on any view
    /// a replica accepted cannot trap.
    public static let maxView = UInt64(Int64.max)
    /// Sync requests one peer gets answered per retransmit interval: a syncing replica
    /// asks again as soon as a batch arrives, a flood gets no more than this.
    public static let maxSyncAnswersPerInterval = 4

    /// An upper bound of the encoded size of any consensus message a replica of a chain
    /// with these parameters and validators builds (a PRE-PREPARE or block with a full
    /// block of the largest transactions, a sync response of one certified block, a
    /// VIEW-CHANGE or NEW-VIEW with a certificate at every height of the log window): a
    /// node checks it against its frame bound at start-up, so that no valid
    /// configuration can build a message its transport cannot send.
    public static func largestMessageBytes(parameters: ConsensusParameters, validatorCount: Int) -> Int {
        func tagBytes(_ tag: DomainTag) -> Int { 4 + tag.rawValue.utf8.count }
        let envelope = tagBytes(.consensusMessage) + 1
        let headerBytes = BlockHeader(
            height: 0, view: 0, timestampMs: 0, previousHash: Hash.zero, transactionsRoot: Hash.zero, stateRoot: Hash.zero,
            proposer: 0, transactionCount: 0).canonicalBytes.count
        let blockBytes = tagBytes(.block) + headerBytes + 4
            + Int(parameters.maxBlockTransactions) * Limits.maxTransactionBytes
        let signatureBytes = 64, voteBytes = 1 + 8 + 8 + 32 + 4 + 64
        let prePrepare = envelope + 8 + blockBytes + signatureBytes
        let certificate = tagBytes(.commitCertificate) + 8 + 8 + 32 + 4 + validatorCount * (4 + signatureBytes)
        let syncResponse = envelope + 4 + blockBytes + certificate
        let proposal = 8 + headerBytes + signatureBytes
        let prepared = proposal + 4 + (validatorCount - 1) * voteBytes
        let checkpointProof = 8 + 32 + 32 + 4 + validatorCount * (4 + signatureBytes)
        let window = Int(2 * parameters.checkpointIntervalBlocks)
        let viewChange = 8 + 4 + checkpointProof + 4 + window * prepared + signatureBytes
        let quorum = validatorCount - (validatorCount - 1) / 3
        let newView = envelope + 8 + 4 + quorum * viewChange + 4 + window * proposal + signatureBytes
        return max(prePrepare, syncResponse, envelope + viewChange, newView)
    }
}

/// PBFT PRE-PREPARE: the primary of `view` proposes `block` at height `block.height`.
///
/// Signing bytes (what `signature`, by the primary of `view`, signs):
/// ```
/// tag "tally/pre-prepare/v1" | chain_id: string | view: u64 | height: u64 | block_hash: 32
/// ```
/// Carried as `view: u64 | block | signature: 64`.
/// A block re-proposed by a NEW-VIEW keeps its original header (its hash must not
/// change), so `block.header.view` may be below `view` there; a fresh proposal has
/// `block.header.view == view`.
public struct PrePrepare: Hashable, Sendable, CanonicalCodable {
    public let view: UInt64
    public let block: Block
    public let signature: Signature
    /// Cached: the header hash is needed for every check.
    public let blockHash: Hash

    public init(view: UInt64, block: Block, signature: Signature) {
        self.view = view
        self.block = block
        self.signature = signature
        blockHash = block.hash
    }

    public var height: UInt64 { block.height }

    public static func signingBytes(chainID: String, view: UInt64, height: UInt64, blockHash: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(.prePrepare)
        encoder.string(chainID)
        encoder.u64(view)
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        return encoder.bytes
    }

    public func signingBytes(chainID: String) -> [UInt8] {
        PrePrepare.signingBytes(chainID: chainID, view: view, height: height, blockHash: blockHash)
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(view)
        block.encode(to: &encoder)
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> PrePrepare {
        let view = try decoder.u64("pre_prepare.view")
        let block = try Block.decode(from: &decoder)
        return PrePrepare(view: view, block: block, signature: try decoder.signature("pre_prepare.signature"))
    }

    /// The same PRE-PREPARE without the transactions.
    public var proposal: SignedProposal {
        SignedProposal(view: view, header: block.header, signature: signature, blockHash: blockHash)
    }

    /// `proposal` with its block's transactions; nil when `block` is another block.
    public init?(proposal: SignedProposal, block: Block) {
        guard block.hash == proposal.blockHash else { return nil }
        self.init(view: proposal.view, block: block, signature: proposal.signature, blockHash: proposal.blockHash)
    }

    init(view: UInt64, block: Block, signature: Signature, blockHash: Hash) {
        self.view = view
        self.block = block
        self.signature = signature
        self.blockHash = blockHash
    }
}

/// A PRE-PREPARE without its block's transactions: the view it was (re-)proposed in,
/// the block header (its hash is the block hash) and the primary's signature, over
/// the PRE-PREPARE's signing bytes. VIEW-CHANGEs and NEW-VIEWs carry these, not blocks,
/// so their size does not grow with the blocks' (with full blocks a NEW-VIEW of whole
/// blocks outgrew the frame bound, and losing the primary halted the chain); a replica
/// that lacks a block fetches it by hash (`blockRequest`) and checks it against the
/// header's transactions root.
///
/// Carried as `view: u64 | header | signature: 64`.
public struct SignedProposal: Hashable, Sendable, CanonicalCodable {
    public let view: UInt64
    public let header: BlockHeader
    public let signature: Signature
    /// Cached: the header hash is needed for every check.
    public let blockHash: Hash

    public init(view: UInt64, header: BlockHeader, signature: Signature) {
        self.init(view: view, header: header, signature: signature, blockHash: header.hash)
    }

    init(view: UInt64, header: BlockHeader, signature: Signature, blockHash: Hash) {
        self.view = view
        self.header = header
        self.signature = signature
        self.blockHash = blockHash
    }

    public var height: UInt64 { header.height }

    public func signingBytes(chainID: String) -> [UInt8] {
        PrePrepare.signingBytes(chainID: chainID, view: view, height: height, blockHash: blockHash)
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(view)
        header.encode(to: &encoder)
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> SignedProposal {
        let view = try decoder.u64("proposal.view")
        let header = try BlockHeader.decode(from: &decoder)
        return SignedProposal(view: view, header: header, signature: try decoder.signature("proposal.signature"))
    }
}

/// A PREPARE or COMMIT vote. The signature is over exactly
/// `VoteTarget.signingBytes(chainID:)` (TallyTypes), so 2f+1 COMMIT votes form a
/// `CommitCertificate` that the offline verifier checks.
///
/// Carried as `phase: u8 (1 prepare, 2 commit) | view: u64 | height: u64 | block_hash: 32
/// | validator: u32 | signature: 64`.
public struct Vote: Hashable, Sendable, CanonicalCodable {
    public let target: VoteTarget
    public let validator: ValidatorIndex
    public let signature: Signature

    public init(target: VoteTarget, validator: ValidatorIndex, signature: Signature) {
        self.target = target
        self.validator = validator
        self.signature = signature
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u8(target.phase.rawValue)
        encoder.u64(target.view)
        encoder.u64(target.height)
        encoder.fixed(target.blockHash.bytes)
        encoder.u32(validator)
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> Vote {
        guard let phase = VotePhase(rawValue: try decoder.u8("vote.phase")) else {
            throw .invalid(field: "vote.phase", reason: "must be 1 (prepare) or 2 (commit)")
        }
        let target = VoteTarget(
            phase: phase, view: try decoder.u64("vote.view"), height: try decoder.u64("vote.height"),
            blockHash: try decoder.hash("vote.block_hash"))
        return Vote(target: target, validator: try decoder.u32("vote.validator"), signature: try decoder.signature("vote.signature"))
    }
}

/// CHECKPOINT: after executing `height` (a multiple of the checkpoint interval) the
/// validator attests the block hash and the state root it reached.
///
/// Signing bytes:
/// ```
/// tag "tally/checkpoint/v1" | chain_id: string | height: u64 | block_hash: 32 | state_root: 32
/// ```
/// Carried as `height: u64 | block_hash: 32 | state_root: 32 | validator: u32 | signature: 64`.
public struct Checkpoint: Hashable, Sendable, CanonicalCodable {
    public let height: UInt64
    public let blockHash: Hash
    public let stateRoot: Hash
    public let validator: ValidatorIndex
    public let signature: Signature

    public init(height: UInt64, blockHash: Hash, stateRoot: Hash, validator: ValidatorIndex, signature: Signature) {
        self.height = height
        self.blockHash = blockHash
        self.stateRoot = stateRoot
        self.validator = validator
        self.signature = signature
    }

    public static func signingBytes(chainID: String, height: UInt64, blockHash: Hash, stateRoot: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(.checkpoint)
        encoder.string(chainID)
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        encoder.fixed(stateRoot.bytes)
        return encoder.bytes
    }

    public func signingBytes(chainID: String) -> [UInt8] {
        Checkpoint.signingBytes(chainID: chainID, height: height, blockHash: blockHash, stateRoot: stateRoot)
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        encoder.fixed(stateRoot.bytes)
        encoder.u32(validator)
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> Checkpoint {
        Checkpoint(
            height: try decoder.u64("checkpoint.height"), blockHash: try decoder.hash("checkpoint.block_hash"),
            stateRoot: try decoder.hash("checkpoint.state_root"), validator: try decoder.u32("checkpoint.validator"),
            signature: try decoder.signature("checkpoint.signature"))
    }
}

/// A stable checkpoint: 2f+1 CHECKPOINT signatures over the same (height, block
/// hash, state root). Height 0 is genesis and needs no signatures.
///
/// Carried as `height: u64 | block_hash: 32 | state_root: 32 | count: u32
/// | (validator: u32 | signature: 64)…`, validators strictly increasing.
public struct CheckpointProof: Hashable, Sendable, CanonicalCodable {
    public struct Entry: Hashable, Sendable {
        public let validator: ValidatorIndex
        public let signature: Signature
        public init(validator: ValidatorIndex, signature: Signature) {
            self.validator = validator
            self.signature = signature
        }
    }

    public let height: UInt64
    public let blockHash: Hash
    public let stateRoot: Hash
    public let signatures: [Entry]

    public init(height: UInt64, blockHash: Hash, stateRoot: Hash, signatures: [Entry]) {
        self.height = height
        self.blockHash = blockHash
        self.stateRoot = stateRoot
        self.signatures = signatures
    }

    public static func genesis(hash: Hash, stateRoot: Hash) -> CheckpointProof {
        CheckpointProof(height: 0, blockHash: hash, stateRoot: stateRoot, signatures: [])
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        encoder.fixed(stateRoot.bytes)
        encoder.count(signatures.count)
        for entry in signatures {
            encoder.u32(entry.validator)
            encoder.fixed(entry.signature.bytes)
        }
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> CheckpointProof {
        let height = try decoder.u64("checkpoint_proof.height")
        let blockHash = try decoder.hash("checkpoint_proof.block_hash")
        let stateRoot = try decoder.hash("checkpoint_proof.state_root")
        let count = try decoder.count(max: Limits.maxValidators, minItemBytes: 68, "checkpoint_proof.signatures")
        var entries: [Entry] = []
        for _ in 0..<count {
            entries.append(Entry(validator: try decoder.u32("checkpoint_proof.validator"),
                                 signature: try decoder.signature("checkpoint_proof.signature")))
        }
        return CheckpointProof(height: height, blockHash: blockHash, stateRoot: stateRoot, signatures: entries)
    }
}

/// Proof that a block was prepared in `proposal.view`: the primary's signed proposal
/// (a PRE-PREPARE without the transactions) and 2f PREPAREs from distinct other
/// validators for the same (view, height, hash).
///
/// Carried as `signed proposal | count: u32 | prepare vote…` (votes strictly increasing by validator).
public struct PreparedCertificate: Hashable, Sendable, CanonicalCodable {
    public let proposal: SignedProposal
    public let prepares: [Vote]

    public init(proposal: SignedProposal, prepares: [Vote]) {
        self.proposal = proposal
        self.prepares = prepares
    }

    public var view: UInt64 { proposal.view }
    public var height: UInt64 { proposal.height }
    public var blockHash: Hash { proposal.blockHash }

    public func encode(to encoder: inout CanonicalEncoder) {
        proposal.encode(to: &encoder)
        encoder.count(prepares.count)
        for vote in prepares { vote.encode(to: &encoder) }
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> PreparedCertificate {
        let proposal = try SignedProposal.decode(from: &decoder)
        let count = try decoder.count(max: Limits.maxValidators, minItemBytes: 121, "prepared.prepares")
        var votes: [Vote] = []
        for _ in 0..<count { votes.append(try Vote.decode(from: &decoder)) }
        return PreparedCertificate(proposal: proposal, prepares: votes)
    }
}

/// VIEW-CHANGE to `newView`: the sender's stable checkpoint proof and its prepared
/// certificates above it (the highest-view one per height).
///
/// Signing bytes:
/// ```
/// tag "tally/view-change/v1" | chain_id: string | new_view: u64 | validator: u32 | body_hash: 32
/// ```
/// where `body_hash` = SHA-256(checkpoint_proof | count: u32 | prepared certificate…).
/// Carried as `new_view: u64 | validator: u32 | checkpoint_proof | count: u32
/// | prepared certificate… | signature: 64`.
public struct ViewChange: Hashable, Sendable, CanonicalCodable {
    public let newView: UInt64
    public let validator: ValidatorIndex
    public let checkpoint: CheckpointProof
    public let prepared: [PreparedCertificate]
    public let signature: Signature

    public init(
        newView: UInt64, validator: ValidatorIndex, checkpoint: CheckpointProof, prepared: [PreparedCertificate],
        signature: Signature
    ) {
        self.newView = newView
        self.validator = validator
        self.checkpoint = checkpoint
        self.prepared = prepared
        self.signature = signature
    }

    public static func bodyHash(checkpoint: CheckpointProof, prepared: [PreparedCertificate]) -> Hash {
        var encoder = CanonicalEncoder()
        checkpoint.encode(to: &encoder)
        encoder.count(prepared.count)
        for certificate in prepared { certificate.encode(to: &encoder) }
        return SHA256.hash(encoder.bytes)
    }

    public static func signingBytes(chainID: String, newView: UInt64, validator: ValidatorIndex, bodyHash: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(.viewChange)
        encoder.string(chainID)
        encoder.u64(newView)
        encoder.u32(validator)
        encoder.fixed(bodyHash.bytes)
        return encoder.bytes
    }

    public func signingBytes(chainID: String) -> [UInt8] {
        ViewChange.signingBytes(
            chainID: chainID, newView: newView, validator: validator,
            bodyHash: ViewChange.bodyHash(checkpoint: checkpoint, prepared: prepared))
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(newView)
        encoder.u32(validator)
        checkpoint.encode(to: &encoder)
        encoder.count(prepared.count)
        for certificate in prepared { certificate.encode(to: &encoder) }
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> ViewChange {
        let newView = try decoder.u64("view_change.new_view")
        let validator = try decoder.u32("view_change.validator")
        let checkpoint = try CheckpointProof.decode(from: &decoder)
        let count = try decoder.count(
            max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 100, "view_change.prepared")
        var prepared: [PreparedCertificate] = []
        for _ in 0..<count { prepared.append(try PreparedCertificate.decode(from: &decoder)) }
        return ViewChange(
            newView: newView, validator: validator, checkpoint: checkpoint, prepared: prepared,
            signature: try decoder.signature("view_change.signature"))
    }
}

/// NEW-VIEW for `view`, sent by its primary: the 2f+1 VIEW-CHANGEs it used and the
/// proposals (PRE-PREPAREs in `view`, without transactions) it derived from them.
/// Every replica recomputes the proposals from the VIEW-CHANGEs and rejects the
/// NEW-VIEW if they differ; it fetches the blocks it lacks by hash.
///
/// Signing bytes:
/// ```
/// tag "tally/new-view/v1" | chain_id: string | view: u64 | body_hash: 32
/// ```
/// where `body_hash` = SHA-256(count: u32 | view change… | count: u32 | signed proposal…).
/// Carried as `view: u64 | count: u32 | view change… | count: u32 | signed proposal… | signature: 64`.
public struct NewView: Hashable, Sendable, CanonicalCodable {
    public let view: UInt64
    public let viewChanges: [ViewChange]
    public let proposals: [SignedProposal]
    public let signature: Signature

    public init(view: UInt64, viewChanges: [ViewChange], proposals: [SignedProposal], signature: Signature) {
        self.view = view
        self.viewChanges = viewChanges
        self.proposals = proposals
        self.signature = signature
    }

    public static func bodyHash(viewChanges: [ViewChange], proposals: [SignedProposal]) -> Hash {
        var encoder = CanonicalEncoder()
        encodeBody(viewChanges: viewChanges, proposals: proposals, to: &encoder)
        return SHA256.hash(encoder.bytes)
    }

    static func encodeBody(viewChanges: [ViewChange], proposals: [SignedProposal], to encoder: inout CanonicalEncoder) {
        encoder.count(viewChanges.count)
        for viewChange in viewChanges { viewChange.encode(to: &encoder) }
        encoder.count(proposals.count)
        for proposal in proposals { proposal.encode(to: &encoder) }
    }

    public static func signingBytes(chainID: String, view: UInt64, bodyHash: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(.newView)
        encoder.string(chainID)
        encoder.u64(view)
        encoder.fixed(bodyHash.bytes)
        return encoder.bytes
    }

    public func signingBytes(chainID: String) -> [UInt8] {
        NewView.signingBytes(
            chainID: chainID, view: view, bodyHash: NewView.bodyHash(viewChanges: viewChanges, proposals: proposals))
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(view)
        NewView.encodeBody(viewChanges: viewChanges, proposals: proposals, to: &encoder)
        encoder.fixed(signature.bytes)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> NewView {
        let view = try decoder.u64("new_view.view")
        let viewChangeCount = try decoder.count(max: Limits.maxValidators, minItemBytes: 120, "new_view.view_changes")
        var viewChanges: [ViewChange] = []
        for _ in 0..<viewChangeCount { viewChanges.append(try ViewChange.decode(from: &decoder)) }
        let proposalCount = try decoder.count(
            max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 100, "new_view.proposals")
        var proposals: [SignedProposal] = []
        for _ in 0..<proposalCount { proposals.append(try SignedProposal.decode(from: &decoder)) }
        return NewView(
            view: view, viewChanges: viewChanges, proposals: proposals,
            signature: try decoder.signature("new_view.signature"))
    }
}

/// Every message replicas exchange. Not signed as a whole: each signed part carries
/// its own signature; sync messages are self-certifying (blocks carry commit
/// certificates) and need none.
///
/// Carried as `tag "tally/consensus-message/v1" | kind: u8 | body`, kinds:
/// 1 pre-prepare, 2 prepare (vote), 3 commit (vote), 4 checkpoint, 5 view-change,
/// 6 new-view, 7 sync request (`from_height: u64 | to_height: u64`),
/// 8 sync response (`count: u32 | certified block…`), 9 committed tip (the sender's
/// highest committed block's `CommitCertificate`: a height claim that proves itself),
/// 10 block request (`count: u32 | block_hash: 32…`, blocks a NEW-VIEW re-proposes that
/// the sender lacks), 11 block (one block, answering a block request), 12 status
/// (`view: u64 | flags: u8 | committed_height: u64`, flags bit 0 in view change, bit 1
/// asks for the peer's status: a replica's claim of where it is, sent by one in its
/// start-up quarantine and answered by its peers; unsigned, the transport
/// authenticates the sender, and a replica acts only on what f+1 peers support).
public enum ConsensusMessage: Hashable, Sendable, CanonicalCodable {
    case prePrepare(PrePrepare)
    case prepare(Vote)
    case commit(Vote)
    case checkpoint(Checkpoint)
    case viewChange(ViewChange)
    case newView(NewView)
    case syncRequest(fromHeight: UInt64, toHeight: UInt64)
    case syncResponse([CertifiedBlock])
    case committedTip(CommitCertificate)
    case blockRequest([Hash])
    case block(Block)
    case status(PeerStatus)

    /// A short name for logs and counters.
    public var kind: String {
        switch self {
        case .prePrepare: return "pre_prepare"
        case .prepare: return "prepare"
        case .commit: return "commit"
        case .checkpoint: return "checkpoint"
        case .viewChange: return "view_change"
        case .newView: return "new_view"
        case .syncRequest: return "sync_request"
        case .syncResponse: return "sync_response"
        case .committedTip: return "committed_tip"
        case .blockRequest: return "block_request"
        case .block: return "block"
        case .status: return "status"
        }
    }

    /// The kind byte of `.syncResponse` (a node builds one from stored bytes).
    public static let syncResponseKind: UInt8 = 8

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.tag(.consensusMessage)
        switch self {
        case .prePrepare(let message): encoder.u8(1); message.encode(to: &encoder)
        case .prepare(let vote): encoder.u8(2); vote.encode(to: &encoder)
        case .commit(let vote): encoder.u8(3); vote.encode(to: &encoder)
        case .checkpoint(let message): encoder.u8(4); message.encode(to: &encoder)
        case .viewChange(let message): encoder.u8(5); message.encode(to: &encoder)
        case .newView(let message): encoder.u8(6); message.encode(to: &encoder)
        case .syncRequest(let from, let to): encoder.u8(7); encoder.u64(from); encoder.u64(to)
        case .syncResponse(let blocks):
            encoder.u8(Self.syncResponseKind)
            encoder.count(blocks.count)
            for block in blocks { block.encode(to: &encoder) }
        case .committedTip(let certificate): encoder.u8(9); certificate.encode(to: &encoder)
        case .blockRequest(let hashes):
            encoder.u8(10)
            encoder.count(hashes.count)
            for hash in hashes { encoder.fixed(hash.bytes) }
        case .block(let block): encoder.u8(11); block.encode(to: &encoder)
        case .status(let status):
            encoder.u8(12)
            encoder.u64(status.view)
            encoder.u8((status.inViewChange ? 1 : 0) | (status.wantsReply ? 2 : 0))
            encoder.u64(status.committedHeight)
        }
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> ConsensusMessage {
        try decoder.tag(.consensusMessage)
        switch try decoder.u8("message.kind") {
        case 1: return .prePrepare(try PrePrepare.decode(from: &decoder))
        case 2:
            let vote = try Vote.decode(from: &decoder)
            guard vote.target.phase == .prepare else { throw .invalid(field: "message.prepare", reason: "vote is not a prepare") }
            return .prepare(vote)
        case 3:
            let vote = try Vote.decode(from: &decoder)
            guard vote.target.phase == .commit else { throw .invalid(field: "message.commit", reason: "vote is not a commit") }
            return .commit(vote)
        case 4: return .checkpoint(try Checkpoint.decode(from: &decoder))
        case 5: return .viewChange(try ViewChange.decode(from: &decoder))
        case 6: return .newView(try NewView.decode(from: &decoder))
        case 7: return .syncRequest(fromHeight: try decoder.u64("sync.from"), toHeight: try decoder.u64("sync.to"))
        case 8:
            let count = try decoder.count(max: ConsensusLimits.maxSyncBlocks, minItemBytes: 200, "sync.blocks")
            var blocks: [CertifiedBlock] = []
            for _ in 0..<count { blocks.append(try CertifiedBlock.decode(from: &decoder)) }
            return .syncResponse(blocks)
        case 9: return .committedTip(try CommitCertificate.decode(from: &decoder))
        case 10:
            let count = try decoder.count(max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 32, "block_request.hashes")
            var hashes: [Hash] = []
            for _ in 0..<count { hashes.append(try decoder.hash("block_request.hash")) }
            return .blockRequest(hashes)
        case 11: return .block(try Block.decode(from: &decoder))
        case 12:
            let view = try decoder.u64("status.view")
            let flags = try decoder.u8("status.flags")
            guard flags & ~3 == 0 else { throw .invalid(field: "status.flags", reason: "unknown flag bits") }
            let height = try decoder.u64("status.committed_height")
            return .status(PeerStatus(view: view, inViewChange: flags & 1 != 0, committedHeight: height, wantsReply: flags & 2 != 0))
        default: throw .invalid(field: "message.kind", reason: "unknown message kind")
        }
    }
}


/// Where a replica says it is (message kind 12): its view, whether it is changing
/// view, its committed height; `wantsReply` asks the peer for its own status (sent by
/// a replica in its start-up quarantine, which signs nothing until f+1 peers told it
/// where the network is).
public struct PeerStatus: Hashable, Sendable {
    public let view: UInt64
    public let inViewChange: Bool
    public let committedHeight: UInt64
    public let wantsReply: Bool

    public init(view: UInt64, inViewChange: Bool, committedHeight: UInt64, wantsReply: Bool) {
        self.view = view
        self.inViewChange = inViewChange
        self.committedHeight = committedHeight
        self.wantsReply = wantsReply
    }
}
