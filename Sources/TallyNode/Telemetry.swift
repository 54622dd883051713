import Logging
import Metrics
import Prometheus

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
    public let height = Gauge(label: "tally_height")
    public let view = Gauge(label: "tally_view")
    public let viewChanges = Counter(label: "tally_view_changes_total")
    public let commitLatency = Timer(label: "tally_commit_latency_seconds")
    public let mempoolTransactions = Gauge(label: "tally_mempool_transactions")
    public let peersConnected = Gauge(label: "tally_peers_connected")
    public let transactionsAdmitted = Counter(label: "tally_transactions_admitted_total")
    public let blocksCommitted = Counter(label: "tally_blocks_committed_total")
    public let transactionsCommitted = Counter(label: "tally_transactions_committed_total")

    public init() { Telemetry.bootstrap() }

    public func transactionRejected(_ code: String) {
        Counter(label: "tally_transactions_rejected_total", dimensions: [("reason", code)]).increment()
    }

    public func messageDropped(_ reason: String) {
        Counter(label: "tally_messages_dropped_total", dimensions: [("reason", reason)]).increment()
    }
}
