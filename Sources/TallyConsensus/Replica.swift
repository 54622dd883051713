import TallyCrypto
import TallyTypes

/// # TallyConsensus: a PBFT replica as a pure state machine
///
/// `Replica.step(_:)` takes one event (a message, a tick, transactions available, a
/// block executed) and returns the actions to carry out, in order. No I/O, no clock,
/// no threads, no randomness: time is ticks, signatures and blocks go through the
/// injected `ConsensusSigner`, `ConsensusVerifier` and `ConsensusApplication`.
///
/// ## Protocol (Castro & Liskov, OSDI '99 / TOCS 2002), sequence number = height
/// - n = 3f+1 validators, quorum 2f+1, primary of view v is v mod n.
/// - **Normal case.** The primary proposes block h (mempool transactions, bounded by
///   `maxBlockTransactions`) with a signed PRE-PREPARE, keeping at most
///   `maxBlocksInFlight` uncommitted heights in flight. A backup accepts the first
///   PRE-PREPARE for (v, h) (a second, different one is equivocation: dropped and
///   counted), checks the block against its parent (executed, or accepted in this
///   view) with the application, and broadcasts a signed PREPARE. Prepared = the
///   PRE-PREPARE plus 2f matching PREPAREs from other validators; the replica then
///   stores a *prepared certificate* and, once its parent is committed or it sent a
///   COMMIT for the parent in this view, broadcasts a signed COMMIT. 2f+1 matching
///   COMMITs make a `CommitCertificate`; blocks execute in height order.
///   PREPARE/COMMIT sign exactly `VoteTarget.signingBytes(chainID:)`.
/// - **Proposals.** A primary proposes when the mempool has transactions (at once on
///   `.transactionsAvailable`), and an empty block only if
///   `emptyBlockIntervalTicks` is set and that many ticks passed without a proposal.
/// - **Checkpoints.** After executing a multiple of K = `checkpointIntervalBlocks` the
///   replica signs CHECKPOINT(h, block hash, state root). 2f+1 matching make it
///   stable: everything at or below is garbage-collected; the log accepts heights in
///   (stable, stable + 2K] (low / high water marks).
/// - **View change.** A backup expecting progress (pending transactions or
///   uncommitted proposals) that sees no commit for the timeout — `viewChangeTimeoutTicks`
///   doubled per consecutive view change, capped at `maxViewChangeTimeoutTicks` —
///   moves to v+1 and broadcasts VIEW-CHANGE with its stable checkpoint proof and its
///   prepared certificates. It does the same when the primary holds transactions back
///   while it commits others, or proposes late (`Replica+TransactionTimer.swift`). It joins a higher view when f+1 validators asked for
///   one; it gives up on v+1 for v+2 only once 2f+1 VIEW-CHANGEs for v+1 exist and
///   still no NEW-VIEW came (so a lone, partitioned replica does not run ahead).
///   The new primary sends NEW-VIEW with 2f+1 VIEW-CHANGEs and PRE-PREPAREs for the
///   chain they imply: from the highest checkpoint, at each height the prepared
///   certificate of the highest view, as long as it links to the previous one.
///   Every replica recomputes that chain; a NEW-VIEW that differs, or carries an
///   invalid VIEW-CHANGE, is rejected and the replica moves to the next view.
///   (Why linking is safe: a COMMIT for h is only sent once the parent is committed
///   or COMMIT-ed in the same view, so every committed block's ancestors are
///   committed in PBFT's sense and win their heights.)
/// - **Catching up.** A replica that sees a stable checkpoint proof, f+1 checkpoints
///   or a commit quorum above its height asks a peer for certified blocks
///   (`syncRequest`), checks each certificate and block, and executes them.
/// - **Signer guard.** The replica never signs two different contents for the same
///   (view, height, phase); the guard is persisted.
///
/// ## Durability
/// `persist(DurableState)` comes first in a step's actions whenever the view, the
/// view-change state, the stable checkpoint, the prepared certificates or the
/// signer guard changed, i.e. before any vote, proposal, VIEW-CHANGE or NEW-VIEW
/// that depends on it is sent. After a crash the replica is rebuilt from the last
/// `DurableState` and the committed chain height/hash from the block store.
///
/// Bad input (bad signature, wrong view, outside the water marks, invalid block,
/// conflicting vote, forged certificate, inconsistent NEW-VIEW…) is dropped and
/// counted in `dropped` by reason; broken internal invariants are preconditions.
///
/// ## Files
/// This file holds the state, start-up, dispatch, signing, ticks and invariants; the
/// rest is split by concern: `Replica+NormalCase.swift`, `Replica+Checkpoints.swift`,
/// `Replica+ViewChange.swift`, `Replica+CatchUp.swift`, `Replica+TransactionTimer.swift`,
/// `Replica+Status.swift` and `SigningSafety.swift`; the certificate checks (which read
/// and change no replica state) are `CertificateChecks.swift`.
public struct Replica {
    public let configuration: ReplicaConfiguration
    let application: any ConsensusApplication
    let verifier: any ConsensusVerifier
    let signer: any ConsensusSigner
    /// `StandardDefences` in every shipped product (see `ReplicaDefences`).
    package var defences: any ReplicaDefences = StandardDefences() {
        didSet { checks = CertificateChecks(configuration: configuration, defences: defences, verifier: verifier) }
    }
    /// The certificate checks, with the configuration, these defences and the verifier.
    var checks: CertificateChecks

