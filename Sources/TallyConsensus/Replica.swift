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
public struct Replica {
    public let configuration: ReplicaConfiguration
    let application: any ConsensusApplication
    let verifier: any ConsensusVerifier
    let signer: any ConsensusSigner
    /// `StandardDefences` in every shipped product (see `ReplicaDefences`).
    package var defences: any ReplicaDefences = StandardDefences()

    public private(set) var view: UInt64
    public private(set) var inViewChange: Bool
    /// Highest height handed out as `.execute`.
    public private(set) var committedHeight: UInt64
    /// Highest height reported back with `.blockExecuted`.
    public private(set) var executedHeight: UInt64
    public private(set) var stableCheckpoint: CheckpointProof
    public private(set) var dropped: [DropReason: Int] = [:]
    public private(set) var viewChangesStarted = 0
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
    public var quorum: Int { defences.quorumOverride ?? configuration.quorum }

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
        case .transactionsAvailable: tryPropose()
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
        guard Int(validator) < configuration.validatorCount else { return false }
        return !defences.verifySignatures || verifier.isValid(signature, by: validator, for: bytes)
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

    // MARK: Normal case

    /// The hash of the block at `height` this replica builds on: committed, or
    /// accepted in the current view.
    func knownHash(at height: UInt64) -> Hash? {
        if height <= committedHeight { return committedHashes[height] }
        return slots[height]?.proposal?.blockHash
    }

    var highWaterMark: UInt64 { stableCheckpoint.height + configuration.logWindow }

    mutating func tryPropose() {
        guard !inViewChange, isPrimary else { return }
        nextProposalHeight = max(nextProposalHeight, committedHeight + 1, stableCheckpoint.height + 1)
        while nextProposalHeight <= highWaterMark,
              nextProposalHeight <= committedHeight + configuration.parameters.maxBlocksInFlight {
            let height = nextProposalHeight
            if slots[height]?.proposal != nil {
                nextProposalHeight += 1
                continue
            }
            guard let parent = knownHash(at: height - 1) else { return }
            let allowEmpty = configuration.emptyBlockIntervalTicks.map { ticksSinceProposal >= $0 } ?? false
            guard allowEmpty || application.hasPendingTransactions else { return }
            guard let block = application.propose(
                height: height, view: view, proposer: selfIndex, parentHash: parent,
                maxTransactions: Int(configuration.parameters.maxBlockTransactions), allowEmpty: allowEmpty)
            else { return }
            precondition(block.height == height && block.header.previousHash == parent, "application built a wrong block")
            guard let proposal = signProposal(block.header) else { return }
            slots[height, default: Slot()].proposal = proposal
            slots[height]!.body = block
            nextProposalHeight = height + 1
            ticksSinceProposal = 0
            broadcast(.prePrepare(PrePrepare(view: view, block: block, signature: proposal.signature, blockHash: proposal.blockHash)))
            checkPrepared(height)
        }
    }

    mutating func onPrePrepare(_ prePrepare: PrePrepare) {
        let primary = configuration.primary(of: prePrepare.view)
        guard verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        guard checkView(prePrepare.view) else { return }
        let height = prePrepare.height
        guard checkWaterMarks(height) else { return }
        let header = prePrepare.block.header
        // A block re-proposed by a NEW-VIEW (and retransmitted) keeps its original
        // header, so its view may be older; its proposer must match that view.
        guard header.view <= prePrepare.view, header.proposer == configuration.primary(of: header.view),
              header.transactionCount <= configuration.parameters.maxBlockTransactions
        else { return drop(.malformedBlock) }
        var slot = slots[height, default: Slot()]
        if let existing = slot.proposal ?? slot.candidate {
            guard existing.blockHash != prePrepare.blockHash else {
                // The NEW-VIEW's proposal arrived first, without its block: this is it.
                if slot.proposal == nil, slot.candidateBody == nil { return receivedBody(prePrepare.block, hash: prePrepare.blockHash) }
                return drop(.duplicate)
            }
            drop(.equivocation)
            recordEquivocation(
                .prePrepare, by: primary, view: prePrepare.view, height: height,
                first: .init(blockHash: existing.blockHash, stateRoot: nil, signature: existing.signature),
                second: .init(blockHash: prePrepare.blockHash, stateRoot: nil, signature: prePrepare.signature))
            guard !defences.rejectEquivocation else { return }
            slot = Slot(prepares: slot.prepares, commits: slot.commits)
        }
        slot.candidate = prePrepare.proposal
        slot.candidateBody = prePrepare.block
        slots[height] = slot
        tryAccept(height)
    }

    /// True when `messageView` is the current, active view; counts the drop otherwise.
    mutating func checkView(_ messageView: UInt64) -> Bool {
        if messageView < view && defences.dropStaleViews { drop(.staleView); return false }
        if messageView > view { drop(.futureView); return false }
        if inViewChange { drop(.inViewChange); return false }
        return true
    }

