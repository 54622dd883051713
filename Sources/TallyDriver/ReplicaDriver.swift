import TallyConsensus
import TallyCrypto
import TallyTypes

/// Where a driver writes its replica's durable state: the consensus journal.
public protocol DurableStateSink: AnyObject {
    /// Writes `state` durably (fsynced) before returning. A throw halts the driver:
    /// nothing after this write happens (a crash, or a disk the node cannot use).
    func write(_ state: DurableState) throws
}

/// Where committed blocks go: the block store and the application.
public protocol CertifiedBlockSink: AnyObject {
    /// Appends `block` to the block store (fsynced), applies it to the ledger and
    /// announces it (events, metrics), in that order; returns the state root after
    /// it. Heights arrive strictly increasing with no gaps. A throw halts the driver.
    func commit(_ block: CertifiedBlock) throws -> Hash
}

/// How a driver reaches the other validators. A throw halts the driver.
public protocol ReplicaTransport: AnyObject {
    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) throws
    /// To every other validator.
    func broadcast(_ message: ConsensusMessage) throws
    /// A `.syncResponse` to `peer` with the stored certified blocks of `heights`
    /// (all at or below the committed height).
    func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) throws
}

/// Owns a `Replica` and carries out its actions in the one correct order: persist,
/// then each committed block (stored, applied, and fed back to the replica as
/// `.blockExecuted` at once, depth first), then the sends. The node, the simulator
/// and the consensus scenario tests all run their replicas through it.
///
/// A batch (`handle(_:)` with several events, e.g. every peer message that arrived
/// while the node was busy) is one unit: only the latest `DurableState` is written,
/// once, and every send of the batch goes out after it, in the order the replica
/// asked. That keeps *persist before send*: the latest state holds everything the
/// earlier ones held that can still matter (views and checkpoints only move
/// forward; the signer guard and prepared certificates are pruned only below
/// them). A pending state is also written before any block is committed, so each
/// step's order persist → execute holds too.
public final class ReplicaDriver {
    /// When to run `Replica.invariants()` (a broken one is a `precondition` failure).
    public enum InvariantChecks: Sendable {
        case never
        /// After every step (tests, and debug builds of the node).
        case everyStep
        /// After tick steps only (long simulator sweeps).
        case everyTick
    }

    /// Sends deferred in one batch, at most (a batch is a bounded number of events,
    /// each producing a bounded number of sends).
    public static let maxDeferredSends = 1 << 20

    /// The replica; replaced only by tests (package), never while a batch runs.
    public package(set) var replica: Replica
    public var invariantChecks: InvariantChecks
    /// Called after every replica step with the replica, the event and the actions,
    /// before any of them is carried out (tests and the simulator check them).
    public var stepObserver: ((Replica, ConsensusEvent, [ConsensusAction]) -> Void)?
    /// True once an I/O call threw: the driver does nothing more.
    public private(set) var isHalted = false

    private let journal: any DurableStateSink
    private let blocks: any CertifiedBlockSink
    private let transport: any ReplicaTransport
    /// Stamps the commit-path milestones the driver sees (nil: no timing, as in the simulator).
    public let timeline: CommitTimeline?
    /// The latest durable state the replica asked for, not written yet.
    private var pendingPersist: DurableState?
    /// Sends waiting for the end of the batch (after `pendingPersist` is durable).
    private var deferredSends: [ConsensusAction] = []
    private var inBatch = false

    public init(
        replica: Replica, journal: any DurableStateSink, blocks: any CertifiedBlockSink, transport: any ReplicaTransport,
        invariantChecks: InvariantChecks = .never, timeline: CommitTimeline? = nil
    ) {
        self.replica = replica
        self.timeline = timeline
        self.journal = journal
        self.blocks = blocks
        self.transport = transport
        self.invariantChecks = invariantChecks
    }

    /// Steps one event as a batch of one.
    public func handle(_ event: ConsensusEvent) throws { try handle(CollectionOfOne(event)) }

    /// Steps every event as one batch: at most one durable write before the first
    /// block commit and one at the end, then every send of the batch. Rethrows the
    /// first I/O error, after which the driver is halted.
    public func handle(_ events: some Sequence<ConsensusEvent>) throws {
        precondition(!isHalted, "a halted driver was given input")
        precondition(!inBatch, "a driver batch re-entered")
        inBatch = true
        defer { inBatch = false }
        do {
            for event in events { try step(event) }
            try flush()
        } catch {
            isHalted = true
            pendingPersist = nil
            deferredSends.removeAll()
            throw error
        }
    }

    private func step(_ event: ConsensusEvent) throws {
        let actions = replica.step(event)
        switch invariantChecks {
        case .never: break
        case .everyStep: replica.invariants()
        case .everyTick: if case .tick = event { replica.invariants() }
        }
        stepObserver?(replica, event, actions)
        for action in actions {
            switch action {
            case .persist(let state):
                pendingPersist = state
            case .execute(let certified):
                timeline?.mark(.committed, height: certified.block.height)
                try writePendingPersist()
                let stateRoot = try blocks.commit(certified)
                try step(.blockExecuted(height: certified.block.height, stateRoot: stateRoot))
            case .send, .broadcast, .sendBlocks:
                precondition(deferredSends.count < Self.maxDeferredSends, "deferred sends over their bound")
                deferredSends.append(action)
            }
        }
    }

    private func writePendingPersist() throws {
        guard let state = pendingPersist else { return }
        // Cleared only after the write returned: a throw halts the driver anyway.
        try journal.write(state)
        pendingPersist = nil
    }

    /// Writes the pending durable state, then carries out the deferred sends.
    private func flush() throws {
        try writePendingPersist()
        let sends = deferredSends
        deferredSends.removeAll(keepingCapacity: true)
        for action in sends {
            switch action {
            case .send(let message, let peer): try transport.send(message, to: peer)
            case .broadcast(let message):
                try transport.broadcast(message)
                markSent(message)
            case .sendBlocks(let heights, let peer): try transport.sendBlocks(heights: heights, to: peer)
            case .persist, .execute: preconditionFailure("only sends are deferred")
            }
        }
    }

    /// A vote or proposal that went out (after the persist it depends on) ends a stage.
    private func markSent(_ message: ConsensusMessage) {
        guard let timeline else { return }
        switch message {
        case .prePrepare(let proposal): timeline.mark(.accepted, height: proposal.height)
        case .prepare(let vote): timeline.mark(.accepted, height: vote.target.height)
        case .commit(let vote): timeline.mark(.prepared, height: vote.target.height)
        default: break
        }
    }
}