    public internal(set) var view: UInt64
    public internal(set) var inViewChange: Bool
    /// Highest height handed out as `.execute`.
    public internal(set) var committedHeight: UInt64
    /// Highest height reported back with `.blockExecuted`.
    public internal(set) var executedHeight: UInt64
    public internal(set) var stableCheckpoint: CheckpointProof
    public private(set) var dropped: [DropReason: Int] = [:]
    public internal(set) var viewChangesStarted = 0
    /// View changes this replica started because the primary held back or slowed
    /// transactions (`BackupSuspicion`), by reason.
    public private(set) var suspicions: [BackupSuspicion: Int] = [:]

    struct Slot {
        /// The accepted proposal and its block (nil only for a re-proposed block this
        /// replica had already executed: it votes by hash and never needs the body).
        var proposal: SignedProposal?
        var body: Block?
        /// A proposal waiting for its parent (or, from a NEW-VIEW, for its block).
        var candidate: SignedProposal?
        var candidateBody: Block?
        var prepares: [ValidatorIndex: Vote] = [:]
        var commits: [ValidatorIndex: Vote] = [:]
        var ownPrepare: Vote?
        var ownCommit: Vote?
        var prepared = false
        /// When this replica accepted the proposal (the slow-primary check times commits).
        var acceptedAtTick: UInt64?
    }

    struct SyncState {
        var target: UInt64
        var peers: [ValidatorIndex]
        var attempt = 0
        var ticksWaiting: UInt64 = 0
    }

    var committedHashes: [UInt64: Hash] = [:]
    var pendingStateRoots: [UInt64: Hash] = [:]
    var slots: [UInt64: Slot] = [:]
    var preparedCertificates: [UInt64: PreparedCertificate] = [:]
    /// Blocks of the prepared certificates (by hash), persisted with them: a NEW-VIEW
    /// carries only hashes, so the replicas that prepared a block serve it to those that lack it.
    var preparedBlocks: [Hash: Block] = [:]
    /// Blocks a NEW-VIEW re-proposed that this replica lacks: who should have each
    /// (the new primary and the validators whose VIEW-CHANGE certified it), and the
    /// next of them to ask.
    var missingBlocks: [Hash: (sources: [ValidatorIndex], attempt: Int)] = [:]
    /// Blocks sent to each peer in the current retransmit interval (rate limit).
    var blockAnswersThisInterval: [ValidatorIndex: Int] = [:]
    var signerGuard: SignerGuard
    var ownViewChange: ViewChange?
    /// The NEW-VIEW that started the current view (resent to replicas still asking for it).
    var currentNewView: NewView?
    /// The latest valid VIEW-CHANGE of each validator (one each: a flood replaces only its own).
    var viewChanges: [ValidatorIndex: ViewChange] = [:]
    var checkpointVotes: [UInt64: [ValidatorIndex: Checkpoint]] = [:]
    var ownCheckpoint: Checkpoint?
    /// Highest checkpoint height each validator claimed (signed), to notice being behind.
    var reportedHeights: [ValidatorIndex: UInt64] = [:]
    /// Signed COMMITs of views below ours for the next heights (each validator's
    /// latest per height; heights within `maxBlocksInFlight` above the committed
    /// one): a quorum of them for one view and block proves the block committed
    /// where this replica was not, e.g. while it moved alone to a higher view.
    var staleViewCommits: [UInt64: [ValidatorIndex: Vote]] = [:]
    var tickCount: UInt64 = 0
    /// When each peer was last sent the current NEW-VIEW (rate limit of the resend).
    var newViewResentAtTick: [ValidatorIndex: UInt64] = [:]
    /// Sync requests answered per peer in the current retransmit interval.
    var syncAnswersThisInterval: [ValidatorIndex: Int] = [:]
    /// The certificate of the highest committed block (nil at genesis), announced to
    /// peers while the chain is quiet so that one behind learns it without traffic.
    var tipCertificate: CommitCertificate?
    /// Peers whose committed-tip claim was checked in the current retransmit interval.
    var tipClaimsCheckedThisInterval: Set<ValidatorIndex> = []
    var viewTimerTicks: UInt64 = 0
    var transactionTimer = TransactionTimer()
    var ticksInViewChange: UInt64 = 0
    var ticksSinceProposal: UInt64 = 0
    var ticksSinceCommit: UInt64 = 0
    var viewChangeAttempts: UInt32 = 0
    var nextProposalHeight: UInt64
    var sync: SyncState?
    var needsStartupSync: Bool
    /// Start-up safety (SigningSafety.swift): the highest key signed, the floor a
    /// restored journal may not sign at or below, the quarantine after a restart.
    public internal(set) var signingMark: SigningMark = .zero
    var signingFloor: SigningMark?
    var quarantine: StartupQuarantine?
    var needsStatusAnnouncement = false
    /// Peers whose status was answered in the current retransmit interval.
    var statusAnswersThisInterval: Set<ValidatorIndex> = []
    /// Synced certificates that carried a signature of this validator its journal did not know.
    public internal(set) var ownSignaturesFromNewerCopy = 0
    var evidence = EvidenceStore()

