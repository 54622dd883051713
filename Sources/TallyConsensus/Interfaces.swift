import TallyCrypto
import TallyTypes

/// Why a proposed block is refused.
public struct BlockRejection: Error, Hashable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Where a block the application validates comes from: the rules differ only in
/// the view the header's is checked against and whether the local clock bounds
/// the timestamp (a proposal arrives now; a synced block may be old).
public enum BlockOrigin: Equatable, Sendable {
    /// In a PRE-PREPARE of this view.
    case prePrepare(view: UInt64)
    /// Committed under a certificate of this view (block sync).
    case sync(certificateView: UInt64)
}

/// The block application, injected into the replica. All calls are synchronous and
/// deterministic (same inputs and history, same answers); the replica calls them
/// from `step` only.
///
/// Blocks are identified by hash. The application keeps the state after every
/// block it validated or built that is not executed yet (at most
/// `maxBlocksInFlight` of the current chain, plus losers of a view change, which it
/// may drop when `execute` moves past their height).
public protocol ConsensusApplication: AnyObject {
    /// True when the mempool holds transactions not yet in an executed block.
    var hasPendingTransactions: Bool { get }

    /// A counter the application raises each time a transaction becomes proposable
    /// here (admitted as its sender's next transaction, or left next when the one
    /// before it committed); it never goes down while the replica runs. The replica
    /// samples it every tick, which turns the sequence numbers below into ticks.
    var proposableSequence: UInt64 { get }

    /// The `proposableSequence` at which the proposable transaction (by the predicate
    /// `hasPendingTransactions` uses) that has waited longest became proposable; nil
    /// when none. A backup that sees it wait too long suspects the primary
    /// (docs/CONSENSUS.md, "Censorship and slow primaries").
    var oldestProposableSequence: UInt64? { get }

    /// A new block at `height` for `view`, proposed by `proposer`, on top of the block
    /// `parentHash` (executed, or built/validated before and not executed). Takes at
    /// most `maxTransactions` mempool transactions valid against the parent's state
    /// and not already in its ancestors. Nil when there is nothing to propose and
    /// `allowEmpty` is false, or when `parentHash` is unknown.
    func propose(height: UInt64, view: UInt64, proposer: ValidatorIndex, parentHash: Hash, maxTransactions: Int,
                 allowEmpty: Bool) -> Block?

    /// Checks `block` against the state after `parentHash` (executed or in flight):
    /// height, previous hash, transaction count bound, proposer (primary of the
    /// header's view), the header's view against `origin`'s, timestamp (later than
    /// the parent's; for a PRE-PREPARE, within the clock drift bound of now), Merkle
    /// root, every transaction's signature, chain and validity, the header's state
    /// root. On success the application keeps the resulting state for children and
    /// `execute`.
    func validate(_ block: Block, parentHash: Hash, maxTransactions: Int, origin: BlockOrigin) -> Result<Void, BlockRejection>
}

/// Checks signatures for the replica (so a simulator can use a fast scheme).
public protocol ConsensusVerifier {
    func isValid(_ signature: Signature, by validator: ValidatorIndex, for message: [UInt8]) -> Bool
}

/// Signs for the replica with its own key. The replica's signer guard decides
/// *whether* to sign; this only produces the signature.
public protocol ConsensusSigner {
    func sign(_ message: [UInt8]) -> Signature
}

/// Ed25519 through libsodium, the production scheme.
public struct Ed25519Verifier: ConsensusVerifier {
    public let validators: ValidatorSet
    public init(validators: ValidatorSet) { self.validators = validators }

    public func isValid(_ signature: Signature, by validator: ValidatorIndex, for message: [UInt8]) -> Bool {
        guard Int(validator) < validators.count else { return false }
        return validators[Int(validator)].publicKey.isValidSignature(signature, for: message)
    }
}

public struct Ed25519Signer: ConsensusSigner {
    public let key: SigningKey
    public init(key: SigningKey) { self.key = key }
    public func sign(_ message: [UInt8]) -> Signature { key.sign(message) }
}

/// What the replica reacts to.
public enum ConsensusEvent: Sendable {
    /// A message from validator `from` (the transport authenticated the peer; the
    /// replica checks every signature inside with its verifier).
    case message(ConsensusMessage, from: ValidatorIndex)
    /// One logical clock tick (`ConsensusParameters.tickMs`).
    case tick
    /// The mempool received transactions: a primary may propose at once.
    case transactionsAvailable
    /// The block at `height` (from an earlier `execute`) was applied; `stateRoot` is
    /// the state after it.
    case blockExecuted(height: UInt64, stateRoot: Hash)
}

