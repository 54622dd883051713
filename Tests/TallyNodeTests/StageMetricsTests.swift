import TallyDriver
import XCTest

@testable import TallyNode

/// The commit path's stages reach `/metrics` as `tally_stage_seconds{stage}` histograms
/// with sub-millisecond buckets, one label value per stage.
final class StageMetricsTests: XCTestCase {
    func testEachStageIsAHistogramWithSubMillisecondBuckets() {
        let metrics = NodeMetrics()
        let before = Self.samples(Telemetry.prometheusText())
        for stage in CommitTimeline.Stage.allCases { metrics.observe(stage, .microseconds(300)) }
        let after = Self.samples(Telemetry.prometheusText())
        for stage in CommitTimeline.Stage.allCases {
            let count = "tally_stage_seconds_count{stage=\"\(stage.rawValue)\"}"
            XCTAssertEqual(after[count, default: 0] - before[count, default: 0], 1, count)
            // 300 µs lands in the 0.5 ms bucket, not in the 0.25 ms one.
            let bucket = "tally_stage_seconds_bucket{stage=\"\(stage.rawValue)\",le=\"0.0005\"}"
            XCTAssertEqual(after[bucket, default: 0] - before[bucket, default: 0], 1, bucket)
            let lower = "tally_stage_seconds_bucket{stage=\"\(stage.rawValue)\",le=\"0.00025\"}"
            XCTAssertEqual(after[lower, default: 0] - before[lower, default: 0], 0, lower)
        }
    }

    /// Sample name with labels → value.
    static func samples(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }
}