    // Scratch output of the current step.
    var durableDirty = false
    var executeActions: [ConsensusAction] = []
    var sendActions: [ConsensusAction] = []

    /// Builds a replica from its last persisted state (nil on first start) and the
    /// committed chain in its block store: its height (0 when empty) and a lookup of
    /// block hashes by height (0 gives the genesis hash). The replica reads the
    /// hashes of the last `logWindow + maxBlocksInFlight` heights at most, so it can
    /// vote again for re-proposed blocks it already executed.
    ///
    /// `signingMark` is the mark kept outside the data directory (nil when there is
    /// none); `quarantined` starts the replica in the start-up quarantine (the node
    /// does on every restart).
    public init(
        configuration: ReplicaConfiguration, durableState: DurableState?, committedHeight: UInt64,
        blockHash: (UInt64) throws -> Hash, tipCertificate: CommitCertificate? = nil, application: any ConsensusApplication,
        verifier: any ConsensusVerifier, signer: any ConsensusSigner, signingMark fileMark: SigningMark? = nil,
        quarantined: Bool = false
    ) rethrows {
        precondition(tipCertificate.map { $0.height == committedHeight } ?? true, "tip certificate of another height")
        self.configuration = configuration
        self.application = application
        self.verifier = verifier
        self.signer = signer
        checks = CertificateChecks(configuration: configuration, defences: defences, verifier: verifier)
        let genesis = CheckpointProof.genesis(hash: configuration.genesisHash, stateRoot: configuration.genesisStateRoot)
        view = durableState?.view ?? 0
        inViewChange = durableState?.inViewChange ?? false
        stableCheckpoint = durableState?.stableCheckpoint ?? genesis
        signerGuard = durableState?.signerGuard ?? SignerGuard()
        ownViewChange = durableState?.ownViewChange
        for certificate in durableState?.preparedCertificates ?? [] where certificate.height > stableCheckpoint.height {
            preparedCertificates[certificate.height] = certificate
            if let block = durableState?.preparedBlocks[certificate.blockHash] { preparedBlocks[certificate.blockHash] = block }
        }
        self.committedHeight = committedHeight
        self.tipCertificate = tipCertificate
        executedHeight = committedHeight
        let recent = configuration.logWindow + configuration.parameters.maxBlocksInFlight
        let lowest = max(min(stableCheckpoint.height, committedHeight), committedHeight > recent ? committedHeight - recent : 0)
        for height in lowest...committedHeight { committedHashes[height] = try blockHash(height) }
        if committedHeight >= stableCheckpoint.height, let own = committedHashes[stableCheckpoint.height] {
            precondition(own == stableCheckpoint.blockHash, "block store and stable checkpoint disagree")
        }
        if inViewChange, let own = ownViewChange, own.newView == view { viewChanges[configuration.selfIndex] = own }
        nextProposalHeight = max(committedHeight, stableCheckpoint.height) + 1
        needsStartupSync = stableCheckpoint.height > committedHeight
        configureStartupSafety(journalMark: durableState?.signingMark ?? .zero, fileMark: fileMark, quarantined: quarantined)
    }

