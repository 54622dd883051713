import Logging
import Metrics
import Prometheus
import TallyDriver

/// Process-wide metrics: swift-metrics with the Prometheus backend, served at
/// `/metrics`. `MetricsSystem.bootstrap` may run once per process, so it happens
/// here, lazily, the first time anything asks for the registry.
public enum Telemetry {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        // The commit path's stages are often well under a millisecond each.
        factory.durationHistogramBuckets[NodeMetrics.stageLabel] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(5),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Prometheus text exposition of every metric.
    public static func prometheusText() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Makes sure the backend is installed before the first metric is created.
    public static func bootstrap() { _ = registry }
}

/// The node's metrics, named as docs/API.md lists them.
public struct NodeMetrics: Sendable {
    public let height: Metrics.Gauge
    public let view: Metrics.Gauge
    public let viewChanges: Metrics.Counter
    public let commitLatency: Metrics.Timer
    public let mempoolTransactions: Metrics.Gauge
    public let peersConnected: Metrics.Gauge
    public let transactionsAdmitted: Metrics.Counter
    public let blocksCommitted: Metrics.Counter
    public let transactionsCommitted: Metrics.Counter
    public let transactionsRegossiped: Metrics.Counter
    /// One durable write of the consensus state (before the votes that depend on it).
    public let consensusPersist: Metrics.Timer
    /// One block appended to the block store and fsynced.
    public let blockAppend: Metrics.Timer
    /// Each stage of a block's commit path (`CommitTimeline.Stage`), one histogram per
    /// `stage` label of `tally_stage_seconds`.
    public let stages: [CommitTimeline.Stage: Metrics.Timer]
    static let stageLabel = "tally_stage_seconds"

    public init() {
        // The backend must be installed before the first metric exists, or that
        // metric silently goes nowhere.
        Telemetry.bootstrap()
        height = Metrics.Gauge(label: "tally_height")
        view = Metrics.Gauge(label: "tally_view")
        viewChanges = Metrics.Counter(label: "tally_view_changes_total")
        commitLatency = Metrics.Timer(label: "tally_commit_latency_seconds")
        mempoolTransactions = Metrics.Gauge(label: "tally_mempool_transactions")
        peersConnected = Metrics.Gauge(label: "tally_peers_connected")
        transactionsAdmitted = Metrics.Counter(label: "tally_transactions_admitted_total")
        blocksCommitted = Metrics.Counter(label: "tally_blocks_committed_total")
        transactionsCommitted = Metrics.Counter(label: "tally_transactions_committed_total")
        transactionsRegossiped = Metrics.Counter(label: "tally_transactions_regossiped_total")
        consensusPersist = Metrics.Timer(label: "tally_consensus_persist_seconds")
        blockAppend = Metrics.Timer(label: "tally_block_append_seconds")
        stages = Dictionary(uniqueKeysWithValues: CommitTimeline.Stage.allCases.map {
            ($0, Metrics.Timer(label: Self.stageLabel, dimensions: [("stage", $0.rawValue)]))
        })
    }

    /// A stage's duration into its histogram.
    public func observe(_ stage: CommitTimeline.Stage, _ duration: Duration) { stages[stage]?.record(duration: duration) }

    public func transactionRejected(_ code: String) {
        Metrics.Counter(label: "tally_transactions_rejected_total", dimensions: [("reason", code)]).increment()
    }

    /// Transactions the mempool dropped after admitting them (expired, displaced,
    /// unaffordable after a commit, nonce used by another committed transaction).
    public func transactionsEvicted(_ reason: String, count: Int) {
        Metrics.Counter(label: "tally_mempool_evicted_total", dimensions: [("reason", reason)]).increment(by: Int64(count))
    }

    /// View changes a backup started suspecting the primary (`censorship`, `slow_primary`).
    public func primarySuspected(_ reason: String, count: Int) {
        Metrics.Counter(label: "tally_primary_suspicions_total", dimensions: [("reason", reason)]).increment(by: Int64(count))
    }

    public func messageDropped(_ reason: String, count: Int = 1) {
        Metrics.Counter(label: "tally_messages_dropped_total", dimensions: [("reason", reason)]).increment(by: Int64(count))
    }
}