/// What the caller must do, in order. Within one step's output every `persist`
/// comes first, so nothing sent depends on state that is not durable.
public enum ConsensusAction: Sendable {
    /// Write `DurableState.canonicalBytes` atomically before doing anything that follows.
    case persist(DurableState)
    /// Apply this committed block (heights strictly increasing, no gaps), store it
    /// with its certificate, then report `.blockExecuted`.
    case execute(CertifiedBlock)
    case send(ConsensusMessage, to: ValidatorIndex)
    /// Send to every other validator.
    case broadcast(ConsensusMessage)
    /// A peer asked for blocks: send it `.syncResponse` with the stored certified
    /// blocks of `heights` (all of them at or below this replica's committed height).
    case sendBlocks(heights: ClosedRange<UInt64>, to: ValidatorIndex)
}

/// Why an input was dropped. Counted per reason; never fatal.
public enum DropReason: String, CaseIterable, Sendable, Comparable {
    case invalidSignature = "invalid_signature"
    case unknownValidator = "unknown_validator"
    case staleView = "stale_view"
    case futureView = "future_view"
    case inViewChange = "in_view_change"
    case notFromPrimary = "not_from_primary"
    case belowLowWaterMark = "below_low_water_mark"
    case aboveHighWaterMark = "above_high_water_mark"
    case malformedBlock = "malformed_block"
    case invalidBlock = "invalid_block"
    case wrongParent = "wrong_parent"
    case equivocation = "equivocation"
    case duplicate = "duplicate"
    case conflictingVote = "conflicting_vote"
    case invalidCheckpoint = "invalid_checkpoint"
    case invalidViewChange = "invalid_view_change"
    case invalidNewView = "invalid_new_view"
    case invalidSyncBlock = "invalid_sync_block"
    case unexpectedSync = "unexpected_sync"
    case signerGuardRefused = "signer_guard_refused"
    case viewOutOfRange = "view_out_of_range"
    case rateLimited = "rate_limited"
    case invalidCommittedTip = "invalid_committed_tip"
    case unexpectedBlock = "unexpected_block"
    /// Not signed: the start-up quarantine holds (SigningSafety.swift).
    case quarantined = "quarantined"
    /// Not signed: at or below the signing mark a restored journal forgot.
    case belowSigningMark = "below_signing_mark"

    public static func < (lhs: DropReason, rhs: DropReason) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Static configuration of one replica.
public struct ReplicaConfiguration: Sendable {
    public let chainID: String
    public let validators: ValidatorSet
    public let selfIndex: ValidatorIndex
    public let parameters: ConsensusParameters
    /// The hash block 1 links to (the genesis hash) and the genesis state root.
    public let genesisHash: Hash
    public let genesisStateRoot: Hash
    /// Nil: the primary proposes only when the mempool has transactions (the
    /// default: blocks appear as soon as transactions arrive, none when idle).
    /// Otherwise it also proposes an empty block after this many idle ticks, which
    /// keeps checkpoints and liveness checks moving on an idle chain.
    public let emptyBlockIntervalTicks: UInt64?
    /// Ticks between retransmissions of this replica's latest messages (covers loss).
    public let retransmitIntervalTicks: UInt64
    /// Ticks to wait for a sync response before asking another peer.
    public let syncRetryTicks: UInt64

    public init(
        chainID: String, validators: ValidatorSet, selfIndex: ValidatorIndex, parameters: ConsensusParameters,
        genesisHash: Hash, genesisStateRoot: Hash, emptyBlockIntervalTicks: UInt64? = nil,
        retransmitIntervalTicks: UInt64? = nil, syncRetryTicks: UInt64? = nil
    ) {
        precondition(Int(selfIndex) < validators.count, "selfIndex outside the validator set")
        precondition(parameters.checkpointIntervalBlocks >= 1 && parameters.maxBlocksInFlight >= 1)
        precondition(parameters.maxBlocksInFlight <= 2 * parameters.checkpointIntervalBlocks)
        precondition(parameters.viewChangeTimeoutTicks >= 2)
        self.chainID = chainID
        self.validators = validators
        self.selfIndex = selfIndex
        self.parameters = parameters
        self.genesisHash = genesisHash
        self.genesisStateRoot = genesisStateRoot
        self.emptyBlockIntervalTicks = emptyBlockIntervalTicks
        self.retransmitIntervalTicks = retransmitIntervalTicks ?? max(2, parameters.viewChangeTimeoutTicks / 4)
        self.syncRetryTicks = syncRetryTicks ?? max(2, parameters.viewChangeTimeoutTicks / 2)
    }

