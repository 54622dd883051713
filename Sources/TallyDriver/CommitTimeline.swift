import Foundation

/// When each block reached each point of its commit path on this validator, and how
/// long each stage between two points took (the node exports these as the
/// `tally_stage_seconds{stage}` histograms). The replica has no clock: the driver marks
/// the points as it carries out the replica's actions, the node marks the rest, and
/// the injected clock stamps them. The simulator runs without a timeline.
///
/// Cheap on the hot path: a few clock reads and one small record per block (never per
/// transaction), at most `maxTrackedBlocks` records at once; when a new block would
/// pass the bound the lowest height is forgotten (its later stages go unobserved).
/// Thread-safe: the HTTP event writer marks `.eventSent` from its own thread.
public final class CommitTimeline: @unchecked Sendable {
    /// Points of a block's commit path, in order.
    public enum Milestone: Int, CaseIterable, Sendable {
        /// This validator accepted the block's PRE-PREPARE: a backup's PREPARE for it
        /// went out (after its persist), or the primary's PRE-PREPARE did.
        case accepted
        /// Prepared: this validator's COMMIT vote for it went out (after its persist).
        case prepared
        /// Committed: a quorum of COMMITs, the replica asked to execute the block.
        case committed
        /// Stored (fsynced) and applied to the ledger, just before its events are published.
        case executed
        /// Its events were written to an `/events` stream (the first one, when several).
        case eventSent
    }

    /// The stage that ends at each milestone, as the `stage` label names it.
    public enum Stage: String, CaseIterable, Sendable {
        /// A transaction admitted at this node (`POST /txs`) → its block's PRE-PREPARE accepted.
        case prePrepare = "pre_prepare"
        /// PRE-PREPARE accepted → prepared.
        case prepared
        /// Prepared → committed.
        case committed
        /// Committed → executed.
        case executed
        /// Executed → events sent.
        case event

        /// The stage that ends at `milestone`.
        public init(endingAt milestone: Milestone) {
            switch milestone {
            case .accepted: self = .prePrepare
            case .prepared: self = .prepared
            case .committed: self = .committed
            case .executed: self = .executed
            case .eventSent: self = .event
            }
        }
    }

    /// Blocks whose milestones are held at once (a few PBFT windows).
    public static let defaultMaxTrackedBlocks = 64
    /// Transactions per block whose admission → PRE-PREPARE time is observed.
    public static let maxAdmissionSamplesPerBlock = 32

    public let maxTrackedBlocks: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let observe: @Sendable (Stage, Duration) -> Void
    private let lock = NSLock()
    private var records: [UInt64: [ContinuousClock.Instant?]] = [:]

    /// `observe` gets each stage's duration once, when its end milestone is marked and
    /// its start milestone is known (a block learned by catch-up has no PRE-PREPARE, so
    /// only the stages it went through are observed). It is called under the lock:
    /// keep it short (a histogram observation).
    public init(
        maxTrackedBlocks: Int = CommitTimeline.defaultMaxTrackedBlocks, now: @escaping @Sendable () -> ContinuousClock.Instant,
        observe: @escaping @Sendable (Stage, Duration) -> Void
    ) {
        precondition(maxTrackedBlocks >= 1, "a timeline tracks at least one block")
        self.maxTrackedBlocks = maxTrackedBlocks
        self.now = now
        self.observe = observe
    }

    /// Stamps `milestone` of the block at `height` now, the first time only (PBFT
    /// retransmits and view changes repeat sends; the first one is the stage's end).
    public func mark(_ milestone: Milestone, height: UInt64) {
        let instant = now()
        lock.withLock {
            // Events of a block no longer (or never) tracked: nothing to end.
            if milestone == .eventSent && records[height] == nil { return }
            var record = records[height] ?? makeRecord(height)
            guard record[milestone.rawValue] == nil else { return }
            record[milestone.rawValue] = instant
            records[height] = record
            if milestone.rawValue > 0, let start = record[milestone.rawValue - 1] {
                observe(Stage(endingAt: milestone), instant - start)
            }
            if milestone == .eventSent { records[height] = nil }
        }
    }

    /// Observes admission → PRE-PREPARE accepted for up to `maxAdmissionSamplesPerBlock`
    /// of `admissions` (when this node admitted some of the block's transactions); a
    /// no-op when the block's acceptance was not seen here.
    public func observeAdmissions(_ admissions: some Sequence<ContinuousClock.Instant>, height: UInt64) {
        lock.withLock {
            guard let accepted = records[height]?[Milestone.accepted.rawValue] else { return }
            for admitted in admissions.prefix(Self.maxAdmissionSamplesPerBlock) where admitted <= accepted {
                observe(.prePrepare, accepted - admitted)
            }
        }
    }

    /// Blocks held now (for tests of the bound).
    public var trackedBlocks: Int { lock.withLock { records.count } }

    /// A new empty record; forgets the lowest height first when at the bound.
    private func makeRecord(_ height: UInt64) -> [ContinuousClock.Instant?] {
        if records.count >= maxTrackedBlocks, let lowest = records.keys.min() { records[lowest] = nil }
        return Array(repeating: nil, count: Milestone.allCases.count)
    }
}
