import TallyCrypto
import TallyTypes

/// The highest signer-guard key a replica signed (PRE-PREPARE, PREPARE, COMMIT,
/// VIEW-CHANGE, NEW-VIEW; checkpoints are left out, they sign the committed chain,
/// which every honest replica agrees on), in the guard's order (view, height, phase).
///
/// The node keeps it twice: in the journal (`DurableState.signingMark`) and in a small
/// file outside the data directory, written durably before anything signed past it is
/// sent. Restoring an older copy of the data directory rolls the journal back but not
/// that file: at start-up a file mark above the journal's says the journal forgot
/// signatures, and the replica then signs nothing at or below the file's mark.
public struct SigningMark: Hashable, Sendable, Comparable, CanonicalCodable {
    public let view: UInt64
    public let height: UInt64
    public let phase: UInt8

    public static let zero = SigningMark(view: 0, height: 0, phase: 0)

    public init(view: UInt64, height: UInt64, phase: UInt8) {
        self.view = view
        self.height = height
        self.phase = phase
    }

    init(_ key: SignerGuard.Key) { self.init(view: key.view, height: key.height, phase: key.phase.rawValue) }

    public static func < (lhs: SigningMark, rhs: SigningMark) -> Bool {
        (lhs.view, lhs.height, lhs.phase) < (rhs.view, rhs.height, rhs.phase)
    }

    /// `view: u64 | height: u64 | phase: u8`
    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(view)
        encoder.u64(height)
        encoder.u8(phase)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> SigningMark {
        SigningMark(view: try decoder.u64("signing_mark.view"), height: try decoder.u64("signing_mark.height"),
                    phase: try decoder.u8("signing_mark.phase"))
    }
}

/// A conflicting pair of signed statements by one validator: two PRE-PREPAREs (of the
/// view's primary), PREPAREs or COMMITs for the same (view, height) with different
/// block hashes, or two CHECKPOINTs for one height with different contents. Both
/// signatures were checked; anyone can check them again from these fields.
public struct EquivocationEvidence: Hashable, Sendable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case prePrepare = "pre_prepare", prepare, commit, checkpoint
    }

    /// One of the two statements: the block hash it names (and, for a checkpoint, the
    /// state root) and its signature.
    public struct Statement: Hashable, Sendable {
        public let blockHash: Hash
        public let stateRoot: Hash?
        public let signature: Signature

        public init(blockHash: Hash, stateRoot: Hash?, signature: Signature) {
            self.blockHash = blockHash
            self.stateRoot = stateRoot
            self.signature = signature
        }
    }

    public let validator: ValidatorIndex
    public let kind: Kind
    /// The view both name (0 for checkpoints, which name none).
    public let view: UInt64
    public let height: UInt64
    public let first: Statement
    public let second: Statement
    /// The replica's tick when it was recorded.
    public let tick: UInt64

    public init(
        validator: ValidatorIndex, kind: Kind, view: UInt64, height: UInt64, first: Statement, second: Statement, tick: UInt64
    ) {
        self.validator = validator
        self.kind = kind
        self.view = view
        self.height = height
        self.first = first
        self.second = second
        self.tick = tick
    }
}

/// The evidence a replica keeps: the latest `maxPerValidator` conflicts of each
/// validator (a faulty one cannot grow it), and a count of every distinct conflict.
struct EvidenceStore {
    static let maxPerValidator = 16

    private(set) var byValidator: [ValidatorIndex: [EquivocationEvidence]] = [:]
    private(set) var counts: [ValidatorIndex: Int] = [:]

    /// Keeps `evidence` unless the same conflict (validator, kind, view, height) is
    /// kept already (retransmissions repeat it); returns whether it was new.
    mutating func record(_ evidence: EquivocationEvidence) -> Bool {
        var kept = byValidator[evidence.validator, default: []]
        let repeated = kept.contains {
            $0.kind == evidence.kind && $0.view == evidence.view && $0.height == evidence.height
        }
        guard !repeated else { return false }
        kept.append(evidence)
        if kept.count > Self.maxPerValidator { kept.removeFirst(kept.count - Self.maxPerValidator) }
        byValidator[evidence.validator] = kept
        counts[evidence.validator, default: 0] += 1
        return true
    }
}