    // MARK: Public view of the state

    public var selfIndex: ValidatorIndex { configuration.selfIndex }
    public var isPrimary: Bool { configuration.primary(of: view) == selfIndex }
    public var quorum: Int { checks.quorum }

    /// What `persist` writes.
    public var durableState: DurableState {
        DurableState(
            view: view, inViewChange: inViewChange, stableCheckpoint: stableCheckpoint,
            preparedCertificates: preparedCertificates.keys.sorted().map { preparedCertificates[$0]! },
            signerGuard: signerGuard, ownViewChange: ownViewChange, preparedBlocks: preparedBlocks, signingMark: signingMark)
    }

    var timeoutTicks: UInt64 {
        let base = configuration.parameters.viewChangeTimeoutTicks
        let cap = configuration.parameters.maxViewChangeTimeoutTicks
        let shift = min(viewChangeAttempts, 20)
        return min(base << UInt64(shift), cap)
    }

    // MARK: Step

    public mutating func step(_ event: ConsensusEvent) -> [ConsensusAction] {
        durableDirty = false
        executeActions = []
        sendActions = []
        if needsStartupSync {
            needsStartupSync = false
            requestSync(to: stableCheckpoint.height, peers: stableCheckpoint.signatures.map(\.validator))
        }
        if needsStatusAnnouncement {
            needsStatusAnnouncement = false
            broadcast(.status(ownStatus))
        }
        switch event {
        case .message(let message, let from): handle(message, from: from)
        case .tick: onTick()
        case .transactionsAvailable: advance(.propose)
        case .blockExecuted(let height, let stateRoot): onBlockExecuted(height: height, stateRoot: stateRoot)
        }
        var actions: [ConsensusAction] = []
        actions.reserveCapacity(1 + executeActions.count + sendActions.count)
        if durableDirty { actions.append(.persist(durableState)) }
        actions += executeActions
        actions += sendActions
        return actions
    }

    mutating func drop(_ reason: DropReason) { dropped[reason, default: 0] += 1 }

    mutating func broadcast(_ message: ConsensusMessage) { sendActions.append(.broadcast(message)) }
    mutating func send(_ message: ConsensusMessage, to peer: ValidatorIndex) { sendActions.append(.send(message, to: peer)) }

    func verify(_ signature: Signature, by validator: ValidatorIndex, _ bytes: [UInt8]) -> Bool {
        checks.verify(signature, by: validator, bytes)
    }

    mutating func handle(_ message: ConsensusMessage, from: ValidatorIndex) {
        guard Int(from) < configuration.validatorCount, from != selfIndex else { return drop(.unknownValidator) }
        if let named = message.namedView, named > ConsensusLimits.maxView { return drop(.viewOutOfRange) }
        switch message {
        case .prePrepare(let prePrepare): onPrePrepare(prePrepare)
        case .prepare(let vote): onVote(vote, phase: .prepare)
        case .commit(let vote): onVote(vote, phase: .commit)
        case .checkpoint(let checkpoint): onCheckpoint(checkpoint)
        case .viewChange(let viewChange): onViewChange(viewChange, from: from)
        case .newView(let newView): onNewView(newView)
        case .syncRequest(let fromHeight, let toHeight): onSyncRequest(fromHeight: fromHeight, toHeight: toHeight, from: from)
        case .syncResponse(let blocks): onSyncResponse(blocks)
        case .committedTip(let certificate): onCommittedTip(certificate, from: from)
        case .blockRequest(let hashes): onBlockRequest(hashes, from: from)
        case .block(let block): onBlock(block)
        case .status(let status): onStatus(status, from: from)
        }
    }

    // MARK: Signing (through the guard)

    mutating func signGuarded(_ key: SignerGuard.Key, content: Hash, _ bytes: [UInt8]) -> Signature? {
        guard startupSafetyAllows(key) else { return nil }
        if defences.signerGuard && !signerGuard.allows(key, content: content) {
            drop(.signerGuardRefused)
            return nil
        }
        if signerGuard.signed[key] != content {
            signerGuard.record(key, content: content)
            durableDirty = true
        }
        raiseSigningMark(key)
        return signer.sign(bytes)
    }