    var quorum: Int { validators.quorum }
    var maxFaulty: Int { validators.maxFaulty }
    var validatorCount: Int { validators.count }
    var checkpointInterval: UInt64 { parameters.checkpointIntervalBlocks }
    /// PBFT's log size L: heights in (stable, stable + L] are accepted.
    var logWindow: UInt64 { 2 * parameters.checkpointIntervalBlocks }
    func primary(of view: UInt64) -> ValidatorIndex { ValidatorIndex(validators.primary(view: view)) }
}

/// The replica's defences that tests switch off one at a time, to prove each is
/// load-bearing (a scenario must go red without it). The replica asks its
/// `defences` before each check; a production replica runs `StandardDefences`
/// (every defence on, the 2f+1 quorum).
///
/// A protocol and not a struct of flags, so that no shipped product can switch a
/// defence off: with settable flags here, any code that builds a replica (the node,
/// a configuration loader) could. The one conformance that answers otherwise,
/// `SwitchableDefences`, lives in the test-support target TallyConsensusTesting,
/// which only tests and dev tools (the simulator) link; nothing in a configuration
/// reaches a replica's defences.
public protocol ReplicaDefences: Sendable {
    var verifySignatures: Bool { get }
    var rejectEquivocation: Bool { get }
    var signerGuard: Bool { get }
    var dropStaleViews: Bool { get }
    var checkViewChangeCertificates: Bool { get }
    var recomputeNewView: Bool { get }
    var viewChangeTimer: Bool { get }
    var joinViewChangeNeedsFPlusOne: Bool { get }
    /// An invalid NEW-VIEW moves a replica on only when it is for the view the
    /// replica is changing to (off: any invalid NEW-VIEW starts the view after it).
    var invalidNewViewBlamesOnlyItsView: Bool { get }
    /// A backup changes view when a proposable transaction waits longer than the
    /// transaction timeout (PBFT's per-request timer; off: only the no-commit timer).
    var censorshipTimer: Bool { get }
    /// A backup changes view when transactions wait far longer than the view's blocks
    /// take to commit once proposed (off: a primary just inside the timeouts keeps its view).
    var slowPrimaryCheck: Bool { get }
    /// While nothing commits, a replica announces its committed tip (certificate) to
    /// its peers, so one that restarted behind on a quiet chain learns it and syncs
    /// (off: it learns only from later traffic, which a quiet chain never sends).
    var announceCommittedTip: Bool { get }
    /// Replaces 2f+1 when set (only to show that a smaller quorum is unsafe).
    var quorumOverride: Int? { get }
}

/// Every defence on and the 2f+1 quorum: what every production replica runs.
public struct StandardDefences: ReplicaDefences {
    public init() {}
    public var verifySignatures: Bool { true }
    public var rejectEquivocation: Bool { true }
    public var signerGuard: Bool { true }
    public var dropStaleViews: Bool { true }
    public var checkViewChangeCertificates: Bool { true }
    public var recomputeNewView: Bool { true }
    public var viewChangeTimer: Bool { true }
    public var joinViewChangeNeedsFPlusOne: Bool { true }
    public var invalidNewViewBlamesOnlyItsView: Bool { true }
    public var censorshipTimer: Bool { true }
    public var slowPrimaryCheck: Bool { true }
    public var announceCommittedTip: Bool { true }
    public var quorumOverride: Int? { nil }
}

extension ReplicaDefences {
    /// Every defence on and no quorum override (what `StandardDefences` answers).
    var areAllOn: Bool {
        verifySignatures && rejectEquivocation && signerGuard && dropStaleViews && checkViewChangeCertificates
            && recomputeNewView && viewChangeTimer && joinViewChangeNeedsFPlusOne && invalidNewViewBlamesOnlyItsView
            && censorshipTimer && slowPrimaryCheck && announceCommittedTip && quorumOverride == nil
    }
}
