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
/// report them), and the signer guard.
///
/// Canonical bytes:
/// ```
/// tag "tally/consensus-durable/v1" | view: u64 | in_view_change: u8
/// | checkpoint_proof | count: u32 | prepared certificate… (increasing height)
/// | count: u32 | (view: u64 | height: u64 | phase: u8 | content_hash: 32)… (increasing key)
/// | has_view_change: u8 | view change?
/// ```
public struct DurableState: Hashable, Sendable, CanonicalCodable {
    public var view: UInt64
    public var inViewChange: Bool
    public var stableCheckpoint: CheckpointProof
    public var preparedCertificates: [PreparedCertificate]
    public var signerGuard: SignerGuard
    public var ownViewChange: ViewChange?

    public init(
        view: UInt64, inViewChange: Bool, stableCheckpoint: CheckpointProof, preparedCertificates: [PreparedCertificate],
        signerGuard: SignerGuard, ownViewChange: ViewChange?
    ) {
        self.view = view
        self.inViewChange = inViewChange
        self.stableCheckpoint = stableCheckpoint
        self.preparedCertificates = preparedCertificates
        self.signerGuard = signerGuard
        self.ownViewChange = ownViewChange
    }

    public func encode(to encoder: inout CanonicalEncoder) {
        encode(to: &encoder, blocks: .inline)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> DurableState {
        try decode(from: &decoder, blocks: .inline)
    }

    // MARK: Compact form

    /// Every block a prepared certificate holds (its own and its VIEW-CHANGE's), by hash:
    /// what `compactBytes` leaves out and its reader must be given back.
    public var referencedBlocks: [Hash: Block] {
        var blocks: [Hash: Block] = [:]
        for certificate in preparedCertificates + (ownViewChange?.prepared ?? []) {
            blocks[certificate.blockHash] = certificate.prePrepare.block
        }
        return blocks
    }

    /// The stored form: as the canonical bytes, but each prepared certificate's block
    /// is replaced by its hash, so a persist rewrites a few kilobytes rather than every
    /// block in the log window. The blocks (`referencedBlocks`) are stored apart, once.
    /// ```
    /// tag "tally/consensus-durable/v2" | view: u64 | in_view_change: u8
    /// | checkpoint_proof | count: u32 | compact certificate… (increasing height)
    /// | count: u32 | (view: u64 | height: u64 | phase: u8 | content_hash: 32)… (increasing key)
    /// | has_view_change: u8
    /// | (new_view: u64 | validator: u32 | checkpoint_proof | count: u32 | compact certificate… | signature: 64)?
    /// ```
    /// compact certificate = `view: u64 | block_hash: 32 | pre_prepare_signature: 64 | count: u32 | prepare vote…`
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
        Self.encode(preparedCertificates, to: &encoder, form)
        let entries = signerGuard.signed.sorted { $0.key < $1.key }
        encoder.count(entries.count)
        for (key, content) in entries {
            encoder.u64(key.view)
            encoder.u64(key.height)
            encoder.u8(key.phase.rawValue)
            encoder.fixed(content.bytes)
        }
        encoder.bool(ownViewChange != nil)
        if let own = ownViewChange {
            switch form {
            case .inline: own.encode(to: &encoder)
            case .byHash:
                encoder.u64(own.newView)
                encoder.u32(own.validator)
                own.checkpoint.encode(to: &encoder)
                Self.encode(own.prepared, to: &encoder, form)
                encoder.fixed(own.signature.bytes)
            }
        }
    }

    private static func encode(_ certificates: [PreparedCertificate], to encoder: inout CanonicalEncoder, _ form: EncodedBlockForm) {
        encoder.count(certificates.count)
        for certificate in certificates {
            switch form {
            case .inline: certificate.encode(to: &encoder)
            case .byHash:
                encoder.u64(certificate.prePrepare.view)
                encoder.fixed(certificate.blockHash.bytes)
                encoder.fixed(certificate.prePrepare.signature.bytes)
                encoder.count(certificate.prepares.count)
                for vote in certificate.prepares { vote.encode(to: &encoder) }
            }
        }
    }

    private static func decodeCertificates(
        from decoder: inout CanonicalDecoder, _ form: BlockForm, _ field: String
    ) throws(CanonicalDecodingError) -> [PreparedCertificate] {
        let count = try decoder.count(max: ConsensusLimits.maxPreparedCertificates, minItemBytes: 100, field)
        var certificates: [PreparedCertificate] = []
        for _ in 0..<count {
            switch form {
            case .inline: certificates.append(try PreparedCertificate.decode(from: &decoder))
            case .byHash(let lookup):
                let view = try decoder.u64("durable.prepared.view")
                let hash = try decoder.hash("durable.prepared.block_hash")
                let signature = try decoder.signature("durable.prepared.signature")
                let voteCount = try decoder.count(max: Limits.maxValidators, minItemBytes: 121, "durable.prepared.prepares")
                var votes: [Vote] = []
                for _ in 0..<voteCount { votes.append(try Vote.decode(from: &decoder)) }
                guard let block = lookup(hash), block.hash == hash else {
                    throw .invalid(field: "durable.prepared.block", reason: "block \(hash.hex) is missing or differs")
                }
                certificates.append(PreparedCertificate(prePrepare: PrePrepare(view: view, block: block, signature: signature), prepares: votes))
            }
        }
        return certificates
    }

    private static func decode(from decoder: inout CanonicalDecoder, blocks form: BlockForm) throws(CanonicalDecodingError) -> DurableState {
        switch form {
        case .inline: try decoder.tag(.consensusDurableState)
        case .byHash: try decoder.tag(.consensusDurableStateCompact)
        }
        let view = try decoder.u64("durable.view")
        let inViewChange = try decoder.bool("durable.in_view_change")
        let checkpoint = try CheckpointProof.decode(from: &decoder)
        let certificates = try decodeCertificates(from: &decoder, form, "durable.prepared")
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
        var ownViewChange: ViewChange?
        if try decoder.bool("durable.has_view_change") {
            switch form {
            case .inline: ownViewChange = try ViewChange.decode(from: &decoder)
            case .byHash:
                let newView = try decoder.u64("view_change.new_view")
                let validator = try decoder.u32("view_change.validator")
                let ownCheckpoint = try CheckpointProof.decode(from: &decoder)
                let prepared = try decodeCertificates(from: &decoder, form, "view_change.prepared")
                ownViewChange = ViewChange(
                    newView: newView, validator: validator, checkpoint: ownCheckpoint, prepared: prepared,
                    signature: try decoder.signature("view_change.signature"))
            }
        }
        return DurableState(
            view: view, inViewChange: inViewChange, stableCheckpoint: checkpoint, preparedCertificates: certificates,
            signerGuard: signerGuard, ownViewChange: ownViewChange)
    }
}