    mutating func signVote(_ phase: VotePhase, height: UInt64, blockHash: Hash) -> Vote? {
        let target = VoteTarget(phase: phase, view: view, height: height, blockHash: blockHash)
        let key = SignerGuard.Key(view: view, height: height, phase: phase == .prepare ? .prepare : .commit)
        guard let signature = signGuarded(key, content: blockHash, target.signingBytes(chainID: configuration.chainID))
        else { return nil }
        return Vote(target: target, validator: selfIndex, signature: signature)
    }

    /// Signs `header` as proposed (or re-proposed) in the current view.
    mutating func signProposal(_ header: BlockHeader) -> SignedProposal? {
        let hash = header.hash
        let key = SignerGuard.Key(view: view, height: header.height, phase: .prePrepare)
        let bytes = PrePrepare.signingBytes(chainID: configuration.chainID, view: view, height: header.height, blockHash: hash)
        guard let signature = signGuarded(key, content: hash, bytes) else { return nil }
        return SignedProposal(view: view, header: header, signature: signature, blockHash: hash)
    }

    // MARK: Time

    var expectingProgress: Bool {
        configuration.emptyBlockIntervalTicks != nil || application.hasPendingTransactions
            || slots.contains { $0.key > committedHeight && ($0.value.proposal != nil || $0.value.candidate != nil) }
    }

    mutating func onTick() {
        tickCount += 1
        sampleProposableSequence()
        ticksSinceProposal += 1
        ticksSinceCommit += 1
        if inViewChange {
            ticksInViewChange += 1
            if defences.viewChangeTimer && ticksInViewChange >= timeoutTicks {
                ticksInViewChange = 0
                // Give up on this view only when a quorum wanted it (or a later one)
                // and its primary still sent no NEW-VIEW; a lone replica keeps asking.
                if viewChanges.values.filter({ $0.newView >= view }).count >= quorum {
                    viewChangeAttempts += 1
                    startViewChange(to: view + 1)
                }
            }
        } else {
            // Any commit, by the protocol or by catching up, resets the timer; a
            // sync that brings nothing does not hold it (the peers may be stuck too).
            if expectingProgress { viewTimerTicks += 1 } else { viewTimerTicks = 0 }
            if defences.viewChangeTimer && viewTimerTicks >= timeoutTicks {
                viewTimerTicks = 0
                viewChangeAttempts += 1
                startViewChange(to: view + 1)
            } else if let suspicion = suspectPrimary() {
                suspicions[suspicion, default: 0] += 1
                viewChangeAttempts += 1
                startViewChange(to: view + 1)
            } else {
                advance(.propose)
            }
        }
        let interval = configuration.retransmitIntervalTicks
        if tickCount % interval == 0 {
            syncAnswersThisInterval = [:]
            tipClaimsCheckedThisInterval = []
            blockAnswersThisInterval = [:]
            statusAnswersThisInterval = []
            if quarantine != nil {
                broadcast(.status(ownStatus))
                checkQuarantine()
            }
            requestMissingBlocks()
            // While blocks commit, peers are evidently hearing us: resend rarely.
            if inViewChange || ticksSinceCommit >= interval || tickCount % (4 * interval) == 0 { retransmit() }
            detectBehind()
        }
        if var state = sync {
            state.ticksWaiting += 1
            sync = state
            if state.ticksWaiting >= configuration.syncRetryTicks {
                // Every peer asked twice without progress: the claim was stale or
                // false; give up so the view timer runs again.
                if state.attempt + 1 >= 2 * state.peers.count {
                    sync = nil
                } else {
                    sync!.attempt += 1
                    sendSyncRequest()
                }
            }
        }
    }

    /// Resends this replica's latest messages, so a lost message delays but never
    /// stalls the protocol.
    mutating func retransmit() {
        if inViewChange {
            if let own = ownViewChange, own.newView == view { broadcast(.viewChange(own)) }
        } else {
            let from = committedHeight >= configuration.parameters.maxBlocksInFlight
                ? committedHeight - configuration.parameters.maxBlocksInFlight : 0
            for height in slots.keys.sorted() where height > from {
                let slot = slots[height]!
                if isPrimary, height > committedHeight, let proposal = slot.proposal, let body = slot.body {
                    broadcast(.prePrepare(PrePrepare(view: proposal.view, block: body, signature: proposal.signature, blockHash: proposal.blockHash)))
                }
                if let vote = slot.ownPrepare { broadcast(.prepare(vote)) }
                if let vote = slot.ownCommit { broadcast(.commit(vote)) }
            }
        }
        if let checkpoint = ownCheckpoint { broadcast(.checkpoint(checkpoint)) }
        if defences.announceCommittedTip, let tip = tipCertificate, ticksSinceCommit >= configuration.retransmitIntervalTicks {
            broadcast(.committedTip(tip))
        }
    }

