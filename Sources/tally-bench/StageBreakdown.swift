import AsyncHTTPClient
import Foundation
import TallyTestbed

/// The validators' per-stage latency (`tally_stage_seconds{stage}` histograms,
/// docs/API.md) over one phase: every node's `/metrics` scraped before and after, the
/// difference summed over the nodes, quantiles interpolated within the buckets.
struct StageBreakdown {
    /// In commit-path order (`CommitTimeline.Stage`).
    static let stages = ["pre_prepare", "prepared", "committed", "executed", "event"]
    static let metric = "tally_stage_seconds"

    /// One node's histograms: per stage, cumulative bucket counts by upper bound, sum and count.
    struct Histogram {
        var buckets: [Double: Double] = [:]
        var sum = 0.0
        var count = 0.0
    }

    static let bytesSentMetric = "tally_network_bytes_sent_total"

    /// Per node, per stage.
    var nodes: [[String: Histogram]]
    /// Per node, `tally_network_bytes_sent_total` (wire bytes of its peer messages), read
    /// from the same scrape; nil where the node did not answer.
    var bytesSent: [Double?] = []

    static func scrape(_ network: Testbed, client: HTTPClient) async -> StageBreakdown {
        var nodes: [[String: Histogram]] = []
        var bytesSent: [Double?] = []
        for index in 0..<network.validators {
            let text = (try? await network.get(client, index, "/metrics")).map { String(decoding: $0, as: UTF8.self) } ?? ""
            nodes.append(parse(text))
            bytesSent.append(counter(text, bytesSentMetric))
        }
        return StageBreakdown(nodes: nodes, bytesSent: bytesSent)
    }

    /// An undimensioned counter's value in a Prometheus text exposition.
    static func counter(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    /// Bytes all validators sent to their peers between two scrapes. A node whose
    /// counter went down restarted in between: it counts what it sent since; a node
    /// missing from either scrape makes the sum unknown (nil), not smaller.
    static func bytesSentRise(from before: StageBreakdown, to after: StageBreakdown) -> Double? {
        guard before.bytesSent.count == after.bytesSent.count else { return nil }
        var total = 0.0
        for (old, new) in zip(before.bytesSent, after.bytesSent) {
            guard let old, let new else { return nil }
            total += new >= old ? new - old : new
        }
        return total
    }

    /// The `tally_stage_seconds` lines of a Prometheus text exposition.
    static func parse(_ text: String) -> [String: Histogram] {
        var histograms: [String: Histogram] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(metric) {
            guard let open = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}"),
                let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            let suffix = line[line.index(line.startIndex, offsetBy: metric.count)..<open]
            var labels: [String: String] = [:]
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { labels[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            }
            guard let stage = labels["stage"] else { continue }
            switch suffix {
            case "_bucket":
                guard let bound = labels["le"].flatMap({ $0 == "+Inf" ? Double.infinity : Double($0) }) else { continue }
                histograms[stage, default: Histogram()].buckets[bound] = value
            case "_sum": histograms[stage, default: Histogram()].sum = value
            case "_count": histograms[stage, default: Histogram()].count = value
            default: continue
            }
        }
        return histograms
    }

    /// What happened between `before` and `after` (counters only grow; a restarted node's shrink to zero is clamped).
    static func difference(_ after: StageBreakdown, _ before: StageBreakdown) -> StageBreakdown {
        StageBreakdown(nodes: after.nodes.enumerated().map { index, stages in
            var result: [String: Histogram] = [:]
            for (stage, histogram) in stages {
                let old = index < before.nodes.count ? before.nodes[index][stage] : nil
                var difference = Histogram()
                difference.sum = max(0, histogram.sum - (old?.sum ?? 0))
                difference.count = max(0, histogram.count - (old?.count ?? 0))
                for (bound, value) in histogram.buckets { difference.buckets[bound] = max(0, value - (old?.buckets[bound] ?? 0)) }
                result[stage] = difference
            }
            return result
        })
    }

    /// `p`-quantile (0…1) in seconds of a cumulative histogram, linear within its bucket.
    static func quantile(_ histogram: Histogram, _ p: Double) -> Double {
        guard histogram.count > 0 else { return 0 }
        let rank = p * histogram.count
        var lowerBound = 0.0, lowerCount = 0.0
        for (bound, cumulative) in histogram.buckets.sorted(by: { $0.key < $1.key }) {
            if cumulative >= rank {
                // Above the largest finite bound: report that bound (all we know).
                if bound.isInfinite { return lowerBound }
                let share = cumulative > lowerCount ? (rank - lowerCount) / (cumulative - lowerCount) : 1
                return lowerBound + (bound - lowerBound) * share
            }
            lowerBound = bound
            lowerCount = cumulative
        }
        return lowerBound
    }

    /// Per stage over all nodes: observations, mean, p50 / p90 / p99 (ms), and each node's mean.
    func summary() -> [[String: Any]] {
        Self.stages.map { stage in
            var total = Histogram()
            var nodeMeans: [Double] = []
            for node in nodes {
                let histogram = node[stage] ?? Histogram()
                total.sum += histogram.sum
                total.count += histogram.count
                for (bound, value) in histogram.buckets { total.buckets[bound, default: 0] += value }
                nodeMeans.append(histogram.count > 0 ? histogram.sum / histogram.count * 1000 : 0)
            }
            return [
                "stage": stage, "observations": Int(total.count), "mean_ms": total.count > 0 ? total.sum / total.count * 1000 : 0,
                "p50_ms": Self.quantile(total, 0.5) * 1000, "p90_ms": Self.quantile(total, 0.9) * 1000,
                "p99_ms": Self.quantile(total, 0.99) * 1000, "node_mean_ms": nodeMeans,
            ]
        }
    }

    /// The breakdown of the phase since `before` (logged), and the scrape it ended with.
    static func since(_ before: StageBreakdown, phase: String, network: Testbed, client: HTTPClient) async -> ([[String: Any]], StageBreakdown) {
        let after = await scrape(network, client: client)
        let rows = difference(after, before).summary()
        log(phase, rows)
        return (rows, after)
    }

    /// The breakdown as a table on stderr.
    static func log(_ phase: String, _ rows: [[String: Any]]) {
        benchLog("per-stage latency, \(phase) (all validators; tally_stage_seconds):")
        for row in rows {
            let nodeMeans = (row["node_mean_ms"] as? [Double] ?? []).map { String(format: "%.2f", $0) }.joined(separator: " ")
            let stage = (row["stage"] as? String ?? "").padding(toLength: 12, withPad: " ", startingAt: 0)
            benchLog("  " + stage + String(format: " %7d obs  mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f ms  (node means %@)",
                       row["observations"] as? Int ?? 0, row["mean_ms"] as? Double ?? 0,
                       row["p50_ms"] as? Double ?? 0, row["p90_ms"] as? Double ?? 0, row["p99_ms"] as? Double ?? 0, nodeMeans))
        }
    }
}