/// After a restart the replica signs nothing (but checkpoints) until f+1 peers told it
/// their view and height (`status`), it reached the (f+1)-th highest of each, and no
/// synced commit certificate above its restored state carried its own signature
/// that its journal does not know (CometBFT's `double_sign_check_height`).
struct StartupQuarantine {
    /// The higher of the committed height and the stable checkpoint the replica
    /// restarted with, and its view: its journal knows what it signed up to there.
    let startHeight: UInt64
    let startView: UInt64
    /// The COMMITs the restored journal holds above `startHeight`, in `startView` or
    /// later: this copy's own. The signer guard cannot answer that during the
    /// quarantine, since it forgets the older views' keys when the view moves on
    /// (a restarted replica joins the view change it finds the others in).
    let journalCommits: [SignerGuard.Key: Hash]
    /// The latest status of each peer since the restart.
    var statuses: [ValidatorIndex: PeerStatus] = [:]
}

extension Replica {
    // MARK: Start-up safety

    /// True while the start-up quarantine holds (nothing but checkpoints is signed).
    public var isQuarantined: Bool { quarantine != nil }

    /// Every kept conflict, by validator then in the order recorded.
    public var equivocations: [EquivocationEvidence] {
        evidence.byValidator.keys.sorted().flatMap { evidence.byValidator[$0]! }
    }

    /// Distinct conflicts recorded per validator since start.
    public var equivocationCounts: [ValidatorIndex: Int] { evidence.counts }

    /// Sets up what the replica may sign after a (re)start: `fileMark` is the mark kept
    /// outside the data directory (nil if there is none).
    mutating func configureStartupSafety(journalMark: SigningMark, fileMark: SigningMark?, quarantined: Bool) {
        signingMark = max(journalMark, fileMark ?? .zero)
        if let fileMark, fileMark > journalMark { signingFloor = fileMark }
        // A lone validator has nobody to ask (and nobody to conflict with).
        if quarantined, configuration.validatorCount > 1 {
            let startHeight = max(committedHeight, stableCheckpoint.height)
            quarantine = StartupQuarantine(
                startHeight: startHeight, startView: view,
                journalCommits: signerGuard.signed.filter { key, _ in
                    key.phase == .commit && key.view >= view && key.height > startHeight
                })
            needsStatusAnnouncement = true
        }
    }

    /// Whether `key` may be signed now: never in the quarantine, never at or below the
    /// floor (a restored journal's forgotten signatures). Checkpoints always may.
    mutating func startupSafetyAllows(_ key: SignerGuard.Key) -> Bool {
        guard key.phase != .checkpoint else { return true }
        if quarantine != nil {
            drop(.quarantined)
            return false
        }
        if let floor = signingFloor, SigningMark(key) <= floor {
            drop(.belowSigningMark)
            return false
        }
        return true
    }

    /// Moves the mark up to `key` (persisted with the journal; the node writes its file
    /// before the step's sends).
    mutating func raiseSigningMark(_ key: SignerGuard.Key) {
        guard key.phase != .checkpoint, SigningMark(key) > signingMark else { return }
        signingMark = SigningMark(key)
        durableDirty = true
    }

    var ownStatus: PeerStatus {
        PeerStatus(view: view, inViewChange: inViewChange, committedHeight: committedHeight, wantsReply: quarantine != nil)
    }

    /// A peer's status: answered when it asks (once per peer and retransmit interval);
    /// a peer in an older view gets the NEW-VIEW that started ours from its primary;
    /// kept while this replica is in quarantine.
    mutating func onStatus(_ status: PeerStatus, from: ValidatorIndex) {
        if status.wantsReply || (status.view < view && !inViewChange && isPrimary) {
            guard statusAnswersThisInterval.insert(from).inserted else { return drop(.rateLimited) }
            if status.wantsReply { send(.status(ownStatus), to: from) }
            if status.view < view, !inViewChange, isPrimary, let newView = currentNewView { send(.newView(newView), to: from) }
        }
        guard quarantine != nil else { return }
        quarantine!.statuses[from] = status
        checkQuarantine()
    }

