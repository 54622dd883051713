import TallyCrypto
import TallyTypes

/// What a replica signed, keyed by (view, height, phase): the signer guard. The
/// replica signs a key at most once with one content hash; signing the same content
/// again (a retransmission) is allowed.
///
/// Phases: 0 pre-prepare, 1 prepare, 2 commit, 3 checkpoint (view 0), 4 view-change
/// (height 0), 5 new-view (height 0).
public struct SignerGuard: Hashable, Sendable {
    public enum Phase: UInt8, Sendable, Hashable {
        case prePrepare = 0, prepare = 1, commit = 2, checkpoint = 3, viewChange = 4, newView = 5
    }

    public struct Key: Hashable, Sendable, Comparable {
        public let view: UInt64
        public let height: UInt64
        public let phase: Phase
        public init(view: UInt64, height: UInt64, phase: Phase) {
            self.view = view
            self.height = height
            self.phase = phase
        }
        public static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.view, lhs.height, lhs.phase.rawValue) < (rhs.view, rhs.height, rhs.phase.rawValue)
        }
    }

    public private(set) var signed: [Key: Hash] = [:]

    public init() {}

    /// True when signing `content` under `key` cannot conflict with anything signed before.
    public func allows(_ key: Key, content: Hash) -> Bool {
        signed[key].map { $0 == content } ?? true
    }

    mutating func record(_ key: Key, content: Hash) {
        signed[key] = content
    }

    /// Forgets what can never be signed again: views below `view` (the replica never
    /// signs in an old view) and heights at or below the stable checkpoint.
    mutating func prune(currentView view: UInt64, stableHeight: UInt64) {
        signed = signed.filter { key, _ in
            switch key.phase {
            case .checkpoint: return key.height > stableHeight
            case .viewChange, .newView: return key.view >= view
            case .prePrepare, .prepare, .commit: return key.view >= view && key.height > stableHeight
            }
        }
    }
}

/// Everything a replica must find after a restart to stay safe: its view (views
/// never go back), whether it was changing view and the VIEW-CHANGE it sent, the
/// stable checkpoint proof, its prepared certificates above it (a VIEW-CHANGE must
/// report them), the signer guard, and the blocks of its prepared certificates that it
/// holds (peers fetch them by hash when a NEW-VIEW re-proposes them).
///
/// Canonical bytes:
/// ```
/// tag "tally/consensus-durable/v1" | view: u64 | in_view_change: u8
/// | checkpoint_proof | count: u32 | prepared certificate… (increasing height)
/// | count: u32 | (view: u64 | height: u64 | phase: u8 | content_hash: 32)… (increasing key)
/// | has_view_change: u8 | view change? | count: u32 | block… (increasing hash)
/// | signing_mark?: (view: u64 | height: u64 | phase: u8), only when not zero
/// ```
/// (A state without a mark, as written before the mark existed, ends after the blocks.)
public struct DurableState: Hashable, Sendable, CanonicalCodable {
    public var view: UInt64
    public var inViewChange: Bool
    public var stableCheckpoint: CheckpointProof
    public var preparedCertificates: [PreparedCertificate]
    public var signerGuard: SignerGuard
    public var ownViewChange: ViewChange?
    /// Blocks of prepared certificates, by hash (a certificate for a block this replica
    /// had already executed may have none here: its block is in the block store).
    public var preparedBlocks: [Hash: Block]
    /// The signing reservation this replica worked under (`SigningMark`): the node
    /// compares it at start-up with the mark file kept outside the data directory.
    public var signingMark: SigningMark

