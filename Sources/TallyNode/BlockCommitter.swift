import Logging
import Metrics
import TallyApplication
import TallyCrypto
import TallyDriver
import TallyStore
import TallyTypes

/// The driver's commit of a certified block, in the order that makes it safe to
/// acknowledge: the block fsync'd into the store, then the transaction indexes, then
/// the ledger, then the events; then a snapshot when `SnapshotSchedule` says one is due.
/// Owned by the node's actor, which calls it one block at a time.
final class BlockCommitter {
    private let store: BlockStore
    private let snapshots: SnapshotStore
    private let application: LedgerApplication
    private let committedTransactions: CommittedTransactions
    private let accountTransactions: AccountTransactions
    private let durableWrite: DurableWrite
    private let timeline: CommitTimeline
    private let metrics: NodeMetrics
    private let logger: Logger
    private var schedule: SnapshotSchedule

    init(
        store: BlockStore, snapshots: SnapshotStore, application: LedgerApplication,
        committedTransactions: CommittedTransactions, accountTransactions: AccountTransactions, durableWrite: DurableWrite,
        timeline: CommitTimeline, metrics: NodeMetrics, logger: Logger, schedule: SnapshotSchedule
    ) {
        self.store = store
        self.snapshots = snapshots
        self.application = application
        self.committedTransactions = committedTransactions
        self.accountTransactions = accountTransactions
        self.durableWrite = durableWrite
        self.timeline = timeline
        self.metrics = metrics
        self.logger = logger
        self.schedule = schedule
    }

    /// Commits `certified`; returns the state root after it. Throws only
    /// `DurableWrite.GaveUp` (the block could not be stored).
    func commit(
        _ certified: CertifiedBlock, submissions: inout SubmissionTracker, subscribers: inout EventSubscribers
    ) throws -> Hash {
        let block = certified.block
        // Durable before anything is acknowledged: the block is fsync'd here, before
        // the ledger moves, the API reports it or an event goes out.
        let start = ContinuousClock.now
        try durableWrite.run("store block \(block.height)") { try store.append(certified) }
        metrics.blockAppend.record(duration: ContinuousClock.now - start)
        // Indexed before the mempool lets go of its transactions, so a lookup between
        // the two finds each one pending or committed, never unknown.
        committedTransactions.add(block)
        accountTransactions.add(block)
        let execution = application.commit(block)
        timeline.mark(.executed, height: block.height)
        metrics.height.record(Int64(block.height))
        metrics.blocksCommitted.increment()
        metrics.transactionsCommitted.increment(by: Int64(block.transactions.count))
        observeLatencies(block, submissions: &submissions)
        if !subscribers.isEmpty { publish(block, to: &subscribers) }
        maybeSnapshot(at: block.height, blockHash: block.hash, transactionCount: block.transactions.count)
        return execution.stateRoot
    }

    /// Submission → commit of the block's tracked transactions, and a sample of their
    /// admissions for the commit timeline.
    private func observeLatencies(_ block: Block, submissions: inout SubmissionTracker) {
        let now = ContinuousClock.now
        var admissions: [ContinuousClock.Instant] = []
        for transaction in block.transactions {
            if let submitted = submissions.committed(transaction.hash) {
                metrics.commitLatency.record(duration: now - submitted)
                if admissions.count < CommitTimeline.maxAdmissionSamplesPerBlock { admissions.append(submitted) }
            }
        }
        timeline.observeAdmissions(admissions, height: block.height)
    }

    private func publish(_ block: Block, to subscribers: inout EventSubscribers) {
        let header = NodeEvent.block(height: block.height, hash: block.hash, transactionCount: block.transactions.count)
        let dropped = subscribers.publish([header] + block.transactions.enumerated().map { index, transaction in
            .transaction(hash: transaction.hash, height: block.height, index: index)
        })
        if dropped > 0 { Counter(label: "tally_event_subscribers_dropped_total", dimensions: [("reason", "slow")]).increment(by: dropped) }
    }

    /// Snapshots the ledger when the schedule says one is due; a failure costs only a
    /// longer replay at the next start.
    private func maybeSnapshot(at height: UInt64, blockHash: Hash, transactionCount: Int) {
        guard schedule.executed(height: height, transactionCount: transactionCount) else { return }
        do {
            try snapshots.write(Snapshot(ledger: application.ledger, blockHash: blockHash))
            schedule.snapshotWritten(at: height)
        } catch {
            logger.error("snapshot failed; restart will replay more blocks", metadata: ["height": "\(height)", "error": "\(error)"])
        }
    }
}