    mutating func checkWaterMarks(_ height: UInt64) -> Bool {
        if height <= stableCheckpoint.height { drop(.belowLowWaterMark); return false }
        if height > highWaterMark { drop(.aboveHighWaterMark); return false }
        return true
    }

    /// Validates and accepts the candidate PRE-PREPARE at `height` once its parent is
    /// known, then votes; continues with the next height (it may wait on this one).
    mutating func tryAccept(_ height: UInt64) {
        var height = height
        while let slot = slots[height], let candidate = slot.candidate, slot.proposal == nil {
            var accepted = slot
            accepted.candidate = nil
            accepted.candidateBody = nil
            if height <= committedHeight {
                // Already executed here: the hash identifies the block and its chain.
                guard let known = committedHashes[height] else { return }
                guard known == candidate.blockHash else {
                    slots[height] = accepted
                    return drop(.wrongParent)
                }
                missingBlocks[candidate.blockHash] = nil
            } else {
                guard let parent = knownHash(at: height - 1) else { return }
                guard candidate.header.previousHash == parent else {
                    slots[height] = accepted
                    return drop(.wrongParent)
                }
                // A NEW-VIEW names the block by hash; it is fetched (`missingBlocks`).
                guard let body = slot.candidateBody else { return }
                if case .failure = application.validate(
                body, parentHash: parent, maxTransactions: Int(configuration.parameters.maxBlockTransactions),
                    origin: .prePrepare(view: candidate.view))
                {
                    slots[height] = accepted
                    return drop(.invalidBlock)
                }
                accepted.body = body
            }
            accepted.proposal = candidate
            accepted.acceptedAtTick = tickCount
            slots[height] = accepted
            if configuration.primary(of: view) != selfIndex,
               let vote = signVote(.prepare, height: height, blockHash: candidate.blockHash)
            {
                slots[height]!.ownPrepare = vote
                slots[height]!.prepares[selfIndex] = vote
                broadcast(.prepare(vote))
            }
            checkPrepared(height)
            tryExecute()
            height += 1
        }
    }