    public init(
        view: UInt64, inViewChange: Bool, stableCheckpoint: CheckpointProof, preparedCertificates: [PreparedCertificate],
        signerGuard: SignerGuard, ownViewChange: ViewChange?, preparedBlocks: [Hash: Block] = [:],
        signingMark: SigningMark = .zero
    ) {
        self.view = view
        self.inViewChange = inViewChange
        self.stableCheckpoint = stableCheckpoint
        self.preparedCertificates = preparedCertificates
        self.signerGuard = signerGuard
        self.ownViewChange = ownViewChange
        self.preparedBlocks = preparedBlocks
        self.signingMark = signingMark
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encode(to: &encoder, blocks: .inline)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> DurableState {
        try decode(from: &decoder, blocks: .inline)
    }

    // MARK: Compact form

    /// The blocks `compactBytes` leaves out and its reader must be given back.
    public var referencedBlocks: [Hash: Block] { preparedBlocks }

    /// The stored form: as the canonical bytes, but the blocks are replaced by their
    /// hashes, so a persist rewrites a few kilobytes rather than every block in the log
    /// window. The blocks (`referencedBlocks`) are stored apart, once.
    /// ```
    /// tag "tally/consensus-durable/v2" | … as the canonical bytes … | count: u32 | block_hash: 32… (increasing)
    /// ```
    public var compactBytes: [UInt8] {
        var encoder = CanonicalEncoder()
        encode(to: &encoder, blocks: .byHash)
        return encoder.bytes
    }

    /// Reads `compactBytes`, taking each block from `block` (by hash); a block that is
    /// missing or has another hash is an error (the state is then unusable).
    public init(compactBytes: [UInt8], block: (Hash) -> Block?) throws(CanonicalDecodingError) {
        self = try withoutActuallyEscaping(block) { (lookup) throws(CanonicalDecodingError) -> DurableState in
            var decoder = CanonicalDecoder(compactBytes)
            let state = try Self.decode(from: &decoder, blocks: .byHash(lookup))
            try decoder.finish()
            return state
        }
    }

    /// Reads either stored form: compact (with `block`) or the full canonical bytes.
    public init(storedBytes: [UInt8], block: (Hash) -> Block?) throws(CanonicalDecodingError) {
        var probe = CanonicalDecoder(storedBytes)
        if (try? probe.tag(.consensusDurableStateCompact)) != nil {
            try self.init(compactBytes: storedBytes, block: block)
        } else {
            try self.init(canonicalBytes: storedBytes)
        }
    }

    private enum BlockForm {
        case inline
        case byHash((Hash) -> Block?)
    }

    private enum EncodedBlockForm { case inline, byHash }

    private func encode(to encoder: inout CanonicalEncoder, blocks form: EncodedBlockForm) {
        encoder.tag(form == .inline ? .consensusDurableState : .consensusDurableStateCompact)
        encoder.u64(view)
        encoder.bool(inViewChange)
        stableCheckpoint.encode(to: &encoder)
        encoder.count(preparedCertificates.count)
        for certificate in preparedCertificates { certificate.encode(to: &encoder) }
        let entries = signerGuard.signed.sorted { $0.key < $1.key }
        encoder.count(entries.count)
        for (key, content) in entries {
            encoder.u64(key.view)
            encoder.u64(key.height)
            encoder.u8(key.phase.rawValue)
            encoder.fixed(content.bytes)
        }
        encoder.bool(ownViewChange != nil)
        if let own = ownViewChange { own.encode(to: &encoder) }
        let hashes = preparedBlocks.keys.sorted()
        encoder.count(hashes.count)
        for hash in hashes {
            switch form {
            case .inline: preparedBlocks[hash]!.encode(to: &encoder)
            case .byHash: encoder.fixed(hash.bytes)
            }
        }
        // Written only once non-zero, so a state without one keeps its earlier bytes.
        if signingMark != .zero { signingMark.encode(to: &encoder) }
    }

    private static func decode(from decoder: inout CanonicalDecoder, blocks form: BlockForm) throws(CanonicalDecodingError) -> DurableState {
        switch form {
        case .inline: try decoder.tag(.consensusDurableState)
        case .byHash: try decoder.tag(.consensusDurableStateCompact)
        }
        let view = try decoder.u64("durable.view")
        let inViewChange = try decoder.bool("durable.in_view_change")
        let checkpoint = try CheckpointProof.decode(from: &decoder)
        let count = try decoder.count(max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 100, "durable.prepared")
        var certificates: [PreparedCertificate] = []
        for _ in 0..<count { certificates.append(try PreparedCertificate.decode(from: &decoder)) }
        let guardCount = try decoder.count(max: 1 << 20, minItemBytes: 49, "durable.signer_guard")
        var signerGuard = SignerGuard()
        var previous: SignerGuard.Key?
        for _ in 0..<guardCount {
            let keyView = try decoder.u64("durable.guard.view")
            let height = try decoder.u64("durable.guard.height")
            guard let phase = SignerGuard.Phase(rawValue: try decoder.u8("durable.guard.phase")) else {
                throw .invalid(field: "durable.guard.phase", reason: "unknown phase")
            }
            let key = SignerGuard.Key(view: keyView, height: height, phase: phase)
            if let previous, !(previous < key) {
                throw .invalid(field: "durable.signer_guard", reason: "keys not strictly increasing")
            }
            previous = key
            signerGuard.record(key, content: try decoder.hash("durable.guard.content"))
        }
        let ownViewChange = try decoder.bool("durable.has_view_change") ? try ViewChange.decode(from: &decoder) : nil
        let blockCount = try decoder.count(max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 32, "durable.blocks")
        var blocks: [Hash: Block] = [:]
        var previousHash: Hash?
        for _ in 0..<blockCount {
            let block: Block
            switch form {
            case .inline: block = try Block.decode(from: &decoder)
            case .byHash(let lookup):
                let hash = try decoder.hash("durable.block_hash")
                guard let found = lookup(hash), found.hash == hash else {
                    throw .invalid(field: "durable.blocks", reason: "block \(hash.hex) is missing or differs")
                }
                block = found
            }
            let hash = block.hash
            if let previousHash, !(previousHash < hash) {
                throw .invalid(field: "durable.blocks", reason: "blocks not in strictly increasing hash order")
            }
            previousHash = hash
            blocks[hash] = block
        }
        let hasMark = decoder.remaining > 0
        let signingMark = hasMark ? try SigningMark.decode(from: &decoder) : .zero
        // One byte form per state: a zero mark is never written.
        if hasMark && signingMark == .zero { throw .invalid(field: "durable.signing_mark", reason: "zero mark written") }
        return DurableState(
            view: view, inViewChange: inViewChange, stableCheckpoint: checkpoint, preparedCertificates: certificates,
            signerGuard: signerGuard, ownViewChange: ownViewChange, preparedBlocks: blocks, signingMark: signingMark)
    }
}