    /// Timers and catch-up state, for simulator traces.
    package var debugSummary: String {
        let slotText = slots.keys.sorted().map { height -> String in
            let slot = slots[height]!
            return "\(height):\(slot.proposal != nil ? "pp" : slot.candidate != nil ? "cand" : "-")/p\(slot.prepares.count)/c\(slot.commits.count)\(slot.prepared ? "P" : "")"
        }.joined(separator: " ")
        return "timer \(viewTimerTicks)/\(timeoutTicks) vc \(ticksInViewChange) sync \(sync.map { "\($0.target)@\($0.attempt)" } ?? "-") next \(nextProposalHeight) delays \(transactionTimer.proposalDelays) commits \(transactionTimer.commitTimes) [\(slotText)]"
    }

    // MARK: Invariants

    /// Checks the replica's internal consistency (tests run it after every step).
    public func invariants() {
        precondition(executedHeight <= committedHeight, "executed past committed")
        precondition(stableCheckpoint.height % configuration.checkpointInterval == 0, "stable checkpoint off the interval")
        precondition(committedHashes[committedHeight] != nil, "lost the committed tip's hash")
        for (height, slot) in slots {
            precondition(height > stableCheckpoint.height && height <= highWaterMark, "slot outside the water marks")
            if let proposal = slot.proposal {
                precondition(proposal.height == height && proposal.view == view, "slot holds a foreign pre-prepare")
                precondition(slot.body.map { $0.hash == proposal.blockHash } ?? true, "slot holds another block")
            }
            precondition(slot.candidateBody.map { $0.hash == slot.candidate?.blockHash } ?? true, "candidate holds another block")
            precondition(!slot.prepared || slot.proposal != nil, "prepared without a pre-prepare")
            if slot.ownCommit != nil { precondition(slot.prepared, "committed a vote without being prepared") }
            if defences.areAllOn {
                for vote in slot.prepares.values { precondition(vote.target.view == view && vote.target.height == height) }
                for vote in slot.commits.values { precondition(vote.target.view == view && vote.target.height == height) }
            }
        }
        for (height, certificate) in preparedCertificates {
            precondition(height > stableCheckpoint.height && certificate.height == height && certificate.view <= view)
        }
        precondition(preparedBlocks.count <= preparedCertificates.count, "prepared blocks without certificates")
        for key in signerGuard.signed.keys { precondition(key.view <= view || key.phase == .checkpoint, "signed in a future view") }
        if inViewChange, let own = ownViewChange { precondition(own.newView <= view, "view change ahead of the view") }
        precondition(viewChanges.count <= configuration.validatorCount, "view-change store unbounded")
        precondition(checkpointVotes.keys.allSatisfy { $0 > stableCheckpoint.height }, "checkpoint votes below stable")
        precondition(UInt64(transactionTimer.sequenceTicks.count) <= sequenceWindowTicks + 2, "sequence samples unbounded")
        precondition(transactionTimer.proposalDelays.count <= ConsensusLimits.slowPrimarySamples
            && transactionTimer.commitTimes.count <= ConsensusLimits.slowPrimarySamples, "timing samples unbounded")
    }
}

extension ConsensusMessage {
    /// The view a message names, checked against `ConsensusLimits.maxView` before any
    /// arithmetic (nil for messages that name none; views inside a VIEW-CHANGE or a
    /// PRE-PREPARE's header are checked to be below the view named here).
    var namedView: UInt64? {
        switch self {
        case .prePrepare(let prePrepare): return prePrepare.view
        case .prepare(let vote), .commit(let vote): return vote.target.view
        case .viewChange(let viewChange): return viewChange.newView
        case .newView(let newView): return newView.view
        case .status(let status): return status.view
        case .checkpoint, .syncRequest, .syncResponse, .committedTip, .blockRequest, .block: return nil
        }
    }
}
