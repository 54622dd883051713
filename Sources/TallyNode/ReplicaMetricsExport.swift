import Logging
import TallyApplication
import TallyConsensus
import TallyTypes

/// Exports what the replica and the mempool count (drops, suspicions, evictions, the
/// view, equivocations) to the node's metrics and log after each step: they keep
/// running totals, and a counter takes only what was added since the last export.
struct ReplicaMetricsExport {
    let validators: ValidatorSet
    let metrics: NodeMetrics
    let logger: Logger
    private var lastView: UInt64
    private var exportedDrops: [TallyConsensus.DropReason: Int] = [:]
    private var exportedSuspicions: [BackupSuspicion: Int] = [:]
    private var exportedEvictions: [EvictionReason: Int] = [:]
    private var equivocationReporter = EquivocationReporter()

    init(validators: ValidatorSet, view: UInt64, metrics: NodeMetrics, logger: Logger) {
        self.validators = validators
        self.lastView = view
        self.metrics = metrics
        self.logger = logger
    }

    /// Everything that changed in a step of `replica`.
    mutating func export(_ replica: Replica, mempool: Mempool) {
        if replica.view != lastView {
            metrics.viewChanges.increment(by: Int64(replica.view > lastView ? replica.view - lastView : 0))
            logger.notice("view changed", metadata: ["view": "\(replica.view)", "primary": "\(validators.primary(view: replica.view))"])
            lastView = replica.view
            metrics.view.record(Int64(replica.view))
        }
        metrics.mempoolTransactions.record(Int64(mempool.count))
        exportEvictions(mempool)
        for (reason, count) in replica.dropped where count > exportedDrops[reason, default: 0] {
            metrics.messageDropped(reason.rawValue, count: count - exportedDrops[reason, default: 0])
            exportedDrops[reason] = count
        }
        exportSuspicions(replica)
        equivocationReporter.export(replica, validators: validators, logger: logger)
    }

    /// Adds the mempool's evictions since the last call to the metrics.
    mutating func exportEvictions(_ mempool: Mempool) {
        for (reason, count) in mempool.evictions where count > exportedEvictions[reason, default: 0] {
            metrics.transactionsEvicted(reason.rawValue, count: count - exportedEvictions[reason, default: 0])
            exportedEvictions[reason] = count
        }
    }

    /// View changes this backup started because the primary kept committing but held
    /// transactions back (censorship) or proposed late (slow primary): an operator's
    /// sign of a faulty primary that the no-commit timer alone would not show.
    private mutating func exportSuspicions(_ replica: Replica) {
        for (reason, count) in replica.suspicions where count > exportedSuspicions[reason, default: 0] {
            metrics.primarySuspected(reason.rawValue, count: count - exportedSuspicions[reason, default: 0])
            exportedSuspicions[reason] = count
            logger.warning("backup suspects the primary", metadata: [
                "reason": "\(reason.rawValue)", "view": "\(replica.view)",
                "primary": "\(validators.primary(view: replica.view))",
            ])
        }
    }
}