    /// Lifts the quarantine once f+1 peers answered and this replica reached the
    /// (f+1)-th highest height they claim (at least one honest peer is at least
    /// there), asking for the blocks meanwhile. Below the (f+1)-th highest view they
    /// claim it signs nothing more (it would sign in a view the network left, where a
    /// newer copy of it may have signed): it rejoins when it enters that view or a
    /// later one (a NEW-VIEW, which the view's primary sends it on its status, or the
    /// next view change).
    mutating func checkQuarantine() {
        guard let state = quarantine, state.statuses.count > configuration.maxFaulty else { return }
        let index = configuration.maxFaulty
        let supportedView = state.statuses.values.map(\.view).sorted(by: >)[index]
        let supportedHeight = state.statuses.values.map(\.committedHeight).sorted(by: >)[index]
        if supportedHeight > committedHeight {
            let peers = state.statuses.filter { $0.value.committedHeight >= supportedHeight }.map(\.key)
            return requestSync(to: supportedHeight, peers: peers)
        }
        guard sync == nil else { return }
        if view < supportedView {
            let floor = SigningMark(view: supportedView - 1, height: .max, phase: .max)
            if floor > (signingFloor ?? .zero) { signingFloor = floor }
        }
        quarantine = nil
        resumeSigning()
    }

    /// Signs what the quarantine held back in the current view: the own VIEW-CHANGE,
    /// the PREPAREs and COMMITs of accepted slots, then proposals.
    mutating func resumeSigning() {
        if inViewChange {
            if ownViewChange?.newView != view { sendOwnViewChange() }
            return
        }
        for height in slots.keys.sorted() where height > committedHeight {
            guard let proposal = slots[height]?.proposal, slots[height]!.ownPrepare == nil, !isPrimary else { continue }
            guard let vote = signVote(.prepare, height: height, blockHash: proposal.blockHash) else { break }
            slots[height]!.ownPrepare = vote
            slots[height]!.prepares[selfIndex] = vote
            broadcast(.prepare(vote))
            advance(.checkPrepared(height))
        }
        advance(.commitVote(committedHeight + 1), .propose)
    }

    /// In quarantine: a synced or announced commit certificate above the restored
    /// state that carries this replica's signature, for a COMMIT its journal does not
    /// hold, was signed by a newer copy of this validator (its data directory was
    /// restored from an older copy, or its key runs twice). Nothing in that view may be
    /// signed: the newer copy may have signed anything in it.
    mutating func checkOwnSignature(in certificate: CommitCertificate) {
        // Below the restored view or height the journal knew everything signed (a newer
        // copy signs only in views at or above it); at or above, the restored journal
        // held each COMMIT of this copy (`journalCommits`).
        guard let state = quarantine, certificate.height > state.startHeight, certificate.view >= state.startView,
              certificate.signatures.contains(where: { $0.validatorIndex == selfIndex })
        else { return }
        let key = SignerGuard.Key(view: certificate.view, height: certificate.height, phase: .commit)
        guard state.journalCommits[key] != certificate.blockHash else { return }
        let claimedView = state.statuses.values.map(\.view).max() ?? 0
        let floor = SigningMark(view: max(view, certificate.view, claimedView), height: .max, phase: .max)
        if floor > (signingFloor ?? .zero) { signingFloor = floor }
        ownSignaturesFromNewerCopy += 1
    }

    /// Keeps a conflict as evidence (both statements were checked), counted once.
    mutating func recordEquivocation(
        _ kind: EquivocationEvidence.Kind, by validator: ValidatorIndex, view: UInt64, height: UInt64,
        first: EquivocationEvidence.Statement, second: EquivocationEvidence.Statement
    ) {
        _ = evidence.record(EquivocationEvidence(
            validator: validator, kind: kind, view: view, height: height, first: first, second: second, tick: tickCount))
    }
}
