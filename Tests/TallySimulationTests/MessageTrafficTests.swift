import TallyConsensus
import XCTest

@testable import TallySimulation

/// PBFT's message cost as this implementation pays it (issue 16), counted by the
/// simulator's transport. In a fault-free run every height costs exactly what the
/// code sends the first time:
/// - PRE-PREPARE: the primary broadcasts it once (`tryPropose`): n−1;
/// - PREPARE: each of the n−1 backups broadcasts its vote once on accepting the
///   block (`tryAccept`; the primary's PRE-PREPARE stands for its prepare): (n−1)²;
/// - COMMIT: every replica, the primary too, broadcasts once when prepared
///   (`tryCommitVote`): n·(n−1);
/// - CHECKPOINT: at every K-th height each replica broadcasts its checkpoint once
///   after executing it (`onBlockExecuted`): n·(n−1), nothing at other heights.
/// Anything else on the wire for these kinds must be a retransmission
/// (`Replica.retransmit()`), which runs only on the ticks where the replica's tick
/// count is a multiple of the retransmit interval; a vote sent twice shows up as a
/// repeat outside those ticks, or as an extra first send.
final class MessageTrafficTests: XCTestCase {
    /// `Simulation.makeReplica`'s `retransmitIntervalTicks`.
    static let retransmitIntervalTicks = 6

    func checkNormalCaseCounts(validators n: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let options = SimulationOptions(validatorCount: n, mix: .none)
        let result = Simulation(seed: seed, options: options).run()
        let context = "n=\(n) seed \(seed)"
        XCTAssertNil(result.failure, context, file: file, line: line)
        XCTAssertEqual(result.viewChanges, 0, context, file: file, line: line)
        let inFlight = SimulationOptions.parameters.maxBlocksInFlight
        let checkpointInterval = SimulationOptions.parameters.checkpointIntervalBlocks
        let height = result.blocksCommitted
        XCTAssertGreaterThan(height, 2 * inFlight + checkpointInterval, context, file: file, line: line)
        let traffic = result.traffic
        let expected: [String: (UInt64) -> Int] = [
            "pre_prepare": { _ in n - 1 },
            "prepare": { _ in (n - 1) * (n - 1) },
            "commit": { _ in n * (n - 1) },
            "checkpoint": { $0 % checkpointInterval == 0 ? n * (n - 1) : 0 },
        ]
        for (kind, perHeight) in expected {
            let firstSends = traffic.firstSentByHeight[kind, default: [:]]
            // The run ends as soon as every replica reached the target: the last few
            // heights may still be in their phases, so below them the counts are exact.
            for h in 1...(height - inFlight) {
                XCTAssertEqual(firstSends[h, default: 0], perHeight(h), "\(context): first \(kind) sends at height \(h)",
                               file: file, line: line)
            }
            for (h, count) in firstSends where h > height - inFlight {
                XCTAssertLessThanOrEqual(count, perHeight(h), "\(context): first \(kind) sends at height \(h)", file: file, line: line)
            }
            let sent = traffic.byKind[kind, default: KindTraffic()]
            XCTAssertEqual(sent.messages, firstSends.values.reduce(0, +) + sent.resentMessages, "\(context): \(kind)",
                           file: file, line: line)
        }
        XCTAssertEqual(traffic.repeatedOutsideTickSteps, [:], "\(context): normal-case messages repeated outside retransmission",
                       file: file, line: line)
        // Every replica started at tick 0 and never restarted: after its tick step at
        // simulator tick t its tick count is t + 1.
        let offInterval = traffic.repeatTicks.filter { ($0 + 1) % Self.retransmitIntervalTicks != 0 }.sorted()
        XCTAssertEqual(offInterval, [], "\(context): normal-case messages repeated on ticks without retransmission",
                       file: file, line: line)
        // Sanity of the totals: bytes are counted per copy, and only kinds the run sent appear.
        XCTAssertEqual(traffic.messages, traffic.byKind.values.reduce(0) { $0 + $1.messages }, file: file, line: line)
        XCTAssertTrue(Set(traffic.byKind.keys).isSubset(of: MessageTraffic.kinds), "\(traffic.byKind.keys)", file: file, line: line)
        for kind in ["view_change", "new_view"] {
            XCTAssertNil(traffic.byKind[kind], "\(context): \(kind) in a fault-free run", file: file, line: line)
        }
    }

    func testFaultFreeRunsSendWhatPBFTPrescribes() {
        for seed: UInt64 in 1...4 { checkNormalCaseCounts(validators: 4, seed: seed) }
        for seed: UInt64 in 1...2 { checkNormalCaseCounts(validators: 7, seed: seed) }
        checkNormalCaseCounts(validators: 10, seed: 1)
    }

    /// The counts are part of the run's fingerprint: two runs of one seed agree on
    /// them, and the fingerprint changes with them.
    func testTrafficIsDeterministic() {
        let options = SimulationOptions(validatorCount: 4, mix: .network)
        let first = Simulation(seed: 7, options: options).run()
        let second = Simulation(seed: 7, options: options).run()
        XCTAssertEqual(first.traffic, second.traffic)
        XCTAssertEqual(first.fingerprint, second.fingerprint)
        XCTAssertGreaterThan(first.traffic.messages, 0)
        XCTAssertTrue(first.traffic.fingerprintLines.allSatisfy { $0.hasPrefix("sent ") })
    }
}