    mutating func onVote(_ vote: Vote, phase: VotePhase) {
        guard vote.target.phase == phase, Int(vote.validator) < configuration.validatorCount else {
            return drop(.unknownValidator)
        }
        guard verify(vote.signature, by: vote.validator, vote.target.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        // A signed COMMIT for h, in any view, says its signer has every block below h:
        // a replica that restarts empty on an idle chain learns from the votes peers
        // retransmit that it is behind, even below the first checkpoint.
        if phase == .commit, vote.target.height > 1 {
            reportedHeights[vote.validator] = max(reportedHeights[vote.validator] ?? 0, vote.target.height - 1)
        }
        if phase == .commit, vote.target.view < view { keepStaleViewCommit(vote) }
        guard checkView(vote.target.view) else { return }
        let height = vote.target.height
        guard checkWaterMarks(height) else { return }
        var slot = slots[height, default: Slot()]
        let existing = phase == .prepare ? slot.prepares[vote.validator] : slot.commits[vote.validator]
        if let existing {
            guard existing.target != vote.target else { return drop(.duplicate) }
            recordEquivocation(
                phase == .prepare ? .prepare : .commit, by: vote.validator, view: vote.target.view, height: height,
                first: .init(blockHash: existing.target.blockHash, stateRoot: nil, signature: existing.signature),
                second: .init(blockHash: vote.target.blockHash, stateRoot: nil, signature: vote.signature))
            return drop(.conflictingVote)
        }
        if phase == .prepare { slot.prepares[vote.validator] = vote } else { slot.commits[vote.validator] = vote }
        slots[height] = slot
        if phase == .prepare { checkPrepared(height) } else { tryExecute() }
    }

    mutating func keepStaleViewCommit(_ vote: Vote) {
        let height = vote.target.height
        guard height > committedHeight, height <= committedHeight + configuration.parameters.maxBlocksInFlight else { return }
        if let kept = staleViewCommits[height]?[vote.validator], kept.target.view >= vote.target.view { return }
        staleViewCommits[height, default: [:]][vote.validator] = vote
    }

    mutating func checkPrepared(_ height: UInt64) {
        guard let slot = slots[height], let prePrepare = slot.proposal, !slot.prepared else { return }
        let primary = configuration.primary(of: view)
        let matching = slot.prepares.values
            .filter { $0.target.blockHash == prePrepare.blockHash && $0.validator != primary }
            .sorted { $0.validator < $1.validator }
        guard matching.count >= quorum - 1 else { return }
        slots[height]!.prepared = true
        if (preparedCertificates[height]?.view ?? 0) <= view {
            if let replaced = preparedCertificates[height] { preparedBlocks[replaced.blockHash] = nil }
            preparedCertificates[height] = PreparedCertificate(proposal: prePrepare, prepares: matching)
            if let body = slot.body { preparedBlocks[prePrepare.blockHash] = body }
            durableDirty = true
        }
        tryCommitVote(height)
    }

    /// COMMIT for `height` once prepared and the parent is committed or COMMIT-ed in
    /// this view (what makes NEW-VIEW's chain rule safe).
    mutating func tryCommitVote(_ height: UInt64) {
        var height = height
        while let slot = slots[height], slot.prepared, slot.ownCommit == nil, let prePrepare = slot.proposal {
            guard height - 1 <= committedHeight || slots[height - 1]?.ownCommit != nil else { return }
            guard let vote = signVote(.commit, height: height, blockHash: prePrepare.blockHash) else { return }
            slots[height]!.ownCommit = vote
            slots[height]!.commits[selfIndex] = vote
            broadcast(.commit(vote))
            tryExecute()
            height += 1
        }
    }

    mutating func tryExecute() {
        while let slot = slots[committedHeight + 1], let prePrepare = slot.proposal {
            // The gate is the parent, not only the height: a slot accepted on a block
            // that lost its height (to a sync) must never execute on the one that won.
            guard prePrepare.header.previousHash == committedHashes[committedHeight] else {
                dropSlotsOffTheCommittedChain()
                return drop(.wrongParent)
            }
            let signers = slot.commits.values
                .filter { $0.target.blockHash == prePrepare.blockHash }
                .sorted { $0.validator < $1.validator }
            guard signers.count >= quorum else { return }
            let certificate = CommitCertificate(
                view: signers[0].target.view, height: prePrepare.height, blockHash: prePrepare.blockHash,
                signatures: signers.map { CommitCertificate.Entry(validatorIndex: $0.validator, signature: $0.signature) })
            guard let body = slot.body else { preconditionFailure("accepted above the committed height without its block") }
            commit(CertifiedBlock(block: body, certificate: certificate), hash: prePrepare.blockHash)
        }
    }

    mutating func commit(_ certified: CertifiedBlock, hash: Hash) {
        let height = certified.block.height
        precondition(height == committedHeight + 1, "blocks commit in height order")
        committedHeight = height
        committedHashes[height] = hash
        tipCertificate = certified.certificate
        pendingStateRoots[height] = certified.block.header.stateRoot
        if let accepted = slots[height]?.proposal, accepted.blockHash != hash { dropSlotsOffTheCommittedChain() }
        executeActions.append(.execute(certified))
        noteCommitForTransactionTimer(certified.block, acceptedAtTick: slots[height]?.acceptedAtTick)
        viewTimerTicks = 0
        ticksSinceCommit = 0
        if !inViewChange { viewChangeAttempts = 0 }
        tryCommitVote(height + 1)
        tryAccept(height + 1)
        tryPropose()
    }

    /// Clears the slots that no longer build on the committed chain (a sync committed
    /// another block where this replica had accepted one): from the first accepted
    /// block that does not link, every slot above the committed height. Their votes
    /// are for blocks that can no longer commit here.
    mutating func dropSlotsOffTheCommittedChain() {
        var parent = committedHashes[committedHeight]
        if let accepted = slots[committedHeight]?.proposal, accepted.blockHash != parent { slots[committedHeight] = nil }
        var height = committedHeight + 1
        while let accepted = slots[height]?.proposal, accepted.header.previousHash == parent {
            parent = accepted.blockHash
            height += 1
        }
        for stale in slots.keys where stale >= height && slots[stale]?.proposal != nil { slots[stale] = nil }
    }

    // MARK: Checkpoints

    mutating func onBlockExecuted(height: UInt64, stateRoot: Hash) {
        precondition(height == executedHeight + 1 && height <= committedHeight, "blocks execute in order, once")
        if let expected = pendingStateRoots.removeValue(forKey: height) {
            precondition(expected == stateRoot, "executed state root differs from the committed header's")
        }
        executedHeight = height
        sampleProposalDelay(height: height)
        guard height % configuration.checkpointInterval == 0, height > stableCheckpoint.height,
              let blockHash = committedHashes[height]
        else { return }
        let bytes = Checkpoint.signingBytes(chainID: configuration.chainID, height: height, blockHash: blockHash, stateRoot: stateRoot)
        let key = SignerGuard.Key(view: 0, height: height, phase: .checkpoint)
        guard let signature = signGuarded(key, content: SHA256.hash(bytes), bytes) else { return }
        let checkpoint = Checkpoint(height: height, blockHash: blockHash, stateRoot: stateRoot, validator: selfIndex, signature: signature)
        ownCheckpoint = checkpoint
        checkpointVotes[height, default: [:]][selfIndex] = checkpoint
        broadcast(.checkpoint(checkpoint))
        checkStable(height)
    }

    /// Checkpoints further ahead than this are only remembered as a height claim.
    var checkpointLookahead: UInt64 { 2 * configuration.logWindow }

    mutating func onCheckpoint(_ checkpoint: Checkpoint) {
        guard Int(checkpoint.validator) < configuration.validatorCount else { return drop(.unknownValidator) }
        guard verify(checkpoint.signature, by: checkpoint.validator, checkpoint.signingBytes(chainID: configuration.chainID))
        else { return drop(.invalidSignature) }
        guard checkpoint.height > 0, checkpoint.height % configuration.checkpointInterval == 0 else {
            return drop(.invalidCheckpoint)
        }
        reportedHeights[checkpoint.validator] = max(reportedHeights[checkpoint.validator] ?? 0, checkpoint.height)
        guard checkpoint.height > stableCheckpoint.height else { return drop(.belowLowWaterMark) }
        guard checkpoint.height <= stableCheckpoint.height + checkpointLookahead else { return }
        if let existing = checkpointVotes[checkpoint.height]?[checkpoint.validator] {
            guard existing != checkpoint else { return drop(.duplicate) }
            if existing.blockHash != checkpoint.blockHash || existing.stateRoot != checkpoint.stateRoot {
                recordEquivocation(
                    .checkpoint, by: checkpoint.validator, view: 0, height: checkpoint.height,
                    first: .init(blockHash: existing.blockHash, stateRoot: existing.stateRoot, signature: existing.signature),
                    second: .init(blockHash: checkpoint.blockHash, stateRoot: checkpoint.stateRoot, signature: checkpoint.signature))
            }
            return drop(.conflictingVote)
        }
        checkpointVotes[checkpoint.height, default: [:]][checkpoint.validator] = checkpoint
        checkStable(checkpoint.height)
    }

    mutating func checkStable(_ height: UInt64) {
        guard let votes = checkpointVotes[height] else { return }
        var groups: [[Hash]: [Checkpoint]] = [:]
        for vote in votes.values { groups[[vote.blockHash, vote.stateRoot], default: []].append(vote) }
        guard let group = groups.values.first(where: { $0.count >= quorum }) else { return }
        let sorted = group.sorted { $0.validator < $1.validator }
        let proof = CheckpointProof(
            height: height, blockHash: sorted[0].blockHash, stateRoot: sorted[0].stateRoot,
            signatures: sorted.map { CheckpointProof.Entry(validator: $0.validator, signature: $0.signature) })
        adoptStable(proof)
    }

    /// Makes a verified checkpoint proof stable: collects garbage below it and, when
    /// this replica is behind it, fetches the blocks.
    mutating func adoptStable(_ proof: CheckpointProof) {
        guard proof.height > stableCheckpoint.height else { return }
        if proof.height <= committedHeight, let own = committedHashes[proof.height], own != proof.blockHash {
            return drop(.invalidCheckpoint)
        }
        stableCheckpoint = proof
        durableDirty = true
        let height = proof.height
        slots = slots.filter { $0.key > height }
        preparedCertificates = preparedCertificates.filter { $0.key > height }
        let kept = Set(preparedCertificates.values.map(\.blockHash))
        preparedBlocks = preparedBlocks.filter { kept.contains($0.key) }
        checkpointVotes = checkpointVotes.filter { $0.key > height }
        let keepFrom = min(height, committedHeight)
        committedHashes = committedHashes.filter { $0.key >= keepFrom }
        if committedHeight >= height { committedHashes[height] = proof.blockHash }
        signerGuard.prune(currentView: view, stableHeight: height)
        if committedHeight < height {
            requestSync(to: height, peers: proof.signatures.map(\.validator))
        }
        tryPropose()
    }

    // MARK: View change

    mutating func startViewChange(to target: UInt64) {
        precondition(target > view, "views only move forward")
        view = target
        inViewChange = true
        viewChangesStarted += 1
        ticksInViewChange = 0
        slots = [:]
        missingBlocks = [:]
        currentNewView = nil
        durableDirty = true
        signerGuard.prune(currentView: view, stableHeight: stableCheckpoint.height)
        sendOwnViewChange()
    }

    /// Signs and broadcasts this replica's VIEW-CHANGE for the view it is changing to.
    mutating func sendOwnViewChange() {
        let target = view
        let prepared = preparedCertificates.keys.sorted().map { preparedCertificates[$0]! }
        let bodyHash = ViewChange.bodyHash(checkpoint: stableCheckpoint, prepared: prepared)
        let key = SignerGuard.Key(view: target, height: 0, phase: .viewChange)
        let bytes = ViewChange.signingBytes(chainID: configuration.chainID, newView: target, validator: selfIndex, bodyHash: bodyHash)
        guard let signature = signGuarded(key, content: bodyHash, bytes) else { return }
        let viewChange = ViewChange(
            newView: target, validator: selfIndex, checkpoint: stableCheckpoint, prepared: prepared, signature: signature)
        ownViewChange = viewChange
        viewChanges[selfIndex] = viewChange
        broadcast(.viewChange(viewChange))
        tryNewView()
    }

    mutating func onViewChange(_ viewChange: ViewChange, from: ValidatorIndex) {
        let sender = viewChange.validator
        guard Int(sender) < configuration.validatorCount, sender != selfIndex else { return drop(.unknownValidator) }
        if viewChange.newView < view || (viewChange.newView == view && !inViewChange) {
            // The sender is still looking for a view this replica already entered: its
            // primary answers with the NEW-VIEW that started it, once the request is
            // shown to be the sender's and at most once per retransmit interval (a
            // NEW-VIEW is large, the request is cheap to replay).
            if !inViewChange, isPrimary, let newView = currentNewView {
                guard verify(viewChange.signature, by: sender, viewChange.signingBytes(chainID: configuration.chainID)) else {
                    return drop(.invalidSignature)
                }
                if let last = newViewResentAtTick[from], tickCount - last < configuration.retransmitIntervalTicks {
                    return drop(.rateLimited)
                }
                newViewResentAtTick[from] = tickCount
                send(.newView(newView), to: from)
            }
            return drop(.staleView)
        }
        if let existing = viewChanges[sender], existing.newView >= viewChange.newView {
            return drop(existing == viewChange ? .duplicate : .staleView)
        }
        guard isValid(viewChange) else { return drop(.invalidViewChange) }
        viewChanges[sender] = viewChange
        if viewChange.checkpoint.height > stableCheckpoint.height { adoptStable(viewChange.checkpoint) }
        joinHigherViewIfSupported()
        tryNewView()
    }

    /// PBFT: f+1 validators asking for views above ours include an honest one, so join
    /// the highest view that f+1 of them reached.
    mutating func joinHigherViewIfSupported() {
        let higher = viewChanges.values.map(\.newView).filter { $0 > view }.sorted(by: >)
        let needed = defences.joinViewChangeNeedsFPlusOne ? configuration.maxFaulty + 1 : 1
        guard higher.count >= needed else { return }
        startViewChange(to: higher[needed - 1])
    }

    func isValid(_ viewChange: ViewChange) -> Bool {
        guard Int(viewChange.validator) < configuration.validatorCount,
              verify(viewChange.signature, by: viewChange.validator, viewChange.signingBytes(chainID: configuration.chainID)),
              isValid(viewChange.checkpoint)
        else { return false }
        var previousHeight = viewChange.checkpoint.height
        for certificate in viewChange.prepared {
            guard certificate.height > previousHeight,
                  certificate.height <= viewChange.checkpoint.height + configuration.logWindow,
                  certificate.view < viewChange.newView,
                  isValid(certificate)
            else { return false }
            previousHeight = certificate.height
        }
        return true
    }

    func isValid(_ proof: CheckpointProof) -> Bool {
        if proof.height == 0 {
            return proof.blockHash == configuration.genesisHash && proof.stateRoot == configuration.genesisStateRoot
        }
        guard proof.height % configuration.checkpointInterval == 0, proof.signatures.count >= quorum else {
            return false
        }
        let bytes = Checkpoint.signingBytes(
            chainID: configuration.chainID, height: proof.height, blockHash: proof.blockHash, stateRoot: proof.stateRoot)
        var previous: ValidatorIndex?
        for entry in proof.signatures {
            if let previous, entry.validator <= previous { return false }
            previous = entry.validator
            guard verify(entry.signature, by: entry.validator, bytes) else { return false }
        }
        return true
    }

    func isValid(_ certificate: PreparedCertificate) -> Bool {
        guard defences.checkViewChangeCertificates else { return true }
        let prePrepare = certificate.proposal
        let primary = configuration.primary(of: prePrepare.view)
        let header = prePrepare.header
        guard header.view <= prePrepare.view, header.proposer == configuration.primary(of: header.view),
              verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID))
        else { return false }
        guard certificate.prepares.count >= quorum - 1 else { return false }
        let target = VoteTarget(phase: .prepare, view: prePrepare.view, height: prePrepare.height, blockHash: prePrepare.blockHash)
        let bytes = target.signingBytes(chainID: configuration.chainID)
        var previous: ValidatorIndex?
        for vote in certificate.prepares {
            if let previous, vote.validator <= previous { return false }
            previous = vote.validator
            guard vote.target == target, vote.validator != primary, verify(vote.signature, by: vote.validator, bytes) else {
                return false
            }
        }
        return true
    }

    /// The chain a NEW-VIEW must re-propose, computed from its VIEW-CHANGEs: the
    /// highest checkpoint, then per height the prepared certificate of the highest
    /// view, while each links to the previous block.
    static func newViewPlan(_ viewChanges: [ViewChange]) -> (checkpoint: CheckpointProof, blocks: [BlockHeader]) {
        var checkpoint = viewChanges[0].checkpoint
        for viewChange in viewChanges where viewChange.checkpoint.height > checkpoint.height {
            checkpoint = viewChange.checkpoint
        }
        var best: [UInt64: PreparedCertificate] = [:]
        for viewChange in viewChanges {
            for certificate in viewChange.prepared where certificate.height > checkpoint.height {
                if let current = best[certificate.height] {
                    let better = certificate.view > current.view
                        || (certificate.view == current.view && certificate.blockHash < current.blockHash)
                    if !better { continue }
                }
                best[certificate.height] = certificate
            }
        }
        var blocks: [BlockHeader] = []
        var parent = checkpoint.blockHash
        var height = checkpoint.height + 1
        while let certificate = best[height], certificate.proposal.header.previousHash == parent {
            blocks.append(certificate.proposal.header)
            parent = certificate.blockHash
            height += 1
        }
        return (checkpoint, blocks)
    }

    mutating func tryNewView() {
        guard inViewChange, isPrimary else { return }
        let set = viewChanges.values.filter { $0.newView == view }.sorted { $0.validator < $1.validator }
        guard set.count >= quorum else { return }
        let chosen = Array(set.prefix(quorum))
        let plan = Replica.newViewPlan(chosen)
        var proposals: [SignedProposal] = []
        for header in plan.blocks {
            guard let proposal = signProposal(header) else { return }
            proposals.append(proposal)
        }
        let bodyHash = NewView.bodyHash(viewChanges: chosen, proposals: proposals)
        let key = SignerGuard.Key(view: view, height: 0, phase: .newView)
        let bytes = NewView.signingBytes(chainID: configuration.chainID, view: view, bodyHash: bodyHash)
        guard let signature = signGuarded(key, content: bodyHash, bytes) else { return }
        let newView = NewView(view: view, viewChanges: chosen, proposals: proposals, signature: signature)
        broadcast(.newView(newView))
        enterView(newView, checkpoint: plan.checkpoint)
    }

    mutating func onNewView(_ newView: NewView) {
        let primary = configuration.primary(of: newView.view)
        guard primary != selfIndex else { return drop(.notFromPrimary) }
        guard verify(newView.signature, by: primary, newView.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        if newView.view < view || (newView.view == view && !inViewChange) {
            return drop(newView.view == view ? .duplicate : .staleView)
        }
        guard let checkpoint = check(newView) else {
            drop(.invalidNewView)
            // A replica leaves a view only on its own timer, on f+1 VIEW-CHANGEs or on
            // a NEW-VIEW that checks out. An invalid NEW-VIEW proves its signer faulty,
            // which matters only when the signer leads the view this replica is
            // changing to; for any other view it is dropped and moves nobody.
            if !defences.invalidNewViewBlamesOnlyItsView {
                startViewChange(to: newView.view + 1)
            } else if inViewChange, newView.view == view {
                startViewChange(to: view + 1)
            }
            return
        }
        enterView(newView, checkpoint: checkpoint)
    }

    /// The checkpoint the NEW-VIEW starts from, or nil when it is forged or inconsistent.
    func check(_ newView: NewView) -> CheckpointProof? {
        let set = newView.viewChanges
        guard set.count >= quorum, Set(set.map(\.validator)).count == set.count,
              set.allSatisfy({ $0.newView == newView.view && isValid($0) })
        else { return nil }
        let primary = configuration.primary(of: newView.view)
        for prePrepare in newView.proposals {
            guard prePrepare.view == newView.view,
                  verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID))
            else { return nil }
        }
        let plan = Replica.newViewPlan(set)
        guard defences.recomputeNewView else { return plan.checkpoint }
        guard plan.blocks.count == newView.proposals.count,
              zip(plan.blocks, newView.proposals).allSatisfy({ $0.hash == $1.blockHash })
        else { return nil }
        return plan.checkpoint
    }

    mutating func enterView(_ newView: NewView, checkpoint: CheckpointProof) {
        view = newView.view
        inViewChange = false
        currentNewView = newView
        durableDirty = true
        slots = [:]
        viewTimerTicks = 0
        ticksSinceProposal = 0
        restartTransactionTimer()
        viewChanges = viewChanges.filter { $0.value.newView > view }
        signerGuard.prune(currentView: view, stableHeight: stableCheckpoint.height)
        if checkpoint.height > stableCheckpoint.height { adoptStable(checkpoint) }
        var top = stableCheckpoint.height
        missingBlocks = [:]
        for proposal in newView.proposals where proposal.height > stableCheckpoint.height {
            guard proposal.height <= highWaterMark else { break }
            slots[proposal.height, default: Slot()].candidate = proposal
            top = max(top, proposal.height)
            guard proposal.height > committedHeight else { continue }
            if let body = preparedBlocks[proposal.blockHash] {
                slots[proposal.height]!.candidateBody = body
            } else {
                // Who certified it in a VIEW-CHANGE holds it (persisted with its certificate).
                let holders = newView.viewChanges.filter { viewChange in
                    viewChange.prepared.contains { $0.blockHash == proposal.blockHash }
                }.map(\.validator)
                // Then everyone: an honest validator that prepared it may not be in the set.
                var sources: [ValidatorIndex] = []
                let everyone = (0..<ValidatorIndex(configuration.validatorCount)).map { $0 }
                for source in [configuration.primary(of: newView.view)] + holders + everyone
                where source != selfIndex && !sources.contains(source) {
                    sources.append(source)
                }
                missingBlocks[proposal.blockHash] = (sources, 0)
            }
        }
        requestMissingBlocks()
        nextProposalHeight = max(committedHeight, top) + 1
        tryAccept(stableCheckpoint.height + 1)
        if stableCheckpoint.height >= committedHeight { tryAccept(committedHeight + 1) }
        tryPropose()
    }

    // MARK: Blocks of a NEW-VIEW

    /// Asks, for each block a NEW-VIEW re-proposed that this replica lacks, the next
    /// validator that should hold it (again each retransmit interval, rotating).
    mutating func requestMissingBlocks() {
        let awaited = Set(slots.values.compactMap { $0.candidateBody == nil ? $0.candidate?.blockHash : nil })
        missingBlocks = missingBlocks.filter { awaited.contains($0.key) }
        var byPeer: [ValidatorIndex: [Hash]] = [:]
        for (hash, entry) in missingBlocks where !entry.sources.isEmpty {
            byPeer[entry.sources[entry.attempt % entry.sources.count], default: []].append(hash)
            missingBlocks[hash]!.attempt += 1
        }
        for peer in byPeer.keys.sorted() { send(.blockRequest(byPeer[peer]!.sorted()), to: peer) }
    }

    /// Sends the requested blocks this replica holds (those it prepared, or has in its
    /// slots), one message each; at most `logWindow` a peer per retransmit interval.
    mutating func onBlockRequest(_ hashes: [Hash], from: ValidatorIndex) {
        for hash in hashes {
            let answered = blockAnswersThisInterval[from, default: 0]
            guard answered < Int(configuration.logWindow) else { return drop(.rateLimited) }
            guard let block = preparedBlocks[hash] ?? slots.values.lazy.compactMap({ slot in
                slot.body?.hash == hash ? slot.body : slot.candidateBody?.hash == hash ? slot.candidateBody : nil
            }).first else { continue }
            blockAnswersThisInterval[from] = answered + 1
            send(.block(block), to: from)
        }
    }

    mutating func onBlock(_ block: Block) {
        let hash = block.hash
        guard missingBlocks[hash] != nil else { return drop(.unexpectedBlock) }
        receivedBody(block, hash: hash)
    }

    /// A block for a NEW-VIEW candidate: checked against the header's transactions
    /// (the hash covers the header only), then the candidate can be validated.
    mutating func receivedBody(_ block: Block, hash: Hash) {
        guard let height = slots.first(where: { $0.value.candidate?.blockHash == hash && $0.value.candidateBody == nil })?.key
        else { return drop(.unexpectedBlock) }
        guard block.transactions.count == Int(block.header.transactionCount),
              Block.transactionsRoot(block.transactions) == block.header.transactionsRoot
        else { return drop(.malformedBlock) }
        missingBlocks[hash] = nil
        slots[height]!.candidateBody = block
        tryAccept(height)
    }

    // MARK: Catching up

    mutating func onSyncRequest(fromHeight: UInt64, toHeight: UInt64, from: ValidatorIndex) {
        guard fromHeight >= 1, fromHeight <= toHeight, fromHeight <= committedHeight else { return drop(.unexpectedSync) }
        // Each answer reads and sends up to `maxSyncBlocks` blocks for a 17-byte request.
        let answered = syncAnswersThisInterval[from, default: 0]
        guard answered < ConsensusLimits.maxSyncAnswersPerInterval else { return drop(.rateLimited) }
        syncAnswersThisInterval[from] = answered + 1
        let last = min(toHeight, committedHeight, fromHeight + UInt64(ConsensusLimits.maxSyncBlocks) - 1)
        sendActions.append(.sendBlocks(heights: fromHeight...last, to: from))
    }

    mutating func requestSync(to target: UInt64, peers: [ValidatorIndex]) {
        guard target > committedHeight else { return }
        let peers = peers.filter { $0 != selfIndex && Int($0) < configuration.validatorCount }
        guard !peers.isEmpty else { return }
        if var current = sync {
            if target > current.target { current.target = target }
            current.peers = Array(Set(current.peers + peers)).sorted()
            sync = current
            return
        }
        sync = SyncState(target: target, peers: peers.sorted())
        sendSyncRequest()
    }

    mutating func sendSyncRequest() {
        guard var state = sync else { return }
        state.ticksWaiting = 0
        sync = state
        let peer = state.peers[state.attempt % state.peers.count]
        // Ask for a full batch, not only up to the claimed checkpoint: the peer sends
        // what it has committed, so a node that restarts on an idle chain also gets
        // the blocks above the last checkpoint instead of waiting for new traffic.
        let batchEnd = committedHeight + UInt64(ConsensusLimits.maxSyncBlocks)
        send(.syncRequest(fromHeight: committedHeight + 1, toHeight: max(state.target, batchEnd)), to: peer)
    }

    mutating func onSyncResponse(_ blocks: [CertifiedBlock]) {
        guard sync != nil else { return drop(.unexpectedSync) }
        let before = committedHeight
        for certified in blocks where certified.block.height > committedHeight {
            let block = certified.block
            guard block.height == committedHeight + 1, let parent = committedHashes[committedHeight],
                  block.header.previousHash == parent
            else { return drop(.invalidSyncBlock) }
            let hash = block.hash
            guard isValid(certified.certificate, height: block.height, blockHash: hash) else { return drop(.invalidSyncBlock) }
            checkOwnSignature(in: certified.certificate)
            if slots[block.height]?.proposal?.blockHash != hash,
               case .failure = application.validate(
                   block, parentHash: parent, maxTransactions: Int(configuration.parameters.maxBlockTransactions),
                   origin: .sync(certificateView: certified.certificate.view))
            {
                return drop(.invalidSyncBlock)
            }
            commit(certified, hash: hash)
        }
        guard let state = sync else { return }
        if committedHeight >= state.target {
            sync = nil
        } else if committedHeight > before {
            sync!.attempt = 0
            sendSyncRequest()
        }
        tryExecute()
        checkQuarantine()
    }

    func isValid(_ certificate: CommitCertificate, height: UInt64, blockHash: Hash) -> Bool {
        // The replica's own `quorum` decides the count (it differs from 2f+1 only under the
        // test-only `quorumOverride`); `.belowQuorum` is thrown after every other check.
        do { try certificate.checkStructure(height: height, blockHash: blockHash, validators: configuration.validators) } catch {
            guard case .belowQuorum = error else { return false }
        }
        guard certificate.signatures.count >= quorum else { return false }
        let bytes = certificate.voteTarget.signingBytes(chainID: configuration.chainID)
        return certificate.signatures.allSatisfy { verify($0.signature, by: $0.validatorIndex, bytes) }
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
                tryPropose()
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

    /// A peer's committed tip: when it is above ours, its certificate (once checked)
    /// proves the block committed, so fetch up to it. One claim per peer and interval
    /// is checked (each costs a quorum of signature checks); lower claims cost nothing.
    mutating func onCommittedTip(_ certificate: CommitCertificate, from: ValidatorIndex) {
        guard certificate.height > committedHeight, certificate.height > (sync?.target ?? 0) else { return }
        guard tipClaimsCheckedThisInterval.insert(from).inserted else { return drop(.rateLimited) }
        guard isValid(certificate, height: certificate.height, blockHash: certificate.blockHash) else {
            return drop(.invalidCommittedTip)
        }
        checkOwnSignature(in: certificate)
        requestSync(to: certificate.height, peers: [from] + certificate.signatures.map(\.validatorIndex))
    }

    /// Asks for blocks when f+1 validators (so at least one honest) claim a
    /// checkpoint above us, or a commit quorum sits above a height we cannot execute.
    mutating func detectBehind() {
        guard sync == nil else { return }
        let stuck = ticksSinceCommit >= configuration.retransmitIntervalTicks
        let claims = reportedHeights.filter { $0.key != selfIndex }.values.sorted(by: >)
        if claims.count > configuration.maxFaulty {
            let height = claims[configuration.maxFaulty]
            if height > committedHeight && (stuck || height > committedHeight + configuration.parameters.maxBlocksInFlight) {
                let peers = reportedHeights.filter { $0.value >= height }.map(\.key)
                return requestSync(to: height, peers: peers)
            }
        }
        staleViewCommits = staleViewCommits.filter { $0.key > committedHeight }
        guard stuck else { return }
        for height in slots.keys.sorted(by: >) where height > committedHeight {
            var byHash: [Hash: [ValidatorIndex]] = [:]
            for vote in slots[height]!.commits.values { byHash[vote.target.blockHash, default: []].append(vote.validator) }
            if let signers = byHash.values.first(where: { $0.count >= quorum }) {
                return requestSync(to: height, peers: signers)
            }
        }
        for height in staleViewCommits.keys.sorted(by: >) {
            var byTarget: [VoteTarget: [ValidatorIndex]] = [:]
            for vote in staleViewCommits[height]!.values { byTarget[vote.target, default: []].append(vote.validator) }
            if let signers = byTarget.values.first(where: { $0.count >= quorum }) {
                return requestSync(to: height, peers: signers)
            }
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
